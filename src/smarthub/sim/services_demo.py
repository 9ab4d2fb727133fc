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
  homes (``python -m smarthub_services.topup_provider``), delivered by the demo's collector.

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
from datetime import date, timedelta
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
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.model.tariff import Flat, RatePeriod, Tariff, TimeOfUse
from smarthub.sim.demo import DemoRun, free_port

SUPPLIER = "DEMO-SUPPLIER"
ADVISOR = "TARIFF-ADVISOR"
OPERATOR = "GDSC-OPS"
ADVISED = 3  # homes the advisor advises at the end of the day
TOPPED_UP = 2  # prepaid homes the top-up provider tops up
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
    consents: dict[str, str] = field(default_factory=dict)  # premises -> consent id
    workdir: Path = Path()

    async def finish(self, until: date, follow_s: float = 30.0) -> dict[str, Any]:
        """Run the services once (the advisor for the year before ``until``, one top-up per prepaid
        home, each followed to the meter's verdict for up to ``follow_s`` while the fleet keeps
        being pulled); their outcome."""
        advice = {}
        for h in self.homes[:ADVISED]:
            advice[h.premises_id] = await self._advise(h, until)
        topups = {}
        for h in [h for h in self.homes if h.prepaid][:TOPPED_UP]:
            topups[h.premises_id] = await self._top_up(h, follow_s)
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
        self.server.should_exit = True
        await self.serving

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

    async def _service(self, module: str, creds: tuple[str, str], *args: str) -> dict[str, Any]:
        """Run one service as its own process (its credentials in its environment); its JSON
        answer (the last JSON object it printed), or ``{"error": …}`` with its stderr."""
        env = {**os.environ, "SERVICE_CLIENT_SECRET": creds[1], "PYTHONPATH": _services_path()}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, "--api", self.base, "--client-id", creds[0], *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        stdout, stderr = await asyncio.wait_for(proc.communicate(), SUBPROCESS_TIMEOUT)
        if proc.returncode != 0:
            return {"error": stderr.decode(errors="replace").strip()[-500:], "exit": proc.returncode}
        text = stdout.decode()
        try:
            found: dict[str, Any] = json.loads(text)
            return found
        except ValueError:  # a JSON object a line (the top-up provider's receipts)
            lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
            return lines[-1] if lines else {"output": text.strip()}


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


def _onboard(run: DemoRun) -> tuple[tuple[str, str], tuple[str, str]]:
    """The advisor applies and the operator approves it; the supplier's client for its top-up
    agent. The two OAuth2 clients' (id, secret)."""
    now = run.clock.now()
    services = DataServices(run.store.engine, AuditLog(run.store.engine))
    application = Application(
        "Cheaper Tariffs Ltd",
        "tariff advice",
        frozenset({DataKind.READINGS, DataKind.IHD_MESSAGES}),
        Granularity.HALF_HOURLY,
        30,
    )
    services.apply(ADVISOR, application, now)
    clients = ClientRegistry(run.store.engine)
    _, creds = Onboarding(services, clients).decide(ADVISOR, Decision.APPROVE, "", OPERATOR, now)
    assert creds is not None
    agent = clients.register(SUPPLIER, frozenset({"commands:write", "commands:read"}), now)
    return (creds.client_id, creds.client_secret), agent


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
    homes = await asyncio.to_thread(_homes, run)
    await asyncio.to_thread(_register, run, homes)
    now = run.clock.now()
    plan = PullPlan(store)
    for tariff in demo_tariffs(cfg.sim_start.date()):
        await asyncio.to_thread(
            distribute_tariff, store, plan, run.signer, tariff, "electricity", now,
            premises=[h.premises_id for h in homes],
        )  # fmt: skip
    advisor, agent = await asyncio.to_thread(_onboard, run)

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
    demo = ServicesDemo(run, f"http://{host}:{port}", server, serving, homes, advisor, agent)
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
    return demo


__all__ = ["ADVISOR", "SUPPLIER", "ServicesDemo", "demo_tariffs", "start_services"]
