"""Weeks of a fleet's life in a chaos run: the events the GDSC's upkeep must carry (issue 24).

A chaos run (:mod:`smarthub.sim.chaos`) injects faults; this module schedules, from the same
seed, what happens to a fleet over weeks whether or not anything fails, each done the way the
GDSC does it in service (its lifecycle, party repository, supplier changes, tariff distribution),
so the GDSC's upkeep — CRL re-publication, renewals, supplier changes and their opening reads,
consent expiries, voucher re-sends — runs under the faults:

* **certificate renewals**: hub certificates are issued for a few days only
  (:func:`renewal_plan`: a third of the run, at least two days, and past the end of the long
  WAN outage), so each falls due for renewal
  inside the run, again and again over weeks, each hub at its own point of a spread over half
  the lead time (``HubLifecycle.renew_spread``); the upkeep renews them
  (``HubLifecycle.renew_due``), the hubs install them, the GDSC moves to them and revokes the
  superseded ones (a CRL at every renewal round);
* **revocations**: a hub's (``revoke_hub``: its data refused from then on, so the run expects
  its half-hours only up to what the GDSC held of every channel at the revocation), the
  collector's (a new collector certificate, the collector and its command deliveries restarted
  on it, the old one revoked: the hubs learn it with their pulls), the operator's (a new
  operator certificate, the GDSC's signer moved to it and the pending vouchers and undelivered
  commands signed again, :mod:`smarthub.gdsc.commands.rotation`, then the old one revoked:
  nothing queued is refused for its signer, ``commands_refused_signer``);
* **consents**: a third party's consents granted at some premises, some revoked before they
  expire, the others expiring inside the run (the upkeep pushes each expiry to the hubs);
* **changes of tenancy** (a move-in: the old occupant's consents revoked and pushed) and **of
  supplier** (the new supplier's keys to the hub, the opening read asked for once the instant
  has passed and stored);
* **tariff changes**: a new version of the electricity tariff to a share of the hubs;
* **firmware** (runs of 3 days or more): a good version rolled out in batches
  (:class:`~smarthub.gdsc.commands.firmware_rollout.FirmwareRollout`), then a bad one that
  silences the meter interfaces while on probation: the first batch's hub rolls it back on its
  own and the roll-out halts.

At the end :meth:`FleetLife.figures` counts, from the GDSC's store and the hubs' own state,
whether each took effect: ``renewals_due``/``renewals_done``, ``consent_expiries`` and
``consent_expiries_applied`` (at the hub), ``supplier_changes``/``opening_reads``,
``tariff_changes``/``tariffs_applied``, ``revocations``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from smarthub.gdsc.commands.firmware_rollout import FirmwareRollout
from smarthub.gdsc.commands.rotation import Resigned, resign_queued, rotate_operator
from smarthub.gdsc.commands.tariffs import distribute_tariff
from smarthub.gdsc.fleet.lifecycle import RENEW_COMMAND, HubLifecycle, renew_spread_of
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.fleet.registry import hub_commissioning
from smarthub.gdsc.governance.changes import move_in
from smarthub.gdsc.governance.consent_sync import SyncingPartyRepository, syncing_parties, version_of
from smarthub.gdsc.governance.parties import (
    Consent,
    DataKind,
    Fuel,
    Granularity,
    Party,
    SupplyPeriod,
    Tenancy,
)
from smarthub.gdsc.governance.parties import Role as PartyRole
from smarthub.gdsc.governance.supplier_change import opening_reads
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE, FAILED, urgent_work
from smarthub.gdsc.service import collector_tls_context
from smarthub.hub.firmware import build_package
from smarthub.sim.consumer import sample_electricity
from smarthub.sim.faults import HanGate

if TYPE_CHECKING:
    from smarthub.sim.demo import DemoRun

log = logging.getLogger(__name__)

SUPPLIER, NEW_SUPPLIER, GAS_SUPPLIER, THIRD_PARTY = "NORTHERN", "SOUTHERN", "SHIRE", "TP-ENERGY"
SETTLE = timedelta(hours=6)  # an event this long before the run's end has taken effect by then
FIRMWARE_DAYS = 3  # runs this long or longer roll firmware out
# No fault acts on the hub to be revoked for this long before (its last pulls are whole).
REVOKE_MARGIN = timedelta(minutes=30)
# A hub back from the run's longest outage has this long to get its renewal (re-queued once it
# has answered a pull, then delivered in the urgent lane) before its first certificate expires.
AWAY_MARGIN = timedelta(hours=12)


def renewal_plan(days: int, away_until: timedelta = timedelta(0)) -> tuple[int, timedelta, timedelta]:
    """(hub certificates' validity in days, how long before expiry the GDSC renews them, over
    how much of that lead time it spreads the fleet's renewals): the renewals fall due from
    half-way through a day's run, every 5 days of a month's (the lead time, 5 days then, longer
    than any fault keeps a hub away), each hub at its own point of the spread (half the lead
    time, at most half the time from the first renewal to the run's settling time before its
    end: the last renewal has time to be settled), so a round is not one burst
    of ``pki.certificate`` jobs that the hubs' top-ups queue behind.

    ``away_until``: when the longest fault that keeps a hub from the GDSC ends (from the run's
    start; the long WAN outage, ``sim.chaos.long_wan_outage``). The certificates the hubs start
    with are valid :data:`AWAY_MARGIN` past it: a hub cut off from before its renewal fell due
    can still install one before its certificate expires, as a deployment's lead time (30 days)
    outlasts its outages. Before, a 7-day run issued 2-day certificates and cut one hub off for
    3 days from its second hour: no GDSC could have renewed it in time, and the run counted a
    renewal missed."""
    validity = max(2, days // 3, math.ceil((away_until + AWAY_MARGIN) / timedelta(days=1)))
    first = max(SETTLE, min(timedelta(days=validity) / 2, timedelta(days=days) / 2))
    lead = timedelta(days=validity) - first
    spread = max(timedelta(0), min(lead / 2, (timedelta(days=days) - SETTLE - first) / 2))
    return validity, lead, spread


@dataclass(frozen=True, slots=True)
class Renewal:
    """A ``pki.certificate`` job as the count reads it: its state, the hub's verdict (None if it
    gave none), the serial it replaces, the certificate it carries, when it ended."""

    state: str
    verdict: str | None
    replaces: int
    certificate: Any  # x509.Certificate (anything with a serial_number in the tests)
    finished: datetime


def renewal_successors(renewals: list[Renewal], held: set[int]) -> dict[int, tuple[Any, datetime]]:
    """Each certificate's renewal the hub installed (by the serial it replaced), with the time
    it was installed by: one the hub answered ``applied`` (when its job ended), or one whose
    answer was lost but which the GDSC adopted from the hub's handshake (its job given up:
    ``HubLifecycle.adopt_renewed``), known by the GDSC holding it (``held``) or having renewed
    it in turn (another job replaces it); the hub installed it before its job was given up.
    Before, an adopted renewal counted as not done (and every later renewal of the hub with
    it): a hub whose answer the plan lost seemed to miss its renewal although the GDSC had
    moved to it."""
    replaced = {r.replaces for r in renewals}
    out: dict[int, tuple[Any, datetime]] = {}
    for r in renewals:
        if r.state == DONE and r.verdict == "applied":
            out[r.replaces] = (r.certificate, r.finished)
    for r in renewals:
        serial = r.certificate.serial_number
        if r.state == FAILED and r.replaces not in out and (serial in held or serial in replaced):
            out[r.replaces] = (r.certificate, r.finished)
    return out


@dataclass(frozen=True, slots=True)
class LifeEvent:
    kind: str
    start: timedelta  # from the start of the run (simulated)
    target: str  # hub id, premises id, or "gdsc"
    length: timedelta = timedelta(0)  # a consent's term


def plan_life(
    homes: list[Any],
    days: int,
    rng: random.Random,
    busy: Callable[[str, timedelta, timedelta], bool],
    revoke_after: timedelta = timedelta(0),
    unpowered: Callable[[str, timedelta, timedelta], bool] | None = None,
) -> list[LifeEvent]:
    """The run's life events, from the seed. ``busy(hub, start, end)``: whether a fault acts on
    the hub in that span (the hub revoked is one no fault touches in the hours before, so its
    last half-hours before the revocation are not a fault's loss); ``unpowered``: whether a
    power fault does (none may after its revocation: its last gasps would be refused);
    ``revoke_after``: the end of the network outages (a revoked hub's feeder lacks its voice)."""
    run = timedelta(days=days)
    events: list[LifeEvent] = []

    def at(earliest: timedelta, latest: timedelta) -> timedelta:
        span = max((latest - earliest).total_seconds(), 0)
        return earliest + timedelta(seconds=int(rng.uniform(0, span)) // 60 * 60)

    ids = [h.spec.hub_id for h in homes]
    premises = {h.spec.hub_id: h.spec.premises_id for h in homes}
    prepaid = {h.spec.hub_id for h in homes if "dlms" in h.spec.kind}  # the breaker meters' homes
    # Revocations: a hub no fault touches from a while before to the end (a revoked hub's last
    # gasps are refused, and its feeder's outage would lack its voice) and no top-up goes to,
    # after the network outages; the collector, mid-run.
    earliest = max(run / 3, revoke_after)
    when = at(earliest, max(earliest, run - SETTLE))
    calm = [
        h
        for h in ids
        if h not in prepaid
        and not busy(h, when - REVOKE_MARGIN, when)
        and not (unpowered is not None and unpowered(h, when, run))
    ]
    revoked = rng.choice(calm) if calm else None
    if revoked is not None:
        events.append(LifeEvent("revoke_hub", when, revoked))
    events.append(LifeEvent("revoke_collector", at(run / 4, run * 3 / 4), "gdsc"))
    others = [h for h in ids if h != revoked]
    n = max(2, len(homes) // 10)
    # Consents: granted in the first half, expiring (or revoked) before the run's last hours.
    for hub in rng.sample(others, min(n, len(others))):
        granted = at(timedelta(hours=1), run / 2)
        term = at(timedelta(hours=2), max(run - SETTLE - granted, timedelta(hours=2)))
        events.append(LifeEvent("consent", granted, premises[hub], term))
    for hub in rng.sample(others, min(max(1, n // 2), len(others))):
        granted = at(timedelta(hours=1), run / 3)
        events.append(LifeEvent("consent_revoked", granted, premises[hub], run))  # revoked at 2x
    for hub in rng.sample(others, min(max(1, n // 2), len(others))):
        events.append(LifeEvent("move_in", at(timedelta(hours=2), run - SETTLE), premises[hub]))
    for hub in rng.sample(others, min(n, len(others))):
        # Agreed in the first half (effective 3 hours on): the opening read has half a run to come.
        events.append(
            LifeEvent("supplier_change", at(timedelta(hours=1), run / 2 - timedelta(hours=3)), premises[hub])
        )
    # Firmware: a good version to the whole fleet in batches, then a bad one (it breaks the
    # meter interfaces: the hubs' health checks fail and they roll back; the roll-out halts).
    # Only in runs of days: a firmware command holds the hub's later commands (top-ups
    # included) for its probation, and a roll-out needs a round trip per batch.
    if days >= FIRMWARE_DAYS:
        events.append(LifeEvent("firmware", at(timedelta(hours=2), run / 4), "2.0.0"))
        events.append(LifeEvent("firmware_bad", at(run / 2, run * 3 / 4), "2.0.1"))
    tariffed = rng.sample(others, min(max(2, len(homes) // 4), len(others)))
    events.append(
        LifeEvent("tariff", at(timedelta(hours=1), run - timedelta(days=1, hours=6)), ",".join(tariffed))
    )
    # The operator certificate, drawn last (the earlier events of a seed stay as they were):
    # between the two firmware roll-outs, so no package is in flight under it (a package is a
    # build the operator signs; queued commands and vouchers the GDSC signs again).
    events.append(LifeEvent("revoke_operator", at(run / 3, run / 2 - SETTLE), "gdsc"))
    return sorted(events, key=lambda e: e.start)


class FleetLife:
    """The life events of one chaos run (module docstring), against its running GDSC."""

    def __init__(
        self, run: DemoRun, on_revoked: Callable[[str], None], gates: dict[str, HanGate] | None = None
    ) -> None:
        self.run = run
        self.gates = gates or {}
        self.rollouts: dict[str, FirmwareRollout] = {}
        self.cfg = run.cfg
        self.on_revoked = on_revoked
        self.state: Path = run.cfg.state
        self.parties: SyncingPartyRepository | None = None
        self.provisioned: dict[str, x509.Certificate] = {}  # hub -> the certificate it started with
        self.revoked_hubs: dict[str, datetime] = {}  # hub -> the GDSC held all its data until
        self.revoked_collector: int | None = None  # the old collector certificate's serial
        self.revoked_operator: int | None = None  # the old operator certificate's serial
        self.resigned: Resigned | None = None  # what the rotation signed again (both passes)
        # Told the new operator key and certificate (the run's own voucher issuers follow).
        self.on_operator: Callable[[ec.EllipticCurvePrivateKey, bytes], None] | None = None
        self.consents: list[Consent] = []
        self.revoked_consents: list[tuple[Consent, datetime]] = []
        self.moves: list[tuple[str, datetime]] = []
        self.supplier_changes: list[tuple[str, datetime]] = []
        self.tariff_jobs: list[int] = []
        self.done: dict[str, int] = {}

    def _lifecycle(self) -> HubLifecycle:
        store = self.run.store
        return HubLifecycle(
            store, CertificateAuthority.load(self.state / "ca"), PullPlan(store), self.run.signer
        )

    # -- before the run ------------------------------------------------------------------------
    def prepare(self) -> None:
        """The parties the events need, each premises' suppliers and occupant since a year
        before the run (what a GDSC's registration of the premises records), and the
        certificates the hubs start with (the renewals are counted against them)."""
        run, start = self.run, self.cfg.sim_start
        assert run.signer is not None
        self.parties = syncing_parties(run.store, run.signer, run.clock)
        repo = self.parties
        known = {p.party_id for p in self._all_parties()}
        for party in (
            Party(SUPPLIER, PartyRole.SUPPLIER, "Northern Power"),
            Party(NEW_SUPPLIER, PartyRole.SUPPLIER, "Southern Energy"),
            Party(GAS_SUPPLIER, PartyRole.SUPPLIER, "Shire Gas"),
            Party(THIRD_PARTY, PartyRole.THIRD_PARTY, "Energy advice"),
        ):
            if party.party_id not in known:
                repo.add_party(party)
        since = start - timedelta(days=365)
        for home in run.fleet.homes:
            p = home.spec.premises_id
            repo.add_party(Party(f"C-{p}", PartyRole.CONSUMER))
            repo.add_tenancy(Tenancy(f"T-{p}-1", p, f"C-{p}", since))
            repo.add_supply_period(SupplyPeriod(p, Fuel.ELECTRICITY, SUPPLIER, since))
            repo.add_supply_period(SupplyPeriod(p, Fuel.GAS, GAS_SUPPLIER, since))
            self.provisioned[home.spec.hub_id] = x509.load_pem_x509_certificate(
                (home.dir / "hub.pem").read_bytes()
            )

    def _all_parties(self) -> list[Party]:
        from smarthub.gdsc.governance.parties import parties as table

        with self.run.store.engine.connect() as conn:
            return [Party(r.party_id, PartyRole(r.role)) for r in conn.execute(select(table))]

    # -- during the run ------------------------------------------------------------------------
    async def play(self, events: list[LifeEvent]) -> None:
        for event in events:
            await self.run.clock.sleep_until(self.cfg.sim_start + event.start)
            self.done[event.kind] = self.done.get(event.kind, 0) + 1
            log.info("life event %s at %s", event.kind, event.target)
            for attempt in range(3):
                try:
                    await self._do(event)
                    break
                except OperationalError as err:  # the database restarted under it: try again
                    log.warning(
                        "life event %s on %s: %s (try %d)", event.kind, event.target, err, attempt + 1
                    )
                    await self.run.clock.sleep_until(self.run.clock.now() + timedelta(minutes=5))
                except Exception:
                    log.exception("life event %s on %s failed", event.kind, event.target)
                    self.done[f"{event.kind}_failed"] = self.done.get(f"{event.kind}_failed", 0) + 1
                    break

    async def _do(self, event: LifeEvent) -> None:
        now = self.run.clock.now()
        if event.kind == "revoke_hub":
            held = await asyncio.to_thread(self._collected_until, event.target)
            await asyncio.to_thread(self._lifecycle().revoke_hub, event.target, now)
            self.revoked_hubs[event.target] = held
            self.on_revoked(event.target)
        elif event.kind == "revoke_collector":
            await self._revoke_collector(now)
        elif event.kind == "revoke_operator":
            await self._revoke_operator()
        elif event.kind in ("consent", "consent_revoked"):
            consent = await asyncio.to_thread(self._grant, event, now)
            if event.kind == "consent_revoked":
                asyncio.get_running_loop().create_task(
                    self._revoke_later(consent, now + (now - self.cfg.sim_start))
                )
        elif event.kind == "move_in":
            await asyncio.to_thread(self._move_in, event.target, now)
        elif event.kind == "supplier_change":
            await asyncio.to_thread(self._change_supplier, event.target, now)
        elif event.kind in ("firmware", "firmware_bad"):
            if event.kind == "firmware_bad":
                self._break_han_in(event.target)
            rollout = await asyncio.to_thread(self._rollout, event.target, now)
            self.rollouts[event.kind] = rollout
            asyncio.get_running_loop().create_task(self._roll_out(rollout))
        elif event.kind == "tariff":
            await asyncio.to_thread(self._tariff, event.target.split(","), now)

    def _collected_until(self, hub_id: str) -> datetime:
        """The instant up to which the GDSC holds every channel of the hub (the end of the
        latest half-hour each has): a revoked hub's data after it is refused by design."""
        start = int(self.cfg.sim_start.timestamp())
        stored = self.run.store.channel_starts(start, int(self.cfg.end.timestamp()))
        home = next(h for h in self.run.fleet.homes if h.spec.hub_id == hub_id)
        ends = [
            max(stored.get((hub_id, m, str(o)), {start - 1800})) + 1800
            for _, m, o in home.expected_channels()
        ]
        return datetime.fromtimestamp(min(ends), self.cfg.sim_start.tzinfo)

    def _operator(self) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        gdsc = self.state / "gdsc"
        key = serialization.load_pem_private_key((gdsc / "operator.key").read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key, (gdsc / "operator.pem").read_bytes()

    def _rollout(self, version: str, now: datetime) -> FirmwareRollout:
        """A roll-out of ``version`` to every hub still active, in batches of 1, then 4, then
        a quarter of the fleet, signed with the operator key as the GDSC signs firmware."""
        assert self.run.signer is not None
        package = build_package(
            {"name": "smarthub-hub", "version": version, "created": now},
            f"smarthub hub {version}\n".encode() * 64,
            *self._operator(),
        )
        hubs = [h.spec.hub_id for h in self.run.fleet.homes if h.spec.hub_id not in self.revoked_hubs]
        batches = (1, 4, max(4, len(hubs) // 4))
        return FirmwareRollout(self.run.gdsc.plan, self.run.signer, package, hubs, batches)

    async def _roll_out(self, rollout: FirmwareRollout) -> None:
        """Tick the roll-out every half-hour (simulated) until it is done or the run ends."""
        clock = self.run.clock
        while not rollout.done and clock.now() < self.cfg.end:
            await asyncio.to_thread(rollout.tick, clock.now())
            await clock.sleep_until(clock.now() + timedelta(minutes=30))

    def _break_han_in(self, version: str) -> None:
        """A build that breaks the meter interfaces: while a hub tries ``version``, it hears no
        meter (its health check, frames still arriving, fails and it rolls back)."""
        for home in self.run.fleet.homes:
            updater, gate = home.firmware, self.gates.get(home.spec.hub_id)
            if gate is None:
                continue
            check = updater.health_check

            async def broken(v: str, check: Any = check, gate: HanGate = gate) -> bool:
                if v != version:
                    return bool(await check(v))
                held = None in gate.silent  # a power cut silences it already: leave that one
                gate.silence(None)
                try:
                    return bool(await check(v))
                finally:
                    if not held:
                        gate.restore(None)

            updater.health_check = broken

    def _grant(self, event: LifeEvent, now: datetime) -> Consent:
        assert self.parties is not None
        p = event.target
        tenancy = next(t for t in self.parties.tenancies([p]) if t.covers(now))
        n = sum(1 for c in self.consents if c.premises_id == p) + 1
        consent = Consent(
            f"K-{p}-{n}-{int(now.timestamp())}",
            THIRD_PARTY,
            p,
            tenancy.tenancy_id,
            frozenset({DataKind.READINGS}),
            Granularity.DAILY,
            "energy advice",
            now,
            now + event.length,
        )
        self.parties.grant_consent(consent)
        self.consents.append(consent)
        return consent

    async def _revoke_later(self, consent: Consent, at: datetime) -> None:
        # Twice the settling time: the consent.set it queues rides the plan's next tick for that
        # hub, which at a short run's speed (2,160x: six simulated hours in ten wall seconds) on
        # a loaded machine with PostgreSQL did not always come within one.
        await self.run.clock.sleep_until(min(at, self.cfg.end - 2 * SETTLE))
        assert self.parties is not None
        now = self.run.clock.now()
        if await asyncio.to_thread(self.parties.revoke_consent, consent.consent_id, now):
            self.revoked_consents.append((consent, now))

    def _move_in(self, premises_id: str, now: datetime) -> None:
        assert self.parties is not None
        n = sum(1 for p, _ in self.moves if p == premises_id) + 2
        self.parties.add_party(Party(f"C-{premises_id}-{n}", PartyRole.CONSUMER))
        move_in(self.parties, premises_id, f"C-{premises_id}-{n}", f"T-{premises_id}-{n}", now)
        self.moves.append((premises_id, now))

    def _change_supplier(self, premises_id: str, now: datetime) -> None:
        changes = self.run.gdsc.upkeep.supplier_changes
        assert changes is not None
        ca = CertificateAuthority.load(self.state / "ca")
        with changes.parties.engine.connect() as conn:
            open_ = changes.parties.open_supply_period(premises_id, Fuel.ELECTRICITY, conn)
        new = NEW_SUPPLIER if open_ is None or open_.supplier_id == SUPPLIER else SUPPLIER
        lfdi = ca.issue(Role.PARTY, new, now).lfdi
        # Effective at a half-hour boundary a few hours on (as a change is agreed ahead).
        effective = datetime.fromtimestamp((int(now.timestamp()) // 1800 + 6) * 1800, now.tzinfo)
        changes.change(premises_id, Fuel.ELECTRICITY, new, lfdi, effective, now)
        self.supplier_changes.append((premises_id, effective))

    def _tariff(self, hubs: list[str], now: datetime) -> None:
        assert self.run.signer is not None
        live = [h for h in hubs if h not in self.revoked_hubs]
        tomorrow = (now + timedelta(days=1)).date()
        (current,) = sample_electricity(self.cfg.sim_start.date().replace(day=1)).versions
        tariff = dataclasses.replace(current, version=current.version + 1, effective_from=tomorrow)
        queued = distribute_tariff(
            self.run.store, self.run.gdsc.plan, self.run.signer, tariff, "electricity", now, hubs=live
        )
        self.tariff_jobs += [q.job_id for q in queued]

    async def _revoke_collector(self, now: datetime) -> None:
        """A new collector certificate, the collector restarted on it, the old one revoked: the
        hubs learn it with their pulls and refuse the old certificate from then on."""
        gdsc = self.run.gdsc
        ca = CertificateAuthority.load(self.state / "ca")
        gdsc_dir = self.state / "gdsc"
        old = x509.load_pem_x509_certificate((gdsc_dir / "collector.pem").read_bytes())
        ca.issue(Role.COLLECTOR, "collector-2", now).save(gdsc_dir, "collector")
        crl = self.state / "ca" / "crl.pem"
        ctx = collector_tls_context(
            gdsc_dir / "collector.pem", gdsc_dir / "collector.key", self.state / "ca" / "ca.pem", crl
        )
        from smarthub.sim.demo import tls_on_simulated_time

        tls_on_simulated_time(ctx)
        await gdsc.replace_collector(ctx)
        await asyncio.to_thread(self._lifecycle().revoke_certificate, old.serial_number, now)
        self.revoked_collector = old.serial_number

    async def _revoke_operator(self) -> None:
        """A new operator certificate; the GDSC's signer moved to it and what is queued under
        the old one (pending vouchers, undelivered commands) signed again
        (:func:`~smarthub.gdsc.commands.rotation.rotate_operator`); then the old one revoked. A
        roll-out still under way is waited for (up to the settling time before the next one's
        earliest start): its package is signed under the old certificate."""
        clock, signer = self.run.clock, self.run.signer
        assert signer is not None
        good = self.rollouts.get("firmware")
        latest = self.cfg.sim_start + (self.cfg.end - self.cfg.sim_start) / 2 - timedelta(hours=1)
        while good is not None and not good.done and clock.now() < latest:
            await clock.sleep_until(clock.now() + timedelta(minutes=30))
        now = clock.now()
        gdsc = self.state / "gdsc"
        old = x509.load_pem_x509_certificate((gdsc / "operator.pem").read_bytes())
        ca = CertificateAuthority.load(self.state / "ca")
        ca.issue(Role.OPERATOR, "gdsc-operations-2", now).save(gdsc, "operator")
        key, pem = self._operator()
        if self.on_operator is not None:
            self.on_operator(key, pem)
        first = await asyncio.to_thread(rotate_operator, self.run.store, signer, key, pem)
        await asyncio.to_thread(self._lifecycle().revoke_certificate, old.serial_number, now)
        self.revoked_operator = old.serial_number
        # A second pass, a little later: what another task signed while the first one ran.
        await clock.sleep_until(clock.now() + timedelta(minutes=10))
        second = await asyncio.to_thread(resign_queued, self.run.store, signer)
        self.resigned = Resigned(first.vouchers + second.vouchers, first.commands + second.commands)
        log.info(
            "operator certificate %s revoked: %d vouchers and %d commands signed again",
            old.serial_number,
            self.resigned.vouchers,
            self.resigned.commands,
        )

    # -- the account -------------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        run, end = self.run, self.cfg.end
        due, done = self._renewals()
        homes = {h.spec.premises_id: h for h in run.fleet.homes}
        # Consent expiries: every consent that ran its term (not revoked before) ended at the hub.
        revoked_ids = {c.consent_id for c, _ in self.revoked_consents}
        moved = dict(self.moves)
        expiries = [
            c
            for c in self.consents
            if c.expires_at <= end - SETTLE
            and c.consent_id not in revoked_ids
            and not (c.premises_id in moved and moved[c.premises_id] <= c.expires_at)
        ]
        applied = 0
        for c in expiries:
            home = homes[c.premises_id]
            if home.spec.hub_id in self.revoked_hubs:
                continue
            version = home.consent.version(THIRD_PARTY)
            ended = home.consent.granularity(THIRD_PARTY) == home.consent.default_for(THIRD_PARTY)
            if version is not None and version >= version_of(c.expires_at) and ended:
                applied += 1
                continue
            log.error(
                "consent %s expired at %s, the hub holds version %s", c.consent_id, c.expires_at, version
            )
        revocations_applied = sum(
            1
            for c, at in self.revoked_consents
            if (v := homes[c.premises_id].consent.version(THIRD_PARTY)) is not None and v >= version_of(at)
        )
        with run.store.engine.connect() as conn:
            reads = conn.execute(select(opening_reads)).all()
            tariff_rows = (
                conn.execute(
                    select(urgent_work.c.state, urgent_work.c.result).where(
                        urgent_work.c.id.in_(self.tariff_jobs)
                    )
                ).all()
                if self.tariff_jobs
                else []
            )
        complete = [
            r
            for r in reads
            if r.taken is not None
            and r.registers
            and json.loads(r.registers)
            and not json.loads(r.missing or "[]")
        ]
        tariffs_applied = sum(
            1
            for r in tariff_rows
            if r.state == DONE and r.result and json.loads(r.result).get("status") == "applied"
        )
        operator_known = (
            sum(
                1
                for h in run.fleet.homes
                if h.spec.hub_id not in self.revoked_hubs and h.crls.is_revoked(self.revoked_operator)
            )
            if self.revoked_operator is not None
            else 0
        )
        collector_known = (
            sum(
                1
                for h in run.fleet.homes
                if h.spec.hub_id not in self.revoked_hubs and h.crls.is_revoked(self.revoked_collector)
            )
            if self.revoked_collector is not None
            else 0
        )
        return {
            "renewals_due": due,
            "renewals_done": done,
            "revocations": {
                "hub": len(self.revoked_hubs),
                "collector": int(self.revoked_collector is not None),
                "collector_known_at_hubs": collector_known,
                "operator": int(self.revoked_operator is not None),
                "operator_known_at_hubs": operator_known,
            },
            "operator_vouchers_resigned": self.resigned.vouchers if self.resigned else 0,
            "operator_commands_resigned": self.resigned.commands if self.resigned else 0,
            "consents_granted": len(self.consents),
            "consent_revocations": len(self.revoked_consents),
            "consent_revocations_applied": revocations_applied,
            "consent_expiries": len(expiries),
            "consent_expiries_applied": applied,
            "tenancy_changes": len(self.moves),
            "supplier_changes": len(self.supplier_changes),
            "opening_reads": len(complete),
            **self._firmware_figures(),
            "tariff_changes": len(self.tariff_jobs),
            "tariffs_applied": tariffs_applied,
            "life_events_failed": sum(v for k, v in self.done.items() if k.endswith("_failed")),
        }

    def _firmware_figures(self) -> dict[str, Any]:
        good, bad = self.rollouts.get("firmware"), self.rollouts.get("firmware_bad")
        return {
            "firmware_updated": len(good.updated) if good else 0,
            "firmware_rollout_complete": bool(good and good.done and good.halted is None),
            "firmware_rolled_back": len(bad.rolled_back) if bad else 0,
            "firmware_halted": bool(bad and bad.halted),
            "firmware_not_offered": len(bad.hubs) - len(bad.queued) if bad else 0,
        }

    def _renewals(self) -> tuple[int, int]:
        """Renewals that fell due at least :data:`SETTLE` before the run's end, and of those the
        ones the hub installed before its certificate expired and the GDSC moved to."""
        run, end = self.run, self.cfg.end
        renew_before, spread = run.gdsc.upkeep.renew_before, run.gdsc.upkeep.renew_spread
        with run.store.engine.connect() as conn:
            jobs = conn.execute(
                select(
                    urgent_work.c.hub_id,
                    urgent_work.c.state,
                    urgent_work.c.result,
                    urgent_work.c.envelope,
                    urgent_work.c.finished,
                )
                .where(urgent_work.c.command_type == RENEW_COMMAND)
                .order_by(urgent_work.c.id)
            ).all()
            records = dict(
                conn.execute(select(hub_commissioning.c.hub_id, hub_commissioning.c.cert_serial)).all()
            )
        renewals = []
        for j in jobs:
            if j.finished is None or j.envelope is None:
                continue
            body = json.loads(json.loads(j.envelope)["payload"])["body"]
            finished = (
                j.finished
                if j.finished.tzinfo is not None
                else j.finished.replace(tzinfo=self.cfg.sim_start.tzinfo)
            )
            verdict = json.loads(j.result).get("status") if j.result else None
            cert = x509.load_pem_x509_certificate(body["certificate"].encode())
            renewals.append(Renewal(j.state, verdict, int(body["replaces_serial"]), cert, finished))
        held = {int(serial) for serial in records.values() if serial is not None}
        successor = renewal_successors(renewals, held)
        due = done = 0
        for hub, cert in self.provisioned.items():
            if hub in self.revoked_hubs:
                continue
            # Due when the upkeep would renew it: the lead time less the hub's share of the spread.
            while cert.not_valid_after_utc - renew_before + renew_spread_of(hub, spread) <= end - SETTLE:
                due += 1
                nxt = successor.get(cert.serial_number)
                if nxt is None or nxt[1] >= cert.not_valid_after_utc:
                    log.error(
                        "hub %s: certificate %s (expiring %s) not renewed in time",
                        hub,
                        cert.serial_number,
                        cert.not_valid_after_utc,
                    )
                    break
                cert = nxt[0]
                if (
                    records.get(hub) is not None and int(records[hub]) == cert.serial_number
                ) or cert.serial_number in successor:
                    done += 1
        return due, done
