"""A sans-I/O DLMS/COSEM client session (IEC 62056-5-3 application layer over IEC 62056-46 HDLC
or the IEC 62056-47 wrapper; Green Book, "Application association establishment and release",
"GET service", "SET service", "ACTION service", "Transferring long application messages: block
transfer").

The client never touches a socket or a clock. Every operation returns the bytes to send;
received bytes go to :meth:`DlmsClient.receive`, which returns an event once the operation is
complete, or ``None`` when it needs more bytes or another round trip. In the latter case
:meth:`DlmsClient.next_request` has the bytes to send (an HDLC RR asking for the next segment,
a GET.request-next asking for the next block, the AARQ after SNRM/UA, ...) or ``b""``::

    out = client.connect()                 # or get(...), release(), disconnect()
    while True:
        send(out)
        event = client.receive(recv())
        if event is not None:
            break
        out = client.next_request()        # b"": just wait for more bytes

:func:`poll_meter` chains the operations of one poll (connect, read registers with their
scalers, the clock, a load profile, release, disconnect) as a generator: it yields bytes to
send and is sent the bytes received; its return value is the list of data points. The hub's
poll loop and the tests drive it the same way (see :func:`drive`).

:meth:`DlmsClient.set` and :meth:`DlmsClient.action` (normal, no block transfer) write an attribute
and invoke a method; :func:`disconnect_supply`, :func:`reconnect_supply`, :func:`set_power_limit`
and :func:`read_supply_state` are whole sessions like :func:`poll_meter` for the Disconnect
control (class 70) and Limiter (class 71) objects.

Errors: bad bytes raise ``DecodeError`` subclasses (including :class:`DecryptionError` and
:class:`ReplayError`); what the meter refuses raises :class:`AssociationRejected` or
:class:`DataAccessError` (:class:`ActionError` for an ACTION); calling an operation in the
wrong state raises :class:`DlmsStateError`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Literal, TypeVar

from smarthub.meters.dlms.apdu import (
    Aare,
    Aarq,
    ActionRequestNormal,
    ActionResponseNormal,
    ApplicationContext,
    ConfirmedServiceError,
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
from smarthub.meters.dlms.axdr import DateTime, Tag, decode_data, encode_data
from smarthub.meters.dlms.cosem import (
    CLASS_CLOCK,
    CLASS_EXTENDED_REGISTER,
    CLASS_PROFILE_GENERIC,
    CLASS_REGISTER,
    CLOCK,
    UNIT_CODES,
    ScalerUnit,
    capture_objects,
    clock_time,
    profile_data_points,
    register_data_point,
    scaler_unit,
)
from smarthub.meters.dlms.errors import (
    PROTOCOL,
    AssociationRejected,
    DataAccessError,
    DecodeError,
    DlmsSessionError,
    DlmsStateError,
    MalformedFrame,
)
from smarthub.meters.dlms.hdlc import (
    LLC_REQUEST,
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
from smarthub.meters.dlms.state import ClientState, Trigger, next_state
from smarthub.meters.dlms.wrapper import WrapperFrame, WrapperFramer, encode_wrapper
from smarthub.model.datapoint import DataPoint
from smarthub.model.obis import ObisCode

__all__ = [
    "CLASS_DISCONNECT_CONTROL",
    "CLASS_LIMITER",
    "DEFAULT_CONFORMANCE",
    "DISCONNECT_CONTROL",
    "LIMITER",
    "LIMITER_THRESHOLD_ACTIVE",
    "LIMITER_THRESHOLD_NORMAL",
    "LOGICAL_DEVICE_NAME",
    "REMOTE_DISCONNECT",
    "REMOTE_RECONNECT",
    "ActionError",
    "ActionResult",
    "Connected",
    "ControlState",
    "Disconnected",
    "DlmsClient",
    "GetResult",
    "PowerLimit",
    "PushReceiver",
    "Released",
    "SetResult",
    "SupplyState",
    "disconnect_supply",
    "drive",
    "poll_meter",
    "read_clock",
    "read_supply_state",
    "reconnect_supply",
    "set_clock",
    "set_power_limit",
]

DEFAULT_CONFORMANCE = (
    Conformance.BLOCK_TRANSFER_WITH_GET_OR_READ
    | Conformance.GET
    | Conformance.SET
    | Conformance.ACTION
    | Conformance.SELECTIVE_ACCESS
    | Conformance.DATA_NOTIFICATION
)
LOGICAL_DEVICE_NAME = ObisCode(0, 0, 42, 0, 0)
CLASS_DISCONNECT_CONTROL = 70
CLASS_LIMITER = 71
DISCONNECT_CONTROL = ObisCode(0, 0, 96, 3, 10)
LIMITER = ObisCode(0, 0, 17, 0, 0)
Transport = Literal["hdlc", "wrapper"]


@dataclass(frozen=True, slots=True)
class Connected:
    conformance: int
    server_max_pdu: int
    server_system_title: bytes | None


@dataclass(frozen=True, slots=True)
class GetResult:
    class_id: int
    obis: ObisCode
    attribute: int
    value: Any
    raw: bytes = field(default=b"", compare=False, repr=False)  # the encoded Data (its type tag)


@dataclass(frozen=True, slots=True)
class SetResult:
    """A SET.response with data-access-result success (a failure raises :class:`DataAccessError`)."""

    class_id: int
    obis: ObisCode
    attribute: int


@dataclass(frozen=True, slots=True)
class ActionResult:
    """An ACTION.response with action-result success (a failure raises :class:`ActionError`):
    the decoded return parameters (``None`` when absent), or ``return_result``, the
    data-access-result the meter put in their place."""

    class_id: int
    obis: ObisCode
    method: int
    value: Any = None
    return_result: int | None = None


ACTION_RESULTS = {
    0: "success",
    1: "hardware-fault",
    2: "temporary-failure",
    3: "read-write-denied",
    4: "object-undefined",
    9: "object-class-inconsistent",
    11: "object-unavailable",
    12: "type-unmatched",
    13: "scope-of-access-violated",
    14: "data-block-unavailable",
    15: "long-action-aborted",
    16: "no-long-action-in-progress",
    250: "other-reason",
}


class ActionError(DataAccessError):
    """An ACTION answered with an action-result other than success (IEC 62056-5-3,
    Action-Result; the codes are those of Data-Access-Result, long-get read long-action).
    A :class:`DataAccessError`, so one ``except`` covers GET, SET and ACTION refusals."""

    def __init__(self, result: int, what: str = "") -> None:
        self.result = result
        name = ACTION_RESULTS.get(result, "unknown")
        DlmsSessionError.__init__(
            self, f"dlms: action-result {result} ({name}){' for ' + what if what else ''}"
        )


@dataclass(frozen=True, slots=True)
class Released:
    pass


@dataclass(frozen=True, slots=True)
class Disconnected:
    pass


Event = Connected | GetResult | SetResult | ActionResult | Released | Disconnected


class DlmsClient:
    """One client association with one logical device (see the module docstring)."""

    def __init__(
        self,
        client_sap: int = 16,
        server_address: int = 1,
        system_title: bytes = b"SMH\x00\x00\x00\x00\x01",
        keys: SecurityKeys | None = None,
        transport: Transport = "hdlc",
        *,
        server_physical: int | None = None,
        server_wport: int = 1,
        password: bytes | None = None,
        max_pdu: int = 512,
        invocation_counter: int = 0,
        guard: InvocationCounterGuard | None = None,
        conformance: int = DEFAULT_CONFORMANCE,
    ) -> None:
        if transport not in ("hdlc", "wrapper"):
            raise ValueError("transport is 'hdlc' or 'wrapper'")
        if len(system_title) != 8:
            raise ValueError("a system title is 8 bytes")
        self.client_sap = client_sap
        self.system_title = bytes(system_title)
        self.keys = keys
        self.transport = transport
        self.password = password
        self.max_pdu = max_pdu
        self.invocation_counter = invocation_counter  # the last one used; the next APDU uses +1
        self.guard = guard if guard is not None else InvocationCounterGuard()
        self.conformance = conformance
        self.server_system_title: bytes | None = None
        self.negotiated: Connected | None = None
        self._client_addr = HdlcAddress.client(client_sap)
        self._server_addr = HdlcAddress.server(server_address, server_physical)
        self._server_wport = server_wport
        self._hdlc = HdlcFramer()
        self._wrap = WrapperFramer()
        self._reasm = SegmentReassembler()
        self._params = HdlcParameters()
        self._ns = 0
        self._nr = 0
        self._state = ClientState.IDLE
        self._out: list[bytes] = []
        self._tx_segments: list[bytes] = []
        self._invoke = 0
        self._pending: tuple[int, ObisCode, int] | None = None
        self._blocks: list[bytes] = []
        self._block_number = 0

    # ---- state --------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        """Where the session is (:mod:`smarthub.meters.dlms.state`: the states and their moves)."""
        return self._state

    @property
    def meter_id(self) -> str | None:
        """The server system title in hex, once a ciphered association told it."""
        return self.server_system_title.hex().upper() if self.server_system_title else None

    def next_request(self) -> bytes:
        """Bytes the session needs sent now (after ``receive`` returned ``None``), or ``b""``."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _may(self, trigger: Trigger) -> None:
        """Refuse now, before any side effect, a request the state does not allow."""
        next_state(self._state, trigger)

    def _move(self, trigger: Trigger) -> None:
        self._state = next_state(self._state, trigger)

    # ---- operations ---------------------------------------------------------------------

    def abandon(self) -> None:
        """Forget a session that failed midway (a refused GET, a lost reply): the next
        :meth:`connect` starts afresh, and the meter drops its old association on SNRM/AARQ.
        The security state (invocation counters, replay guard) is kept: it must only rise."""
        self._move(Trigger.ENDED)
        self._ns = self._nr = 0
        self._reasm.reset()

    def connect(self) -> bytes:
        """Start the association: SNRM (HDLC), or directly the AARQ (wrapper)."""
        trigger = Trigger.CONNECT_HDLC if self.transport == "hdlc" else Trigger.CONNECT_WRAPPER
        self._move(trigger)
        self._ns = self._nr = 0
        self._reasm.reset()
        if self.transport == "hdlc":
            return encode_frame(HdlcFrame(FrameType.SNRM, self._server_addr, self._client_addr))
        return self._send_apdu(self._aarq())

    def get(
        self, obis: ObisCode, class_id: int, attribute: int, access_selection: bytes | None = None
    ) -> bytes:
        """GET.request normal; the result comes as a :class:`GetResult` (block transfer handled)."""
        self._may(Trigger.GET)
        self._invoke = self._invoke % 15 + 1
        self._pending = (class_id, obis, attribute)
        self._blocks = []
        self._block_number = 0
        self._move(Trigger.GET)
        req = GetRequestNormal(self._invoke, class_id, obis, attribute, access_selection)
        return self._send_apdu(self._protect(req.to_bytes()))

    def set(
        self,
        obis: ObisCode,
        class_id: int,
        attribute: int,
        value: bytes | tuple[int, Any],
        access_selection: bytes | None = None,
    ) -> bytes:
        """SET.request normal writing ``value`` (an encoded ``Data``, or a ``(tag, value)`` pair
        for :func:`~smarthub.meters.dlms.axdr.encode_data`); answered by :class:`SetResult`, or
        :class:`DataAccessError` with the meter's data-access-result. No block transfer: the
        value must fit one APDU."""
        data = _encoded(value)
        self._may(Trigger.SET)
        self._granted(Conformance.SET, "SET")
        self._invoke = self._invoke % 15 + 1
        self._pending = (class_id, obis, attribute)
        self._move(Trigger.SET)
        req = SetRequestNormal(self._invoke, class_id, obis, attribute, data, access_selection)
        return self._send_apdu(self._protect(req.to_bytes()))

    def action(
        self, obis: ObisCode, class_id: int, method: int, parameter: bytes | tuple[int, Any] | None = None
    ) -> bytes:
        """ACTION.request normal invoking ``method`` with ``parameter`` (as for :meth:`set`, or
        ``None`` for none); answered by :class:`ActionResult`, or :class:`ActionError` with the
        meter's action-result."""
        data = None if parameter is None else _encoded(parameter)
        self._may(Trigger.ACTION)
        self._granted(Conformance.ACTION, "ACTION")
        self._invoke = self._invoke % 15 + 1
        self._pending = (class_id, obis, method)
        self._move(Trigger.ACTION)
        req = ActionRequestNormal(self._invoke, class_id, obis, method, data)
        return self._send_apdu(self._protect(req.to_bytes()))

    def _granted(self, flag: Conformance, name: str) -> None:
        if self.negotiated is not None and not self.negotiated.conformance & flag:
            raise DlmsSessionError(f"dlms: the meter did not grant the {name} service (conformance block)")

    def release(self) -> bytes:
        """RLRQ; answered by :class:`Released`."""
        self._move(Trigger.RELEASE)
        return self._send_apdu(ReleaseRequest(0).to_bytes())

    def disconnect(self) -> bytes:
        """HDLC DISC (answered by :class:`Disconnected`); with the wrapper there is nothing to send:
        the session is idle at once and the caller closes the TCP connection."""
        if self.transport == "wrapper":
            self._move(Trigger.ENDED)
            return b""
        self._move(Trigger.DISCONNECT)
        return encode_frame(HdlcFrame(FrameType.DISC, self._server_addr, self._client_addr))

    # ---- building -----------------------------------------------------------------------

    def _next_ic(self) -> int:
        self.invocation_counter += 1
        if self.invocation_counter > 0xFFFFFFFF:
            raise DlmsSessionError("dlms: invocation counter exhausted: new keys needed")
        return self.invocation_counter

    def _protect(self, plain: bytes) -> bytes:
        if self.keys is None:
            return plain
        return cipher_apdu(plain, self.system_title, self._next_ic(), self.keys)

    def _aarq(self) -> bytes:
        initiate = InitiateRequest(self.conformance, self.max_pdu).to_bytes()
        mechanism = Mechanism.LLS if self.password is not None else None
        if self.keys is None:
            return Aarq(initiate, ApplicationContext.LN, None, mechanism, self.password).to_bytes()
        return Aarq(
            self._protect(initiate),
            ApplicationContext.LN_CIPHERED,
            self.system_title,
            mechanism,
            self.password,
        ).to_bytes()

    def _send_apdu(self, apdu: bytes) -> bytes:
        if self.transport == "wrapper":
            return encode_wrapper(WrapperFrame(self.client_sap, self._server_wport, apdu))
        segments = segment(LLC_REQUEST + apdu, self._params.max_info_rx)
        self._tx_segments = segments[1:]
        return self._iframe(segments[0], bool(self._tx_segments))

    def _iframe(self, info: bytes, segmented: bool) -> bytes:
        frame = HdlcFrame(
            FrameType.I, self._server_addr, self._client_addr, info, self._ns, self._nr, True, segmented
        )
        self._ns = (self._ns + 1) % 8
        return encode_frame(frame)

    # ---- receiving ----------------------------------------------------------------------

    def receive(self, data: bytes) -> Event | None:
        """Consume received bytes: an event when the operation completed, else ``None``."""
        if self.transport == "wrapper":
            for item in self._wrap.feed(data):
                if isinstance(item, DecodeError):
                    raise item
                if item.destination != self.client_sap:
                    continue
                event = self._on_apdu(item.apdu)
                if event is not None:
                    return event
            return None
        for frame in self._hdlc.feed(data):
            if isinstance(frame, DecodeError):
                raise frame
            if frame.destination.upper != self.client_sap:
                continue
            event = self._on_frame(frame)
            if event is not None:
                return event
        return None

    def _on_frame(self, frame: HdlcFrame) -> Event | None:
        kind = frame.type
        if kind is FrameType.UA:
            if self._state is ClientState.SNRM:
                self._params = _peer_params(frame.info)
                self._move(Trigger.UA)
                self._out.append(self._send_apdu(self._aarq()))
                return None
            if self._state is ClientState.DISC:
                self._move(Trigger.UA)
                return Disconnected()
            raise DlmsStateError(f"dlms: unexpected UA in state {self._state.value!r}")
        if kind is FrameType.DM:
            if self._state is ClientState.DISC:
                self._move(Trigger.ENDED)
                return Disconnected()
            self._move(Trigger.ENDED)
            raise DlmsSessionError("dlms: the meter answered DM (disconnected mode)")
        if kind is FrameType.FRMR:
            self._move(Trigger.ENDED)
            raise DlmsSessionError("dlms: the meter rejected a frame (FRMR)")
        if kind in (FrameType.RR, FrameType.RNR):
            if self._tx_segments and kind is FrameType.RR:
                info = self._tx_segments.pop(0)
                self._out.append(self._iframe(info, bool(self._tx_segments)))
            return None
        if kind is FrameType.I:
            self._nr = (frame.ns + 1) % 8
            whole = self._reasm.add(frame)
            if whole is None:
                rr = HdlcFrame(FrameType.RR, self._server_addr, self._client_addr, nr=self._nr)
                self._out.append(encode_frame(rr))
                return None
            return self._on_apdu(strip_llc(whole, response=True))
        return None  # UI (pushes) and anything else: not part of this session

    def _on_apdu(self, raw: bytes) -> Event | None:
        state = self._state
        if state is ClientState.AARQ:
            return self._on_aare(raw)
        if is_ciphered(raw):
            if self.keys is None:
                raise MalformedFrame(PROTOCOL, "ciphered APDU on an unciphered association")
            raw = decipher_apdu(raw, self.keys, system_title=self.server_system_title, guard=self.guard).plain
        apdu = decode_apdu(raw)
        if isinstance(apdu, ExceptionResponse):
            if state in (ClientState.GET, ClientState.SET, ClientState.ACTION):
                self._move(Trigger.ANSWERED)
            raise DlmsSessionError(
                f"dlms: exception-response state-error {apdu.state_error} service-error {apdu.service_error}"
            )
        if state is ClientState.GET:
            return self._on_get(apdu)
        if state is ClientState.SET:
            return self._on_set(apdu)
        if state is ClientState.ACTION:
            return self._on_action(apdu)
        if state is ClientState.RLRQ:
            if not isinstance(apdu, ReleaseResponse):
                raise DlmsStateError(f"dlms: expected RLRE, got {type(apdu).__name__}")
            self._move(Trigger.RLRE)
            if self.transport == "wrapper":
                self._move(Trigger.ENDED)  # no link layer to keep up
            return Released()
        raise DlmsStateError(f"dlms: unexpected {type(apdu).__name__} in state {state.value!r}")

    def _on_aare(self, raw: bytes) -> Event:
        apdu = decode_apdu(raw)
        if isinstance(apdu, ExceptionResponse):
            self._move(Trigger.ENDED)
            raise AssociationRejected(1, None, "exception-response")
        if not isinstance(apdu, Aare):
            raise DlmsStateError(f"dlms: expected AARE, got {type(apdu).__name__}")
        if apdu.result != 0:
            self._move(Trigger.ENDED)
            raise AssociationRejected(apdu.result, apdu.diagnostic)
        if self.keys is not None:
            if apdu.responding_ap_title is None or len(apdu.responding_ap_title) != 8:
                raise MalformedFrame(PROTOCOL, "ciphered AARE without an 8-byte responding-AP-title")
            self.server_system_title = apdu.responding_ap_title
        info = apdu.user_information
        if info is None:
            raise MalformedFrame(PROTOCOL, "AARE without xDLMS InitiateResponse")
        if is_ciphered(info):
            if self.keys is None:
                raise MalformedFrame(PROTOCOL, "ciphered InitiateResponse on an unciphered association")
            info = decipher_apdu(
                info, self.keys, system_title=self.server_system_title, guard=self.guard
            ).plain
        initiate = decode_apdu(info)
        if isinstance(initiate, ConfirmedServiceError):
            self._move(Trigger.ENDED)
            raise AssociationRejected(
                apdu.result, apdu.diagnostic, f"confirmed-service-error {initiate.error}"
            )
        if not isinstance(initiate, InitiateResponse):
            raise MalformedFrame(PROTOCOL, "AARE user-information is not an InitiateResponse")
        self._move(Trigger.AARE_ACCEPTED)
        self.negotiated = Connected(
            initiate.negotiated_conformance, initiate.server_max_receive_pdu_size, self.server_system_title
        )
        return self.negotiated

    def _on_get(self, apdu: object) -> Event | None:
        assert self._pending is not None
        class_id, obis, attribute = self._pending
        what = f"{obis} class {class_id} attribute {attribute}"
        if isinstance(apdu, GetResponseNormal):
            if apdu.invoke_id != self._invoke:
                raise DlmsStateError(
                    f"dlms: GET.response invoke-id {apdu.invoke_id}, expected {self._invoke}"
                )
            self._move(Trigger.ANSWERED)
            if apdu.data is None:
                raise DataAccessError(apdu.result, what)
            return GetResult(class_id, obis, attribute, apdu.value, apdu.data)
        if isinstance(apdu, GetResponseWithBlock):
            if apdu.raw_data is None:
                self._move(Trigger.ANSWERED)
                raise DataAccessError(apdu.result, what)
            if apdu.block_number != self._block_number + 1:
                self._move(Trigger.ANSWERED)
                raise MalformedFrame(
                    PROTOCOL, f"GET block {apdu.block_number} received, expected {self._block_number + 1}"
                )
            self._block_number = apdu.block_number
            self._blocks.append(apdu.raw_data)
            if not apdu.last_block:
                nxt = GetRequestNext(self._invoke, self._block_number)
                self._out.append(self._send_apdu(self._protect(nxt.to_bytes())))
                return None
            self._move(Trigger.ANSWERED)
            raw = b"".join(self._blocks)
            value, _ = decode_data(raw, whole=True)
            self._blocks = []
            return GetResult(class_id, obis, attribute, value, raw)
        self._move(Trigger.ANSWERED)
        raise DlmsStateError(f"dlms: expected GET.response, got {type(apdu).__name__}")

    def _on_set(self, apdu: object) -> Event:
        assert self._pending is not None
        class_id, obis, attribute = self._pending
        self._move(Trigger.ANSWERED)
        if not isinstance(apdu, SetResponseNormal):
            raise DlmsStateError(f"dlms: expected SET.response, got {type(apdu).__name__}")
        if apdu.invoke_id != self._invoke:
            raise DlmsStateError(f"dlms: SET.response invoke-id {apdu.invoke_id}, expected {self._invoke}")
        if apdu.result != 0:
            raise DataAccessError(apdu.result, f"SET {obis} class {class_id} attribute {attribute}")
        return SetResult(class_id, obis, attribute)

    def _on_action(self, apdu: object) -> Event:
        assert self._pending is not None
        class_id, obis, method = self._pending
        self._move(Trigger.ANSWERED)
        if not isinstance(apdu, ActionResponseNormal):
            raise DlmsStateError(f"dlms: expected ACTION.response, got {type(apdu).__name__}")
        if apdu.invoke_id != self._invoke:
            raise DlmsStateError(f"dlms: ACTION.response invoke-id {apdu.invoke_id}, expected {self._invoke}")
        if apdu.result != 0:
            raise ActionError(apdu.result, f"{obis} class {class_id} method {method}")
        return ActionResult(class_id, obis, method, apdu.value, apdu.data_result)


def _encoded(value: bytes | tuple[int, Any]) -> bytes:
    if isinstance(value, bytes | bytearray):
        if not value:
            raise ValueError("an encoded Data value is at least its tag byte")
        return bytes(value)
    return encode_data(*value)


def _peer_params(info: bytes) -> HdlcParameters:
    """The server's UA parameters, seen from the client: its max receive is our max transmit."""
    p = HdlcParameters.from_bytes(info)
    return HdlcParameters(p.max_info_rx, p.max_info_tx, p.window_rx, p.window_tx)


# --------------------------------------------------------------------------------------------
# Driving a whole poll
# --------------------------------------------------------------------------------------------

Exchange = Generator[bytes, bytes, Any]


def _operation(client: DlmsClient, first: bytes) -> Generator[bytes, bytes, Event]:
    out = first
    while True:
        data = yield out
        event = client.receive(data)
        if event is not None:
            return event
        out = client.next_request()


def poll_meter(
    client: DlmsClient,
    registers: Sequence[ObisCode] = (),
    *,
    profile: ObisCode | None = None,
    meter: str | None = None,
) -> Generator[bytes, bytes, list[DataPoint]]:
    """One poll as a generator: yields bytes to send (``b""`` = nothing, wait for bytes) and is
    sent the bytes received; returns the data points.

    Reads, in one association: the Clock (its time stamps the registers), each Register's
    scaler_unit and value, and, when ``profile`` is given, the Profile Generic's capture objects
    and buffer (scaled with the captured registers' scalers, read if not in ``registers``).
    The meter id is ``meter``, else the server system title (ciphered association), else the
    logical device name 0-0:42.0.0.
    """
    yield from _operation(client, client.connect())

    def get(obis: ObisCode, class_id: int, attribute: int) -> Generator[bytes, bytes, Any]:
        event = yield from _operation(client, client.get(obis, class_id, attribute))
        assert isinstance(event, GetResult)
        return event.value

    meter_id = meter or client.meter_id
    if meter_id is None:
        ldn = yield from get(LOGICAL_DEVICE_NAME, 1, 2)
        meter_id = ldn.decode("latin-1") if isinstance(ldn, bytes) else str(ldn)
    now: datetime | None = clock_time((yield from get(CLOCK, CLASS_CLOCK, 2)))
    points: list[DataPoint] = []
    scalers: dict[ObisCode, ScalerUnit] = {}
    for obis in registers:
        su = scaler_unit((yield from get(obis, CLASS_REGISTER, 3)))
        scalers[obis] = su
        value = yield from get(obis, CLASS_REGISTER, 2)
        p = register_data_point(meter_id, obis, value, su, time=now)
        if p is not None:
            points.append(p)
    if profile is not None:
        columns = capture_objects((yield from get(profile, CLASS_PROFILE_GENERIC, 3)))
        for col in columns:
            if col.class_id in (3, 4) and col.logical_name not in scalers:
                scalers[col.logical_name] = scaler_unit((yield from get(col.logical_name, col.class_id, 3)))
        buffer = yield from get(profile, CLASS_PROFILE_GENERIC, 2)
        points += profile_data_points(meter_id, buffer, columns, scalers)
    yield from _close(client)
    return points


def _close(client: DlmsClient) -> Generator[bytes, bytes, None]:
    """Release the association, then (HDLC) disconnect the link."""
    yield from _operation(client, client.release())
    if client.transport == "hdlc":
        yield from _operation(client, client.disconnect())
    else:
        client.disconnect()


# --------------------------------------------------------------------------------------------
# Remote supply control: Disconnect control (class 70) and Limiter (class 71)
# --------------------------------------------------------------------------------------------

REMOTE_DISCONNECT = 1
REMOTE_RECONNECT = 2
LIMITER_MONITORED_VALUE = 2
LIMITER_THRESHOLD_ACTIVE = 3  # Blue Book class 71: 3 threshold_active, 4 threshold_normal
LIMITER_THRESHOLD_NORMAL = 4
_INTEGER_RANGES: dict[int, tuple[int, int]] = {
    Tag.UNSIGNED: (0, 0xFF),
    Tag.LONG_UNSIGNED: (0, 0xFFFF),
    Tag.DOUBLE_LONG_UNSIGNED: (0, 0xFFFFFFFF),
    Tag.LONG64_UNSIGNED: (0, 2**64 - 1),
    Tag.INTEGER: (-(2**7), 2**7 - 1),
    Tag.LONG: (-(2**15), 2**15 - 1),
    Tag.DOUBLE_LONG: (-(2**31), 2**31 - 1),
    Tag.LONG64: (-(2**63), 2**63 - 1),
}


class ControlState(enum.IntEnum):
    """Disconnect control attribute 3 (Blue Book, class 70)."""

    DISCONNECTED = 0
    CONNECTED = 1
    READY_FOR_RECONNECTION = 2  # e.g. tripped by the limiter: the customer's button reconnects


@dataclass(frozen=True, slots=True)
class SupplyState:
    """Disconnect control attributes 2 (output_state: the supply is on) and 3 (control_state;
    a plain ``int`` if the meter reports a value the Blue Book does not define)."""

    output_state: bool
    control_state: ControlState | int

    @property
    def connected(self) -> bool:
        return self.output_state


@dataclass(frozen=True, slots=True)
class PowerLimit:
    """What :func:`set_power_limit` wrote: the limit in W (at the monitored value's resolution),
    the raw threshold value, the monitored value's scaler and logical name."""

    watts: Decimal
    raw: int
    scaler: int
    monitored: ObisCode


def _get(
    client: DlmsClient, obis: ObisCode, class_id: int, attribute: int
) -> Generator[bytes, bytes, GetResult]:
    event = yield from _operation(client, client.get(obis, class_id, attribute))
    if not isinstance(event, GetResult):  # pragma: no cover - receive() returns what was asked
        raise DlmsStateError(f"dlms: expected a GET result, got {type(event).__name__}")
    return event


_R = TypeVar("_R")


def _session(client: DlmsClient, body: Generator[bytes, bytes, _R]) -> Generator[bytes, bytes, _R]:
    """connect, ``body``, release/disconnect; a refusal by the meter (:class:`DataAccessError`,
    :class:`ActionError`) or an unusable value (``ValueError``) still ends the association
    before it propagates, so the client is idle for the next session."""
    yield from _operation(client, client.connect())
    try:
        result = yield from body
    except (DataAccessError, ValueError):
        if client.state is ClientState.ASSOCIATED:
            yield from _close(client)
        raise
    yield from _close(client)
    return result


def _supply_state(client: DlmsClient) -> Generator[bytes, bytes, SupplyState]:
    output = (yield from _get(client, DISCONNECT_CONTROL, CLASS_DISCONNECT_CONTROL, 2)).value
    control = (yield from _get(client, DISCONNECT_CONTROL, CLASS_DISCONNECT_CONTROL, 3)).value
    if not isinstance(output, bool):
        raise MalformedFrame(PROTOCOL, f"disconnect control output_state is not a boolean: {output!r}")
    if not isinstance(control, int) or isinstance(control, bool):
        raise MalformedFrame(PROTOCOL, f"disconnect control control_state is not an enum: {control!r}")
    known = {int(c) for c in ControlState}
    return SupplyState(output, ControlState(control) if control in known else control)


def _switch(client: DlmsClient, method: int) -> Generator[bytes, bytes, SupplyState]:
    yield from _operation(
        client, client.action(DISCONNECT_CONTROL, CLASS_DISCONNECT_CONTROL, method, (Tag.INTEGER, 0))
    )
    return (yield from _supply_state(client))


def disconnect_supply(client: DlmsClient) -> Generator[bytes, bytes, SupplyState]:
    """One session invoking remote_disconnect (method 1, parameter integer 0) on the Disconnect
    control 0-0:96.3.10.255; returns the state read back after it."""
    return (yield from _session(client, _switch(client, REMOTE_DISCONNECT)))


def reconnect_supply(client: DlmsClient) -> Generator[bytes, bytes, SupplyState]:
    """One session invoking remote_reconnect (method 2, parameter integer 0); returns the state
    read back: ``CONNECTED``, or ``READY_FOR_RECONNECTION`` where the meter's control_mode wants
    the customer to press the button (and, Blue Book mode 1, after a limiter trip, which a
    remote_reconnect does not undo: disconnect then reconnect)."""
    return (yield from _session(client, _switch(client, REMOTE_RECONNECT)))


def read_supply_state(client: DlmsClient) -> Generator[bytes, bytes, SupplyState]:
    """One session reading the Disconnect control's output_state and control_state."""
    return (yield from _session(client, _supply_state(client)))


def set_power_limit(
    client: DlmsClient, watts: int | Decimal, *, attribute: int = LIMITER_THRESHOLD_ACTIVE
) -> Generator[bytes, bytes, PowerLimit]:
    """One session writing a power limit of ``watts`` W into the Limiter 0-0:17.0.0 (class 71),
    attribute 3 threshold_active by default (4 threshold_normal for meters that derive the
    active threshold from it).

    A threshold is in the units of the value the limiter monitors (Blue Book: "the same type
    as the monitored attribute"), so the session reads the monitored_value (attribute 2),
    that register's scaler_unit (it must be in W), and the threshold's current A-XDR type, then
    writes ``watts`` / 10^scaler, rounded down, in that type. ``ValueError`` if the limit does
    not fit or the monitored value is not a power in W.
    """
    watts = Decimal(watts)
    if not watts.is_finite() or watts < 0:
        raise ValueError(f"a power limit is a non-negative number of W, not {watts}")

    def body() -> Generator[bytes, bytes, PowerLimit]:
        monitored = (yield from _get(client, LIMITER, CLASS_LIMITER, LIMITER_MONITORED_VALUE)).value
        if (
            not isinstance(monitored, tuple)
            or len(monitored) != 3
            or not isinstance(monitored[0], int)
            or not isinstance(monitored[1], bytes)
            or len(monitored[1]) != 6
        ):
            raise MalformedFrame(
                PROTOCOL, f"limiter monitored_value is not a value_definition: {monitored!r}"
            )
        class_id, ln = monitored[0], ObisCode(*monitored[1])
        scaler = 0
        if class_id in (CLASS_REGISTER, CLASS_EXTENDED_REGISTER):
            su = scaler_unit((yield from _get(client, ln, class_id, 3)).value)
            if su.unit != UNIT_CODES["W"]:
                raise ValueError(f"the limiter monitors {ln} in unit {su.unit_name or su.unit}, not W")
            scaler = su.scaler
        current = yield from _get(client, LIMITER, CLASS_LIMITER, attribute)
        tag = (
            current.raw[0]
            if current.raw[:1] and current.raw[0] in _INTEGER_RANGES
            else Tag.DOUBLE_LONG_UNSIGNED
        )
        raw = int(watts.scaleb(-scaler).to_integral_value(ROUND_FLOOR))
        lo, hi = _INTEGER_RANGES[tag]
        if not lo <= raw <= hi:
            raise ValueError(f"a limit of {watts} W is {raw} at scaler {scaler}: outside {Tag(tag).name}")
        yield from _operation(client, client.set(LIMITER, CLASS_LIMITER, attribute, (tag, raw)))
        return PowerLimit(Decimal(raw).scaleb(scaler), raw, scaler, ln)

    return (yield from _session(client, body()))


# --------------------------------------------------------------------------------------------
# The meter's clock (Clock, class 8, attribute 2 time)
# --------------------------------------------------------------------------------------------


def _read_clock(client: DlmsClient) -> Generator[bytes, bytes, datetime | None]:
    return clock_time((yield from _get(client, CLOCK, CLASS_CLOCK, 2)).value)


def read_clock(client: DlmsClient) -> Generator[bytes, bytes, datetime | None]:
    """One session reading the meter's Clock time (attribute 2), as an aware UTC datetime
    (``None`` if the meter says its time is not specified)."""
    return (yield from _session(client, _read_clock(client)))


def set_clock(client: DlmsClient, t: datetime) -> Generator[bytes, bytes, datetime | None]:
    """One session writing ``t`` (aware; sent in its own UTC offset as the deviation) into the
    Clock's time attribute as an octet-string(12) date-time (Blue Book, class 8: "time",
    octet-string formatted as date-time), then reading it back; returns what the meter reads
    after the SET, for the caller to verify. A meter that does not let this client set its
    clock refuses with :class:`DataAccessError` (read-write-denied)."""
    if t.tzinfo is None:
        raise ValueError("set_clock needs an aware datetime")

    def body() -> Generator[bytes, bytes, datetime | None]:
        value = DateTime.from_datetime(t.replace(microsecond=0)).to_bytes()
        yield from _operation(client, client.set(CLOCK, CLASS_CLOCK, 2, (Tag.OCTET_STRING, value)))
        return (yield from _read_clock(client))

    return (yield from _session(client, body()))


def drive(exchange: Generator[bytes, bytes, Any], transact: Callable[[bytes], bytes]) -> Any:
    """Run a generator such as :func:`poll_meter` against a synchronous ``transact(bytes) ->
    bytes`` (a simulator, a test double); returns the generator's result."""
    out = next(exchange)
    while True:
        reply = transact(out) if out else b""
        try:
            out = exchange.send(reply)
        except StopIteration as stop:
            return stop.value


# --------------------------------------------------------------------------------------------
# Push
# --------------------------------------------------------------------------------------------


class PushReceiver:
    """Receives pushed DataNotifications (plain or general-glo-ciphered), framed by HDLC (UI or
    I frames) or the wrapper. ``feed`` never raises: it returns notifications and errors."""

    def __init__(
        self,
        transport: Transport = "hdlc",
        keys: SecurityKeys | None = None,
        guard: InvocationCounterGuard | None = None,
    ) -> None:
        self.transport = transport
        self.keys = keys
        self.guard = guard if guard is not None else InvocationCounterGuard()
        self._hdlc = HdlcFramer()
        self._wrap = WrapperFramer()
        self.last_system_title: bytes | None = None

    def feed(self, data: bytes) -> list[tuple[bytes | None, DataNotification] | DecodeError]:
        """``(sender system title or None, notification)`` per pushed APDU, or the error."""
        out: list[tuple[bytes | None, DataNotification] | DecodeError] = []
        apdus: list[bytes | DecodeError] = []
        if self.transport == "wrapper":
            apdus = [i.apdu if isinstance(i, WrapperFrame) else i for i in self._wrap.feed(data)]
        else:
            for f in self._hdlc.feed(data):
                if isinstance(f, DecodeError):
                    apdus.append(f)
                elif f.info:
                    info = f.info[3:] if f.info[:2] == b"\xe6\xe7" else f.info
                    apdus.append(info)
        for a in apdus:
            if isinstance(a, DecodeError):
                out.append(a)
                continue
            try:
                out.append(self.decode(a))
            except DecodeError as err:
                out.append(err)
        return out

    def decode(self, apdu: bytes) -> tuple[bytes | None, DataNotification]:
        sender = None
        if is_ciphered(apdu):
            if self.keys is None:
                raise MalformedFrame(PROTOCOL, "ciphered push but no keys configured")
            c = decipher_apdu(apdu, self.keys, guard=self.guard)
            sender, apdu = c.system_title, c.plain
        n = decode_apdu(apdu)
        if not isinstance(n, DataNotification):
            raise MalformedFrame(PROTOCOL, f"pushed APDU is a {type(n).__name__}, not a DataNotification")
        return sender, n
