"""IEEE 2030.5 Pricing, Messaging and live demand for third-party in-home displays (hub WAN server).

The hub's own IHD is a web app (:mod:`smarthub.hub.ihd.app`); a third-party display speaks
2030.5 instead, and reads the same figures from the hub (DESIGN.md: everything the IHD shows
is computed in the hub, so it works while the WAN is down):

* **Pricing** (IEEE 2030.5-2018 §10.6): ``/tp`` lists one TariffProfile per supply (fuel
  order: electricity, then gas), each with one RateComponent (``/tp/{tp}/rc/0``, import
  energy in kWh: ReadingType uom 72 Wh, powerOfTenMultiplier 3) whose TimeTariffIntervals
  (``…/tti``) are the **current and next** rate from the hub's tariff engine
  (`CostAccumulator.current_rate` / ``next_rate``): each interval is the rate's window
  (``start`` .. ``until``; a rate unchanged for a week runs a week), touTier is the
  time-of-use rate's position (1 = A) or 0 (not a time-of-use tariff), and its one
  ConsumptionTariffInterval (``…/tti/{start}/cti``, each at ``…/cti/{n}``) holds the unit
  price. A tiered tariff has one interval for its block (the local day or month) with one CTI per tier
  (consumptionBlock 1.., startValue the tier's lower bound in whole kWh). Prices are ex-VAT,
  as on a GB tariff sheet, in GBP × 10^-8 (``pricePowerOfTenMultiplier`` -8), which carries
  the tariff model's six decimal places of a penny exactly.
* **Messaging** (§10.8): ``/msg`` lists one MessagingProgram, the supplier's, whose
  TextMessages (``/msg/0/txt``; ``/msg/0/actxt`` only those showing now) are the messages the
  hub's IHD shows (``ihd.message`` and ``message.display`` commands), not yet acknowledged
  and not expired; a message without an end is given a year.
* **Metering, live demand** (§10.10): ``/dupt`` ("display usage points") lists one UsagePoint,
  the home's electricity supply (``/dupt/0``), with one MeterReading (``/dupt/0/mr/0``) whose
  ReadingType (``…/rt``) is instantaneous (accumulationBehaviour 12) power (kind 37) in W (uom 38,
  powerOfTenMultiplier 0), forward flow, and whose ReadingLink (``…/r``) is the latest Reading:
  the home's **net** power, import minus export (negative while exporting), exactly the figure
  the hub's own IHD pushes over SSE (:class:`smarthub.hub.ihd.live.LivePower`), time-stamped with
  the meter's reading (timePeriod start, duration 0) and flagged valid (qualityFlags bit 0, as
  every Reading the hub serves). 404 until the meter has reported power. The usage point is
  the home's electricity supply: a premises aggregation point, measured by the revenue meter.
  Its own href, not ``/upt``: ``/upt`` is the privacy-filtered metering the GDSC and third
  parties read, which a display is not a recipient of.
* ``/dcap`` answers a display with MessagingProgramListLink, TariffProfileListLink, TimeLink and,
  when the hub has a live power source, UsagePointListLink ``/dupt``.

Every list here pages as every list of the hub does (:mod:`smarthub.wan.contract.paging`).

**Access**: only a client whose certificate carries the ``ihd`` role (``OU=ihd``, issued by the
GDSC CA, so TLS already admitted it) and is issued for *this* hub (its name is the hub id, or
``<hub id>/<screen>``). Everyone else gets 403 here; the GDSC and third parties keep exactly
the metering resources and privacy rules they had (a display gets no metering data: the
privacy filter's recipients are collectors and parties).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from smarthub.hub.consumption import HomeConsumption, Supply
from smarthub.hub.ihd.live import LivePower
from smarthub.hub.ihd.store import IhdStore, Message
from smarthub.hub.tariffs import RATE_HORIZON, Rate
from smarthub.model.reading_type import (
    ACCUMULATION_DELTA,
    ACCUMULATION_INSTANTANEOUS,
    COMMODITY_ELECTRICITY,
    FLOW_FORWARD,
    KIND_ENERGY,
    KIND_POWER,
    UOM_W,
    UOM_WH,
)
from smarthub.model.tariff import Tariff, TariffError, Tiered, TimeOfUse
from smarthub.model.tariff_calc import day_start, local_day
from smarthub.security.certificates import Role
from smarthub.wan import httpd as web
from smarthub.wan.contract import sep2_xml as sep2

if TYPE_CHECKING:
    from smarthub.wan.server.resources import HubWanServer

PRICE_POWER_OF_TEN = -8  # GBP × 10^-8 = pence × 10^-6: the tariff model's precision
MESSAGE_WITHOUT_END = timedelta(days=365)
SERVICE_KIND = {"electricity": 0, "gas": 1}
COMMODITY_NATURAL_GAS = 7  # 2030.5 CommodityType; gas is billed in kWh (volume converted)
MAX_TOU_TIER = 15
DEMAND_UPT = "/dupt/0"
DEMAND_MR = f"{DEMAND_UPT}/mr/0"
QUALITY_VALID = sep2.QUALITY_VALID  # qualityFlags bit 0: the reading passed the hub's checks


def price_units(p_per_kwh: Decimal) -> int:
    """A price in p/kWh as the integer 2030.5 carries (GBP × 10^-8 per kWh), exactly."""
    scaled = p_per_kwh.scaleb(6)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"price {p_per_kwh} p/kWh has more than 6 decimal places")
    return int(scaled)


class IhdResources:
    """Adds the display resources to ``server`` (see the module docstring)."""

    def __init__(
        self,
        server: HubWanServer,
        consumption: HomeConsumption,
        messages: IhdStore,
        now: Callable[[], datetime],
        live: LivePower | None = None,
    ) -> None:
        """``live``: the home's net power as the hub's IHD shows it; without it no ``/dupt``."""
        self.server = server
        self.consumption = consumption
        self.messages = messages
        self.now = now
        self.live = live

    def install(self) -> None:
        r = self.server.app.router
        r.add_get("/tp", self.tariff_profiles)
        r.add_get("/tp/{tp}", self.tariff_profile)
        r.add_get("/tp/{tp}/rc", self.rate_components)
        r.add_get("/tp/{tp}/rc/{rc}", self.rate_component)
        r.add_get("/tp/{tp}/rc/{rc}/rt", self.reading_type)
        r.add_get("/tp/{tp}/rc/{rc}/tti", self.time_tariff_intervals)
        r.add_get("/tp/{tp}/rc/{rc}/acttti", self.time_tariff_intervals)
        r.add_get("/tp/{tp}/rc/{rc}/tti/{tti}", self.time_tariff_interval)
        r.add_get("/tp/{tp}/rc/{rc}/tti/{tti}/cti", self.consumption_tariff_intervals)
        r.add_get("/tp/{tp}/rc/{rc}/tti/{tti}/cti/{cti}", self.consumption_tariff_interval)
        r.add_get("/msg", self.messaging_programs)
        r.add_get("/msg/{mp}", self.messaging_program)
        r.add_get("/msg/{mp}/txt", self.text_messages)
        r.add_get("/msg/{mp}/actxt", self.text_messages)
        r.add_get("/msg/{mp}/txt/{id}", self.text_message)
        if self.live is not None:
            r.add_get("/dupt", self.demand_usage_points)
            r.add_get(DEMAND_UPT, self.demand_usage_point)
            r.add_get(f"{DEMAND_UPT}/mr", self.demand_meter_readings)
            r.add_get(DEMAND_MR, self.demand_meter_reading)
            r.add_get(f"{DEMAND_MR}/rt", self.demand_reading_type)
            r.add_get(f"{DEMAND_MR}/r", self.demand_reading)
        self.server.ihd_dcap = self.device_capability

    # -- access ---------------------------------------------------------------------------
    def is_display(self, request: web.Request) -> bool:
        role, name, _ = self.server._peer_identity(request)
        hub = self.server.hub_id
        return role == Role.IHD.value and (name == hub or name.startswith(hub + "/"))

    def _admit(self, request: web.Request) -> None:
        if not self.is_display(request):
            role, name, _ = self.server._peer_identity(request)
            raise web.HTTPForbidden(
                text="pricing, messages and live demand are for this home's displays (an ihd certificate"
                f" issued for {self.server.hub_id}); this client is {role or 'unknown'} {name!r}"
            )

    def _xml(self, doc: sep2.Element) -> web.Response:
        return web.Response(body=sep2.to_bytes(doc), content_type=sep2.CONTENT_TYPE)

    def device_capability(self, request: web.Request) -> web.Response | None:
        """The /dcap a display gets (None: not a display, the server answers as before)."""
        if not self.is_display(request):
            return None
        return self._xml(
            sep2.device_capability_ihd(
                "/dcap",
                900,
                ("/msg", 1),
                ("/tp", len(self.consumption.supplies)),
                "/tm",
                None if self.live is None else ("/dupt", 1),
            )
        )

    # -- pricing ----------------------------------------------------------------------------
    def _supplies(self) -> list[Supply]:
        return [self.consumption.supplies[f] for f in sorted(self.consumption.supplies)]

    def _supply(self, request: web.Request) -> tuple[int, Supply]:
        self._admit(request)
        supplies = self._supplies()
        token = request.match_info["tp"]
        if not token.isdigit() or int(token) >= len(supplies):
            raise web.HTTPNotFound(text=f"no tariff profile {token!r}")
        if "rc" in request.match_info and request.match_info["rc"] != "0":
            raise web.HTTPNotFound(text="each tariff profile has one rate component, 0 (import energy)")
        return int(token), supplies[int(token)]

    def _in_force(self, supply: Supply) -> Tariff:
        try:
            return supply.accumulator.schedule.in_force(local_day(self.now()))
        except TariffError as err:
            raise web.HTTPNotFound(text=f"no {supply.fuel} tariff in force: {err}") from None

    def _profile(self, i: int, supply: Supply, parent: sep2.Element | None = None) -> sep2.Element:
        tariff = self._in_force(supply)
        href = f"/tp/{i}"
        return sep2.tariff_profile(
            href,
            sep2.mrid(self.server.hub_id, href, tariff.tariff_id),
            tariff.name or tariff.tariff_id,
            tariff.version,
            PRICE_POWER_OF_TEN,
            tariff.tariff_id,
            (f"{href}/rc", 1),
            SERVICE_KIND[supply.fuel],
            parent,
        )

    async def tariff_profiles(self, request: web.Request) -> web.Response:
        self._admit(request)
        q = self.server._paging(request)
        supplies = self._supplies()
        doc = sep2.tariff_profile_list("/tp", len(supplies))
        for i, s in q.window(list(enumerate(supplies))):
            self._profile(i, s, doc)
        return self._xml(sep2.done(doc))

    async def tariff_profile(self, request: web.Request) -> web.Response:
        return self._xml(self._profile(*self._supply(request)))

    def _rate_component(self, i: int, supply: Supply, parent: sep2.Element | None = None) -> sep2.Element:
        href = f"/tp/{i}/rc/0"
        n = len(self._windows(supply))
        return sep2.rate_component(
            href,
            sep2.mrid(self.server.hub_id, href),
            f"{supply.fuel} import energy",
            f"{href}/rt",
            (f"{href}/tti", n),
            (f"{href}/acttti", n),
            parent,
        )

    async def rate_components(self, request: web.Request) -> web.Response:
        i, supply = self._supply(request)
        q = self.server._paging(request)
        doc = sep2.rate_component_list(f"/tp/{i}/rc", 1)
        for _ in q.window([0]):  # one rate component, 0 (import energy)
            self._rate_component(i, supply, doc)
        return self._xml(sep2.done(doc))

    async def rate_component(self, request: web.Request) -> web.Response:
        return self._xml(self._rate_component(*self._supply(request)))

    async def reading_type(self, request: web.Request) -> web.Response:
        i, supply = self._supply(request)
        return self._xml(
            sep2.reading_type(
                f"/tp/{i}/rc/0/rt",
                accumulation=ACCUMULATION_DELTA,
                commodity=COMMODITY_ELECTRICITY if supply.fuel == "electricity" else COMMODITY_NATURAL_GAS,
                flow_direction=FLOW_FORWARD,
                interval_length=None,
                kind=KIND_ENERGY,
                power_of_ten=3,  # kWh
                uom=UOM_WH,
            )
        )

    def _windows(self, supply: Supply) -> list[_Window]:
        """The current and next rate windows (a tiered tariff: its block, with every tier)."""
        now = self.now()
        acc = supply.accumulator
        try:
            tariff = acc.schedule.in_force(local_day(now))
            if isinstance(tariff.pricing, Tiered):
                d = local_day(now)
                first = d if tariff.pricing.block == "day" else d.replace(day=1)
                if tariff.pricing.block == "day":
                    after = d + timedelta(days=1)
                else:
                    after = (first + timedelta(days=32)).replace(day=1)
                start, end = day_start(first), day_start(after)
                tiers, floor = [], Decimal(0)
                for t in tariff.pricing.tiers:
                    tiers.append((floor, t.unit_rate_p_per_kwh))
                    floor = t.up_to_kwh if t.up_to_kwh is not None else floor
                return [_Window(start, end, tariff, "block", 0, tiers, now)]
            rates = [r for r in (acc.current_rate(now), acc.next_rate(now)) if r is not None]
        except TariffError:
            return []
        return [self._window(r, now) for r in rates if r.start is not None]

    def _window(self, r: Rate, now: datetime) -> _Window:
        assert r.start is not None
        tariff = self.consumption_tariff(r)
        end = r.until if r.until is not None else r.start + RATE_HORIZON
        tier = 0
        if isinstance(tariff.pricing, TimeOfUse):
            tier = min(tariff.pricing.rate_names().index(r.name) + 1, MAX_TOU_TIER)
        return _Window(r.start, end, tariff, r.name, tier, [(Decimal(0), r.unit_price_p_per_kwh)], now)

    def consumption_tariff(self, r: Rate) -> Tariff:
        for s in self.consumption.supplies.values():
            if s.accumulator.schedule.tariff_id == r.tariff.tariff_id:
                return s.accumulator.schedule.version(r.tariff)
        raise LookupError(r.tariff)

    def _tti(self, i: int, w: _Window, parent: sep2.Element | None = None) -> sep2.Element:
        href = f"/tp/{i}/rc/0/tti/{w.start_epoch}"
        status = sep2.EVENT_ACTIVE if w.start <= w.now < w.end else sep2.EVENT_SCHEDULED
        return sep2.time_tariff_interval(
            href,
            sep2.mrid(self.server.hub_id, href, w.tariff.tariff_id, str(w.tariff.version)),
            f"{w.name} (v{w.tariff.version})",
            w.start_epoch,
            status,
            int(w.now.timestamp()),
            w.start_epoch,
            int((w.end - w.start).total_seconds()),
            (f"{href}/cti", len(w.prices)),
            w.tou_tier,
            parent,
        )

    async def time_tariff_intervals(self, request: web.Request) -> web.Response:
        i, supply = self._supply(request)
        q = self.server._paging(request)
        windows = self._windows(supply)
        if request.path.endswith("/acttti"):
            windows = [w for w in windows if w.start <= w.now < w.end]
        doc = sep2.time_tariff_interval_list(request.path, len(windows))
        for w in q.window(windows):
            self._tti(i, w, doc)
        return self._xml(sep2.done(doc))

    def _find(self, request: web.Request) -> tuple[int, _Window]:
        i, supply = self._supply(request)
        for w in self._windows(supply):
            if str(w.start_epoch) == request.match_info["tti"]:
                return i, w
        raise web.HTTPNotFound(text=f"no current or next time tariff interval {request.match_info['tti']!r}")

    async def time_tariff_interval(self, request: web.Request) -> web.Response:
        return self._xml(self._tti(*self._find(request)))

    def _cti(self, i: int, w: _Window, n: int, parent: sep2.Element | None = None) -> sep2.Element:
        """The ``n``-th (1..) ConsumptionTariffInterval of a window: its tier's price."""
        floor, price = w.prices[n - 1]
        tiered = len(w.prices) > 1 or w.name == "block"
        href = f"/tp/{i}/rc/0/tti/{w.start_epoch}/cti/{n}"
        return sep2.consumption_tariff_interval(
            href, n if tiered else 0, price_units(price), int(floor), parent
        )

    async def consumption_tariff_intervals(self, request: web.Request) -> web.Response:
        i, w = self._find(request)
        q = self.server._paging(request)
        doc = sep2.consumption_tariff_interval_list(f"/tp/{i}/rc/0/tti/{w.start_epoch}/cti", len(w.prices))
        for n in q.window(range(1, len(w.prices) + 1)):
            self._cti(i, w, n, doc)
        return self._xml(sep2.done(doc))

    async def consumption_tariff_interval(self, request: web.Request) -> web.Response:
        i, w = self._find(request)
        token = request.match_info["cti"]
        if not token.isdigit() or not 1 <= int(token) <= len(w.prices):
            raise web.HTTPNotFound(text=f"no consumption tariff interval {token!r}")
        return self._xml(self._cti(i, w, int(token)))

    # -- live demand (metering) -------------------------------------------------------------
    def _demand_point(self, parent: sep2.Element | None = None) -> sep2.Element:
        assert self.live is not None
        return sep2.usage_point(
            DEMAND_UPT,
            sep2.mrid(self.server.hub_id, DEMAND_UPT),
            f"electricity supply {self.live.meter or ''}".strip(),
            SERVICE_KIND["electricity"],
            self.server.lfdi,
            (f"{DEMAND_UPT}/mr", 1),
            parent,
        )

    async def demand_usage_points(self, request: web.Request) -> web.Response:
        self._admit(request)
        doc = sep2.usage_point_list("/dupt", 1)
        for _ in self.server._paging(request).window([0]):
            self._demand_point(doc)
        return self._xml(sep2.done(doc))

    async def demand_usage_point(self, request: web.Request) -> web.Response:
        self._admit(request)
        return self._xml(self._demand_point())

    def _demand_reading(self, parent: sep2.Element | None = None) -> sep2.Element:
        return sep2.meter_reading(
            DEMAND_MR, sep2.mrid(self.server.hub_id, DEMAND_MR), "instantaneous demand (net, W)", None, parent
        )

    async def demand_meter_readings(self, request: web.Request) -> web.Response:
        self._admit(request)
        doc = sep2.meter_reading_list(f"{DEMAND_UPT}/mr", 1)
        for _ in self.server._paging(request).window([0]):
            self._demand_reading(doc)
        return self._xml(sep2.done(doc))

    async def demand_meter_reading(self, request: web.Request) -> web.Response:
        self._admit(request)
        return self._xml(self._demand_reading())

    async def demand_reading_type(self, request: web.Request) -> web.Response:
        self._admit(request)
        return self._xml(
            sep2.reading_type(
                f"{DEMAND_MR}/rt",
                accumulation=ACCUMULATION_INSTANTANEOUS,
                commodity=COMMODITY_ELECTRICITY,
                flow_direction=FLOW_FORWARD,
                interval_length=None,
                kind=KIND_POWER,
                power_of_ten=0,
                uom=UOM_W,
            )
        )

    async def demand_reading(self, request: web.Request) -> web.Response:
        """The latest net power (W), from the same :class:`LivePower` the IHD's SSE pushes."""
        self._admit(request)
        assert self.live is not None
        now = self.live.current()
        if now is None:
            raise web.HTTPNotFound(text="the electricity meter has not reported power yet")
        at = int(datetime.fromisoformat(now["time"]).timestamp())
        return self._xml(sep2.reading(int(now["watts"]), QUALITY_VALID, at, 0, href=f"{DEMAND_MR}/r"))

    # -- messaging --------------------------------------------------------------------------
    def _program(self, request: web.Request) -> None:
        self._admit(request)
        if request.match_info.get("mp") != "0":
            raise web.HTTPNotFound(text="this hub has one messaging program, 0 (the supplier's)")

    def _program_doc(self, parent: sep2.Element | None = None) -> sep2.Element:
        now = self.now()
        return sep2.messaging_program(
            "/msg/0",
            sep2.mrid(self.server.hub_id, "/msg/0"),
            "supplier messages",
            "en-GB",
            ("/msg/0/actxt", len(self.messages.messages(now))),
            ("/msg/0/txt", len(self.messages.messages(now, scheduled=True))),
            parent,
        )

    async def messaging_programs(self, request: web.Request) -> web.Response:
        self._admit(request)
        doc = sep2.messaging_program_list("/msg", 1)
        for _ in self.server._paging(request).window([0]):
            self._program_doc(doc)
        return self._xml(sep2.done(doc))

    async def messaging_program(self, request: web.Request) -> web.Response:
        self._program(request)
        return self._xml(self._program_doc())

    def _text(self, m: Message, now: datetime, parent: sep2.Element | None = None) -> sep2.Element:
        ident = message_token(m)
        start = m.start if m.start is not None else m.received
        end = m.expires if m.expires is not None else start + int(MESSAGE_WITHOUT_END.total_seconds())
        t = int(now.timestamp())
        return sep2.text_message(
            f"/msg/0/txt/{ident}",
            sep2.mrid(self.server.hub_id, "msg", m.sender, m.message_id),
            m.received,
            sep2.EVENT_ACTIVE if start <= t else sep2.EVENT_SCHEDULED,
            t,
            start,
            max(end - start, 0),
            # A data service's message names the service (2030.5 has no field to mark a third
            # party: the hub's own display does); a supplier's its sender, as before.
            m.sender_name if m.third_party and m.sender_name else m.sender,
            min(m.priority, 3),
            m.text,
            parent,
        )

    async def text_messages(self, request: web.Request) -> web.Response:
        self._program(request)
        q = self.server._paging(request)
        now = self.now()
        active_only = request.path.endswith("/actxt")
        msgs = self.messages.messages(now, scheduled=not active_only)
        doc = sep2.text_message_list(request.path, len(msgs))
        for m in q.window(msgs):
            self._text(m, now, doc)
        return self._xml(sep2.done(doc))

    async def text_message(self, request: web.Request) -> web.Response:
        self._program(request)
        now = self.now()
        for m in self.messages.messages(now, scheduled=True):
            if message_token(m) == request.match_info["id"]:
                return self._xml(self._text(m, now))
        raise web.HTTPNotFound(text=f"no message {request.match_info['id']!r}")


def message_token(m: Message) -> str:
    """A message's path segment: stable, and free of the sender's and id's own characters."""
    return sep2.mrid("msg", m.sender, m.message_id)[:16].lower()


@dataclass(frozen=True)
class _Window:
    """A rate's time window: its prices as (lower bound kWh, p/kWh), one per tier."""

    start: datetime
    end: datetime
    tariff: Tariff
    name: str
    tou_tier: int
    prices: list[tuple[Decimal, Decimal]]
    now: datetime

    @property
    def start_epoch(self) -> int:
        return int(self.start.timestamp())
