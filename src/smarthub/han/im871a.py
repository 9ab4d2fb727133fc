"""The IMST iM871A wireless M-Bus USB stick (also sold as the WMB-USB and inside the "iU891A"):
its host controller interface (HCI) framing, sans-I/O, and a port that turns its radio
messages into the hub's data points.

The stick talks over a USB serial port at 57600 8N1. Every message, both ways, is::

    A5 | control·endpoint | message id | length | payload | [time stamp] | [RSSI] | [CRC]

``A5`` starts a frame. The high nibble of the second byte holds the control bits (0x2: a 4-byte
little-endian time stamp follows the payload, 0x4: one RSSI byte, 0x8: a CRC-16 closes the
frame; 0x1 reserved), the low nibble the endpoint (1 device management, 2 radio link, 3 radio
link test, 4 hardware test). The CRC is CRC-16/X-25 (the HDLC FCS) over everything from the
control byte to the RSSI, sent least significant byte first. A received wM-Bus telegram is
radio link message 0x03 (``WMBUSMSG_IND``): its payload is the link-layer frame from the C field
on, without the L field and with the block CRCs already checked and removed by the stick, so
the telegram the codec takes is ``length || payload`` (L then counts the bytes that follow).
Device management 0x01/0x02 is the ping and its answer.

Facts from the iM871A HCI specification as implemented by wmbusmeters
(``src/wmbus_im871a.cc``: the frame check, the re-inserted length byte, 57600 baud).

The RSSI byte is the radio chip's raw reading, not dBm. The stick's radio is a Silicon Labs
Si1002, whose data sheet plots RSSI against input power as close to a line of half a dB per step
(about −100 dBm at 45 and −20 dBm at 205), flattening towards 0 dBm near 230 (the two points
are those wmbusmeters reads off the same figure). :func:`rssi_dbm` applies that line, so the hub
judges a stick-received meter's level in dBm against the EN 13757-4 receiver's sensitivity like
any other radio's (:mod:`smarthub.han.media`). It is the figure's approximation, good to a few
dB, not a calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

from smarthub.han.media import MEDIA
from smarthub.han.ports import PortBatch
from smarthub.han.wmbus_port import WMBusPort
from smarthub.meters.dlms.hdlc import crc16_x25
from smarthub.meters.errors import ChecksumError, DecodeError, MalformedFrame

PROTOCOL = "im871a"
SOF = 0xA5
DEVMGMT = 0x01
RADIOLINK = 0x02
RADIOLINKTEST = 0x03
HWTEST = 0x04
PING_REQ = 0x01
PING_RSP = 0x02
WMBUSMSG_IND = 0x03
HAS_TIMESTAMP = 0x20
HAS_RSSI = 0x40
HAS_CRC = 0x80
BAUD = 57600
_MAX_MSG_ID = {DEVMGMT: 0x27, RADIOLINK: 0x05, RADIOLINKTEST: 0x07, HWTEST: 0x02}


@dataclass(frozen=True)
class HciMessage:
    endpoint: int
    msg_id: int
    payload: bytes
    timestamp: int | None = None
    rssi: int | None = None

    @property
    def is_telegram(self) -> bool:
        return self.endpoint == RADIOLINK and self.msg_id == WMBUSMSG_IND

    def telegram(self) -> bytes:
        """The wM-Bus frame of a ``WMBUSMSG_IND``: its length byte back in front, no CRCs."""
        return bytes((len(self.payload),)) + self.payload


def encode_hci(
    endpoint: int,
    msg_id: int,
    payload: bytes = b"",
    *,
    timestamp: int | None = None,
    rssi: int | None = None,
    crc: bool = True,
) -> bytes:
    """One HCI message (the hub's requests, and the fake stick in tests)."""
    if not 0 < endpoint <= 0x0F or len(payload) > 255:
        raise ValueError("endpoint 1..15 and at most 255 payload bytes")
    control = (HAS_TIMESTAMP if timestamp is not None else 0) | (HAS_RSSI if rssi is not None else 0)
    control |= HAS_CRC if crc else 0
    body = bytes((control | endpoint, msg_id, len(payload))) + payload
    if timestamp is not None:
        body += (timestamp & 0xFFFFFFFF).to_bytes(4, "little")
    if rssi is not None:
        body += bytes((rssi & 0xFF,))
    if crc:
        body += crc16_x25(body).to_bytes(2, "little")
    return bytes((SOF,)) + body


def ping() -> bytes:
    return encode_hci(DEVMGMT, PING_REQ, crc=False)


class HciFramer:
    """Bytes from the stick in, whole messages (or typed errors) out. Never raises.

    Bytes before a start-of-frame are skipped; a frame whose header cannot be right (reserved
    bit, unknown endpoint or message id) costs one byte and the search resumes after it, so
    one corrupted byte loses one message, not the stream.
    """

    def __init__(self, max_buffer: int = 4096) -> None:
        self._buf = bytearray()
        self.max_buffer = max_buffer

    def feed(self, data: bytes) -> list[HciMessage | DecodeError]:
        self._buf += data
        out: list[HciMessage | DecodeError] = []
        buf = self._buf
        while buf:
            start = buf.find(SOF)
            if start < 0:
                out.append(MalformedFrame(PROTOCOL, f"{len(buf)} bytes without a start of frame"))
                buf.clear()
                break
            if start:
                out.append(MalformedFrame(PROTOCOL, f"{start} bytes before the start of frame"))
                del buf[:start]
            if len(buf) < 4:
                break
            control, endpoint, msg_id, length = buf[1] & 0xF0, buf[1] & 0x0F, buf[2], buf[3]
            problem = None
            if control & 0x10:
                problem = "reserved control bit set"
            elif endpoint not in _MAX_MSG_ID:
                problem = f"unknown endpoint {endpoint}"
            elif not 1 <= msg_id <= _MAX_MSG_ID[endpoint]:
                problem = f"unknown message 0x{msg_id:02X} on endpoint {endpoint}"
            if problem is not None:
                out.append(MalformedFrame(PROTOCOL, problem))
                del buf[:1]
                continue
            total = 4 + length
            total += 4 if control & HAS_TIMESTAMP else 0
            total += 1 if control & HAS_RSSI else 0
            crc_at = total
            total += 2 if control & HAS_CRC else 0
            if len(buf) < total:
                if len(buf) > self.max_buffer:
                    out.append(MalformedFrame(PROTOCOL, "frame longer than the buffer"))
                    buf.clear()
                break
            frame = bytes(buf[:total])
            if control & HAS_CRC:
                got = int.from_bytes(frame[crc_at:total], "little")
                want = crc16_x25(frame[1:crc_at])
                if got != want:
                    out.append(ChecksumError(PROTOCOL, f"CRC 0x{got:04X}, computed 0x{want:04X}"))
                    del buf[:1]  # the length may be what was corrupted: resynchronise
                    continue
            del buf[:total]
            pos = 4 + length
            timestamp = rssi = None
            if control & HAS_TIMESTAMP:
                timestamp = int.from_bytes(frame[pos : pos + 4], "little")
                pos += 4
            if control & HAS_RSSI:
                rssi = frame[pos]
            out.append(HciMessage(endpoint, msg_id, frame[4 : 4 + length], timestamp, rssi))
        return out


RSSI_SATURATED = 230  # raw readings at or above: 0 dBm (the chip's curve is flat there)
_RSSI_DB_PER_STEP = 0.5  # (−20 − −100) dBm over 205 − 45 steps
_RSSI_AT_45 = -100.0
# The level the hub judges a stick-received frame against: the EN 13757-4 receiver of the link
# model (the iM871A's own data sheet figure in T-mode is a few dB better).
SENSITIVITY_DBM = MEDIA["wmbus-868"].sensitivity_dbm


def rssi_dbm(raw: int) -> float:
    """The received level in dBm of the stick's raw RSSI byte (module docstring)."""
    if not 0 <= raw <= 255:
        raise ValueError(f"RSSI byte {raw} is not 0..255")
    if raw >= RSSI_SATURATED:
        return 0.0
    return _RSSI_AT_45 + _RSSI_DB_PER_STEP * (raw - 45)


class Im871aReceiver:
    """The stick's byte stream to the hub: each received telegram through ``radio`` (a
    :class:`WMBusPort` taking CRC-less frames), one batch per telegram; HCI framing errors are
    batches of their own (counted as bad frames by the hub). ``pongs`` counts ping answers."""

    def __init__(self, radio: WMBusPort) -> None:
        self.radio = radio
        self.framer = HciFramer()
        self.pongs = 0
        self.messages = 0

    def receive(self, data: bytes) -> list[PortBatch]:
        out: list[PortBatch] = []
        for item in self.framer.feed(data):
            if isinstance(item, DecodeError):
                out.append(PortBatch(errors=[item]))
            elif item.is_telegram:
                self.messages += 1
                if item.rssi is None:
                    out.append(self.radio.receive(item.telegram()))
                else:
                    level = rssi_dbm(item.rssi)
                    out.append(
                        self.radio.receive(item.telegram(), rssi_dbm=level, sensitivity_dbm=SENSITIVITY_DBM)
                    )
            elif item.endpoint == DEVMGMT and item.msg_id == PING_RSP:
                self.pongs += 1
        return out
