"""The GDSC's upkeep: the periodic work beside the scheduler, every ``upkeep_every`` (on the
injected clock; the composition root, :mod:`smarthub.gdsc.service`, runs it):

* **CRL** — at start the CA's CRL is made current (published if there is none, if it is stale
  or due, :meth:`~smarthub.gdsc.fleet.lifecycle.HubLifecycle.keep_crl`) and loaded into the
  collectors' TLS context, so a revoked hub is refused in the handshake. Upkeep re-publishes it
  daily (nextUpdate a week ahead) and hands every newer CRL on disk, including one another
  process published, to the collector (:meth:`Collector.apply_crl`), so an expired CRL never
  stops the pulls; the collector offers each to the hubs with their bulk pulls, and a hub takes
  it when it misses a revocation or its own CRL nears its nextUpdate (``wan.crl_sync``). The CRL
  is dated on ``tls_clock``: OpenSSL checks it against the host's clock, not a simulated one.
* **change of supplier** — :meth:`~smarthub.gdsc.governance.supplier_change.SupplierChanges.tick`: the
  opening read is asked for once the effective instant has passed, and stored when it is back.
* **vouchers** — :class:`~smarthub.gdsc.commands.vouchers.VoucherCourier`: settled from the hub's verdict,
  re-sent after the hub came back.
* **meter replacements** — the registry learns the meters applied ``meter.replace`` commands put
  in (:func:`~smarthub.gdsc.fleet.meters.learn_meter_replacements`).
* **consent expiries** — a consent that expired since the last run is pushed to the premises'
  hubs as ``consent.set`` (:meth:`~smarthub.gdsc.governance.consent_sync.ConsentSync.push_expired`); the
  first run looks back a week, which the hubs' version check makes harmless to repeat. A
  ``consent.set`` given up after the plan's tries is queued again once its hub has answered a pull
  (:meth:`~smarthub.gdsc.governance.consent_sync.ConsentSync.redeliver`).
* **data services views** — each home whose data services changed (a third party read its data,
  its occupant granted or revoked a consent, the operator decided on a service holding one, a new
  tenancy) is sent its occupant's view as ``ihd.services`` for the display
  (:class:`~smarthub.gdsc.governance.service_view.ServiceViews`).
* **audit anchors** — every ``anchor_every`` (an hour), when the audit chain has grown, its head
  is signed with the operator key and appended to ``gdsc/audit-anchors.jsonl``
  (:mod:`~smarthub.gdsc.governance.audit_anchors`), dated on ``tls_clock`` (the operator certificate is
  checked against that date when the anchor is verified).
* **similar-homes comparisons** — once a week, for the last complete local week, each display
  gets its cohort's figures (:func:`~smarthub.gdsc.readings.comparisons.queue_comparisons`, only over
  cohorts of at least k homes). A week already queued by any GDSC process (an
  ``ihd.comparison`` job queued after the week ended is in the shared plan) is not queued again.

* **hub recoveries** — a replacement hub, or a hub whose pull said its storage is blank, gets a
  recovery planned and queued; running recoveries advance (steps without a verdict signed again),
  and every hub is asked once a day for a backup of its own state (``recovery.snapshot``), see
  :mod:`~smarthub.gdsc.fleet.recovery`.

* **gap estimation** — once a day when the store validates (VEE): the intervals still missing
  two days after their day ended (a re-pull had its chance) are estimated and flagged
  (:meth:`~smarthub.gdsc.readings.vee.store.VeeData.estimate_gaps`); the hub's actual readings
  replace them when they arrive.

Each step is independent: one failing (the database away) is logged and tried at the next run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from smarthub.clock import Clock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.tariff_redelivery import redeliver_tariffs
from smarthub.gdsc.commands.vouchers import VoucherCourier
from smarthub.gdsc.fleet.lifecycle import HubLifecycle
from smarthub.gdsc.fleet.meters import learn_meter_replacements
from smarthub.gdsc.fleet.pki import CertificateAuthority
from smarthub.gdsc.fleet.recovery import HubRecoveries
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.governance.audit_anchors import default_anchor_path, write_anchor
from smarthub.gdsc.governance.consent_sync import ConsentSync
from smarthub.gdsc.governance.parties import PartyRepository
from smarthub.gdsc.governance.service_view import ServiceViews
from smarthub.gdsc.governance.supplier_change import SupplierChanges
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import urgent_work
from smarthub.gdsc.readings.comparisons import last_week, queue_comparisons
from smarthub.gdsc.readings.queries import LONDON
from smarthub.gdsc.store import Store

log = logging.getLogger(__name__)

CONSENT_LOOKBACK = timedelta(days=7)  # how far back the first upkeep run looks for expiries


def _state_lifecycle(state: Path, store: Store, signer: CommandSigner | None) -> HubLifecycle | None:
    """A lifecycle over the state's CA, read afresh (another process may have revoked since)."""
    if not (state / "ca" / "ca.key").exists():
        return None
    return HubLifecycle(store, CertificateAuthority.load(state / "ca"), PullPlan(store), signer)


def crl_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


@dataclass
class Upkeep:
    """The GDSC's periodic work beside the scheduler (module docstring)."""

    state: Path
    store: Store
    collector: Collector
    signer: CommandSigner | None
    clock: Clock
    tls_clock: Clock
    crl_path: Path
    crl_applied: tuple[int, int] | None = None
    crl_due: datetime | None = None  # on tls_clock
    replaced_mark: int = 0
    renewal_mark: int = 0
    renew_before: timedelta = timedelta(days=30)  # renew hub certificates expiring within this
    renew_spread: timedelta = timedelta(0)  # ... spread over this much of it (HubLifecycle)
    errors: int = 0
    runs: int = 0
    comparisons_week: tuple[date, date] | None = None
    consents_mark: datetime | None = None
    estimated_day: date | None = None
    anchor_every: timedelta = timedelta(hours=1)
    anchor_due: datetime | None = None
    plan: PullPlan | None = None  # the service's plan (one of its own if not given)
    # Called once a newer CRL is applied: whoever else talks to hubs under the collector's TLS
    # context (the scheduler's command courier) drops its kept-alive connections, set up before
    # the revocation was known (a resumed or reused connection skips certificate verification).
    on_crl_applied: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    consents: ConsentSync | None = field(default=None, init=False)
    supplier_changes: SupplierChanges | None = field(default=None, init=False)
    vouchers: VoucherCourier | None = field(default=None, init=False)
    recoveries: HubRecoveries | None = field(default=None, init=False)
    service_views: ServiceViews | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.plan is None:
            self.plan = PullPlan(self.store)
        if self.signer is not None:
            parties = PartyRepository(self.store.engine)
            plan = self.plan
            self.supplier_changes = SupplierChanges(parties, plan, self.signer)
            self.vouchers = VoucherCourier(self.store, plan, self.signer)
            self.consents = ConsentSync(parties, plan, self.signer, self.clock.now)
            self.recoveries = HubRecoveries(self.store, self.signer, plan)
            engine = self.store.engine
            self.service_views = ServiceViews(engine, AuditLog(engine), plan, self.signer)

    def steps(self, now: datetime) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
        """The steps of one run, in order (which ones depends on what the GDSC holds: a signer)."""
        # Renewals first: a superseded certificate's CRL reaches the collector in the same run.
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("renewals", lambda: asyncio.to_thread(self._renewals)),
            ("crl", self._crl),
        ]
        if self.supplier_changes is not None:
            changes = self.supplier_changes
            steps.append(("supplier changes", lambda: asyncio.to_thread(changes.tick, now)))
        if self.vouchers is not None:
            courier = self.vouchers
            steps.append(("vouchers", lambda: asyncio.to_thread(courier.tick, now)))
        steps.append(("meter replacements", self._meters))
        if self.recoveries is not None:
            steps.append(("hub recoveries", lambda: asyncio.to_thread(self._recoveries, now)))
        if self.consents is not None:
            steps.append(("consent expiries", lambda: asyncio.to_thread(self._consent_expiries, now)))
            sync = self.consents
            steps.append(("consent redelivery", lambda: asyncio.to_thread(sync.redeliver, now)))
        if self.signer is not None:
            signer, plan = self.signer, self.plan
            assert plan is not None  # set in __post_init__
            steps.append(
                (
                    "tariff redelivery",
                    lambda: asyncio.to_thread(redeliver_tariffs, self.store.engine, plan, signer, now),
                )
            )
        if self.service_views is not None:
            views = self.service_views
            steps.append(("data services views", lambda: asyncio.to_thread(views.tick, now)))
        if self.store.vee is not None:
            steps.append(("gap estimation", lambda: asyncio.to_thread(self._estimate, now)))
        if self.signer is not None:
            steps.append(("comparisons", lambda: asyncio.to_thread(self._comparisons, now)))
            steps.append(("audit anchor", lambda: asyncio.to_thread(self._anchor, now)))
        return steps

    async def run_once(self) -> None:
        for name, step in self.steps(self.clock.now()):
            try:
                await step()
            except Exception:
                self.errors += 1
                log.exception("upkeep: %s failed (tried again at the next run)", name)
        self.runs += 1

    def _estimate(self, now: datetime) -> None:
        if self.estimated_day == now.date():
            return
        n = self.store.estimate_gaps(int(now.timestamp()))
        if n:
            log.info("upkeep: estimated %d missing intervals", n)
        self.estimated_day = now.date()

    def _recoveries(self, now: datetime) -> None:
        assert self.recoveries is not None
        reports, self.collector.storage_reports = self.collector.storage_reports, {}
        self.recoveries.tick(reports, now)

    def _consent_expiries(self, now: datetime) -> None:
        assert self.consents is not None
        after = self.consents_mark or now - CONSENT_LOOKBACK
        self.consents.push_expired(after, now)
        self.consents_mark = now

    def _comparisons(self, now: datetime) -> None:
        week = last_week(now)
        if week == self.comparisons_week or self.signer is None:
            return
        end = datetime(week[1].year, week[1].month, week[1].day, tzinfo=LONDON)
        with self.store.engine.connect() as conn:
            queued = conn.execute(
                select(urgent_work.c.id)
                .where(urgent_work.c.command_type == "ihd.comparison", urgent_work.c.queued >= end)
                .limit(1)
            ).first()
        if queued is None:
            run = queue_comparisons(self.store, self.signer, week[0], week[1], now)
            log.info(
                "comparisons for %s..%s: %d hubs, %d cohorts withheld",
                *week,
                len(run.jobs),
                len(run.withheld),
            )
        self.comparisons_week = week

    def _anchor(self, now: datetime) -> None:
        if self.signer is None or (self.anchor_due is not None and now < self.anchor_due):
            return
        path = default_anchor_path(self.state)
        anchor = write_anchor(
            AuditLog(self.store.engine),
            path,
            self.signer.private_key,
            self.signer.signer_pem,
            self.tls_clock.now(),
        )
        if anchor is not None:
            log.info("audit chain anchored at entry %d in %s", anchor.seq, path)
        self.anchor_due = now + self.anchor_every

    def _renewals(self) -> None:
        """Settle applied hub certificate renewals (and adopt the renewed certificates hubs were
        seen presenting, their answers lost), then renew hubs near expiry (HubLifecycle).

        On the TLS clock: certificates and CRLs are checked by OpenSSL on this host's clock."""
        lifecycle = _state_lifecycle(self.state, self.store, self.signer)
        if lifecycle is None or self.signer is None:
            return
        now = self.tls_clock.now()
        lifecycle.renew_before, lifecycle.renew_spread = self.renew_before, self.renew_spread
        self.renewal_mark = lifecycle.apply_renewals(now, self.renewal_mark)
        presented, self.collector.presented = self.collector.presented, {}
        for hub_id in lifecycle.adopt_renewed(presented, now) if presented else ():
            log.info("hub %s presents its renewed certificate: adopted (its answer was lost)", hub_id)
        for hub_id in lifecycle.renew_due(now):
            log.info("renewing the certificate of hub %s", hub_id)

    async def _meters(self) -> None:
        self.replaced_mark = await asyncio.to_thread(learn_meter_replacements, self.store, self.replaced_mark)

    async def _crl(self) -> None:
        now = self.tls_clock.now()
        if self.crl_due is None or now >= self.crl_due:
            self.crl_due = await asyncio.to_thread(keep_crl, self.state, self.store, self.signer, now)
        stamp = crl_stamp(self.crl_path)
        if stamp is not None and stamp != self.crl_applied:
            await self.collector.apply_crl(self.crl_path)
            for drop in self.on_crl_applied:
                await drop()
            self.crl_applied = stamp

    async def loop(self, every: timedelta, stop: asyncio.Event) -> None:
        """Run every ``every`` until ``stop`` is set (a run under way is finished, not cut)."""
        while not stop.is_set():
            await self.run_once()
            sleeper = asyncio.ensure_future(self.clock.sleep_until(self.clock.now() + every))
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for t in (sleeper, stopper):
                t.cancel()


def keep_crl(state: Path, store: Store, signer: CommandSigner | None, now: datetime) -> datetime | None:
    """Make the state's CRL current at ``now`` (on the TLS clock); when to look again (None:
    no CA key here, the CRL is another process's business)."""
    lifecycle = _state_lifecycle(state, store, signer)
    if lifecycle is None:
        return None
    lifecycle.keep_crl(now)
    return lifecycle.crl_due(lifecycle.published_crl(), now)


def crl_current(crl_path: Path, now: datetime) -> bool:
    from cryptography import x509

    try:
        crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    except (FileNotFoundError, ValueError):
        return False
    return crl.last_update_utc <= now and (crl.next_update_utc is None or now < crl.next_update_utc)
