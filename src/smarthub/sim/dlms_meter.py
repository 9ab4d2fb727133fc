"""A simulated DLMS/COSEM electricity meter (server side), driven by a household profile.

``respond(request, t)`` answers a real client's bytes as a meter would at instant ``t``:
SNRM/UA, AARQ/AARE (LN referencing; with ``keys``, the LN ciphered context: glo-ciphered
InitiateRequest/Response and GETs, security suite 0, an increasing invocation counter),
GET normal with block transfer (Green Book, "GET service", datablocks) and HDLC segmentation
(IEC 62056-46), RLRQ/RLRE and DISC/UA. ``push_at(t)`` emits a DataNotification as a push setup
object would (general-glo-ciphered with ``keys``).

Objects served (IEC 62056-6-2 interface classes; OBIS per IEC 62056-6-1):

* 0-0:42.0.0 COSEM logical device name (class 1): ``SIM`` + serial;
* 0-0:1.0.0 Clock (class 8): attribute 2 = local time in ``tz`` with deviation and DST status,
  SET-able; fault injection: ``clock_offset`` (the meter's clock minus true time: drift),
  ``clock_settable`` False (SET refused, read-write-denied), ``clock_stuck`` True (the SET is
  accepted but the clock keeps its offset, as with a failed real-time clock);
* 1-0:1.8.0 / 1-0:2.8.0 Register (class 3): active energy import/export, Wh, scaler 0;
* 1-0:1.7.0 Register: active power import, W, scaler 0;
* 1-0:99.1.0 Profile Generic (class 7): half-hourly load profile, columns clock, 1-0:1.8.0,
  1-0:2.8.0, capture period 1800 s, the last ``profile_entries`` rows;
* 0-0:96.3.10 Disconnect control (class 70, Blue Book control_mode 1): output_state (2),
  control_state (3: 0 disconnected, 1 connected, 2 ready_for_reconnection), control_mode (4);
  ACTION remote_disconnect (1: connected or ready -> disconnected) and remote_reconnect (2:
  disconnected -> connected), parameter integer(0); :meth:`DlmsMeterSimulator.press_button` is
  the customer's manual reconnection (ready -> connected). Without supply the registers do not
  advance (no import, no export: the PV inverter stops with the grid) and 1-0:1.7.0 reads 0;
* 0-0:17.0.0 Limiter (class 71): monitored_value (2) = 1-0:1.7.0 attribute 2 (W, scaler 0),
  threshold_active (3, SET-able) and threshold_normal (4, SET-able; sets the active one too,
  no emergency profile here), double-long-unsigned W, 0xFFFFFFFF (no limit) by default,
  min_over_threshold_duration (6) 60 s. The household's demand is constant per minute: the
  first minute whose import exceeds the threshold disconnects the supply at its end, with
  control_state ready_for_reconnection (``last_trip`` records when).

The meter has an HDLC port and a TCP wrapper port (e.g. a communication module): ``respond``
answers on ``transport``, :meth:`DlmsMeterSimulator.interface` gives the other port as a
responder of its own (one association at a time, shared objects).

SET and ACTION (normal) answer with the Blue Book result codes: object-undefined for an
unknown object, object-class-inconsistent for a known one under another class,
read-write-denied for a read-only attribute or a method not offered, object-unavailable for an
undefined attribute or method, type-unmatched for a value of the wrong type.

Registers are exact integers: energy is accumulated in integer mWh (as in
:mod:`smarthub.sim.dsmr_meter`), split at every half-hour boundary, where the profile captures
the registers' values. ``registers`` and ``profile_rows`` give tests the exact values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from smarthub.meters.dlms.apdu import (
    Aare,
    Aarq,
    ActionRequestNormal,
    ActionResponseNormal,
    ApplicationContext,
    Conformance,
    DataNotification,
    ExceptionResponse,
    GetRequestNext,
    GetRequestNormal,
    GetResponseNormal,
    GetResponseWithBlock,
    InitiateRequest,
    InitiateResponse,
    Mechanism,
    ReleaseRequest,
    ReleaseResponse,
    SetRequestNormal,
    SetResponseNormal,
    decode_apdu,
)
from smarthub.meters.dlms.axdr import DateTime, Tag, encode_data
from smarthub.meters.dlms.errors import DecodeError
from smarthub.meters.dlms.hdlc import (
    LLC_RESPONSE,
    FrameType,
    HdlcAddress,
    HdlcFrame,
    HdlcFramer,
    HdlcParameters,
    SegmentReassembler,
    encode_frame,
    segment,
    strip_llc,
)
from smarthub.meters.dlms.security import (
    InvocationCounterGuard,
    SecurityKeys,
    cipher_apdu,
    decipher_apdu,
    is_ciphered,
)
from smarthub.meters.dlms.wrapper import WrapperFrame, WrapperFramer, encode_wrapper
from smarthub.model.obis import ObisCode
from smarthub.sim.load_profile import HouseholdProfile

__all__ = ["DlmsMeterSimulator", "DlmsRegisters", "MeterInterface", "ProfileRow"]

CLOCK = ObisCode(0, 0, 1, 0, 0)
LDN = ObisCode(0, 0, 42, 0, 0)
IMPORT = ObisCode(1, 0, 1, 8, 0)
EXPORT = ObisCode(1, 0, 2, 8, 0)
POWER = ObisCode(1, 0, 1, 7, 0)
LOAD_PROFILE = ObisCode(1, 0, 99, 1, 0)
DISCONNECT_CONTROL = ObisCode(0, 0, 96, 3, 10)
LIMITER = ObisCode(0, 0, 17, 0, 0)
_HALF_HOUR = timedelta(minutes=30)
_MINUTE = timedelta(minutes=1)
_SUPPORTED = (
    Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
    | Conformance.GET
    | Conformance.SET
    | Conformance.ACTION
    | Conformance.SELECTIVE_ACCESS
    | Conformance.DATA_NOTIFICATION
    | Conformance.MULTIPLE_REFERENCES
)
_SERVER_MAX_PDU = 1024
_OBJECT_UNDEFINED = 4
_OBJECT_UNAVAILABLE = 11
_READ_WRITE_DENIED = 3
_OBJECT_CLASS_INCONSISTENT = 9
_TYPE_UNMATCHED = 12
_NO_LIMIT = 0xFFFFFFFF
DISCONNECTED, CONNECTED, READY_FOR_RECONNECTION = 0, 1, 2
_CLASSES = {
    CLOCK: 8,
    LDN: 1,
    IMPORT: 3,
    EXPORT: 3,
    POWER: 3,
    LOAD_PROFILE: 7,
    DISCONNECT_CONTROL: 70,
    LIMITER: 71,
}


@dataclass(frozen=True, slots=True)
class DlmsRegisters:
    time: datetime
    import_wh: int
    export_wh: int
    import_w: int


@dataclass(frozen=True, slots=True)
class ProfileRow:
    time: datetime  # UTC, on a half-hour boundary
    import_wh: int
    export_wh: int


def profile_attribute(
    attribute: int,
    rows: list[list[tuple[Tag, object]]],
    captured: tuple[tuple[int, ObisCode], ...],
    entries: int,
) -> bytes | None:
    """Attributes 2, 3, 4, 7 and 8 of a Profile generic (class 7) half-hourly load profile:
    ``rows`` already as (tag, value) columns, ``captured`` the (class id, logical name) of each
    column (DLMS Blue Book §4.3.6); None for any other attribute."""
    if attribute == 2:
        return encode_data(Tag.ARRAY, [encode_data(Tag.STRUCTURE, row) for row in rows])
    if attribute == 3:
        return encode_data(
            Tag.ARRAY,
            [
                encode_data(
                    Tag.STRUCTURE,
                    [
                        (Tag.LONG_UNSIGNED, cid),
                        (Tag.OCTET_STRING, ln.to_bytes()),
                        (Tag.INTEGER, 2),
                        (Tag.LONG_UNSIGNED, 0),
                    ],
                )
                for cid, ln in captured
            ],
        )
    if attribute == 4:
        return encode_data(Tag.DOUBLE_LONG_UNSIGNED, 1800)
    if attribute == 7:
        return encode_data(Tag.DOUBLE_LONG_UNSIGNED, len(rows))
    if attribute == 8:
        return encode_data(Tag.DOUBLE_LONG_UNSIGNED, entries)
    return None


def _next_half_hour(t: datetime) -> datetime:
    floor = t.replace(minute=t.minute - t.minute % 30, second=0, microsecond=0)
    return floor + _HALF_HOUR


class DlmsMeterSimulator:
    """One DLMS meter on simulated time (see the module docstring)."""

    # The objects SET and ACTION know, with their interface classes (a subclass serves others).
    classes: dict[ObisCode, int] = _CLASSES

    def __init__(
        self,
        system_title: bytes,
        serial: str,
        profile: HouseholdProfile,
        start: datetime,
        keys: SecurityKeys | None = None,
        server_address: int = 1,
        transport: Literal["hdlc", "wrapper"] = "hdlc",
        *,
        server_physical: int | None = None,
        initial_import_wh: int = 3_000_000,
        initial_export_wh: int = 0,
        profile_entries: int = 96,
        tz: ZoneInfo = ZoneInfo("Europe/Amsterdam"),  # noqa: B008 - ZoneInfo instances are cached, immutable
        password: bytes | None = None,
        invocation_counter: int = 0,
        max_info: int = 128,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if len(system_title) != 8:
            raise ValueError("a system title is 8 bytes")
        self.system_title = bytes(system_title)
        self.serial = serial
        self.profile = profile
        self.keys = keys
        self.transport = transport
        self.server_address = server_address
        self.server_physical = server_physical
        self.tz = tz
        self.password = password
        self.profile_entries = profile_entries
        self.invocation_counter = invocation_counter
        self.max_info = max_info
        self._time = start.astimezone(UTC)
        self._initial = (initial_import_wh, initial_export_wh)
        self.control_state = CONNECTED
        self.threshold_active = _NO_LIMIT
        self.threshold_normal = _NO_LIMIT
        self.last_trip: datetime | None = None
        self.clock_offset = timedelta(0)
        self.clock_settable = True
        self.clock_stuck = False
        self._mwh = [0, 0]
        self._rows: list[ProfileRow] = []
        self._registers = self._snapshot()
        self._hdlc = HdlcFramer()
        self._wrap = WrapperFramer()
        self._reasm = SegmentReassembler()
        self._guard = InvocationCounterGuard()
        self._reset_link()
        self._push_id = 0

    # ---- registers ----------------------------------------------------------------------

    @property
    def registers(self) -> DlmsRegisters:
        return self._registers

    @property
    def profile_rows(self) -> list[ProfileRow]:
        return list(self._rows)

    @property
    def output_state(self) -> bool:
        """The supply is on (Disconnect control attribute 2)."""
        return self.control_state == CONNECTED

    def press_button(self, t: datetime) -> None:
        """The customer's manual reconnection at ``t`` (Blue Book transition e): from
        ready_for_reconnection to connected."""
        self.advance(t)
        if self.control_state == READY_FOR_RECONNECTION:
            self.control_state = CONNECTED
            self._registers = self._snapshot()

    def _limiter_trip(self, a: datetime, b: datetime) -> datetime | None:
        """The end of the first whole minute overlapping [a, b) whose import exceeds the active
        threshold, if it ends by ``b``."""
        threshold = self.threshold_active
        if threshold >= _NO_LIMIT:
            return None
        m = a.replace(second=0, microsecond=0)
        while m < b:
            end = m + _MINUTE
            if end > b:
                return None
            if self.profile.net_import_w(m) > threshold:
                return end
            m = end
        return None

    def advance(self, t: datetime) -> DlmsRegisters:
        if t.tzinfo is None:
            raise ValueError("t must be timezone-aware")
        t = t.astimezone(UTC)
        if t < self._time:
            raise ValueError(f"meter time cannot go backwards: {t.isoformat()} < {self._time.isoformat()}")
        a = self._time
        while a < t:
            boundary = _next_half_hour(a)
            b = min(t, boundary)
            if self.output_state:
                trip = self._limiter_trip(a, b)
                imp, exp, _ = self.profile.energy_wh(a, b if trip is None else trip)
                self._mwh[0] += round(imp * 1000)
                self._mwh[1] += round(exp * 1000)
                if trip is not None:  # the limiter opens the breaker (Blue Book local_disconnect, g)
                    self.control_state = READY_FOR_RECONNECTION
                    self.last_trip = trip
            if b == boundary:
                imp_wh, exp_wh = self._wh()
                self._rows.append(ProfileRow(b, imp_wh, exp_wh))
                del self._rows[: -self.profile_entries]
            a = b
        self._time = t
        self._registers = self._snapshot()
        return self._registers

    def _wh(self) -> tuple[int, int]:
        return self._initial[0] + self._mwh[0] // 1000, self._initial[1] + self._mwh[1] // 1000

    def _snapshot(self) -> DlmsRegisters:
        imp, exp = self._wh()
        w = max(0, round(self.profile.net_import_w(self._time))) if self.output_state else 0
        return DlmsRegisters(self._time, imp, exp, w)

    def _clock(self, t: datetime) -> bytes:
        return DateTime.from_datetime(t.astimezone(self.tz).replace(microsecond=0)).to_bytes()

    # ---- link and association state ------------------------------------------------------

    def _reset_link(self) -> None:
        self._connected = False
        self._associated = False
        self._ns = 0
        self._nr = 0
        self._tx: list[bytes] = []
        self._client_addr: HdlcAddress | None = None
        self._client_wport = 16
        self._client_title: bytes | None = None
        self._client_max_pdu = 0xFFFF
        self._blocks: list[bytes] = []
        self._block_no = 0
        self._reasm.reset()

    def _server_addr(self) -> HdlcAddress:
        return HdlcAddress.server(self.server_address, self.server_physical)

    def respond(self, request: bytes, t: datetime) -> bytes:
        """The meter's answer to ``request`` at ``t`` (b"" if it stays silent)."""
        return self.respond_on(self.transport, request, t)

    def interface(self, transport: Literal["hdlc", "wrapper"]) -> MeterInterface:
        """The meter's port for ``transport`` as a responder of its own."""
        return MeterInterface(self, transport)

    def respond_on(self, transport: Literal["hdlc", "wrapper"], request: bytes, t: datetime) -> bytes:
        """The answer to ``request`` received at ``t`` on the port for ``transport``."""
        self.advance(t)
        out: list[bytes] = []
        if transport == "wrapper":
            for w in self._wrap.feed(request):
                if isinstance(w, DecodeError):
                    continue
                self._client_wport = w.source
                reply = self._on_apdu(w.apdu)
                if reply is not None:
                    out.append(encode_wrapper(WrapperFrame(w.destination, w.source, reply)))
            return b"".join(out)
        for f in self._hdlc.feed(request):
            if isinstance(f, DecodeError):
                continue  # a real meter drops a bad frame silently; the client times out
            if f.destination != self._server_addr():
                continue
            out.append(self._on_frame(f))
        return b"".join(out)

    def _frame(self, kind: FrameType, info: bytes = b"", *, segmented: bool = False) -> bytes:
        assert self._client_addr is not None
        f = HdlcFrame(kind, self._client_addr, self._server_addr(), info, self._ns, self._nr, True, segmented)
        if kind is FrameType.I:
            self._ns = (self._ns + 1) % 8
        return encode_frame(f)

    def _on_frame(self, f: HdlcFrame) -> bytes:
        self._client_addr = f.source
        if f.type is FrameType.SNRM:
            self._reset_link()
            self._client_addr = f.source
            self._connected = True
            return self._frame(FrameType.UA, HdlcParameters(self.max_info, self.max_info).to_bytes())
        if f.type is FrameType.DISC:
            was = self._connected
            self._reset_link()
            self._client_addr = f.source
            return self._frame(FrameType.UA if was else FrameType.DM)
        if not self._connected:
            return self._frame(FrameType.DM)
        if f.type is FrameType.RR:
            if self._tx:
                info = self._tx.pop(0)
                return self._frame(FrameType.I, info, segmented=bool(self._tx))
            return self._frame(FrameType.RR)
        if f.type is not FrameType.I:
            return b""
        self._nr = (f.ns + 1) % 8
        try:
            whole = self._reasm.add(f)
        except DecodeError:
            return self._frame(FrameType.FRMR)
        if whole is None:
            return self._frame(FrameType.RR)
        try:
            apdu = strip_llc(whole, response=False)
        except DecodeError:
            return self._frame(FrameType.FRMR)
        reply = self._on_apdu(apdu)
        if reply is None:
            return b""
        parts = segment(LLC_RESPONSE + reply, self.max_info)
        self._tx = parts[1:]
        return self._frame(FrameType.I, parts[0], segmented=bool(self._tx))

    # ---- application layer --------------------------------------------------------------

    def _protect(self, plain: bytes) -> bytes:
        if self.keys is None:
            return plain
        self.invocation_counter += 1
        return cipher_apdu(plain, self.system_title, self.invocation_counter, self.keys)

    def _on_apdu(self, raw: bytes) -> bytes | None:
        try:
            if raw[:1] == b"\x60":
                return self._on_aarq(Aarq.from_bytes(raw))
            if raw[:1] == b"\x62":
                ReleaseRequest.from_bytes(raw)
                self._associated = False
                return ReleaseResponse(0).to_bytes()
            if not self._associated:
                return ExceptionResponse(1, 2).to_bytes()  # service-not-allowed
            if is_ciphered(raw):
                if self.keys is None:
                    return ExceptionResponse(1, 2).to_bytes()
                raw = decipher_apdu(raw, self.keys, system_title=self._client_title, guard=self._guard).plain
            elif self.keys is not None:
                return ExceptionResponse(1, 2).to_bytes()  # a ciphered association takes only ciphered APDUs
            apdu = decode_apdu(raw)
        except DecodeError:
            return ExceptionResponse(2, 2).to_bytes()  # service-unknown
        if isinstance(apdu, GetRequestNormal):
            return self._protect(self._on_get(apdu))
        if isinstance(apdu, GetRequestNext):
            return self._protect(self._on_get_next(apdu))
        if isinstance(apdu, SetRequestNormal):
            return self._protect(SetResponseNormal(apdu.invoke_id, self._on_set(apdu)).to_bytes())
        if isinstance(apdu, ActionRequestNormal):
            return self._protect(ActionResponseNormal(apdu.invoke_id, self._on_action(apdu)).to_bytes())
        return self._protect(ExceptionResponse(2, 2).to_bytes())

    def _on_aarq(self, aarq: Aarq) -> bytes:
        want = ApplicationContext.LN_CIPHERED if self.keys is not None else ApplicationContext.LN
        if aarq.application_context != want:
            return self._reject(aarq.application_context, 2)  # application-context-name-not-supported
        if self.password is not None and (
            aarq.mechanism != Mechanism.LLS or aarq.authentication_value != self.password
        ):
            return self._reject(want, 13)  # authentication-failure
        info = aarq.user_information
        try:
            if self.keys is not None:
                if aarq.calling_ap_title is None:
                    return self._reject(want, 1)
                self._client_title = aarq.calling_ap_title
                info = decipher_apdu(
                    info, self.keys, system_title=self._client_title, guard=self._guard
                ).plain
            initiate = InitiateRequest.from_bytes(info)
        except DecodeError:
            return self._reject(want, 1)
        self._client_max_pdu = initiate.client_max_receive_pdu_size or 0xFFFF
        self._associated = True
        resp = InitiateResponse(initiate.proposed_conformance & _SUPPORTED, _SERVER_MAX_PDU).to_bytes()
        title = self.system_title if self.keys is not None else None
        mech = Mechanism.LLS if self.password is not None else None
        return Aare(0, 0, self._protect(resp), want, 1, title, mech).to_bytes()

    def _reject(self, context: int, diagnostic: int) -> bytes:
        self._associated = False
        return Aare(1, diagnostic, InitiateResponse(0, _SERVER_MAX_PDU).to_bytes(), context).to_bytes()

    def _attribute(self, class_id: int, obis: ObisCode, attribute: int) -> bytes | int:
        r = self._registers
        if attribute == 1:
            return encode_data(Tag.OCTET_STRING, obis.to_bytes())
        if obis == DISCONNECT_CONTROL and class_id == 70:
            if attribute == 2:
                return encode_data(Tag.BOOLEAN, self.output_state)
            if attribute == 3:
                return encode_data(Tag.ENUM, self.control_state)
            if attribute == 4:
                return encode_data(Tag.ENUM, 1)  # control_mode 1
            return _OBJECT_UNAVAILABLE
        if obis == LIMITER and class_id == 71:
            if attribute == 2:
                return encode_data(
                    Tag.STRUCTURE,
                    [(Tag.LONG_UNSIGNED, 3), (Tag.OCTET_STRING, POWER.to_bytes()), (Tag.INTEGER, 2)],
                )
            if attribute in (3, 4, 5):
                value = {3: self.threshold_active, 4: self.threshold_normal, 5: _NO_LIMIT}[attribute]
                return encode_data(Tag.DOUBLE_LONG_UNSIGNED, value)
            if attribute in (6, 7):
                return encode_data(Tag.DOUBLE_LONG_UNSIGNED, 60 if attribute == 6 else 0)
            return _OBJECT_UNAVAILABLE
        if obis == LDN and class_id == 1 and attribute == 2:
            return encode_data(Tag.OCTET_STRING, f"SIM{self.serial}".encode())
        if obis == CLOCK and class_id == 8:
            if attribute == 2:
                return encode_data(Tag.OCTET_STRING, self._clock(r.time + self.clock_offset))
            return _READ_WRITE_DENIED
        values = {IMPORT: (r.import_wh, 30), EXPORT: (r.export_wh, 30), POWER: (r.import_w, 27)}
        if obis in values and class_id == 3:
            value, unit = values[obis]
            if attribute == 2:
                return encode_data(Tag.DOUBLE_LONG_UNSIGNED, value)
            if attribute == 3:
                return encode_data(Tag.STRUCTURE, [(Tag.INTEGER, 0), (Tag.ENUM, unit)])
            return _OBJECT_UNAVAILABLE
        if obis == LOAD_PROFILE and class_id == 7:
            rows = [
                [
                    (Tag.OCTET_STRING, self._clock(row.time)),
                    (Tag.DOUBLE_LONG_UNSIGNED, row.import_wh),
                    (Tag.DOUBLE_LONG_UNSIGNED, row.export_wh),
                ]
                for row in self._rows
            ]
            found = profile_attribute(
                attribute, rows, ((8, CLOCK), (3, IMPORT), (3, EXPORT)), self.profile_entries
            )
            if found is not None:
                return found
            return _OBJECT_UNAVAILABLE
        return _OBJECT_UNDEFINED

    def _on_set(self, req: SetRequestNormal) -> int:
        """Apply a SET.request normal: the data-access-result."""
        known = self.classes.get(req.instance)
        if known is None:
            return _OBJECT_UNDEFINED
        if known != req.class_id:
            return _OBJECT_CLASS_INCONSISTENT
        if req.access_selection is not None:
            return _READ_WRITE_DENIED
        if req.instance == CLOCK and req.attribute == 2:
            if not self.clock_settable:
                return _READ_WRITE_DENIED
            if req.data[:1] != bytes((Tag.OCTET_STRING,)) or len(req.value) != 12:
                return _TYPE_UNMATCHED
            when = DateTime.from_bytes(req.value).to_datetime()
            if when is None:
                return _TYPE_UNMATCHED
            if not self.clock_stuck:
                self.clock_offset = when - self._time
            return 0
        if req.instance == LIMITER and req.attribute in (3, 4):
            if req.data[:1] not in (bytes((Tag.LONG_UNSIGNED,)), bytes((Tag.DOUBLE_LONG_UNSIGNED,))):
                return _TYPE_UNMATCHED
            self.threshold_active = req.value
            if req.attribute == 4:
                self.threshold_normal = req.value
            return 0
        if isinstance(self._attribute(req.class_id, req.instance, req.attribute), int):
            return _OBJECT_UNAVAILABLE  # no such attribute
        return _READ_WRITE_DENIED

    def _on_action(self, req: ActionRequestNormal) -> int:
        """Invoke an ACTION.request normal: the action-result."""
        known = self.classes.get(req.instance)
        if known is None:
            return _OBJECT_UNDEFINED
        if known != req.class_id:
            return _OBJECT_CLASS_INCONSISTENT
        if req.instance != DISCONNECT_CONTROL:
            return _READ_WRITE_DENIED  # e.g. a register's reset: not offered to this client
        if req.method not in (1, 2):
            return _OBJECT_UNAVAILABLE
        if req.parameter is None or req.parameter[:1] != bytes((Tag.INTEGER,)):
            return _TYPE_UNMATCHED  # data ::= integer(0)
        if req.method == 1:  # remote_disconnect: b (connected) and c (ready_for_reconnection)
            self.control_state = DISCONNECTED
        elif self.control_state == DISCONNECTED:  # remote_reconnect, mode 1: d
            self.control_state = CONNECTED
        self._registers = self._snapshot()
        return 0

    def _block_size(self) -> int:
        # Room for the datablock header (≤ 15 bytes) and, ciphered, glo tag, length, SC, IC, tag.
        return max(16, self._client_max_pdu - 15 - (3 + 5 + 12 + 3 if self.keys is not None else 0))

    def _on_get(self, req: GetRequestNormal) -> bytes:
        self._invoke = req.invoke_id
        value = self._attribute(req.class_id, req.instance, req.attribute)
        if isinstance(value, int):
            return GetResponseNormal(req.invoke_id, None, value).to_bytes()
        normal = GetResponseNormal(req.invoke_id, value).to_bytes()
        limit = self._client_max_pdu - (3 + 5 + 12 + 3 if self.keys is not None else 0)
        if len(normal) <= limit:
            return normal
        size = self._block_size()
        self._blocks = [value[i : i + size] for i in range(0, len(value), size)]
        self._block_no = 1
        return GetResponseWithBlock(req.invoke_id, len(self._blocks) == 1, 1, self._blocks[0]).to_bytes()

    def _on_get_next(self, req: GetRequestNext) -> bytes:
        if not self._blocks:
            return GetResponseWithBlock(req.invoke_id, True, req.block_number, None, 16).to_bytes()
        if req.block_number != self._block_no:
            self._blocks = []
            return GetResponseWithBlock(req.invoke_id, True, req.block_number, None, 19).to_bytes()
        self._block_no += 1
        last = self._block_no == len(self._blocks)
        data = self._blocks[self._block_no - 1]
        if last:
            self._blocks = []
        return GetResponseWithBlock(req.invoke_id, last, self._block_no, data).to_bytes()

    # ---- push ---------------------------------------------------------------------------

    def push_apdu_at(self, t: datetime) -> bytes:
        """The DataNotification APDU (general-glo-ciphered with keys) a push at ``t`` sends: body
        structure(clock date-time, (logical name, value, (scaler, unit)) per register)."""
        r = self.advance(t)
        self._push_id = (self._push_id + 1) & 0x00FFFFFF
        entries = [
            encode_data(
                Tag.STRUCTURE,
                [
                    (Tag.OCTET_STRING, ln.to_bytes()),
                    (Tag.DOUBLE_LONG_UNSIGNED, v),
                    (Tag.STRUCTURE, [(Tag.INTEGER, 0), (Tag.ENUM, unit)]),
                ],
            )
            for ln, v, unit in ((IMPORT, r.import_wh, 30), (EXPORT, r.export_wh, 30), (POWER, r.import_w, 27))
        ]
        body = encode_data(Tag.STRUCTURE, [encode_data(Tag.OCTET_STRING, self._clock(r.time)), *entries])
        plain = DataNotification(self._push_id, None, body).to_bytes()
        if self.keys is None:
            return plain
        self.invocation_counter += 1
        return cipher_apdu(plain, self.system_title, self.invocation_counter, self.keys, general=True)

    def push_at(self, t: datetime, client_sap: int = 16) -> bytes:
        """:meth:`push_apdu_at` framed for the transport: an HDLC UI frame or a WPDU."""
        apdu = self.push_apdu_at(t)
        if self.transport == "wrapper":
            return encode_wrapper(WrapperFrame(self.server_address, client_sap, apdu))
        frame = HdlcFrame(
            FrameType.UI, HdlcAddress.client(client_sap), self._server_addr(), LLC_RESPONSE + apdu
        )
        return encode_frame(frame)


class MeterInterface:
    """One port of a :class:`DlmsMeterSimulator` (see :meth:`DlmsMeterSimulator.interface`)."""

    def __init__(self, meter: DlmsMeterSimulator, transport: Literal["hdlc", "wrapper"]) -> None:
        self.meter = meter
        self.transport = transport

    def respond(self, request: bytes, t: datetime) -> bytes:
        return self.meter.respond_on(self.transport, request, t)
