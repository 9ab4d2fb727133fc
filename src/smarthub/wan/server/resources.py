"""The hub's WAN face: IEEE 2030.5 metering resources over HTTPS with mutual TLS.

The hub is the *server*; the GDSC is a client that pulls (DESIGN.md). TLS requires a
client certificate issued by the GDSC CA (see :mod:`smarthub.wan.tls`), so an unknown
client never reaches a handler. Every list honours the 2030.5 query parameters ``s`` (start
index), ``l`` (limit, default 1) and ``a`` (after: only items at or after this epoch second)
the same way (:mod:`smarthub.wan.contract.paging`), which makes incremental pulls cheap: the GDSC asks
for readings after its cursor.

Every href a document carries resolves, for the client it was served to, to a document of the
type the link names (a crawler test walks them all from ``/dcap`` for every role). A collector
reading on behalf of a recipient names it with ``?recipient=``; the hrefs in the answer then
carry that parameter too, so a client follows them without knowing it exists.

Every request reads the hub's data as its recipient may see it (``hub.privacy``, the same limits
as the GDSC's access policy): the meters its consent lists, at each meter's granularity, and only
data recorded inside its window (the consenting tenancy; for a supplier its supply period). The
window is applied below the handlers: they read the metering source and the privacy view through
wrappers that clamp every query to the window of the request being served (a ``ContextVar``
holds it), so no handler can forget it. Diagnosed events (``/edev/0/lel``) are for the GDSC's
collectors and for parties the privacy filter admits to them, filtered to their meters and window.
"""

from __future__ import annotations

import contextvars
import hashlib
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree

from smarthub.hub.diagnostics import DiagnosedEvent
from smarthub.model import ObisCode
from smarthub.model.reading_type import (
    ACCUMULATION_CUMULATIVE,
    COMMODITY_ELECTRICITY,
    FLOW_FORWARD,
    FLOW_REVERSE,
    KIND_ENERGY,
    UOM_WH,
    interval_of_register,
    interval_spec,
    register_channel,
)
from smarthub.model.register_reads import Grid, local_boundaries, utc_midnights
from smarthub.security.certificates import sfdi_from_lfdi
from smarthub.wan import httpd as web
from smarthub.wan.contract import crl_sync
from smarthub.wan.contract import revocations as consent_revocations
from smarthub.wan.contract import sep2_xml as sep2
from smarthub.wan.contract import storage as storage_state
from smarthub.wan.contract.events import LOG_EVENT_PEN, event_detail, log_event, log_event_list
from smarthub.wan.contract.paging import MAX_LIMIT, ListQuery, QueryError
from smarthub.wan.contract.sep2_xml import (
    DAY,
    ChannelRows,
    Element,
    IntervalRow,
    MirrorPoint,
    write_mirror_meter_reading,
    write_mirror_usage_point,
    write_mirror_usage_points,
)
from smarthub.wan.server.channel import ChannelSite

POLL_RATE = 1800
# The metering mirror (bulk pull) bounds one response: a channel's readings after ``a`` are
# cut at MIRROR_CHANNEL_READINGS (its MirrorMeterReading's lastUpdateTime, later than the last
# reading served, says more follow), and a page holds no further MirrorUsagePoints once it
# carries MIRROR_PAGE_READINGS readings (``results`` < ``l``; the first always fits).
MIRROR_CHANNEL_READINGS = 1000
MIRROR_PAGE_READINGS = 4000
MAX_TOU_TIER = 15  # 2030.5 TOUType: 0 not applicable, 1-15 TOU A to O
_LONDON = ZoneInfo("Europe/London")  # the calendar of a privacy filter that names none


class MeteringSource(Protocol):
    """What the WAN layer needs from a hub; the hub implements it."""

    def meters(self) -> dict[str, str]: ...

    def channels(self, meter: str) -> list[ObisCode]: ...

    def intervals(
        self,
        meter: str,
        obis: ObisCode,
        *,
        start: int | None = None,
        end: int | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> Sequence[IntervalRow]: ...

    def interval_count(
        self, meter: str, obis: ObisCode, *, start: int | None = None, end: int | None = None
    ) -> int: ...

    def interval_days(self, meter: str, obis: ObisCode, *, start: int | None = None) -> list[int]: ...


class RegisterReadSource(Protocol):
    """What a metering source that keeps its channels' registers adds (the hub's history:
    :meth:`smarthub.hub.hub.SmartHub.register_reads`); a source without it serves no register
    channels."""

    def register_reads(
        self,
        meter: str,
        obis: ObisCode,
        grid: Grid,
        *,
        start: int | None = None,
        end: int | None = None,
        newest_only: bool = False,
    ) -> Sequence[IntervalRow]: ...


Paging = ListQuery  # the name handlers used before the list semantics moved to wan.paging


SERVICE_KIND = {"electricity": 0, "gas": 1, "water": 2}


class RegisterRow(Protocol):
    """A tariff register's total: value × 10^power_of_ten Wh, read at ``time`` (epoch s)."""

    @property
    def obis(self) -> ObisCode: ...
    @property
    def value(self) -> int: ...
    @property
    def power_of_ten(self) -> int: ...
    @property
    def time(self) -> int: ...


class PrivacyPolicy(Protocol):
    """The hub's privacy filter: which granularity a recipient may have, and that view."""

    # "half-hourly", "daily", "monthly", "tariff-registers" or "none" (of one meter, if given)
    def granularity(self, recipient: str, meter: str | None = None) -> str: ...

    def aggregates(
        self, meter: str, obis: ObisCode, granularity: str, after: int | None
    ) -> Sequence[IntervalRow]: ...

    def registers(self, meter: str) -> Sequence[RegisterRow]: ...


HALF_HOURLY = "half-hourly"
AGGREGATED = {"daily": 86400, "monthly": 0}  # ReadingType.intervalLength (0: months vary in length)
# The meter's tariff-register totals only: MeterReadings of the registers, never an interval.
TARIFF_REGISTERS = "tariff-registers"


class EventLog(Protocol):
    """The hub's diagnosed events (hub.diagnostics.DiagnosticsLog)."""

    def events(self, after_id: int | None = None, limit: int = 100) -> Sequence[DiagnosedEvent]: ...

    def count(self) -> int: ...

    def get(self, event_id: int) -> DiagnosedEvent: ...


class CommandResultLike(Protocol):
    @property
    def status(self) -> str: ...

    def to_json(self) -> bytes: ...


class CrlSink(Protocol):
    """The hub's CRL store as the bulk pull reaches it (``hub.management.CrlStore``)."""

    @property
    def number(self) -> int | None: ...

    def wants(self, number: int, base: int) -> bool: ...

    def install(self, data: bytes) -> object: ...


class RevocationSource(Protocol):
    """The consent revocations asked at the display (``hub.ihd.revocations.RevocationRequests``),
    as the collector reads and answers them (``wan.contract.revocations``)."""

    def pending(self, limit: int = ...) -> Sequence[consent_revocations.RevocationRequest]: ...

    def pending_count(self) -> int: ...

    def answer(self, answers: Sequence[consent_revocations.RevocationAnswer]) -> int: ...


class CommandSink(Protocol):
    """The hub's management interface, as the WAN sees it."""

    async def handle(self, envelope: bytes) -> CommandResultLike: ...


WAN_CLIENT_ROLES = frozenset({"collector", "party", "installer", "ihd"})
MGMT_CLIENT_ROLES = frozenset({"collector"})  # who may POST /mgmt: the GDSC's collectors deliver commands
_SERIALS: dict[bytes, int] = {}  # client certificate → serial number, for the CRL check
_PEERS: dict[bytes, tuple[str, str, str]] = {}  # client certificate → (role, name, LFDI): parsed once


_REQUEST: contextvars.ContextVar[web.Request | None] = contextvars.ContextVar("hub_wan_request", default=None)
Window = tuple[int | None, int | None]  # data time [lo, hi) in epoch seconds; None: open
_OPEN: Window = (None, None)


class _ScopedSource:
    """The metering source as the request being served may read it: interval queries clamped to
    its recipient's window (module docstring)."""

    def __init__(self, source: MeteringSource, window: Callable[[str], Window]) -> None:
        self.source = source
        self._clamp = window

    def meters(self) -> dict[str, str]:
        return self.source.meters()

    def channels(self, meter: str) -> list[ObisCode]:
        return self.source.channels(meter)

    def _bounds(self, meter: str, start: int | None, end: int | None) -> tuple[int | None, int | None, bool]:
        lo, hi = self._clamp(meter)
        if lo is not None:
            start = lo if start is None else max(start, lo)
        if hi is not None:
            end = hi if end is None else min(end, hi)
        return start, end, start is not None and end is not None and end <= start

    def intervals(
        self,
        meter: str,
        obis: ObisCode,
        *,
        start: int | None = None,
        end: int | None = None,
        offset: int = 0,
        limit: int = 1000,
    ) -> Sequence[IntervalRow]:
        start, end, empty = self._bounds(meter, start, end)
        if empty:
            return []
        return self.source.intervals(meter, obis, start=start, end=end, offset=offset, limit=limit)

    def interval_count(
        self, meter: str, obis: ObisCode, *, start: int | None = None, end: int | None = None
    ) -> int:
        start, end, empty = self._bounds(meter, start, end)
        return 0 if empty else self.source.interval_count(meter, obis, start=start, end=end)

    def interval_days(self, meter: str, obis: ObisCode, *, start: int | None = None) -> list[int]:
        start, end, empty = self._bounds(meter, start, None)
        if empty:
            return []
        days = self.source.interval_days(meter, obis, start=start)
        return days if end is None else [d for d in days if d < end]

    @property
    def has_registers(self) -> bool:
        return hasattr(self.source, "register_reads")

    def register_reads(
        self,
        meter: str,
        obis: ObisCode,
        grid: Grid,
        *,
        start: int | None = None,
        end: int | None = None,
        newest_only: bool = False,
    ) -> Sequence[IntervalRow]:
        """Interval channel ``obis``'s register at the instants of ``grid`` inside the window."""
        reads = getattr(self.source, "register_reads", None)
        start, end, empty = self._bounds(meter, start, end)
        if reads is None or empty:
            return []
        return list(reads(meter, obis, grid, start=start, end=end, newest_only=newest_only))


class _ScopedPrivacy:
    """The privacy filter's views (aggregates, register totals) limited to the window of the
    request being served; everything else is the filter's own."""

    def __init__(self, privacy: PrivacyPolicy, window: Callable[[str], Window]) -> None:
        self.privacy = privacy
        self._clamp = window

    def __getattr__(self, name: str) -> object:
        return getattr(self.privacy, name)

    def granularity(self, recipient: str, meter: str | None = None) -> str:
        if meter is None:
            return self.privacy.granularity(recipient)
        return self.privacy.granularity(recipient, meter)

    def aggregates(
        self, meter: str, obis: ObisCode, granularity: str, after: int | None
    ) -> Sequence[IntervalRow]:
        lo, hi = self._clamp(meter)
        rows = self.privacy.aggregates(meter, obis, granularity, after)
        # Only whole periods inside the window: a month straddling a move-in would carry the
        # previous occupant's half-hours.
        return [
            r for r in rows if (lo is None or r.start >= lo) and (hi is None or r.start + r.duration <= hi)
        ]

    def registers(self, meter: str) -> Sequence[RegisterRow]:
        lo, hi = self._clamp(meter)
        return [
            r
            for r in self.privacy.registers(meter)
            if (lo is None or r.time >= lo) and (hi is None or r.time < hi)
        ]


class _VisibleEvents:
    """The diagnosed events one party may read (its meters, its window), in the log's order."""

    def __init__(self, events: EventLog, visible: Callable[[DiagnosedEvent], bool]) -> None:
        self.events_log = events
        self.visible = visible

    def _all(self) -> list[DiagnosedEvent]:
        out: list[DiagnosedEvent] = []
        after: int | None = None
        while True:
            batch = list(self.events_log.events(after_id=after, limit=500))
            out += [e for e in batch if self.visible(e)]
            if len(batch) < 500:
                return out
            after = batch[-1].id

    def events(self, after_id: int | None = None, limit: int = 100) -> Sequence[DiagnosedEvent]:
        return [e for e in self._all() if after_id is None or e.id > after_id][:limit]

    def count(self) -> int:
        return len(self._all())

    def get(self, event_id: int) -> DiagnosedEvent:
        e = self.events_log.get(event_id)
        if not self.visible(e):
            raise LookupError(event_id)
        return e


class RateLimiter:
    """A token bucket per client (its certificate's role and name): ``take`` returns 0 when the
    request may go ahead, else the seconds until a token is free. ``monotonic`` is injectable."""

    def __init__(self, rate: float, burst: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        now = self.monotonic()
        tokens, last = self._buckets.get(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens - 1.0, now)
        return 0.0


class HubWanServer:
    def __init__(
        self,
        hub_id: str,
        lfdi: str,
        source: MeteringSource,
        now_epoch,
        management: CommandSink | None = None,
        privacy: PrivacyPolicy | None = None,
        events: EventLog | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        client_allowed: Callable[[str], bool] | None = None,
        revoked: Callable[[int], bool] | None = None,
        log_event_pen: int = LOG_EVENT_PEN,
        crls: CrlSink | None = None,
    ) -> None:
        """``monotonic``: the rate limiter's time in seconds (inject simulated time in a simulation).

        ``revoked(serial)`` answers from the hub's current CRL. The TLS context checks the CRL
        in full handshakes only; a resumed session skips certificate verification, so a client
        revoked after its first handshake would still get in without this per-request check.
        ``crls`` takes the GDSC's CRL from the bulk pull (``wan.crl_sync``).
        """
        self.revoked = revoked
        self.crls = crls
        self.hub_id = hub_id
        self.events = events
        self.client_allowed = client_allowed  # LFDI allowlist from the network configuration
        self.management = management
        # Without a privacy policy every client of the GDSC CA sees half-hourly data (tests, a bench).
        # With one, the handlers read through views limited to the request's window.
        self.privacy: PrivacyPolicy | None = (
            None if privacy is None else _ScopedPrivacy(privacy, self._window)
        )
        self.source = _ScopedSource(source, self._window)
        # A sub-meter's appliance, where the source names them (hub.submeters.WanMeters).
        self._appliance_of: Callable[[str], str | None] | None = getattr(source, "appliance", None)
        self.now_epoch = now_epoch  # injected clock: () -> int
        self.lfdi = lfdi  # also sets changed_time: when the hub took on this identity
        self.log_event_pen = log_event_pen
        self.requests = 0
        self.rate_limited = 0
        self.last_collector_request: float | None = None  # hub clock, epoch seconds
        # A hub is a small device on a thin WAN link: no client may monopolise it. A full pull
        # is ~15 requests, so the burst lets one through at once and the rate caps the rest.
        self.limiter = RateLimiter(rate=20.0, burst=100, monotonic=monotonic)

        @web.middleware
        async def count(request: web.Request, handler: Any) -> Any:
            return await self._count(request, handler)

        # Requests are GETs and signed commands (a mapping table is ~15 kB); nothing larger.
        self.app = web.Application(
            client_max_size=256 * 1024, middlewares=[count], produces=sep2.CONTENT_TYPE
        )
        r = self.app.router
        r.add_get("/dcap", self.dcap)
        r.add_get("/tm", self.time)
        r.add_get("/upt", self.usage_points)
        r.add_get("/upt/{meter}", self.usage_point)
        r.add_get("/upt/{meter}/mr", self.meter_readings)
        r.add_get("/upt/{meter}/mr/{ch}", self.meter_reading)
        r.add_get("/upt/{meter}/mr/{ch}/rt", self.reading_type)
        r.add_get("/upt/{meter}/mr/{ch}/rs", self.reading_sets)
        r.add_get("/upt/{meter}/mr/{ch}/rs/{day}", self.reading_set)
        r.add_get("/upt/{meter}/mr/{ch}/rs/{day}/r", self.readings)
        r.add_get("/upt/{meter}/mr/{ch}/r", self.latest_reading)
        r.add_get(sep2.MUP_LIST_HREF, self.mirror_usage_points)
        r.add_get("/mup/{meter}", self.mirror_usage_point)
        r.add_get("/mup/{meter}/mr/{ch}", self.mirror_meter_reading)
        r.add_post("/mgmt", self.command, produces="application/json")
        r.add_put(crl_sync.CRL_PATH, self.crl_update, produces="application/json")
        r.add_get(consent_revocations.PATH, self.revocations_pending, produces=consent_revocations.MEDIA_TYPE)
        r.add_put(
            consent_revocations.PATH, self.revocations_answered, produces=consent_revocations.MEDIA_TYPE
        )
        r.add_get("/edev", self.end_devices)
        r.add_get("/edev/0", self.end_device)
        r.add_get("/edev/0/lel", self.log_events)
        r.add_get("/edev/0/lel/{id}", self.log_event)
        r.add_get("/edev/0/lel/{id}/detail", self.log_event_detail, produces="application/json")
        r.add_get("/metrics", self.metrics_text, produces="text/plain")
        # The hub's Prometheus metrics (hub.metrics), set by the assembly: (body, content type).
        self.metrics: Callable[[], tuple[bytes, str]] | None = None
        # The hub's storage state for the GDSC (wan.contract.storage), set by the assembly.
        self.storage: Callable[[], str] | None = None
        # The consent revocations asked at the display (wan.contract.revocations), set by the assembly.
        self.revocations: RevocationSource | None = None
        # The /dcap a home display gets, when its resources are installed (wan.ihd_resources).
        self.ihd_dcap: Callable[[web.Request], web.Response | None] | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.channels: list[ChannelSite] = []

    @property
    def lfdi(self) -> str:
        return self._lfdi

    @lfdi.setter
    def lfdi(self, value: str) -> None:
        """A new certificate (renewal) is a new LFDI: the EndDevice's state changes then."""
        if getattr(self, "_lfdi", None) != value:
            self._lfdi = value
            self.changed_time = int(self.now_epoch())

    # -- lifecycle -------------------------------------------------------------------
    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext) -> int:
        if self._runner is None:
            self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
            await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context, backlog=256)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self.port

    async def start_channel(
        self, host: str, port: int, ssl_context: ssl.SSLContext, **options: Any
    ) -> ChannelSite:
        """Reach the GDSC through an outbound channel to its endpoint at ``host:port`` (a hub that
        cannot be dialled; :mod:`smarthub.wan.contract.channel`), beside or instead of
        :meth:`start`. ``options``: :class:`smarthub.wan.httpd.ChannelSite`'s."""
        if self._runner is None:
            self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
            await self._runner.setup()
        site = ChannelSite(self._runner, self.hub_id, host, port, ssl_context=ssl_context, **options)
        await site.start()
        self.channels.append(site)
        return site

    async def stop_channels(self) -> None:
        """Close the outbound channels (the listening port, if any, stays)."""
        for site in self.channels:
            await site.stop()
        self.channels.clear()

    async def stop(self) -> None:
        await self.stop_channels()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _count(self, request: web.Request, handler):  # the middleware (see __init__)
        self.requests += 1
        role, name, lfdi = self._peer_identity(request)
        if role not in WAN_CLIENT_ROLES:
            # An operator's certificate signs commands and a hub's serves; neither is a WAN
            # client, whatever clientAuth usage their certificates carry.
            raise web.HTTPForbidden(
                text=f"a {role or 'certificate without a'} role is not a WAN client of a hub"
            )
        if self.revoked is not None and self.revoked(self._peer_serial(request)):
            raise web.HTTPForbidden(text=f"client certificate {lfdi} is revoked")
        if self.client_allowed is not None and not self.client_allowed(lfdi):
            raise web.HTTPForbidden(text=f"client {lfdi} is not on this hub's allowlist")
        client = f"{role}:{name}" if name else str(request.remote)
        wait = self.limiter.take(client)
        if wait > 0:
            self.rate_limited += 1
            raise web.HTTPTooManyRequests(
                text=f"rate limit: {self.limiter.rate:g} requests/s, burst {self.limiter.burst}",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        if role == "collector":
            self.last_collector_request = self.now_epoch()  # the hub's metrics: when the GDSC last came
        serving = _REQUEST.set(request)  # the data views clamp to this request's window
        try:
            response = await handler(request)
        finally:
            _REQUEST.reset(serving)
        if role == "collector" and self.crls is not None:
            offer = crl_sync.parse_offer(request.headers.get(crl_sync.OFFER.lower()))
            if offer is not None and self.crls.wants(*offer):
                response.headers[crl_sync.WANTED] = str(self.crls.number or 0)
        if role == "collector" and self.storage is not None:
            response.headers[storage_state.HEADER] = self.storage()
        if role == "collector" and self.revocations is not None:
            waiting = self.revocations.pending_count()
            if waiting:  # the collector reads them on this connection (wan.contract.revocations)
                response.headers[consent_revocations.HEADER] = str(waiting)
        recipient = request.query.get("recipient")
        if recipient is not None and response.content_type == sep2.CONTENT_TYPE and response.status == 200:
            response.body = _carry_query(response.body, "?recipient=" + quote(recipient, safe=""))
        return response

    # -- helpers ---------------------------------------------------------------------
    @staticmethod
    def _xml(doc: Element) -> web.Response:
        return web.Response(body=sep2.to_bytes(doc), content_type=sep2.CONTENT_TYPE)

    @staticmethod
    def _paging(request: web.Request) -> ListQuery:
        """The request's 2030.5 list query (``s``, ``l`` default 1, ``a``); 400 if malformed."""
        try:
            return ListQuery.parse(request.query, MAX_LIMIT)
        except QueryError as err:
            raise web.HTTPBadRequest(text=str(err)) from None

    @staticmethod
    def _peer(request: web.Request) -> tuple[str, str]:
        """(role, name) from the client certificate the TLS layer verified (OU and CN)."""
        role, name, _ = HubWanServer._peer_identity(request)
        return role, name

    @staticmethod
    def _peer_identity(request: web.Request) -> tuple[str, str, str]:
        """(role, name, LFDI) of the client certificate the TLS layer verified."""
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return "", "", ""
        found = _PEERS.get(der)
        if found is None:
            cert = x509.load_der_x509_certificate(der)
            role = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
            name = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            lfdi = hashlib.sha256(der).hexdigest()[:40].upper()  # IEEE 2030.5 LFDI
            found = (str(role[0].value) if role else "", str(name[0].value) if name else "", lfdi)
            if len(_PEERS) > 4096:
                _PEERS.clear()
            _PEERS[der] = found
        return found

    @staticmethod
    def _peer_serial(request: web.Request) -> int:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if not der:
            return -1
        serial = _SERIALS.get(der)
        if serial is None:
            serial = x509.load_der_x509_certificate(der).serial_number
            if len(_SERIALS) > 4096:
                _SERIALS.clear()
            _SERIALS[der] = serial
        return serial

    def _window(self, meter: str) -> Window:
        """The data window of the request being served for ``meter`` (``privacy.window``)."""
        request = _REQUEST.get()
        window = getattr(self.privacy, "window", None)
        if request is None or window is None:
            return _OPEN
        try:
            _, recipient = self._recipient(request)
        except web.HTTPForbidden:
            return _OPEN  # a role that reads no metering data: refused where data is served
        fuel = None if meter is None else self.source.meters().get(meter)
        if meter is not None and self._appliance(meter) is not None:
            return window(recipient, fuel, meter)  # an appliance sub-meter's own window
        return window(recipient, fuel)

    def _granularity(self, request: web.Request, meter: str | None = None) -> str:
        """The granularity the privacy filter allows whoever this request is for (of ``meter``,
        or of the meter the URL names).

        A GDSC collector pulls on behalf of a recipient named by ``recipient`` (default: the
        GDSC's own collection for the billing supplier, "gdsc"); a party pulls for itself and
        cannot name another; other roles get nothing.
        """
        if self.privacy is None:
            return HALF_HOURLY
        role, recipient = self._recipient(request)
        if meter is None and "meter" in request.match_info:
            meter = sep2.meter_of_segment(request.match_info["meter"])
        g = self.privacy.granularity(recipient, meter)
        if g == "none" and meter is not None and self._appliance(meter) is not None:
            # A plug not shared with this recipient does not exist for it (not even a 403).
            raise web.HTTPNotFound(text=f"no usage point {meter!r} on hub {self.hub_id}")
        if g == "none":
            raise web.HTTPForbidden(
                text=f"the consumer has not consented to share metering data with {recipient!r}"
            )
        admits = getattr(self.privacy, "admits", None)
        if role == "party" and admits is not None and not admits(recipient, self._peer_identity(request)[2]):
            # A supplier reads only through the certificate whose keys the change of supplier
            # installed (hub.privacy); an old supplier's certificate gets nothing.
            raise web.HTTPForbidden(text=f"{recipient!r} may not read this hub's data with this certificate")
        return g

    def _recipient(self, request: web.Request) -> tuple[str, str]:
        """(role, recipient): whom this request reads for. A collector names the recipient it
        pulls for (default "gdsc"); a party reads for itself only; other roles read nothing."""
        role, name = self._peer(request)
        claimed = request.query.get("recipient")
        if role == "collector":
            return role, claimed or "gdsc"
        if role == "party" and claimed in (None, name):
            return role, name
        raise web.HTTPForbidden(
            text=f"a {role or 'unknown'} certificate cannot read metering data for {claimed!r}"
        )

    def _visible_meters(self, request: web.Request) -> dict[str, str]:
        """The hub's meters (id → fuel) this request's recipient may see: a supplier only the
        fuels it supplies here (its keys are installed per fuel), everyone else all of them."""
        meters = self.source.meters()
        fuels_for = getattr(self.privacy, "fuels_for", None)
        if fuels_for is None or self._peer(request)[0] not in ("collector", "party"):
            return meters  # roles that read no metering data are refused where data is served
        recipient = self._recipient(request)[1]
        fuels = fuels_for(recipient)
        assert self.privacy is not None
        # A consent that lists meters leaves the others out (hub.privacy, "Scope").
        return {
            m: f
            for m, f in meters.items()
            if (fuels is None or f in fuels) and self.privacy.granularity(recipient, m) != "none"
        }

    def _meter(self, request: web.Request) -> tuple[str, str]:
        meter = sep2.meter_of_segment(request.match_info["meter"])
        fuel = self._visible_meters(request).get(meter)
        if fuel is None:
            raise web.HTTPNotFound(text=f"no usage point {meter!r} on hub {self.hub_id}")
        return meter, fuel

    def _channel(self, request: web.Request) -> tuple[str, ObisCode]:
        meter, _ = self._meter(request)
        try:
            obis = sep2.parse_channel_token(request.match_info["ch"])
        except ValueError as err:
            raise web.HTTPNotFound(text=str(err)) from None
        base = interval_of_register(obis)
        if base is not None and self.source.has_registers:
            known = base in self.source.channels(meter) and self._grid(self._granularity(request)) is not None
        else:
            known = obis in self.source.channels(meter)
        if not known:
            raise web.HTTPNotFound(text=f"usage point {meter!r} has no meter reading {obis}")
        return meter, obis

    # -- daily register reads (model.register_reads) -------------------------------------
    def _grid(self, g: str) -> Grid | None:
        """The instants at which a recipient of granularity ``g`` gets a channel's register: every
        UTC midnight for half-hourly data (the day sets it reads, the GDSC's days), the local
        midnights or month starts whose totals a daily or monthly recipient has anyway; none for
        the others (tariff-register totals have their own MeterReadings)."""
        if g == HALF_HOURLY:
            return utc_midnights
        if g in AGGREGATED:
            tz = getattr(self.privacy, "tz", None)  # the consumer's calendar (hub.privacy)
            return local_boundaries(tz if isinstance(tz, ZoneInfo) else _LONDON, g == "monthly")
        return None

    def _reads(
        self, meter: str, obis: ObisCode, g: str, after: int | None = None, end: int | None = None
    ) -> Sequence[IntervalRow]:
        """Register channel ``obis``'s reads at or after ``after`` (before ``end``), for ``g``."""
        base, grid = interval_of_register(obis), self._grid(g)
        if base is None or grid is None:
            return []
        return self.source.register_reads(meter, base, grid, start=after, end=end)

    def _register_channels(self, meter: str, g: str) -> list[ObisCode]:
        """The register channels of ``meter`` a recipient of ``g`` is served: those of its interval
        channels built from a cumulative register, once the first read exists (a channel listed
        without readings would be new to a puller on every pull)."""
        grid = self._grid(g)
        if grid is None or not self.source.has_registers:
            return []
        out = []
        for o in self.source.channels(meter):
            reg = register_channel(o)
            if reg is not None and self.source.register_reads(meter, o, grid, newest_only=True):
                out.append(reg)
        return out

    @staticmethod
    def _days_of(rows: Sequence[IntervalRow]) -> list[int]:
        return sorted({r.start - r.start % DAY for r in rows})

    def _register(self, request: web.Request) -> tuple[str, RegisterRow]:
        """The tariff register a ``tariff-registers`` recipient names in the URL."""
        meter, _ = self._meter(request)
        assert self.privacy is not None
        try:
            obis = sep2.parse_channel_token(request.match_info["ch"])
        except ValueError as err:
            raise web.HTTPNotFound(text=str(err)) from None
        for reg in self.privacy.registers(meter):
            if reg.obis == obis:
                return meter, reg
        raise web.HTTPNotFound(text=f"usage point {meter!r} has no tariff register {obis}")

    @staticmethod
    def _no_intervals() -> web.HTTPForbidden:
        return web.HTTPForbidden(
            text="the consumer allows this recipient the tariff-register totals only: no interval data"
        )

    def _register_reading(self, meter: str, reg: RegisterRow, parent: Element | None = None) -> Element:
        href = sep2.mr_href(meter, reg.obis)
        return sep2.meter_reading(href, sep2.mrid(self.hub_id, href), str(reg.obis), None, parent)

    def _day(self, request: web.Request) -> int:
        try:
            day = int(request.match_info["day"])
        except ValueError:
            raise web.HTTPNotFound(text="a reading set is named by its UTC day (epoch seconds)") from None
        if day % DAY:
            raise web.HTTPNotFound(text="a reading set starts at UTC midnight")
        return day

    # -- resources -------------------------------------------------------------------
    async def dcap(self, request: web.Request) -> web.Response:
        if self.ihd_dcap is not None and (for_display := self.ihd_dcap(request)) is not None:
            return for_display
        # The bulk pull (see mirror_usage_points): one request instead of the walk. Not offered
        # to a recipient allowed register totals only: it carries interval data alone.
        registers_only = self.privacy is not None and self._granularity(request) == TARIFF_REGISTERS
        meters = len(self._visible_meters(request))
        return self._xml(
            sep2.device_capability(
                "/dcap",
                POLL_RATE,
                "/tm",
                usage_points=("/upt", meters),
                end_devices=("/edev", 1),
                mirror_usage_points=None if registers_only else (sep2.MUP_LIST_HREF, meters),
            )
        )

    async def time(self, request: web.Request) -> web.Response:
        return self._xml(sep2.time_resource("/tm", self.now_epoch()))

    def _appliance(self, meter: str) -> str | None:
        """The appliance a sub-meter (smart plug) measures, if the source lists it as one."""
        return None if self._appliance_of is None else self._appliance_of(meter)

    def _usage_point(
        self, request: web.Request, meter: str, fuel: str, parent: Element | None = None
    ) -> Element:
        href = sep2.upt_href(meter)
        appliance = self._appliance(meter)
        return sep2.usage_point(
            href,
            sep2.mrid(self.hub_id, href),
            meter if appliance is None else appliance,
            SERVICE_KIND.get(fuel, 0),
            self.lfdi,
            (f"{href}/mr", len(self._meter_reading_items(request, meter))),
            parent,
            role_flags=sep2.MAIN_METER_ROLES if appliance is None else sep2.SUBMETER_ROLES,
        )

    async def usage_points(self, request: web.Request) -> web.Response:
        q = self._paging(request)
        items = sorted(self._visible_meters(request).items())
        doc = sep2.usage_point_list("/upt", len(items))
        for m, f in q.window(items):
            self._usage_point(request, m, f, doc)
        return self._xml(sep2.done(doc))

    async def usage_point(self, request: web.Request) -> web.Response:
        return self._xml(self._usage_point(request, *self._meter(request)))

    def _meter_reading(
        self, meter: str, obis: ObisCode, parent: Element | None = None, g: str = HALF_HOURLY
    ) -> Element:
        href = sep2.mr_href(meter, obis)
        if interval_of_register(obis) is not None:
            sets = (f"{href}/rs", len(self._days_of(self._reads(meter, obis, g))))
        else:
            sets = (f"{href}/rs", len(self.source.interval_days(meter, obis)))
        return sep2.meter_reading(href, sep2.mrid(self.hub_id, href), str(obis), sets, parent)

    def _meter_reading_items(self, request: web.Request, meter: str) -> Sequence[ObisCode | RegisterRow]:
        """A usage point's MeterReadings as this request's recipient sees them: the tariff
        registers for a register-totals recipient, else the interval channels (a role that reads
        no metering data sees the channels listed, and is refused where data is served)."""
        reads = self._peer(request)[0] in ("collector", "party")
        g = self._granularity(request, meter) if reads else HALF_HOURLY
        if self.privacy is not None and reads and g == TARIFF_REGISTERS:
            return list(self.privacy.registers(meter))
        registers = self._register_channels(meter, g) if reads or self.privacy is None else []
        return sorted([*self.source.channels(meter), *registers])

    async def meter_readings(self, request: web.Request) -> web.Response:
        meter, _ = self._meter(request)
        q = self._paging(request)
        items = self._meter_reading_items(request, meter)
        doc = sep2.meter_reading_list(f"{sep2.upt_href(meter)}/mr", len(items))
        reads = self._peer(request)[0] in ("collector", "party")
        g = self._granularity(request, meter) if reads else HALF_HOURLY
        for item in q.window(items):
            if isinstance(item, ObisCode):
                self._meter_reading(meter, item, doc, g)
            else:
                self._register_reading(meter, item, doc)
        return self._xml(sep2.done(doc))

    async def meter_reading(self, request: web.Request) -> web.Response:
        if self.privacy is not None and self._granularity(request) == TARIFF_REGISTERS:
            return self._xml(self._register_reading(*self._register(request)))
        meter, obis = self._channel(request)
        return self._xml(self._meter_reading(meter, obis, None, self._granularity(request)))

    async def reading_type(self, request: web.Request) -> web.Response:
        if self.privacy is not None and self._granularity(request) == TARIFF_REGISTERS:
            meter, reg = self._register(request)
            return self._xml(
                sep2.reading_type(
                    f"{sep2.mr_href(meter, reg.obis)}/rt",
                    accumulation=ACCUMULATION_CUMULATIVE,
                    commodity=COMMODITY_ELECTRICITY,
                    flow_direction=FLOW_FORWARD if reg.obis.c == 1 else FLOW_REVERSE,
                    interval_length=None,
                    kind=KIND_ENERGY,
                    power_of_ten=reg.power_of_ten,
                    uom=UOM_WH,
                )
            )
        meter, obis = self._channel(request)
        g = self._granularity(request)
        spec = interval_spec(obis)
        return self._xml(
            sep2.reading_type(
                f"{sep2.mr_href(meter, obis)}/rt",
                accumulation=spec.accumulation,
                commodity=spec.commodity,
                flow_direction=spec.flow_direction,
                interval_length=(
                    None
                    if interval_of_register(obis) is not None
                    else 1800
                    if g == HALF_HOURLY
                    else AGGREGATED[g]
                ),
                kind=spec.kind,
                power_of_ten=spec.power_of_ten,
                uom=spec.uom,
                data_qualifier=spec.data_qualifier,
                phase=spec.phase,
            )
        )

    def _reading_set(self, meter: str, obis: ObisCode, day: int, parent: Element | None = None) -> Element:
        href = f"{sep2.mr_href(meter, obis)}/rs/{day}"
        count = self.source.interval_count(meter, obis, start=day, end=day + DAY)
        return sep2.reading_set(
            href,
            sep2.mrid(self.hub_id, href),
            time.strftime("%Y-%m-%d", time.gmtime(day)),  # the UTC day the set holds
            day,
            DAY,
            (f"{href}/r", count),
            parent,
        )

    def _aggregate_set(
        self, meter: str, obis: ObisCode, g: str, rows: Sequence[IntervalRow], parent: Element | None = None
    ) -> Element:
        href = f"{sep2.mr_href(meter, obis)}/rs/{g}"
        first, last = rows[0], rows[-1]
        return sep2.reading_set(
            href,
            sep2.mrid(self.hub_id, href),
            f"{g} readings",
            first.start,
            last.start + last.duration - first.start,
            (f"{href}/r", len(rows)),
            parent,
        )

    async def reading_sets(self, request: web.Request) -> web.Response:
        meter, obis = self._channel(request)
        g = self._granularity(request)
        q = self._paging(request)
        if g == TARIFF_REGISTERS:
            raise self._no_intervals()
        if interval_of_register(obis) is not None:
            # One set per UTC day holding a register read (at or after a), as for half-hours.
            days = self._days_of(self._reads(meter, obis, g, q.after))
            doc = sep2.reading_set_list(f"{sep2.mr_href(meter, obis)}/rs", len(days))
            for d in q.window(days):
                self._register_set(meter, obis, g, d, doc)
            return self._xml(sep2.done(doc))
        if g != HALF_HOURLY:
            # One set holding every complete day (month) the recipient may have, after a.
            assert self.privacy is not None
            rows = self.privacy.aggregates(meter, obis, g, q.after)
            doc = sep2.reading_set_list(f"{sep2.mr_href(meter, obis)}/rs", 1 if rows else 0)
            if q.window([rows] if rows else []):
                self._aggregate_set(meter, obis, g, rows, doc)
            return self._xml(sep2.done(doc))
        # A day's set is "after a" when it still holds intervals starting at or after a.
        days = self.source.interval_days(meter, obis, start=q.after)
        doc = sep2.reading_set_list(f"{sep2.mr_href(meter, obis)}/rs", len(days))
        for d in q.window(days):
            self._reading_set(meter, obis, d, doc)
        return self._xml(sep2.done(doc))

    def _register_set(
        self, meter: str, obis: ObisCode, g: str, day: int, parent: Element | None = None
    ) -> Element | None:
        """The ReadingSet of a register channel's reads on UTC day ``day`` (None: it has none)."""
        count = len(self._reads(meter, obis, g, day, day + DAY))
        if not count:
            return None
        href = f"{sep2.mr_href(meter, obis)}/rs/{day}"
        return sep2.reading_set(
            href,
            sep2.mrid(self.hub_id, href),
            time.strftime("%Y-%m-%d", time.gmtime(day)),
            day,
            DAY,
            (f"{href}/r", count),
            parent,
        )

    async def reading_set(self, request: web.Request) -> web.Response:
        meter, obis = self._channel(request)
        g = self._granularity(request)
        if g == TARIFF_REGISTERS:
            raise self._no_intervals()
        if interval_of_register(obis) is not None:
            found = self._register_set(meter, obis, g, self._day(request))
            if found is None:
                raise web.HTTPNotFound(text="no register read on that day")
            return self._xml(found)
        if g != HALF_HOURLY:
            assert self.privacy is not None
            rows = self.privacy.aggregates(meter, obis, g, None)
            if request.match_info["day"] != g or not rows:
                raise web.HTTPNotFound(text=f"this recipient's readings are {g}: /rs/{g}")
            return self._xml(self._aggregate_set(meter, obis, g, rows))
        day = self._day(request)
        if not self.source.interval_count(meter, obis, start=day, end=day + DAY):
            raise web.HTTPNotFound(text=f"no readings on day {day}")
        return self._xml(self._reading_set(meter, obis, day))

    async def readings(self, request: web.Request) -> web.Response:
        meter, obis = self._channel(request)
        g = self._granularity(request)
        q = self._paging(request)
        if g == TARIFF_REGISTERS:
            raise self._no_intervals()
        if interval_of_register(obis) is not None:
            day = self._day(request)
            rows = self._reads(meter, obis, g, day if q.after is None else max(day, q.after), day + DAY)
            doc = sep2.reading_list(f"{sep2.mr_href(meter, obis)}/rs/{day}/r", len(rows))
            for r in q.window(rows):
                _reading(r, parent=doc)
            return self._xml(sep2.done(doc))
        if g != HALF_HOURLY:
            assert self.privacy is not None
            if request.match_info["day"] != g:
                raise web.HTTPNotFound(text=f"this recipient's readings are {g}: /rs/{g}/r")
            rows = self.privacy.aggregates(meter, obis, g, q.after)
            doc = sep2.reading_list(f"{sep2.mr_href(meter, obis)}/rs/{g}/r", len(rows))
            for r in q.window(rows):
                _reading(r, parent=doc)
            return self._xml(sep2.done(doc))
        day = self._day(request)
        start = day if q.after is None else max(day, q.after)
        total = self.source.interval_count(meter, obis, start=start, end=day + DAY)
        rows = self.source.intervals(meter, obis, start=start, end=day + DAY, offset=q.start, limit=q.limit)
        doc = sep2.reading_list(f"{sep2.mr_href(meter, obis)}/rs/{day}/r", total)
        for r in rows:
            _reading(r, parent=doc)
        return self._xml(sep2.done(doc))

    # -- the metering mirror: the bulk pull --------------------------------------------
    def _mirror_channel(self, meter: str, obis: ObisCode, g: str, after: int | None) -> ChannelRows:
        """A channel's readings at or after ``after`` (oldest first, at most
        MIRROR_CHANNEL_READINGS) and the end of its latest reading, for a recipient of
        granularity ``g``."""
        cap = MIRROR_CHANNEL_READINGS
        latest: int | None
        if g == HALF_HOURLY:
            # One more than the cap tells whether the channel is cut short; only then (or when
            # nothing is new) does the latest reading take a query of its own.
            rows: Sequence[IntervalRow] = self.source.intervals(meter, obis, start=after, limit=cap + 1)
            more = len(rows) > cap
            rows = rows[:cap]
            if rows and not more:
                latest = rows[-1].start + rows[-1].duration
            else:
                total = self.source.interval_count(meter, obis)
                last = self.source.intervals(meter, obis, offset=max(total - 1, 0), limit=1)
                latest = last[0].start + last[0].duration if last else None
            return ChannelRows(obis, 1800, rows, latest)
        assert self.privacy is not None
        aggregated = self.privacy.aggregates(meter, obis, g, after)
        every = aggregated if after is None or aggregated else self.privacy.aggregates(meter, obis, g, None)
        latest = every[-1].start + every[-1].duration if every else None
        return ChannelRows(obis, AGGREGATED[g], aggregated[:cap], latest)

    def _mirror_register(
        self, meter: str, obis: ObisCode, g: str, after: int | None, empty: bool = False
    ) -> ChannelRows | None:
        """Interval channel ``obis``'s register channel: its reads at or after ``after`` (at most
        MIRROR_CHANNEL_READINGS). A read is an instant: its end, for the puller's cursor and the
        ``lastUpdateTime``, is the second after it (so ``a`` past it leaves it out).

        None when no read is at or after ``after`` (``empty``: only when it has none at all): the
        bulk body lists a register channel only with reads, so the half-hourly pulls between two
        midnights carry none of it (listed empty, a home's two cost 1.3 kB on a 2.1 kB body), and a
        puller meets a channel it never pulled with its first read after its ``a``, whereupon its
        second pass fetches the older ones (``PullClient.pages``)."""
        reg, grid = register_channel(obis), self._grid(g)
        if reg is None or grid is None or not self.source.has_registers:
            return None
        rows = self.source.register_reads(meter, obis, grid, start=after)
        if rows:
            return ChannelRows(reg, None, rows[:MIRROR_CHANNEL_READINGS], rows[-1].start + 1)
        if not empty or after is None:
            return None
        newest = self.source.register_reads(meter, obis, grid, newest_only=True)
        return ChannelRows(reg, None, [], newest[-1].start + 1) if newest else None

    def _mirror_point(self, meter: str, fuel: str, g: str, after: int | None) -> MirrorPoint:
        channels = []
        for o in sorted(self.source.channels(meter)):
            channels.append(self._mirror_channel(meter, o, g, after))
            register = self._mirror_register(meter, o, g, after)
            if register is not None:
                channels.append(register)
        return MirrorPoint(meter, SERVICE_KIND.get(fuel, 0), channels, self._appliance(meter))

    def _mirror_granularity(self, request: web.Request) -> str:
        g = self._granularity(request)
        if g == TARIFF_REGISTERS:
            raise self._no_intervals()
        return g

    async def mirror_usage_points(self, request: web.Request) -> web.Response:
        """Bulk pull: a MirrorUsagePointList (§10.10 metering mirror), one MirrorUsagePoint per
        meter, each with every channel's MirrorMeterReading and the readings at or after ``a``.

        2030.5 list semantics (:mod:`smarthub.wan.contract.paging`): ``s`` and ``l`` count
        MirrorUsagePoints, ``all`` is the number of usage points the recipient may see,
        ``results`` the number in this response. Each channel is listed on every page with its
        ReadingType, whether or not it has readings after ``a``, so a puller learns of channels
        it has never pulled (a register channel only with reads after ``a``: ``_mirror_register``).
        A channel's readings are cut at MIRROR_CHANNEL_READINGS (oldest
        first): its ``lastUpdateTime`` (the end of its latest reading) is then later than the
        last one served, and the client asks again with ``a`` there. A page takes no further
        usage points once it carries MIRROR_PAGE_READINGS readings, so a hub back from a long
        WAN outage never builds an unbounded body. Readings appended between requests only
        add to later answers; ingest is idempotent.

        The recipient's privacy filter applies exactly as on ``…/rs/{day}/r``: the same
        ``_granularity`` decides, and anything coarser than half-hourly comes from the same
        ``privacy.aggregates`` view. Standard 2030.5 elements only (see :mod:`smarthub.wan.client.bulk`).
        """
        self._mirror_granularity(request)  # a recipient of register totals only: 403
        q = self._paging(request)
        # A consent's meter list may set the granularity per meter: meters whose data is register
        # totals only are not mirrored (they have no intervals), and not counted in ``all``.
        meters = [
            (m, f, g)
            for m, f in sorted(self._visible_meters(request).items())
            if (g := self._granularity(request, m)) != TARIFF_REGISTERS
        ]
        points: list[MirrorPoint] = []
        budget = MIRROR_PAGE_READINGS
        for meter, fuel, g in q.window(meters):
            if points and budget <= 0:
                break  # results < l: the client pages on from s + results
            point = self._mirror_point(meter, fuel, g, q.after)
            budget -= sum(len(ch.rows) for ch in point.channels)
            points.append(point)
        body = write_mirror_usage_points(self.hub_id, self.lfdi, sep2.MUP_LIST_HREF, points, len(meters))
        return web.Response(body=body, content_type=sep2.CONTENT_TYPE)

    async def mirror_usage_point(self, request: web.Request) -> web.Response:
        """One meter's MirrorUsagePoint, as the list holds it (``a`` selects the readings)."""
        g = self._mirror_granularity(request)
        meter, fuel = self._meter(request)
        point = self._mirror_point(meter, fuel, g, self._paging(request).after)
        body = write_mirror_usage_point(self.hub_id, self.lfdi, point)
        return web.Response(body=body, content_type=sep2.CONTENT_TYPE)

    async def mirror_meter_reading(self, request: web.Request) -> web.Response:
        """One channel's MirrorMeterReading, as its MirrorUsagePoint holds it."""
        g = self._mirror_granularity(request)
        meter, obis = self._channel(request)
        after = self._paging(request).after
        base = interval_of_register(obis)
        channel = (
            self._mirror_channel(meter, obis, g, after)
            if base is None
            else self._mirror_register(meter, base, g, after, empty=True)
        )
        if channel is None:
            raise web.HTTPNotFound(text=f"usage point {meter!r} has no register read yet")
        body = write_mirror_meter_reading(self.hub_id, meter, channel)
        return web.Response(body=body, content_type=sep2.CONTENT_TYPE)

    async def command(self, request: web.Request) -> web.Response:
        """A signed management command from the GDSC (JSON envelope; see hub.management)."""
        if self.management is None:
            raise web.HTTPNotFound(text="this hub has no management interface")
        role, name = self._peer(request)
        if role not in MGMT_CLIENT_ROLES:
            # Refused before the body is read or anything is logged: only the GDSC's collectors
            # deliver commands, so another certificate holder cannot fill the management log.
            raise web.HTTPForbidden(
                text=f"management commands come from the GDSC, not from a {role} ({name})"
            )
        result = await self.management.handle(await request.read())
        status = 403 if result.status == "refused" else 200
        return web.Response(status=status, body=result.to_json(), content_type="application/json")

    async def metrics_text(self, request: web.Request) -> web.Response:
        """The hub's metrics, for the GDSC's collectors only (the rule of ``/mgmt``)."""
        role, name = self._peer(request)
        if role not in MGMT_CLIENT_ROLES:
            raise web.HTTPForbidden(text=f"the hub's metrics are for the GDSC, not for a {role} ({name})")
        if self.metrics is None:
            raise web.HTTPNotFound(text="this hub exports no metrics")
        body, content_type = self.metrics()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def crl_update(self, request: web.Request) -> web.Response:
        """The GDSC CA's CRL, PUT by a collector after the hub asked for it (``wan.crl_sync``)."""
        role, name = self._peer(request)
        if role not in MGMT_CLIENT_ROLES or self.crls is None:
            raise web.HTTPForbidden(
                text=f"the CRL comes from the GDSC's collectors, not from a {role} ({name})"
            )
        try:
            self.crls.install(await request.read())
        except ValueError as err:  # CrlRefused: foreign, not newer, not a CRL
            raise web.HTTPConflict(text=str(err)) from None
        return web.json_response({"crl_number": self.crls.number})

    def _revocation_source(self, request: web.Request) -> RevocationSource:
        role, name = self._peer(request)
        if role not in MGMT_CLIENT_ROLES:
            raise web.HTTPForbidden(
                text=f"consent revocations are for the GDSC's collectors, not for a {role} ({name})"
            )
        if self.revocations is None:
            raise web.HTTPNotFound(text="this hub has no display that asks for revocations")
        return self.revocations

    async def revocations_pending(self, request: web.Request) -> web.Response:
        """The consent revocations waiting for the GDSC (``wan.contract.revocations``)."""
        source = self._revocation_source(request)
        body = consent_revocations.requests_json(source.pending(consent_revocations.MAX_REQUESTS))
        return web.Response(body=body, content_type=consent_revocations.MEDIA_TYPE)

    async def revocations_answered(self, request: web.Request) -> web.Response:
        """The GDSC's answers to them: kept, and those requests no longer listed."""
        source = self._revocation_source(request)
        try:
            answers = consent_revocations.parse_answers(await request.read())
        except consent_revocations.BadRevocations as err:
            raise web.HTTPBadRequest(text=str(err)) from None
        ended = source.answer(answers)
        return web.json_response({"answered": ended, "pending": source.pending_count()})

    # -- the hub as an EndDevice, with its diagnosed events as LogEvents (2030.5 §10.x LogEvent) --
    def _end_device(self, request: web.Request, parent: Element | None = None) -> Element:
        """The hub as an EndDevice; its LogEventListLink only for a client that may read the
        events (a link it could not follow would answer 403), with the count it would see."""
        try:
            events: EventLog | None = self._event_log(request)
        except web.HTTPException:
            events = None
        return sep2.end_device(
            "/edev/0",
            self.lfdi,
            sfdi_from_lfdi(self.lfdi),
            self.changed_time,
            None if events is None else ("/edev/0/lel", events.count()),
            parent,
        )

    async def end_devices(self, request: web.Request) -> web.Response:
        q = self._paging(request)
        doc = sep2.end_device_list("/edev", 1)
        for _ in q.window([0]):  # the hub itself, EndDevice 0
            self._end_device(request, doc)
        return self._xml(sep2.done(doc))

    async def end_device(self, request: web.Request) -> web.Response:
        return self._xml(self._end_device(request))

    def _event_log(self, request: web.Request) -> EventLog:
        """The diagnosed events this request may read: all of them for a GDSC collector (its own
        error log), a party's own view if the privacy filter admits it (its meters, its window),
        nothing for anyone else."""
        if self.events is None:
            raise web.HTTPNotFound(text="this hub keeps no event log")
        role, name = self._peer(request)
        if role == "collector" and request.query.get("recipient") in (None, "gdsc"):
            return self.events
        if role == "party" and request.query.get("recipient") in (None, name):
            allowed = getattr(self.privacy, "events_allowed", None)
            if self.privacy is None:
                return self.events
            if allowed is not None and allowed(name):
                return _VisibleEvents(self.events, lambda e: self._event_visible(request, name, e))
            raise web.HTTPForbidden(text=f"the consumer has not consented to share events with {name!r}")
        raise web.HTTPForbidden(text=f"a {role or 'unknown'} certificate cannot read this hub's events")

    def _event_visible(self, request: web.Request, recipient: str, e: DiagnosedEvent) -> bool:
        meters = self.source.meters()
        if e.device in meters and e.device not in self._visible_meters(request):
            return False
        window = getattr(self.privacy, "window", None)
        if window is None:
            return True
        lo, hi = window(recipient, meters.get(e.device))
        t = int(e.first_seen.timestamp())
        return (lo is None or t >= lo) and (hi is None or t < hi)

    async def log_events(self, request: web.Request) -> web.Response:
        """Diagnosed events oldest first; a puller pages on with s = how many it already has."""
        events = self._event_log(request)
        q = self._paging(request)
        total = events.count()
        page = list(events.events(after_id=None, limit=q.end))
        return self._xml(log_event_list(q.window(page), "/edev/0/lel", total, pen=self.log_event_pen))

    def _event(self, request: web.Request) -> DiagnosedEvent:
        events = self._event_log(request)
        try:
            return events.get(int(request.match_info["id"]))
        except (ValueError, KeyError, LookupError):
            raise web.HTTPNotFound(text=f"no event {request.match_info['id']!r}") from None

    async def log_event(self, request: web.Request) -> web.Response:
        e = self._event(request)
        return self._xml(log_event(e, f"/edev/0/lel/{e.id}", pen=self.log_event_pen))

    async def log_event_detail(self, request: web.Request) -> web.Response:
        """The full diagnosis (evidence, repairs tried, outcome, recommendation) for a work order."""
        return web.json_response(event_detail(self._event(request)))

    async def latest_reading(self, request: web.Request) -> web.Response:
        if self.privacy is not None and self._granularity(request) == TARIFF_REGISTERS:
            meter, reg = self._register(request)
            return self._xml(
                sep2.reading(
                    reg.value,
                    quality=sep2.QUALITY_VALID,
                    start=reg.time,
                    duration=0,
                    tou_tier=min(reg.obis.e, MAX_TOU_TIER),
                    href=f"{sep2.mr_href(meter, reg.obis)}/r",
                )
            )
        meter, obis = self._channel(request)
        g = self._granularity(request)
        if interval_of_register(obis) is not None:
            base, grid = interval_of_register(obis), self._grid(g)
            assert base is not None and grid is not None  # _channel checked both
            newest = self.source.register_reads(meter, base, grid, newest_only=True)
            if not newest:
                raise web.HTTPNotFound(text="no register read yet")
            return self._xml(_reading(newest[-1], href=f"{sep2.mr_href(meter, obis)}/r"))
        if g != HALF_HOURLY:
            assert self.privacy is not None
            rows = self.privacy.aggregates(meter, obis, g, None)
            if not rows:
                raise web.HTTPNotFound(text=f"no complete {g} reading yet")
            return self._xml(_reading(rows[-1], href=f"{sep2.mr_href(meter, obis)}/r"))
        total = self.source.interval_count(meter, obis)
        rows = self.source.intervals(meter, obis, offset=max(total - 1, 0), limit=1)
        if not rows:
            raise web.HTTPNotFound(text="no reading yet")
        return self._xml(_reading(rows[0], href=f"{sep2.mr_href(meter, obis)}/r"))


def _reading(r: IntervalRow, href: str | None = None, parent: Element | None = None) -> Element:
    return sep2.reading(r.value, r.quality, r.start, r.duration, href=href, parent=parent)


def _carry_query(body: bytes, query: str) -> bytes:
    """``body`` (a 2030.5 document the hub built) with ``query`` appended to every href."""
    root = etree.fromstring(body)
    for el in root.iter():
        href = el.get("href")
        if href is not None and "?" not in href:
            el.set("href", href + query)
    return sep2.to_bytes(root)
