"""``smarthub demo --services``: the example third-party services against the demo's GDSC.

The demo's GDSC serves its data services API (FastAPI under uvicorn, in the demo's event loop, on
the simulated clock) and the services run as the outside programs they are — separate processes
that know the API's URL and their OAuth2 credentials and nothing else (``smarthub_services``):

* the registration a GDSC would hold: each home's occupant (``C-<premises>``, a tenancy since a
  year before the run) and its electricity supplier ``DEMO-SUPPLIER``;
* three electricity tariffs distributed to every home (signed ``tariff.update`` commands through
  the pull plan, so the hubs get them and the GDSC's catalogue, ``GET /v1/tariffs``, lists them);
* the **tariff advisor** applies (half-hourly readings, and ``ihd-messages`` for its advice on the
  display) and is approved by the GDSC operator (its client limited to the approval), every
  occupant consents to both through the API (90 days); at the end of the day it advises up to
  :data:`ADVISED` homes, each a run of ``python -m smarthub_services.tariff_advisor --notify``
  against the API, which queues the advice for the home's display as the advisor's message;
* the **top-up provider** acts for the supplier with an OAuth2 client the GDSC registered to it
  (command scopes only) and takes one card payment for each of up to :data:`TOPPED_UP` prepaid
  homes (``python -m smarthub_services.topup_provider``), delivered by the demo's collector;
* the **demand-response aggregator** applies for half-hourly readings and ``demand-response`` and
  is approved; up to :data:`DR_HOMES` occupants consent to both. Each of those hubs gets the
  home automation the services' end-to-end tests give it (:mod:`smarthub.sim.home_automation`:
  the hub's real DRLC client and appliance controller on its management interface, an EV
  charger's smart plug on its HAN, a sub-meter kept home, the car's 7 kW behind the home's meter);
  the occupant asks for a 4-hour charge 16:00-20:00 every day. The aggregator enrols the homes
  and dispatches one 50 % duty-cycle event 17:00-18:00 on the last day (``--without-forecast``:
  a demo's homes have no like day to forecast from), follows it after 20:00 (the GDSC pulls the
  hub's DrResponses) and, after the day, settles
  (``--min-baseline-days 1``: with fewer than 10 like days the statement is provisional, with none
  the event stays pending and the JSON says why);
* **appliance health** applies for appliance data and is approved; the same occupants consent;
  every home of a ``--services`` demo has the fleet's smart plugs (``DemoConfig.plugs_everywhere``)
  and shares them under that consent, so after the day the service assesses each home's plugs
  over the week before the day's end (a demo day gives one whole day: ``insufficient-data``,
  as the service says, never "ok").

The OAuth2 access tokens live :data:`TOKEN_LIFETIME` of simulated time (the API's clock is the
simulation's: at the default 60 s a day, 15 simulated minutes are 0.6 s of wall time).
The outcome is a JSON object (:meth:`ServicesDemo.finish`), printed by the demo before its last line.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import urllib.request
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import select

from smarthub.gdsc.api.app import create_app
from smarthub.gdsc.api.auth.clients import ClientRegistry
from smarthub.gdsc.api.auth.onboarding import Onboarding
from smarthub.gdsc.api.auth.tokens import TokenStore
from smarthub.gdsc.commands.desk import CommandDesk
from smarthub.gdsc.commands.tariffs import distribute_tariff
from smarthub.gdsc.fleet.registry import hubs, meters
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.consent_sync import syncing_parties
from smarthub.gdsc.governance.guard import AccessGuard
from smarthub.gdsc.governance.parties import (
    DataKind,
    Fuel,
    Granularity,
    Party,
    Role,
    SupplyPeriod,
    Tenancy,
)
from smarthub.gdsc.governance.services import Application, DataServices, Decision
from smarthub.gdsc.incidents.services_page import service_rows
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.hub.appliances import START_GRACE, Appliance
from smarthub.hub.automation import ApplianceRun
from smarthub.model.tariff import LONDON, Flat, RatePeriod, Tariff, TariffSchedule, TimeOfUse
from smarthub.sim.demo import HALF_HOUR, DemoConfig, DemoRun, free_port
from smarthub.sim.home_automation import HomeAutomation, add_home_automation
from smarthub.sim.smart_plug import SmartPlugSimulator, SwitchedLoad

SUPPLIER = "DEMO-SUPPLIER"
ADVISOR = "TARIFF-ADVISOR"
OPERATOR = "GDSC-OPS"
AGGREGATOR = "DR-AGGREGATOR"
HEALTH = "APPLIANCE-HEALTH"
ADVISED = 3  # homes the advisor advises at the end of the day
TOPPED_UP = 2  # prepaid homes the top-up provider tops up
DR_HOMES = 3  # homes enrolled with the aggregator, and assessed by appliance health
EV = "EV charger"
EV_W = 7000
EV_CATEGORY = 1 << 16  # 2030.5 DeviceCategoryType: electric vehicle
CHARGE = (time(16, 0), time(20, 0))  # the occupant's EV charge every day, local time
EVENT = (time(17, 0), 60, 50)  # the DR event: local start, minutes, duty cycle %
DR_RATE = "0.30"  # £/kWh
OPERATOR_PAGE = (
    "service_id",
    "status",
    "data_kinds",
    "live_consents",
    "premises",
    "reads_week",
    "refused_week",
)
FOLLOW_ROUNDS = 4  # GDSC windows run after the day, at most, for the hubs' DrResponses to come in
TOKEN_LIFETIME = timedelta(days=30)
SUBPROCESS_TIMEOUT = 300.0


def demo_tariffs(effective: date) -> list[Tariff]:
    """The electricity tariffs the demo's supplier distributes: flat, Economy 7, peak saver."""
    week = dict.fromkeys(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "all")
    return [
        Tariff(
            tariff_id="DEMO-FLAT",
            version=1,
            effective_from=effective,
            name="Standard variable",
            standing_charge_p_per_day=Decimal("45.00"),
            pricing=Flat(unit_rate_p_per_kwh=Decimal("24.50")),
        ),
        Tariff(
            tariff_id="DEMO-E7",
            version=1,
            effective_from=effective,
            name="Economy 7",
            standing_charge_p_per_day=Decimal("50.00"),
            pricing=TimeOfUse(
                rates={"day": Decimal("30.00"), "night": Decimal("13.00")},
                day_types={
                    "all": (
                        RatePeriod(start="00:30", end="07:30", rate="night"),
                        RatePeriod(start="07:30", end="00:30", rate="day"),
                    )
                },
                week=week,  # type: ignore[arg-type]
            ),
        ),
        Tariff(
            tariff_id="DEMO-PEAK",
            version=1,
            effective_from=effective,
            name="Peak saver",
            standing_charge_p_per_day=Decimal("48.00"),
            pricing=TimeOfUse(
                rates={"off-peak": Decimal("21.00"), "peak": Decimal("38.00")},
                day_types={
                    "all": (
                        RatePeriod(start="19:00", end="16:00", rate="off-peak"),
                        RatePeriod(start="16:00", end="19:00", rate="peak"),
                    )
                },
                week=week,  # type: ignore[arg-type]
            ),
        ),
    ]


@dataclass(frozen=True, slots=True)
class Home:
    premises_id: str
    meter_id: str  # its electricity meter
    prepaid: bool


@dataclass
class ServicesDemo:
    run: DemoRun
    base: str
    server: uvicorn.Server
    serving: asyncio.Task[None]
    homes: list[Home]
    advisor: tuple[str, str]  # its OAuth2 client id and secret
    agent: tuple[str, str]  # the top-up provider's client, registered to the supplier
    aggregator: tuple[str, str]
    health: tuple[str, str]
    consents: dict[str, str] = field(default_factory=dict)  # premises -> consent id (to the advisor)
    dr_consents: dict[str, str] = field(default_factory=dict)  # to the aggregator
    health_consents: dict[str, str] = field(default_factory=dict)  # to appliance health
    automation: dict[str, HomeAutomation] = field(default_factory=dict)  # premises -> its hub's
    dr: dict[str, Any] = field(default_factory=dict)  # the aggregator's answers so far
    workdir: Path = Path()

    async def finish(self, until: date, follow_s: float = 30.0) -> dict[str, Any]:
        """Run the services once (the advisor for the year before ``until``, one top-up per prepaid
        home, each followed to the meter's verdict for up to ``follow_s`` while the fleet keeps
        being pulled); their outcome."""
        # The top-ups first: they need the fleet still pulled (the collector delivers the voucher
        # and brings back the meter's verdict), the advice only reads what is stored.
        topups = {}
        for h in [h for h in self.homes if h.prepaid][:TOPPED_UP]:
            topups[h.premises_id] = await self._top_up(h, follow_s)
        advice = {}
        for h in self.homes[:ADVISED]:
            advice[h.premises_id] = await self._advise(h, until)
        return {
            "services": {
                "api": self.base,
                "advisor": ADVISOR,
                "consents": len(self.consents),
                "advice": advice,
                "topups": topups,
            }
        }

    async def stop(self) -> None:
        for auto in self.automation.values():
            await auto.stop()
        self.server.should_exit = True
        await self.serving

    # -- demand response and appliance health ------------------------------------------------
    def _dr_homes(self) -> list[Home]:
        return [h for h in self.homes if h.premises_id in self.automation]

    async def consent_to_the_others(self) -> None:
        """The homes with automation consent, through the API, to the aggregator (their
        readings and control of their appliances in events) and to appliance health (their
        plugs' data only). Done once the simulated day started: a consent is live from when it
        is granted, and the demo's clock is set back to the day's start when the day begins."""
        tokens = TokenStore(self.run.store.engine)
        expires = (self.run.clock.now() + timedelta(days=90)).isoformat()
        for h in self._dr_homes():
            token = tokens.issue(f"C-{h.premises_id}", self.run.clock.now())
            url = f"{self.base}/v1/premises/{h.premises_id}/consents"
            for party, kinds, purpose, kept in (
                (AGGREGATOR, ["readings", "demand-response"], "demand response", self.dr_consents),
                (HEALTH, ["appliances"], "appliance health", self.health_consents),
            ):
                body: dict[str, Any] = {
                    "party_id": party, "data_kinds": kinds, "granularity": "half-hourly",
                    "purpose": purpose, "expires_at": expires,
                }  # fmt: skip
                if "readings" in kinds:
                    body["meters"] = [h.meter_id]
                answer = await asyncio.to_thread(_post, url, token, body)
                kept[h.premises_id] = answer["consent_id"]

    async def dispatch_demand_response(self, day: date) -> None:
        """Before the day (from :func:`start_services`): the occupants' consents to the
        aggregator and appliance health, each occupant's EV charge asked for at their hub for
        every day of the run (:data:`CHARGE`, no slack: on the last it must run through the
        event), the homes enrolled and one event (:data:`EVENT`) dispatched for ``day``; the GDSC
        queues it to each hub as a signed ``drlc.event``, delivered at the hub's first pull."""
        await self.consent_to_the_others()
        first = self.run.cfg.sim_start.astimezone(LONDON).date()
        for d in (first + timedelta(days=n) for n in range((day - first).days + 1)):
            start, deadline = (datetime.combine(d, t, LONDON) for t in CHARGE)
            charge = ApplianceRun.constant(EV, Decimal(EV_W) / 1000, deadline - start)
            for auto in self.automation.values():
                auto.controller.request(EV, charge, start, deadline)  # the occupant, at the hub's app
        homes = [f"{h.premises_id}:{h.meter_id}" for h in self._dr_homes()]
        enrol = ["enrol", *(a for home in homes for a in ("--home", home))]
        self.dr["enrol"] = await self._dr(*enrol, "--until", (day + timedelta(days=1)).isoformat())
        at, minutes, duty = EVENT
        event_start = datetime.combine(day, at, LONDON)
        self.dr["dispatch"] = await self._dr(
            "dispatch", "--start", event_start.isoformat(), "--minutes", str(minutes),
            "--category", "electric-vehicle", "--duty-cycle", str(duty), "--without-forecast",
        )  # fmt: skip

    async def demand_response(self, day: date) -> dict[str, Any]:
        """During the day (a task started with it): the hubs' automation runs, and once the
        charge is over the aggregator follows the event (the GDSC pulls each hub's DrResponses
        at its next pull). What the aggregator answered, before the day and now."""
        run = self.run
        for auto in self.automation.values():
            auto.start(run.cfg.end + timedelta(hours=1))
        await run.clock.sleep_until(datetime.combine(day, CHARGE[1], LONDON) + timedelta(minutes=30))
        self.dr["followed"] = await self._dr("status")
        return dict(self.dr)

    async def after_the_day(self, day: date) -> dict[str, Any]:
        """Once the day's readings are in: the events' status (the hubs' responses), the
        settlement, what each EV plug's relay did (the simulator's log), appliance health.

        Following an event has the GDSC queue a ``drlc.responses`` to the hub (once the event
        was delivered), answered when its scheduler next delivers the hub's queued commands (in
        order, behind the hub's others) and taken in at the next follow-up. A hub whose turn
        fell past the day's last window (a busy machine) has not answered yet: then the GDSC
        runs one more window and the event is followed again, up to :data:`FOLLOW_ROUNDS`
        times, until every event's responses were pulled."""
        status = await self._dr("status")
        for _ in range(FOLLOW_ROUNDS):
            if isinstance(status, list) and all(s.get("responses_pulled_at") for s in status):
                break
            now = self.run.clock.now()
            window = now.replace(minute=now.minute - now.minute % 30, second=0, microsecond=0)
            await self.run.gdsc.run_windows(until=window + 2 * HALF_HOUR, first_window=window)
            status = await self._dr("status")
        settlement = await self._dr("settle", "--rate", DR_RATE, "--min-baseline-days", "1")
        at, minutes, _ = EVENT
        lo = datetime.combine(day, at, LONDON)
        hi = lo + timedelta(minutes=minutes)
        plugs = {p: _plug_report(a, lo, hi) for p, a in self.automation.items()}
        premises = [a for h in self._dr_homes() for a in ("--premises", h.premises_id)]
        health = await self._service(
            "smarthub_services.appliance_health", self.health, *premises,
            "--until", (day + timedelta(days=1)).isoformat(), "--days", "7", refusals_answered=True,
        )  # fmt: skip
        return {
            "demand_response": {
                "aggregator": AGGREGATOR,
                "consents": len(self.dr_consents),
                "status": status,
                "settlement": settlement,
                "ev_plugs": plugs,
            },
            "appliance_health": {"service": HEALTH, "consents": len(self.health_consents), **health},
            # What the operator console's /services page lists for each data service.
            "operator_page": [
                {k: r[k] for k in OPERATOR_PAGE}
                for r in await asyncio.to_thread(service_rows, self.run.store.engine, self.run.clock.now())
            ],
        }

    async def _dr(self, *args: str) -> Any:
        ledger = self.workdir / "dr-aggregator.sqlite"
        return await self._service(
            "smarthub_services.dr_aggregator", self.aggregator, "--ledger", str(ledger), *args,
            refusals_answered=True,
        )  # fmt: skip

    # -- the services, as outside programs ---------------------------------------------------
    async def _advise(self, h: Home, until: date) -> dict[str, Any]:
        out = await self._service(
            "smarthub_services.tariff_advisor",
            self.advisor,
            "--premises", h.premises_id, "--meter", h.meter_id, "--current", "DEMO-FLAT",
            "--until", until.isoformat(), "--notify",
        )  # fmt: skip
        if "error" in out:
            return out
        keys = (
            "recommended",
            "saving",
            "half_hours",
            "expected_half_hours",
            "message",
            "notified",
            "notification",
        )
        return {k: out[k] for k in keys if k in out}

    async def _top_up(self, h: Home, follow_s: float) -> dict[str, Any]:
        ledger = self.workdir / f"topup-provider-{h.premises_id}.sqlite"  # its receipts are this home's
        args = ("--ledger", str(ledger), "--premises", h.premises_id, "--meter", h.meter_id)
        out = await self._service(
            "smarthub_services.topup_provider", self.agent, *args, "--amount", "5.00", "--method", "card"
        )
        for _ in range(int(follow_s * 2)):  # follow it to the meter's verdict (the collector delivers it)
            if "error" in out or "credited" in str(out.get("receipt", "")):
                break
            await asyncio.sleep(0.5)
            out = await self._service("smarthub_services.topup_provider", self.agent, "--ledger", str(ledger))
        return out

    async def _service(
        self, module: str, creds: tuple[str, str], *args: str, refusals_answered: bool = False
    ) -> Any:
        """Run one service as its own process (its credentials in its environment); its JSON
        answer (the last JSON object it printed), or ``{"error": …}`` with its stderr."""
        env = {**os.environ, "SERVICE_CLIENT_SECRET": creds[1], "PYTHONPATH": _services_path()}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, "--api", self.base, "--client-id", creds[0], *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(proc.communicate(), SUBPROCESS_TIMEOUT)
        # Exit 2 (the GDSC refused something) comes with the JSON saying what, per home: the
        # aggregator's and appliance health's answers are kept; the others' are errors.
        answered = proc.returncode == 2 and refusals_answered and stdout.strip()
        if proc.returncode != 0 and not answered:
            return {"error": stderr.decode(errors="replace").strip()[-500:], "exit": proc.returncode}
        text = stdout.decode()
        try:
            found: Any = json.loads(text)  # exit 2: the GDSC refused something, said in the JSON
            return found
        except ValueError:  # a JSON object a line (the top-up provider's receipts)
            lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
            return lines[-1] if lines else {"output": text.strip()}


def _plug_report(auto: HomeAutomation, lo: datetime, hi: datetime) -> dict[str, Any]:
    """What a home's EV charging did: the hub's runs (its appliance controller) and, from the
    simulated plug's own log (the ground truth the hub's DrResponses can be held against), its
    switchings, the minutes it was on within the event (60 for a charge the event left alone,
    30 at a 50 % duty cycle) and the energy it metered in all."""
    plug = auto.plugs[EV]
    runs = [
        {"state": str(r.state), "start": r.start.isoformat() if r.start else None}
        for r in auto.controller.runs()
    ]
    on = False
    for at, state in plug.log:
        if at <= lo:
            on = state
    t, on_minutes = lo, 0.0
    for at, state in plug.log:
        if lo < at < hi:
            if on:
                on_minutes += (at - t).total_seconds() / 60
            on, t = state, at
    if on:
        on_minutes += (hi - t).total_seconds() / 60
    return {
        "runs": runs,
        "switches": [[at.isoformat(), state] for at, state in plug.log],
        "on_in_event_minutes": round(on_minutes, 1),
        "metered_wh": plug.energy_wh,
    }


def _services_path() -> str:
    """Where ``smarthub_services`` is (found, not imported: the platform never loads a service)."""
    spec = importlib.util.find_spec("smarthub_services")
    assert spec is not None and spec.origin is not None, "smarthub_services is not installed"
    here = str(Path(spec.origin).parent.parent)
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)


def _homes(run: DemoRun) -> list[Home]:
    """Each active hub's premises with its first electricity meter, prepaid or not."""
    prepaid = {h.spec.hub_id for h in run.fleet.homes if h.consumer.ledger is not None}
    q = (
        select(hubs.c.hub_id, hubs.c.premises_id, meters.c.meter_id)
        .join(meters, meters.c.hub_id == hubs.c.hub_id)
        .where(hubs.c.status == "active", meters.c.fuel == "electricity")
        .order_by(hubs.c.premises_id, meters.c.meter_id)
    )
    with run.store.engine.connect() as conn:
        rows = conn.execute(q).all()
    first: dict[str, Home] = {}
    for hub_id, premises_id, meter_id in rows:
        first.setdefault(premises_id, Home(premises_id, meter_id, hub_id in prepaid))
    return list(first.values())


def _register(run: DemoRun, homes: list[Home]) -> None:
    """The occupants and the supplier, as a GDSC's registration of the premises records them."""
    assert run.signer is not None
    parties = syncing_parties(run.store, run.signer, run.clock)
    since = run.cfg.sim_start - timedelta(days=365)
    parties.add_party(Party(SUPPLIER, Role.SUPPLIER, "Northern Power"))
    parties.add_party(Party(OPERATOR, Role.OPERATOR, "GDSC operations"))
    for h in homes:
        parties.add_party(Party(f"C-{h.premises_id}", Role.CONSUMER))
        parties.add_tenancy(Tenancy(f"T-{h.premises_id}-1", h.premises_id, f"C-{h.premises_id}", since))
        parties.add_supply_period(SupplyPeriod(h.premises_id, Fuel.ELECTRICITY, SUPPLIER, since))


APPLICATIONS = {
    ADVISOR: Application(  # its advice on the home's display too (ihd-messages)
        "Cheaper Tariffs Ltd",
        "tariff advice",
        frozenset({DataKind.READINGS, DataKind.IHD_MESSAGES}),
        Granularity.HALF_HOURLY,
        30,
    ),
    AGGREGATOR: Application(
        "Flex Aggregation Ltd",
        "demand response",
        frozenset({DataKind.READINGS, DataKind.DEMAND_RESPONSE}),
        Granularity.HALF_HOURLY,
        90,
    ),
    HEALTH: Application(
        "Appliance Health Ltd",
        "appliance health",
        frozenset({DataKind.APPLIANCES}),
        Granularity.HALF_HOURLY,
        30,
    ),
}


def _onboard(run: DemoRun) -> dict[str, tuple[str, str]]:
    """The three services apply and the operator approves them; the supplier's client for its
    top-up agent (under ``SUPPLIER``). The OAuth2 clients' (id, secret) by party."""
    now = run.clock.now()
    services = DataServices(run.store.engine, AuditLog(run.store.engine))
    clients = ClientRegistry(run.store.engine)
    out = {}
    for party, application in APPLICATIONS.items():
        services.apply(party, application, now)
        _, creds = Onboarding(services, clients).decide(party, Decision.APPROVE, "", OPERATOR, now)
        assert creds is not None
        out[party] = (creds.client_id, creds.client_secret)
    out[SUPPLIER] = clients.register(SUPPLIER, frozenset({"commands:write", "commands:read"}), now)
    return out


def _automate(run: DemoRun, homes: list[Home]) -> dict[str, HomeAutomation]:
    """Each home's hub gets its DRLC client and appliance controller (on its management
    interface) and an EV charger's smart plug on its HAN, as the services' end-to-end tests wire
    them; not started (the simulated day starts them)."""
    by_premises = {h.spec.premises_id: h for h in run.fleet.homes}
    tariff = demo_tariffs(run.cfg.sim_start.date())[0]
    # A run may start this late: two wall seconds of the accelerated day (at 60 s a day, 48
    # simulated minutes), as a busy machine's event loop can wake the controller that late.
    grace = max(START_GRACE, timedelta(seconds=2 * run.cfg.speed))
    out = {}
    for h in homes:
        home = by_premises[h.premises_id]
        n = home.spec.index
        plug = SmartPlugSimulator(
            f"00:0d:6f:0e:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}:00:01",
            [EV_W],
            timedelta(hours=1),
            run.cfg.sim_start,
            standby_w=EV_W,  # a car charges at a steady 7 kW for as long as it is powered
        )
        ev = Appliance(EV, plug.eui64, EV_CATEGORY, interruptible=True, min_duty_percent=0)
        for household in home.households.values():  # the car charges behind the home's meter
            household.extra_loads.append(SwitchedLoad(plug, EV_W))
        out[h.premises_id] = add_home_automation(
            home, TariffSchedule([tariff]), [(ev, plug)], start=run.cfg.sim_start, start_grace=grace
        )
    return out


def _post(url: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


async def start_services(run: DemoRun, port: int = 0, workdir: Path | None = None) -> ServicesDemo:
    """Register the parties, serve the API, distribute the tariffs, onboard the services and the
    occupants' consents (module docstring)."""
    assert run.signer is not None, "the demo's GDSC signs commands"
    store, cfg = run.store, run.cfg
    # What follows happens "at the start of the day": the clock, running since the fleet was
    # set up, starts from the day's beginning again (the day starts it once more), so the
    # occupants' consents and the event dispatched are dated early in the day, not hours into it.
    run.clock.rebase()
    run.fleet.clock_rebased()
    homes = await asyncio.to_thread(_homes, run)
    await asyncio.to_thread(_register, run, homes)
    now = run.clock.now()
    plan = PullPlan(store)
    for tariff in demo_tariffs(cfg.sim_start.date()):
        await asyncio.to_thread(
            distribute_tariff, store, plan, run.signer, tariff, "electricity", now,
            premises=[h.premises_id for h in homes],
        )  # fmt: skip
    clients = await asyncio.to_thread(_onboard, run)
    automation = _automate(run, homes[:DR_HOMES])

    guard = AccessGuard(syncing_parties(store, run.signer, run.clock), AuditLog(store.engine), run.clock)
    tokens = TokenStore(store.engine)
    app = create_app(guard, tokens, CommandDesk.from_state(cfg.state, store), token_lifetime=TOKEN_LIFETIME)
    port = port or free_port(cfg.host)
    server = uvicorn.Server(
        uvicorn.Config(app, host=cfg.host, port=port, log_level="error", access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started or serving.done():
            break
        await asyncio.sleep(0.05)
    if not server.started:
        raise RuntimeError(f"the data services API did not start on port {port}")
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    demo = ServicesDemo(
        run, f"http://{host}:{port}", server, serving, homes, clients[ADVISOR], clients[SUPPLIER],
        clients[AGGREGATOR], clients[HEALTH], automation=automation,
    )  # fmt: skip
    demo.workdir = cfg.state / "services"
    demo.workdir.mkdir(parents=True, exist_ok=True)
    if workdir is not None:
        demo.workdir = workdir

    # Every occupant consents to the advisor through the API, as from their app.
    expires = (run.clock.now() + timedelta(days=90)).isoformat()
    for h in homes:
        token = tokens.issue(f"C-{h.premises_id}", run.clock.now())
        body = {
            "party_id": ADVISOR,
            "data_kinds": ["readings", "ihd-messages"],
            "granularity": "half-hourly",
            "purpose": "tariff advice, on my display",
            "expires_at": expires,
            "meters": [h.meter_id],
        }
        url = f"{demo.base}/v1/premises/{h.premises_id}/consents"
        answer = await asyncio.to_thread(_post, url, token, body)
        demo.consents[h.premises_id] = answer["consent_id"]
    await demo.dispatch_demand_response(last_day(cfg))
    return demo


def last_day(cfg: DemoConfig) -> date:
    """The run's last local day (the demand-response event's)."""
    return (cfg.end - timedelta(seconds=1)).astimezone(LONDON).date()


__all__ = [
    "ADVISOR", "AGGREGATOR", "HEALTH", "SUPPLIER", "ServicesDemo", "demo_tariffs", "last_day",
    "start_services",
]  # fmt: skip
