"""The GDSC's IEEE 2030.5 client: pulls a hub's interval readings incrementally.

It walks DeviceCapability → UsagePointList → MeterReadingList → ReadingType /
ReadingSetList → ReadingList, asking each channel only for readings after its cursor, and
pages every list the 2030.5 way (``s`` += ``results`` until ``all``). A usage point's meter id
is read from its href: a ``description`` is cut to 32 octets.
Every response is checked twice: TLS already proved the hub holds a GDSC-issued
certificate; :func:`smarthub.wan.tls.check_peer` then proves it is *the* hub registered
at that address (its LFDI). XML is parsed with entities, DTDs and network access off.
"""

from __future__ import annotations

import errno
import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import aiohttp
import aiohttp.abc
from envoy_schema.server.schema.sep2.log_events import LogEventList
from pydantic import ValidationError
from pydantic_xml import BaseXmlModel

from smarthub.model.reading_type import ACCUMULATION_SUMMATION, obis_for_interval
from smarthub.wan.client import sep2
from smarthub.wan.contract import channel as hub_channel
from smarthub.wan.contract.sep2_xml import XmlRefused, parse_untrusted
from smarthub.wan.tls import PeerMismatch, check_peer

if TYPE_CHECKING:
    from smarthub.wan.client.channel import ChannelEndpoint

MAX_BODY = 4 * 1024 * 1024
PAGE = 1000  # items asked for per list request (the hub's most per response)
_JSON = {"Accept": "application/json"}  # an event's diagnosis is JSON, not 2030.5 XML

M = TypeVar("M", bound=BaseXmlModel)


# What a request can fail with below HTTP. RuntimeError is aiohttp's "Session is closed": a
# collector shut down (or replaced) while one of its pulls was still under way.
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError, RuntimeError)


class PullError(Exception):
    """A pull failed: network, TLS, HTTP status, or a body that is not the 2030.5 resource expected."""


class PulledInterval(NamedTuple):
    """One interval reading as pulled. A tuple: a bulk pull makes one per reading, and a
    NamedTuple costs a third of a frozen dataclass to build; prefixed with the hub id it is the
    store's ``ReadingRow``."""

    meter: str
    obis: str
    start: int
    duration: int
    value: int
    power_of_ten: int
    uom: int
    quality: int


@dataclass
class PullResult:
    intervals: list[PulledInterval] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    requests: int = 0


def parse_resource(body: bytes, model: type[M], what: str = "") -> M:
    """Parse a 2030.5 XML body into ``model`` or raise :class:`PullError` saying why."""
    try:
        root = parse_untrusted(body)  # a DTD anywhere, not only in the first bytes, is refused
    except XmlRefused as err:
        raise PullError(f"{what}: {err}") from None
    try:
        return model.from_xml_tree(root)  # type: ignore[arg-type]  # an lxml element: its backend
    except (ValidationError, ValueError, TypeError) as err:
        first = str(err).splitlines()[0:3]
        raise PullError(f"{what}: not a valid {model.__name__}: {' '.join(first)}") from None


class _PinnedConnector(aiohttp.TCPConnector):
    """Checks, right after each TLS handshake, that the hub is the one registered (its LFDI).

    aiohttp offers certificate pinning only instead of an SSLContext, not on top of one, and
    a response may release its connection before the caller can inspect it; so the check
    sits where the connection is made. (Overrides a private hook; covered by the tests.)
    """

    def __init__(self, expected_lfdi: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expected_lfdi = expected_lfdi

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any):
        transport, protocol = await super()._wrap_create_connection(*args, **kwargs)
        return self._pinned(transport, protocol)

    def _pinned(self, transport: Any, protocol: Any) -> tuple[Any, Any]:
        ssl_object = transport.get_extra_info("ssl_object")
        try:
            if ssl_object is None:
                raise PeerMismatch(self.expected_lfdi, None)
            check_peer(ssl_object, self.expected_lfdi)
        except PeerMismatch as err:
            transport.close()
            raise aiohttp.ClientConnectionError(str(err)) from err
        return transport, protocol


class _ChannelResolver(aiohttp.abc.AbstractResolver):
    """A channel hub has no address to look up: its connection is taken from the channel."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        address = {"host": "0.0.0.0", "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}
        return [{"hostname": host, **address}]

    async def close(self) -> None:
        pass


class _ChannelConnector(_PinnedConnector):
    """A connector whose connections are the hub's parked channel sockets (TLS and the LFDI
    pinning as on a dialled one). (Overrides the same private hook as its parent.)"""

    def __init__(self, expected_lfdi: str, take: Callable[[], socket.socket | None], **kwargs: Any) -> None:
        super().__init__(expected_lfdi, resolver=_ChannelResolver(), **kwargs)
        self._take = take

    async def _wrap_create_connection(
        self, *args: Any, addr_infos: Any, req: Any, timeout: Any, client_error: Any = None, **kwargs: Any
    ):
        sock = self._take()
        if sock is None:
            raise (client_error or aiohttp.ClientConnectorError)(
                req.connection_key, OSError(errno.ENOTCONN, "no channel open from the hub")
            )
        try:
            transport, protocol = await self._loop.create_connection(*args, **kwargs, sock=sock)
        except (ssl.SSLError, OSError) as err:
            sock.close()
            raise aiohttp.ClientConnectionError(f"channel: {type(err).__name__}: {err}") from err
        return self._pinned(transport, protocol)


async def _body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to ``limit`` bytes of the body. ``StreamReader.read(n)`` returns what has arrived so
    far, up to n: one call read only the first segments of a large body (an event log of 80 kB
    came in cut, as malformed XML), more often through a relay or a channel."""
    body = bytearray()
    while len(body) < limit and (chunk := await resp.content.read(limit - len(body))):
        body += chunk
    return bytes(body)


class HubClient:
    """One hub's connection pool (a single keep-alive connection: a hub is a small device)."""

    def __init__(
        self,
        base_url: str,
        ssl_context: ssl.SSLContext,
        expected_lfdi: str,
        *,
        timeout: float = 15.0,
        recipient: str | None = None,
        channels: ChannelEndpoint | None = None,
    ) -> None:
        """``recipient``: whom a GDSC collector pulls for; the hub's privacy filter applies that
        recipient's consented granularity (none given: the GDSC's own collection, "gdsc").
        ``base_url`` ``channel://<hub id>``: the hub is reached through the connections it
        parked at ``channels`` (:mod:`smarthub.wan.contract.channel`)."""
        self.base_url = base_url.rstrip("/")
        self.expected_lfdi = expected_lfdi
        self.recipient = recipient
        connector: _PinnedConnector
        try:
            channel_hub = hub_channel.hub_of_url(self.base_url)
        except hub_channel.ChannelRefused as err:
            raise PullError(f"{base_url}: {err}") from None
        if channel_hub is None:
            session_url = self.base_url
            connector = _PinnedConnector(expected_lfdi, ssl=ssl_context, limit=1, keepalive_timeout=60)
        else:  # reached through the hub's channel (wan.contract.channel); its certificate names it
            session_url = f"https://{channel_hub.lower()}"

            def take(hub_id: str = channel_hub) -> socket.socket | None:
                return channels.take(hub_id) if channels is not None else None

            connector = _ChannelConnector(expected_lfdi, take, ssl=ssl_context, limit=1, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(
            base_url=session_url,
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout),
            headers={"Accept": sep2.CONTENT_TYPE},
            raise_for_status=False,
        )

    async def close(self) -> None:
        await self._session.close()

    async def get(self, path: str, model: type[M], params: dict[str, Any] | None = None) -> M:
        if self.recipient is not None:
            params = {**(params or {}), "recipient": self.recipient}
        try:
            async with self._session.get(path, params=params) as resp:
                if resp.status != 200:
                    text = (await resp.content.read(300)).decode("utf-8", "replace")
                    raise PullError(f"GET {path}: HTTP {resp.status}: {text}")
                if (resp.content_length or 0) > MAX_BODY:
                    raise PullError(f"GET {path}: body of {resp.content_length} bytes exceeds {MAX_BODY}")
                body = await _body(resp, MAX_BODY + 1)
                if len(body) > MAX_BODY:
                    raise PullError(f"GET {path}: body exceeds {MAX_BODY} bytes")
        except _TRANSPORT_ERRORS as err:
            raise PullError(f"GET {self.base_url}{path}: {type(err).__name__}: {err}") from None
        return parse_resource(body, model, f"GET {path}")

    async def pull_log_events(self, known: int = 0) -> list[tuple[Any, dict[str, Any]]]:
        """The hub's diagnosed events after the first ``known`` ones, each as its 2030.5 LogEvent
        and the JSON diagnosis behind it (evidence, repairs tried, recommendation)."""
        events, _ = await self._all("/edev/0/lel", LogEventList, "LogEvent_", offset=known)
        out = []
        for e in events:
            try:
                async with self._session.get(f"{e.href}/detail", headers=_JSON) as resp:
                    if resp.status != 200:
                        raise PullError(f"GET {e.href}/detail: HTTP {resp.status}")
                    detail = json.loads(await _body(resp, MAX_BODY))
            except (*_TRANSPORT_ERRORS, ValueError) as err:
                raise PullError(f"GET {e.href}/detail: {type(err).__name__}: {err}") from None
            out.append((e, detail))
        return out

    async def event_detail(self, event_id: int) -> dict[str, Any]:
        """The current diagnosis of one event (re-read while it is open, to see it close)."""
        path = f"/edev/0/lel/{int(event_id)}/detail"
        try:
            async with self._session.get(path, headers=_JSON) as resp:
                if resp.status != 200:
                    raise PullError(f"GET {path}: HTTP {resp.status}")
                detail = json.loads(await _body(resp, MAX_BODY))
        except (*_TRANSPORT_ERRORS, ValueError) as err:
            raise PullError(f"GET {path}: {type(err).__name__}: {err}") from None
        if not isinstance(detail, dict):
            raise PullError(f"GET {path}: the detail is not a JSON object")
        return detail

    async def post_command(self, envelope: bytes) -> dict[str, Any]:
        """Deliver a signed management command; the hub's verdict (applied, failed, refused)."""
        try:
            async with self._session.post(
                "/mgmt", data=envelope, headers={"Content-Type": "application/json", **_JSON}
            ) as resp:
                body = await _body(resp, MAX_BODY)
                if resp.status not in (200, 403):
                    raise PullError(
                        f"POST /mgmt: HTTP {resp.status}: {body[:300].decode('utf-8', 'replace')}"
                    )
        except _TRANSPORT_ERRORS as err:
            raise PullError(f"POST {self.base_url}/mgmt: {type(err).__name__}: {err}") from None
        try:
            verdict = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise PullError("POST /mgmt: the hub's answer is not JSON") from None
        if not isinstance(verdict, dict) or "status" not in verdict:
            raise PullError("POST /mgmt: the hub's answer has no status")
        return verdict

    async def _all(
        self, path: str, model: type[M], items: str, *, offset: int = 0, **params: int
    ) -> tuple[list[Any], int]:
        """GET every page of a 2030.5 list from item ``offset`` on; its items and the request count."""
        out: list[Any] = []
        requests = 0
        while True:
            page = await self.get(path, model, {**params, "s": offset + len(out), "l": PAGE})
            requests += 1
            got = getattr(page, items) or []
            if len(got) != (page.results or 0):  # type: ignore[attr-defined]
                raise PullError(f"GET {path}: results={page.results} but {len(got)} items")  # type: ignore[attr-defined]
            out.extend(got)
            if not got or offset + len(out) >= page.all_:  # type: ignore[attr-defined]
                return out, requests

    async def pull_intervals(self, cursors: dict[str, int]) -> PullResult:
        """Every interval reading after each channel's cursor, and the cursors that follow."""
        res = PullResult()
        dcap = await self.get("/dcap", sep2.DeviceCapabilityResponse)
        res.requests += 1
        if dcap.UsagePointListLink is None:
            return res
        ups, n = await self._all(dcap.UsagePointListLink.href, sep2.UsagePointListResponse, "UsagePoint_")
        res.requests += n
        for up in ups:
            if up.href is None or up.MeterReadingListLink is None:
                continue
            try:
                meter = sep2.meter_of_href(up.href)
            except ValueError as err:
                raise PullError(f"{dcap.UsagePointListLink.href}: {err}") from None
            mrs, n = await self._all(
                up.MeterReadingListLink.href, sep2.MeterReadingListResponse, "MeterReading_"
            )
            res.requests += n
            for mr in mrs:
                channel = mr.href.split("?", 1)[0]
                await self._pull_channel(meter, mr, channel, cursors.get(channel, 0), res)
        return res

    async def _pull_channel(
        self, meter: str, mr: sep2.MeterReading, channel: str, after: int, res: PullResult
    ) -> None:
        if mr.ReadingSetListLink is None:
            return
        rt = await self.get(mr.ReadingTypeLink.href, sep2.ReadingType)
        res.requests += 1
        try:
            obis = str(
                obis_for_interval(
                    rt.commodity or 0,
                    rt.flowDirection or 0,
                    rt.uom or 0,
                    kind=rt.kind or 0,
                    phase=int(getattr(rt, "phase", None) or 0),
                    qualifier=int(getattr(rt, "dataQualifier", None) or 0),
                )
            )
        except KeyError as err:
            raise PullError(f"{mr.href}: {err.args[0]}") from None
        p10 = rt.powerOfTenMultiplier or 0
        uom = int(rt.uom or 0)
        summation = int(rt.accumulationBehaviour or 0) == ACCUMULATION_SUMMATION
        sets, n = await self._all(
            mr.ReadingSetListLink.href, sep2.ReadingSetListResponse, "ReadingSet_", a=after
        )
        res.requests += n
        cursor = after
        for rs in sets:
            if rs.ReadingListLink is None:
                continue
            rows, n = await self._all(rs.ReadingListLink.href, sep2.ReadingListResponse, "Readings", a=after)
            res.requests += n
            for r in rows:
                if r.timePeriod is None or r.value is None:
                    raise PullError(f"{rs.ReadingListLink.href}: a Reading without timePeriod or value")
                start, duration = int(r.timePeriod.start), int(r.timePeriod.duration)
                if start < after:
                    raise PullError(f"{rs.ReadingListLink.href}: hub returned a reading before a={after}")
                if summation and duration:
                    href = rs.ReadingListLink.href
                    raise PullError(f"{href}: a summation register's Reading has a duration")
                res.intervals.append(
                    PulledInterval(
                        meter,
                        obis,
                        start,
                        duration,
                        int(r.value),
                        p10,
                        uom,
                        int(str(r.qualityFlags or "0"), 16),
                    )
                )
                cursor = max(cursor, start + (duration or 1))  # a register read: past its instant
        res.cursors[channel] = cursor
