"""IEC 62056-21 (formerly IEC 61107) protocol mode C data readout: codec and sans-I/O master.

The exchange, as seen from the hub (the "HHU" of the standard) at 300 baud, 7E1, then at the
baud rate the meter proposed (IEC 62056-21:2002, clause 6.3 "Protocol mode C" and 6.4.5
"Flow diagram for protocol mode C")::

    hub   -> meter   /?<address>!CR LF                  request message (6.3.1)
    meter -> hub     /XXXZ<\\W><identification>CR LF     identification message (6.3.2)
    hub   -> meter   ACK 0 Z 0 CR LF                    acknowledgement/option select (6.3.3)
    (both switch to the baud rate of Z)
    meter -> hub     STX <data block> ! CR LF ETX BCC   data message (6.3.4)

``XXX`` is the manufacturer's three-letter id, ``Z`` the baud-rate character (protocol mode C:
``0``..``6`` = 300..19200 baud), ``\\W`` optional enhanced-capability characters. In the option
select ``0`` is the normal protocol procedure, ``Z`` the baud rate the hub accepts and the last
``0`` selects data readout. ``BCC`` is the block check character (clause 6.3.4 and the
"Block check character" paragraph): the XOR of every byte after ``STX`` up to and including
``ETX``. A data block is lines of data sets ``address(value*unit)`` ended by CR LF (clause 6.5
"Data set structure": address up to 16 characters, value up to 32 (128 in mode C), unit up to
16, none of ``(``, ``)``, ``/``, ``!``; ``*`` only separates the unit).

DSMR P1 (``smarthub.meters.dsmr``) is a derivative of this readout with a CRC instead of the BCC.

Why our own codec rather than the ``iec62056-21`` package (which the tests and the benchmark
use as the reference):

* speed: the reference splits the block with Python string slicing per data set and computes
  the BCC one byte at a time; we validate the whole frame with one regular expression, take
  the valid block apart with string splits for the data points, and fold the BCC over the frame
  as one big integer (see the benchmarks ``bench/codec_iec.py`` and ``bench/codec_han.py``);
* sans-I/O: :class:`IecMaster` takes bytes in arbitrary chunks and returns instructions
  (:class:`SendBytes`, :class:`SwitchBaud`) and results; it owns no serial port, timer or thread
  (the transport applies the reaction times of clause 6.3.14 and the parity 7E1 of 6.2);
* typed errors: bad input raises only :class:`~smarthub.meters.errors.DecodeError` subclasses
  (the decoder is fuzzed); the reference raises ``ValueError``/``IndexError`` or accepts
  garbage;
* exact values: numbers stay ``Decimal`` from the text to the data point.

Data points (``smarthub.model.datapoint``): protocol ``iec62056-21``, key the address as
written (``1.8.0``, ``1-0:1.8.0``, ``1.8.0*01``), first value of a data set under that key and
the further values of the same data set under ``{address}/{n}`` (n = 1, 2, ...: e.g. the capture
time of a maximum demand ``1.6.0(5.120*kW)(2401151230)``); a data set without an address
continues the numbering of the one before it (profile lines ``P.01(...)(...)`` CR LF ``(...)``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

from smarthub.meters.errors import ChecksumError, DecodeError, MalformedFrame, TruncatedFrame
from smarthub.model.datapoint import DataPoint

__all__ = [
    "BAUD_RATES",
    "LONDON",
    "DataSet",
    "Event",
    "Identification",
    "IecMaster",
    "IecValue",
    "MasterState",
    "OptionSelect",
    "ProtocolError",
    "Readout",
    "SendBytes",
    "SwitchBaud",
    "baud_char",
    "bcc",
    "data_points",
    "decode_identification",
    "decode_option_select",
    "decode_readout",
    "decode_request",
    "encode_identification",
    "encode_option_select",
    "encode_readout",
    "encode_request",
]

PROTOCOL = "iec62056-21"
LONDON = ZoneInfo("Europe/London")

SOH, STX, ETX, ACK, NAK = 0x01, 0x02, 0x03, 0x06, 0x15
CRLF = b"\r\n"

# Baud-rate character of protocol mode C (clause 6.3.14 "Baud rate" table, mode C column).
BAUD_RATES: dict[str, int] = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200}
_BAUD_CHARS = {baud: char for char, baud in BAUD_RATES.items()}
INITIAL_BAUD = 300


def baud_char(baud: int) -> str:
    """The mode C baud-rate character for ``baud`` (``9600`` -> ``"5"``)."""
    try:
        return _BAUD_CHARS[baud]
    except KeyError:
        raise ValueError(f"{baud} baud is not a protocol mode C rate ({sorted(_BAUD_CHARS)})") from None


# --------------------------------------------------------------------------------------------
# Block check character
# --------------------------------------------------------------------------------------------


def bcc(data: bytes) -> int:
    """XOR of all bytes of ``data`` (the caller passes the bytes after STX up to and including ETX).

    Folds the frame as one integer: each step XORs the integer shifted down by half the
    (power-of-two padded) width onto itself, in C, so a 1 kB block takes ~10 big-integer
    operations instead of 1000 Python-level XORs. No masks: each step's result is read only
    in the lower half of the width left, which holds folded bytes alone (what is left above it
    only ever lands above the next lower half). Once eight bytes are folded, the rest is on a
    machine word.
    """
    x = int.from_bytes(data, "little")
    shift = 4 << (len(data) - 1).bit_length()  # half the padded width, in bits
    while shift > 512:
        x ^= x >> shift
        shift >>= 1
    # A readout of up to 128 bytes (most of them) takes these steps alone, without the loop; on
    # a shorter one the first steps shift zeros in, which costs less than deciding to skip them.
    x ^= x >> 512
    x ^= x >> 256
    x ^= x >> 128
    x ^= x >> 64
    x &= 0xFFFFFFFFFFFFFFFF
    x ^= x >> 32
    x ^= x >> 16
    x ^= x >> 8
    return x & 0xFF


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identification:
    """The meter's identification message ``/XXXZ\\W...ident CR LF`` (clause 6.3.2)."""

    manufacturer: str  # three characters; a lower-case third letter means 20 ms minimum reaction time
    baud_char: str  # Z
    identification: str  # up to 16 printable characters
    capabilities: tuple[str, ...] = ()  # the W of each "\\W" sequence

    @property
    def baud(self) -> int | None:
        """The proposed baud rate in protocol mode C, or None for another mode's character."""
        return BAUD_RATES.get(self.baud_char)

    def __str__(self) -> str:
        caps = "".join("\\" + c for c in self.capabilities)
        return f"/{self.manufacturer}{self.baud_char}{caps}{self.identification}"


@dataclass(frozen=True, slots=True)
class OptionSelect:
    """Acknowledgement/option select message ``ACK V Z Y CR LF`` (clause 6.3.3)."""

    protocol_control: str  # V: "0" normal protocol procedure, "1" secondary, "2" HDLC (mode E)
    baud_char: str  # Z
    mode: str  # Y: "0" data readout, "1" programming mode, "6"-"9" manufacturer specific


class IecValue(NamedTuple):
    """One ``(value*unit)`` group: the text before ``*`` and the unit after it (None without ``*``)."""

    value: str
    unit: str | None = None

    def __str__(self) -> str:
        return self.value if self.unit is None else f"{self.value}*{self.unit}"


class DataSet(NamedTuple):
    """``address(value*unit)(value*unit)...``; ``address`` is "" for a set without one.

    (Named tuples, not dataclasses: a readout builds dozens and construction is the cost.)
    """

    address: str
    values: tuple[IecValue, ...]

    @property
    def value(self) -> IecValue | None:
        return self.values[0] if self.values else None


@dataclass(frozen=True, slots=True)
class Readout:
    """A decoded data message: its data block (validated against the grammar of clause 6.5),
    the BCC and the identification when known. ``lines`` (the data sets, line by line) is built
    from the block when first asked for; :func:`data_points` reads the block directly, without
    building the data sets (that halved a readout's cost; issue 17)."""

    text: str  # the data block between STX and "!", lines ended by CR LF
    bcc: int | None  # None: sent without STX/ETX/BCC (mode D, push meters)
    identification: Identification | None = None
    # Caches, left unset until first asked for (a slot read before it is set raises
    # AttributeError, hence ``getattr`` with a default).
    _lines: tuple[tuple[DataSet, ...], ...] | None = field(init=False, repr=False, compare=False)
    _index: dict[str, DataSet] | None = field(init=False, repr=False, compare=False)

    @property
    def lines(self) -> tuple[tuple[DataSet, ...], ...]:
        lines = getattr(self, "_lines", None)
        if lines is None:
            lines = _lines(self.text)
            object.__setattr__(self, "_lines", lines)
        return lines

    def data_sets(self) -> Iterator[DataSet]:
        for line in self.lines:
            yield from line

    def get(self, address: str) -> DataSet | None:
        """The first data set with exactly that address."""
        index = getattr(self, "_index", None)
        if index is None:
            index = {}
            for ds in self.data_sets():
                index.setdefault(ds.address, ds)
            object.__setattr__(self, "_index", index)
        return index.get(address)


# A Readout built field by field through its slots: a third of the cost of its frozen
# dataclass __init__, on the path every well-formed framed message takes.
_new_readout = object.__new__
_set_text: Callable[[Readout, str], None] = Readout.__dict__["text"].__set__
_set_bcc: Callable[[Readout, int | None], None] = Readout.__dict__["bcc"].__set__
_set_identification: Callable[[Readout, Identification | None], None] = Readout.__dict__[
    "identification"
].__set__

# Printable ASCII without "(", ")", "/", "!" (clause 6.5); values also without "*".
_ADDR = r"[\x20\x22-\x27\x2a-\x2e\x30-\x7e]"
_VAL = r"[\x20\x22-\x27\x2b-\x2e\x30-\x7e]"
# Every repetition is possessive ("*+", "++", "{m,n}+"): the grammar has one parse (an address
# cannot hold "(" nor start with CR or "!", a value cannot hold "*" or ")"), so giving characters
# back can never make a match, and a possessive repeat does not record the states to give them
# back from: the framed match below costs a third less (issue 17).
_GROUP = rf"\({_VAL}{{0,128}}+(?:\*{_VAL}{{0,16}}+)?+\)"
# For validation every group is read as "address(value)" with a possibly empty address, so a
# line has exactly one parse and a bad one fails in linear time (no backtracking blow-up);
# extraction then takes an address with all the groups that follow it.
_ONE = rf"{_ADDR}{{0,16}}+{_GROUP}"
_BLOCK_RE = re.compile(rf"(?:(?:{_ONE})++\r\n)*+")
_LINE_RE = re.compile(rf"(?:{_ONE})++")
# A framed data message as most meters send it (optionally after the request's echo and the
# identification line), in one match over the bytes: a frame that does not match takes the
# step-by-step path below, which finds what is wrong with it. The classes are ASCII, so a byte
# above 0x7E fails here too.
_FRAMED_RE = re.compile(
    rb"(?:/\?[^\n]*+\n)?(?:(/[^\r\n]*+)\r?\n)?\x02((?:(?:%s)++\r\n)*+)!\r\n\x03." % _ONE.encode("ascii"),
    re.DOTALL,
)
_IDENT_RE = re.compile(r"/([A-Za-z]{3})([\x21-\x5b\x5d-\x7e])((?:\\[\x21-\x7e])*)([\x20-\x7e]{0,32})")
_REQUEST_RE = re.compile(rb"/\?([0-9A-Za-z ]{0,32})!\r\n")
_OPTION_RE = re.compile(rb"\x06([0-9])([0-9A-Za-z])([0-9])\r\n")


def _ascii(data: bytes, offset: int = 0) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as err:
        raise MalformedFrame(PROTOCOL, "non-ASCII byte", offset=offset + err.start) from None


def _as_bytes(data: object) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedFrame(PROTOCOL, f"expected bytes, got {type(data).__name__}")
    return bytes(data)


# A meter sends the same identification line every time: decoded ones are kept (bounded).
_IDENTIFICATIONS: dict[bytes, Identification] = {}


def decode_identification(data: bytes) -> Identification:
    """Decode ``/XXXZ\\W...ident CR LF`` (the CR LF may be omitted)."""
    if type(data) is bytes:
        hit = _IDENTIFICATIONS.get(data)
        if hit is not None:
            return hit
    ident = _decode_identification(_as_bytes(data))
    if len(_IDENTIFICATIONS) < 256:
        _IDENTIFICATIONS[bytes(data)] = ident
    return ident


def _decode_identification(data: bytes) -> Identification:
    if not data:
        raise TruncatedFrame(PROTOCOL, "empty identification message", offset=0)
    if data[:1] != b"/":
        raise MalformedFrame(PROTOCOL, "identification message does not start with '/'", offset=0)
    line = data.removesuffix(CRLF)
    if b"!" in line or b"/" in line[1:]:
        raise MalformedFrame(PROTOCOL, "'!' or '/' in the identification message")
    m = _IDENT_RE.fullmatch(_ascii(line))
    if m is None:
        if len(line) < 5:
            raise TruncatedFrame(PROTOCOL, f"identification message of {len(line)} bytes", offset=len(line))
        raise MalformedFrame(PROTOCOL, f"bad identification message {line[:48]!r}")
    manufacturer, z, caps, ident = m.groups()
    return Identification(manufacturer, z, ident, tuple(caps[1::2]))


def encode_identification(
    manufacturer: str, baud: int | str, identification: str, capabilities: Sequence[str] = ()
) -> bytes:
    """Build an identification message (meter side; ``baud`` as a rate or its character)."""
    z = baud if isinstance(baud, str) else baud_char(baud)
    text = str(Identification(manufacturer, z, identification, tuple(capabilities)))
    decode_identification(text.encode("ascii") + CRLF)  # validates
    if len(identification) > 16:
        raise ValueError("the identification is at most 16 characters (clause 6.3.2)")
    return text.encode("ascii") + CRLF


def encode_request(address: str = "") -> bytes:
    """``/?<address>!CR LF`` (clause 6.3.1); the address is optional (up to 32 characters)."""
    out = f"/?{address}!\r\n".encode("ascii")
    if _REQUEST_RE.fullmatch(out) is None:
        raise ValueError(f"bad device address {address!r}")
    return out


def decode_request(data: bytes) -> str:
    """The device address of a request message ("" when absent)."""
    data = _as_bytes(data)
    m = _REQUEST_RE.fullmatch(data)
    if m is None:
        if data and CRLF not in data:
            raise TruncatedFrame(PROTOCOL, "request message without CR LF", offset=len(data))
        raise MalformedFrame(PROTOCOL, f"bad request message {data[:40]!r}")
    return m.group(1).decode("ascii")


def encode_option_select(baud: int | str, mode: str = "0", protocol_control: str = "0") -> bytes:
    """``ACK V Z Y CR LF`` (clause 6.3.3); by default normal procedure, data readout."""
    z = baud if isinstance(baud, str) else baud_char(baud)
    out = bytes([ACK]) + f"{protocol_control}{z}{mode}\r\n".encode("ascii")
    if _OPTION_RE.fullmatch(out) is None:
        raise ValueError(f"bad option select {out!r}")
    return out


def decode_option_select(data: bytes) -> OptionSelect:
    data = _as_bytes(data)
    m = _OPTION_RE.fullmatch(data)
    if m is None:
        if len(data) < 6 and data[:1] == bytes([ACK]):
            raise TruncatedFrame(PROTOCOL, "short acknowledgement/option select", offset=len(data))
        raise MalformedFrame(PROTOCOL, f"bad acknowledgement/option select {data[:16]!r}")
    v, z, y = (g.decode("ascii") for g in m.groups())
    return OptionSelect(v, z, y)


def decode_readout(data: bytes, identification: Identification | None = None) -> Readout:
    """Decode one complete data message ``STX block ! CR LF ETX BCC`` (clause 6.3.4), as a
    meter sends it: optionally after the optical head's echo of the request (``/?!`` CR LF) and
    the identification line (``/XXXZ...`` CR LF), which then fills ``identification``; and also
    without STX, ETX and BCC (protocol mode D and the push meters that follow it, e.g. eHZ:
    the block ends at ``!`` CR LF, and there is no check character to verify).

    Raises :class:`TruncatedFrame` when ETX or the BCC is missing, :class:`ChecksumError` when
    the BCC does not match, :class:`MalformedFrame` for anything off the grammar; nothing else.
    """
    if type(data) is not bytes:
        data = _as_bytes(data)
    framed = _FRAMED_RE.fullmatch(data)
    if framed is not None:
        line, block = framed.groups()
        found = data[-1]
        # The BCC covers the block and "!" CR LF ETX after it, whose XOR is 0x25.
        if bcc(block) ^ 0x25 == found:
            if line is not None:
                identification = _IDENTIFICATIONS.get(line) or decode_identification(line)
            readout = _new_readout(Readout)
            _set_text(readout, block.decode("ascii"))
            _set_bcc(readout, found)
            _set_identification(readout, identification)
            return readout
        # A BCC mismatch: the path below says so, with its offset.
    return _decode_stepwise(data, identification)


def _decode_stepwise(data: bytes, identification: Identification | None) -> Readout:
    """:func:`decode_readout` one step at a time: what is wrong with a frame, and where."""
    if data[:2] == b"/?":  # half-duplex optical heads echo the request back
        end = data.find(b"\n")
        if end < 0:
            raise TruncatedFrame(PROTOCOL, "request echo not ended by CR LF", offset=len(data))
        data = data[end + 1 :]
    if data[:1] == b"/":
        end = data.find(b"\n")
        if end < 0:
            raise TruncatedFrame(PROTOCOL, "identification line not ended by CR LF", offset=len(data))
        identification = decode_identification(data[:end].removesuffix(b"\r"))
        data = data[end + 1 :]
        if not data:
            raise TruncatedFrame(PROTOCOL, "identification line but no data message", offset=0)
    if not data:
        raise TruncatedFrame(PROTOCOL, "empty data message", offset=0)
    if data[0] != STX:
        return _decode_unframed(data, identification)
    etx = data.find(b"\x03", 1)
    if etx < 0:
        raise TruncatedFrame(PROTOCOL, "no ETX: data message cut off", offset=len(data))
    if etx + 1 >= len(data):
        raise TruncatedFrame(PROTOCOL, "no BCC after ETX", offset=len(data))
    if etx + 2 != len(data):
        raise MalformedFrame(PROTOCOL, "bytes after the BCC", offset=etx + 2)
    found = data[etx + 1]
    expected = bcc(data[1 : etx + 1])
    if found != expected:
        raise ChecksumError(
            PROTOCOL, f"BCC mismatch: expected {expected:02X}, found {found:02X}", offset=etx + 1
        )
    if not data.endswith(b"!\r\n\x03", 0, etx + 1):
        raise MalformedFrame(PROTOCOL, "data block does not end with '!' CR LF", offset=max(1, etx - 3))
    text = _ascii(data[1 : etx - 3], 1)
    if _BLOCK_RE.fullmatch(text) is None:
        raise _locate_error(text)
    return Readout(text, found, identification)


# Extraction from a validated block: each "address(value*unit)" group with the CR LF after it,
# if any (an address cannot hold "(", a value neither ")" nor "*": validation made sure).
_GROUPS_RE = re.compile(r"([^(]*)\(([^*)]*)(\*[^)]*)?\)(\r\n)?")
_tuple_new = tuple.__new__  # builds a named tuple without its Python-level __new__


def _lines(text: str) -> tuple[tuple[DataSet, ...], ...]:
    # The block is valid, so one findall walks every group; a group with an address (or the
    # first of a line) starts a data set, one without continues it; CR LF closes a line.
    lines: list[tuple[DataSet, ...]] = []
    line: list[DataSet] = []
    address = ""
    values: list[IecValue] | None = None
    for addr, value, unit, end in _GROUPS_RE.findall(text):
        v = _tuple_new(IecValue, (value, unit[1:] if unit else None))
        if addr or values is None:
            if values is not None:
                line.append(_tuple_new(DataSet, (address, tuple(values))))
            address, values = addr, [v]
        else:
            values.append(v)
        if end:
            line.append(_tuple_new(DataSet, (address, tuple(values))))
            lines.append(tuple(line))
            line, values = [], None
    return tuple(lines)


def _decode_unframed(data: bytes, identification: Identification | None) -> Readout:
    """A data block without STX/ETX/BCC, ended by ``!`` (and CR LF)."""
    if data[0] == ETX or b"\x02" in data or b"\x03" in data:
        raise MalformedFrame(PROTOCOL, "data message does not start with STX", offset=0)
    body = data.removesuffix(b"\n").removesuffix(b"\r")
    if not body.endswith(b"!"):
        if b"!" in body:
            raise MalformedFrame(PROTOCOL, "bytes after the closing '!'", offset=body.rfind(b"!") + 1)
        raise TruncatedFrame(PROTOCOL, "data block not closed by '!': readout cut off", offset=len(data))
    text = _ascii(body[:-1])
    if _BLOCK_RE.fullmatch(text) is None:
        raise _locate_error(text)
    return Readout(text, None, identification)


def _locate_error(text: str) -> MalformedFrame:
    offset = 1
    for line in text.split("\r\n"):
        if _LINE_RE.fullmatch(line) is None:
            if line == "" and offset - 1 + len(line) >= len(text):
                break
            if "\r" in line or "\n" in line:
                return MalformedFrame(PROTOCOL, f"line not ended by CR LF: {line[:60]!r}", offset=offset)
            if line.count("(") != line.count(")"):
                return MalformedFrame(PROTOCOL, f"unbalanced parentheses in {line[:60]!r}", offset=offset)
            return MalformedFrame(
                PROTOCOL, f"line does not match address(value*unit): {line[:60]!r}", offset=offset
            )
        offset += len(line) + 2
    return MalformedFrame(PROTOCOL, "data block does not end with CR LF before '!'", offset=offset)


def encode_readout(lines: Sequence[DataSet | Sequence[DataSet]]) -> bytes:
    """Build a data message: each item a line (a :class:`DataSet` alone or several), ``!``, ETX, BCC."""
    parts: list[str] = []
    for line in lines:
        sets = (line,) if isinstance(line, DataSet) else tuple(line)
        if not sets:
            raise ValueError("a data line needs at least one data set")
        for ds in sets:
            if not ds.values:
                raise ValueError(f"{ds.address}: a data set needs at least one value")
            parts.append(ds.address)
            parts.extend(f"({v})" for v in ds.values)
        parts.append("\r\n")
    text = "".join(parts)
    if _BLOCK_RE.fullmatch(text) is None:
        raise ValueError(f"data sets a data message cannot carry: {text[:80]!r}")
    body = text.encode("ascii") + b"!\r\n\x03"
    return b"\x02" + body + bytes([bcc(body)])


# --------------------------------------------------------------------------------------------
# The master (hub) side state machine
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendBytes:
    """Write these bytes to the meter (at the current baud rate)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class SwitchBaud:
    """Change the port to ``baud`` once everything sent before has left the UART."""

    baud: int


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The session failed; ``error`` says how. The master is then in state FAILED."""

    error: DecodeError


Event = SendBytes | SwitchBaud | Readout | ProtocolError


class MasterState:
    IDLE = "idle"
    AWAIT_IDENTIFICATION = "await_identification"
    AWAIT_DATA = "await_data"
    DONE = "done"
    FAILED = "failed"


class IecMaster:
    """The hub's side of one mode C data readout, sans I/O.

    ``start()`` returns the request to send at 300 baud 7E1. Feed whatever the port receives to
    ``receive()``; it returns the events to act on in order: after the identification,
    ``SendBytes(ACK 0 Z 0 CR LF)`` then ``SwitchBaud(baud)``; after the data message the
    :class:`Readout` (with the identification attached). Any error ends the session with a
    :class:`ProtocolError`; ``start()`` begins a new one. The echo of our own request or option
    select (half-duplex optical heads return it) and noise between messages are skipped.
    ``max_baud`` caps the rate accepted (a long cable or a slow probe).
    """

    def __init__(self, max_baud: int = 19200, max_message: int = 16 * 1024) -> None:
        baud_char(max_baud)
        self.max_baud = max_baud
        self.max_message = max_message
        self.state = MasterState.IDLE
        self.identification: Identification | None = None
        self.baud = INITIAL_BAUD
        self._buf = bytearray()

    def start(self, address: str = "") -> bytes:
        request = encode_request(address)
        self.state = MasterState.AWAIT_IDENTIFICATION
        self.identification = None
        self.baud = INITIAL_BAUD
        self._buf.clear()
        return request

    def receive(self, data: bytes) -> list[Event]:
        if self.state not in (MasterState.AWAIT_IDENTIFICATION, MasterState.AWAIT_DATA):
            return []
        self._buf += data
        out: list[Event] = []
        if self.state == MasterState.AWAIT_IDENTIFICATION:
            self._identification(out)
        if self.state == MasterState.AWAIT_DATA:
            self._data(out)
        return out

    def _fail(self, out: list[Event], err: DecodeError) -> None:
        self.state = MasterState.FAILED
        self._buf.clear()
        out.append(ProtocolError(err))

    def _identification(self, out: list[Event]) -> None:
        buf = self._buf
        while True:
            start = buf.find(b"/")
            if start < 0:
                buf.clear()
                return
            del buf[:start]
            end = buf.find(CRLF)
            if end < 0:
                if len(buf) > 128:
                    self._fail(out, MalformedFrame(PROTOCOL, "no CR LF within 128 bytes of '/'"))
                return
            line = bytes(buf[: end + 2])
            del buf[: end + 2]
            if line.startswith(b"/?"):
                continue  # the echo of our request
            try:
                ident = decode_identification(line)
            except DecodeError as err:
                self._fail(out, err)
                return
            proposed = ident.baud
            if proposed is None:
                self._fail(
                    out, MalformedFrame(PROTOCOL, f"baud-rate character {ident.baud_char!r} is not mode C")
                )
                return
            baud = min(proposed, self.max_baud)
            self.identification = ident
            self.baud = baud
            self.state = MasterState.AWAIT_DATA
            out.append(SendBytes(encode_option_select(baud)))
            out.append(SwitchBaud(baud))
            return

    def _data(self, out: list[Event]) -> None:
        buf = self._buf
        start = buf.find(b"\x02")
        if start < 0:
            if len(buf) > self.max_message:
                self._fail(out, MalformedFrame(PROTOCOL, "no STX", offset=len(buf)))
            elif buf.find(b"\x15") >= 0:
                self._fail(out, MalformedFrame(PROTOCOL, "the meter answered NAK"))
            return
        del buf[:start]
        etx = buf.find(b"\x03", 1)
        if etx < 0 or etx + 1 >= len(buf):
            if len(buf) > self.max_message:
                self._fail(out, TruncatedFrame(PROTOCOL, f"no ETX within {self.max_message} bytes"))
            return
        frame = bytes(buf[: etx + 2])
        try:
            readout = decode_readout(frame, self.identification)
        except DecodeError as err:
            self._fail(out, err)
            return
        self.state = MasterState.DONE
        buf.clear()
        out.append(readout)


# --------------------------------------------------------------------------------------------
# Mapping to data points
# --------------------------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"[-+]?\d+(?:\.\d*)?|[-+]?\.\d+")
_AB = r"(?:\d{1,3}-\d{1,3}:)?"
_F = r"(?:\*255|\.255)?"  # "1-0:C.1.0*255": some meters write the F group of a current value
_SERIAL_RE = re.compile(rf"{_AB}(?:0\.0\.0|C\.1\.0|96\.1\.0){_F}")
_TIME_RE = re.compile(rf"{_AB}0\.9\.1{_F}")
_DATE_RE = re.compile(rf"{_AB}0\.9\.2{_F}")
_ERROR_RE = re.compile(rf"{_AB}F\.F(?:\.0)?{_F}")
# Addresses whose values are identifiers or text, kept as strings even when all digits:
# serial numbers 0.0.x / C.1.x / 96.1.x, time and date, error register F.F, service group C.
_TEXT_RE = re.compile(rf"{_AB}(?:0\.0\.\d+|C\..*|96\.1\.\d+|0\.9\.[12]|F\.F.*|0\.2\.\d+)")

_K_NUMBER, _K_TEXT, _K_SERIAL, _K_TIME, _K_DATE, _K_ERROR = range(6)
_NO_FLAGS: frozenset[str] = frozenset()
_ERROR_FLAGS = frozenset({"error"})
# Address -> kind. Meters use a few dozen addresses; the bound keeps fuzzed input from growing it.
_KIND_CACHE: dict[str, int] = {}
_KIND_CACHE_MAX = 4096


def _kind(address: str) -> int:
    kind = _KIND_CACHE.get(address)
    if kind is None:
        if _SERIAL_RE.fullmatch(address):
            kind = _K_SERIAL
        elif _TIME_RE.fullmatch(address):
            kind = _K_TIME
        elif _DATE_RE.fullmatch(address):
            kind = _K_DATE
        elif _ERROR_RE.fullmatch(address):
            kind = _K_ERROR
        elif _TEXT_RE.fullmatch(address):
            kind = _K_TEXT
        else:
            kind = _K_NUMBER
        if len(_KIND_CACHE) < _KIND_CACHE_MAX:
            _KIND_CACHE[address] = kind
    return kind


def _time_of_day(raw: str) -> tuple[int, int, int]:
    digits = raw.replace(":", "")
    if len(digits) != 6 or not (digits.isascii() and digits.isdigit()):
        raise MalformedFrame(PROTOCOL, f"0.9.1 time {raw!r} is not hh:mm:ss")
    v = int(digits)
    return v // 10000, v // 100 % 100, v % 100


def _date(raw: str) -> tuple[int, int, int]:
    digits = raw.replace("-", "").replace(".", "")
    if not (digits.isascii() and digits.isdigit()) or len(digits) not in (6, 7):
        raise MalformedFrame(PROTOCOL, f"0.9.2 date {raw!r} is not YYMMDD or 1YYMMDD")
    if len(digits) == 7:
        # A leading digit before YYMMDD: "1" (Landis+Gyr, EMH: years since 1900 / 100) or a
        # zero pad ("0220127", Iskra MT174, for 2022): either way a date of this century.
        if digits[0] not in "01":
            raise MalformedFrame(PROTOCOL, f"0.9.2 date {raw!r}: leading digit must be 0 or 1")
        digits = digits[1:]
    v = int(digits)
    return 2000 + v // 10000, v // 100 % 100, v % 100


# (zone, year, month, day, hour) -> UTC offset of every local time in that hour, for hours with
# no transition in them (a meter is read many times an hour; the zone lookup was a tenth of a
# readout's cost). Bounded.
_HOUR_OFFSETS: dict[tuple[ZoneInfo, int, int, int, int], timedelta] = {}
_HOUR_OFFSETS_MAX = 1024


# (zone, 0.9.2 as sent, the hour: 0.9.1's first two characters) -> that local hour's start in
# UTC, for hours with no transition in them, and the minutes and seconds of an hour as
# timedeltas: a meter is read many times an hour, and then its clock costs two lookups and one
# addition. Bounded.
_HOUR_STARTS: dict[tuple[ZoneInfo, str, str], datetime] = {}
_IN_HOUR = [timedelta(seconds=s) for s in range(3600)]
# The rest of a valid 0.9.1 after its hour, as sent ("mmss" or ":mm:ss"), -> those minutes and
# seconds: one lookup instead of parsing them (at most 7,200 entries, filled as times are seen).
_IN_HOUR_BY_TEXT: dict[str, timedelta] = {}


def _clock(d_raw: str, t_raw: str, tz: ZoneInfo) -> datetime:
    """The meter's local date and time (0.9.2, 0.9.1) in ``tz`` as UTC: the same instant as
    ``datetime(..., tzinfo=tz).astimezone(UTC)`` (fold 0 for an ambiguous or missing time)."""
    start = _HOUR_STARTS.get((tz, d_raw, t_raw[:2]))
    if start is not None:
        in_hour = _IN_HOUR_BY_TEXT.get(t_raw[2:])
        if in_hour is not None:
            return start + in_hour
    try:
        year, month, day = _date(d_raw)
        hour, minute, second = _time_of_day(t_raw)
        naive = datetime(year, month, day, hour, minute, second)
    except ValueError:  # MalformedFrame included: one message for any bad clock
        raise MalformedFrame(
            PROTOCOL, f"0.9.2/0.9.1 {d_raw!r} {t_raw!r} is not a valid date and time"
        ) from None
    key = (tz, year, month, day, hour)
    offset = _HOUR_OFFSETS.get(key)
    if offset is None:
        offset = naive.replace(tzinfo=tz).utcoffset()
        assert offset is not None  # a ZoneInfo always has one
        start_offset = naive.replace(minute=0, second=0, tzinfo=tz).utcoffset()
        end = naive.replace(minute=59, second=59, tzinfo=tz).utcoffset()
        if start_offset == end == offset and len(_HOUR_OFFSETS) < _HOUR_OFFSETS_MAX:
            _HOUR_OFFSETS[key] = offset
    try:
        utc = (naive - offset).replace(tzinfo=UTC)
    except OverflowError:
        raise MalformedFrame(
            PROTOCOL, f"0.9.2/0.9.1 {d_raw!r} {t_raw!r} is not a valid date and time"
        ) from None
    in_hour = _IN_HOUR[minute * 60 + second]
    hh, rest = t_raw[:2], t_raw[2:]
    if (
        _HOUR_OFFSETS.get(key) is not None
        and hh.isdigit()  # "hh" as sent, not "h:" of a time written otherwise
        and (rest.isdigit() or (len(rest) == 6 and rest[0] == rest[3] == ":"))  # mmss, :mm:ss
        and len(_HOUR_STARTS) < _HOUR_OFFSETS_MAX
    ):
        _HOUR_STARTS[(tz, d_raw, hh)] = utc - in_hour
        _IN_HOUR_BY_TEXT[rest] = in_hour
    return utc


def data_points(
    readout: Readout,
    meter_id: str | None = None,
    time: datetime | None = None,
    tz: ZoneInfo = LONDON,
) -> list[DataPoint]:
    """Every data set of ``readout`` as :class:`DataPoint` s (see the module docstring for keys).

    ``meter``: ``meter_id`` when given, else the serial number 0.0.0 / C.1.0 / 96.1.0 (with or
    without A-B and ``*255``) when the readout carries one (the first of them), else the
    identification string. ``time``: the meter's
    clock 0.9.1 + 0.9.2, read as local time in ``tz``, when both are present, else ``time``.
    A non-zero error register F.F flags every point ``"error"``. Raises :class:`MalformedFrame`
    (and nothing else) for a meter id that cannot be found or a clock that is not a valid instant.
    """
    if time is not None and time.tzinfo is None:
        raise ValueError("time must be timezone-aware")
    serial = t_raw = d_raw = error = None
    # (key, value, unit) first: the meter, time and flags are known only after the whole readout.
    items: list[tuple[str, Decimal | str, str | None]] = []
    append = items.append
    number = _NUMBER_RE.fullmatch
    address, n, kind = "", 0, _K_NUMBER
    kinds = _KIND_CACHE
    zero = _K_NUMBER
    # The block is valid (clause 6.5 grammar, checked by the decoder), so plain string splits
    # take it apart, in C, at a quarter of the cost of a regular expression walking it (issue
    # 17): CR LF only ever follows a ")", ")" only ever closes a group, an address holds no "(",
    # a value no "*". Line ends do not matter here (a set without an address continues the one
    # before it, on its line or the next), so they go first; then the block splits at every
    # parenthesis into address, "value*unit", address, "value*unit", ..., "" (taken in pairs).
    tokens = iter(readout.text.replace("\r\n", "").replace(")", "(").split("("))
    for addr, value in zip(tokens, tokens, strict=False):  # the odd last token is ""
        value, star, unit = value.partition("*")
        if addr:
            key = address = addr
            n = 0
            kind = kinds.get(addr, -1)
            if kind < 0:
                kind = _kind(addr)
            if kind != zero:
                if kind == _K_SERIAL:
                    if serial is None and value.strip():
                        serial = value.strip()
                elif kind == _K_TIME:
                    t_raw = value if t_raw is None else t_raw
                elif kind == _K_DATE:
                    d_raw = value if d_raw is None else d_raw
                elif kind == _K_ERROR and error is None:
                    error = value.strip()
        elif not address:
            continue  # values before any address: nothing to name them by
        else:
            n += 1
            key = f"{address}/{n}"
        if kind == zero or star:
            # An unsigned decimal number (nearly every value): digits with at most one ".",
            # the same strings as the regular expression \d+(\.\d*)?|\.\d+.
            if value.replace(".", "", 1).isdecimal():
                append((key, Decimal(value), unit or None))
                continue
            text = value.strip()
            if number(text):
                append((key, Decimal(text), unit or None))
                continue
        append((key, value, unit or None))
    meter = meter_id or serial
    if meter is None and readout.identification is not None:
        meter = readout.identification.identification or str(readout.identification)
    if not meter:
        raise MalformedFrame(PROTOCOL, "no meter id: no 0.0.0/C.1.0 serial, no identification, no meter_id")
    when = None
    if t_raw is not None and d_raw is not None:
        when = _clock(d_raw, t_raw, tz)
    elif time is not None:
        when = time.astimezone(UTC)
    flags = _ERROR_FLAGS if error and error.strip("0") else _NO_FLAGS
    new, cls = _tuple_new, DataPoint
    return [new(cls, (meter, PROTOCOL, key, value, unit, when, flags)) for key, value, unit in items]
