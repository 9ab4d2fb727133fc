"""Recovery of a replaced hub (issue 20, item 2), end to end with real hub processes.

``smarthub hub`` processes (a simulated DLMS meter with its breaker, prepayment, the in-home
display) serve IEEE 2030.5 over mutual TLS on loopback; the GDSC's real scheduler, collector
and courier pull them and deliver signed commands; the recovery job runs as the upkeep runs it.

The old hub's life leaves at the GDSC what a recovery restores: 13 months of its readings
(ingested into the store as pulls would have), a tariff version, consents and a top-up it
applied, a backup of its prepayment account (``recovery.snapshot``), and a voucher still pending
when it died. A blank replacement is commissioned in its place; within one pull cycle it serves
the home's display with that history, the tariff, the consents and the balance. Killed with
SIGKILL mid-recovery and started again, it resumes and ends in the same state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from hub.ihd_home import pair_screen
from sqlalchemy import func, select

from smarthub.clock import SystemClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.commands.tariffs import tariff_update
from smarthub.gdsc.commands.vouchers import VoucherCourier, VoucherIssuer, vouchers
from smarthub.gdsc.fleet.commissioning import CommissioningRequest, sign_request
from smarthub.gdsc.fleet.key_escrow import KeyEscrow
from smarthub.gdsc.fleet.lifecycle import HubLifecycle
from smarthub.gdsc.fleet.pki import CertificateAuthority, IssuedCertificate, Role
from smarthub.gdsc.fleet.recovery import HubRecoveries
from smarthub.gdsc.fleet.registry import hubs
from smarthub.gdsc.pull.collector import Collector
from smarthub.gdsc.pull.scheduler import Scheduler
from smarthub.gdsc.pull.tables import urgent_work
from smarthub.gdsc.store import Store
from smarthub.hub.history import HistoryStore
from smarthub.hub.intervals import RESTORED_REGISTER
from smarthub.hub.privacy import ConsentStore
from smarthub.hub.registry import MeterRegistry
from smarthub.model import ObisCode
from smarthub.model.tariff import TimeOfUse
from smarthub.model.tariff_calc import day_start, local_day
from smarthub.sim.consumer import sample_electricity
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.wmbus_meter import WMBusMeterSimulator
from smarthub.wan.contract.bodies import PrepaymentTopup
from smarthub.wan.tls import client_context

PREMISES = "P-REC-1"
METER = "4C475A1040000001"  # the DLMS meter's system title (hex)
IMPORT = "1-0:1.8.0"
WATER = "LSE00000009"  # a water meter paired by command (meter.add) during the old hub's life
KEY, AUTH = "202122232425262728292A2B2C2D2E2F", "303132333435363738393A3B3C3D3E3F"
HALF_HOUR = 1800
WH = 72  # IEEE 2030.5 UomType: Wh


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class HubProcess:
    hub_id: str
    dir: Path
    config: Path
    wan_port: int
    ihd_port: int
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smarthub.cli", "hub", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "stderr.log", "ab"),  # noqa: SIM115 (the child keeps it)
            start_new_session=True,
        )

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    async def stop(self) -> None:
        """SIGINT, and the exit waited for off the event loop: the GDSC's collector runs on this
        loop, and a blocking wait would freeze its side of the hub's closing connections."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.kill()

    async def up(self, timeout: float = 60) -> None:
        """Until its IHD answers (its parts are all started by then)."""
        deadline = asyncio.get_running_loop().time() + timeout
        async with aiohttp.ClientSession() as s:
            while True:
                assert self.proc is not None and self.proc.poll() is None, (
                    self.dir / "stderr.log"
                ).read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(f"http://127.0.0.1:{self.ihd_port}/pair") as r:
                        if r.status == 200:
                            return
                assert asyncio.get_running_loop().time() < deadline, "hub did not come up"
                await asyncio.sleep(0.3)


@dataclass
class Gdsc:
    dir: Path
    ca: CertificateAuthority
    store: Store
    lifecycle: HubLifecycle
    signer: CommandSigner
    issuer: VoucherIssuer
    recoveries: HubRecoveries
    collector: Collector
    scheduler: Scheduler
    installer: IssuedCertificate
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    hubs: list[HubProcess] = field(default_factory=list)

    def hub_dir(self, hub_id: str) -> HubProcess:
        d = self.dir / hub_id
        d.mkdir()
        tariff = d / "tariff.json"
        tariff.write_text(sample_electricity(date.today().replace(day=1) - timedelta(days=400)).to_json())
        h = HubProcess(hub_id, d, d / "hub.toml", free_port(), free_port())
        h.config.write_text(
            f"""
[hub]
id = "{hub_id}"
state = "{d}"
ca = "{self.dir / "ca" / "ca.pem"}"

[wan]
listen = "127.0.0.1"
port = {h.wan_port}

[ihd]
listen = "127.0.0.1"
port = {h.ihd_port}

[consumer]
prepayment = ["electricity"]

[consumer.electricity]
meter = "{METER}"
supplier = "Northern Power"
tariff = "{tariff}"
co2_g_per_kwh = 180

[transports.dlms]
kind = "simulated"
options = {{ seed = 7 }}

[[meters]]
id = "{METER}"
protocol = "dlms"
mode = "poll"
transport = "dlms"
key = "{KEY}"
authentication_key = "{AUTH}"
poll_every = "10s"
breaker = true
"""
        )
        self.hubs.append(h)
        return h

    def request(
        self,
        h: HubProcess,
        replaces: str | None = None,
        meters: tuple[tuple[str, str], ...] = ((METER, "electricity"),),
        premises: str = PREMISES,
    ) -> bytes:
        assert self.installer.private_key is not None
        req = CommissioningRequest(
            hub_id=h.hub_id,
            premises_id=premises,
            url=f"https://127.0.0.1:{h.wan_port}",
            hosts=("127.0.0.1",),
            meters_by_fuel=meters,
            issued=datetime.now(UTC),
            address="1 Recovery Road",
            replaces=replaces,
        )
        return sign_request(req, self.installer.private_key, self.installer.cert_pem)

    def command(self, hub_id: str, ctype: str, body: object) -> int:
        assert self.scheduler.plan is not None
        return self.scheduler.plan.queue_command(self.signer, hub_id, ctype, body, datetime.now(UTC))  # type: ignore[arg-type]

    async def verdict(self, job: int, timeout: float = 60) -> dict[str, object]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            with self.store.engine.connect() as conn:
                row = conn.execute(
                    select(urgent_work.c.state, urgent_work.c.result).where(urgent_work.c.id == job)
                ).one()
            if row.state == "done" and row.result:
                return dict(json.loads(row.result))
            assert asyncio.get_running_loop().time() < deadline, f"job {job}: {row}"
            await asyncio.sleep(0.2)

    async def upkeep(self) -> None:
        """The upkeep's voucher and recovery steps, every half second (a running GDSC's upkeep)."""
        courier = VoucherCourier(self.store, self.scheduler.plan, self.signer)  # type: ignore[arg-type]
        while True:
            now = datetime.now(UTC)
            reports, self.collector.storage_reports = self.collector.storage_reports, {}
            await asyncio.to_thread(courier.tick, now)
            await asyncio.to_thread(self.recoveries.tick, reports, now)
            await asyncio.sleep(0.5)


@pytest.fixture
async def gdsc(tmp_path: Path, db_url: str) -> AsyncIterator[Gdsc]:
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca = CertificateAuthority.create("recovery test CA", now)
    ca.save(tmp_path / "ca")
    ca.issue(Role.COLLECTOR, "collector", now).save(tmp_path, "collector")
    ca.issue(Role.OPERATOR, "operator", now).save(tmp_path, "operator")
    store = Store(db_url)
    store.create_schema()
    store.enable_key_escrow(KeyEscrow.from_state(tmp_path))  # gdsc/escrow.key, as a GDSC's state
    signer = CommandSigner.from_files(
        str(tmp_path / "operator.pem"), str(tmp_path / "operator.key"), store.next_command_counter
    )
    ctx = client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    collector = Collector(store, ctx, SystemClock())
    scheduler = Scheduler(
        collector,
        SystemClock(),
        store.active_hubs,
        retry_after=timedelta(seconds=1),
        tick=timedelta(seconds=0.2),
    )
    assert scheduler.plan is not None
    g = Gdsc(
        tmp_path,
        ca,
        store,
        HubLifecycle(store, ca, scheduler.plan, signer),
        signer,
        VoucherIssuer(store, signer.private_key, signer.signer_pem),
        HubRecoveries(store, signer, scheduler.plan),
        collector,
        scheduler,
        ca.issue(Role.INSTALLER, "Ann Installer", now),
    )
    g.tasks.append(asyncio.create_task(scheduler.run(datetime.now(UTC) + timedelta(hours=2))))
    g.tasks.append(asyncio.create_task(g.upkeep()))
    try:
        yield g
    finally:
        for h in g.hubs:
            await h.stop()
        for t in g.tasks:
            t.cancel()
        await asyncio.gather(*g.tasks, return_exceptions=True)
        await scheduler.close()
        await collector.close()
        store.close()


def thirteen_months(hub_id: str, end: int) -> list[tuple[str, str, str, int, int, int, int, int, int]]:
    """The old hub's half-hours of the last 13 months before ``end``, as the GDSC stored them:
    395 days, so they all lie in the 396 days the recovery restores however long the test runs."""
    first = end - 395 * 86400
    return [
        (hub_id, METER, IMPORT, t, HALF_HOUR, 120 + (t // HALF_HOUR) % 37 * 9, 0, WH, 0)
        for t in range(first, end, HALF_HOUR)
    ]


async def old_hub_life(
    g: Gdsc, hub_id: str = "HUB-OLD", *, late_topup: bool = True
) -> tuple[list[tuple], dict[str, object]]:
    """A hub's life before it is lost: commissioned, its readings at the GDSC, a meter paired, a
    tariff version, consents and a top-up applied, a backup taken; then stopped, and a second
    top-up bought while it is gone."""
    old = g.hub_dir(hub_id)
    done = g.lifecycle.commission(g.request(old), datetime.now(UTC))
    done.certificate.save(old.dir, "hub")
    old.start()
    await old.up()
    end = (int(datetime.now(UTC).timestamp()) // HALF_HOUR - 1) * HALF_HOUR
    rows = thirteen_months(hub_id, end)
    g.store.ingest(hub_id, rows, {})
    v1 = sample_electricity(date.today()).versions[0]
    assert isinstance(v1.pricing, TimeOfUse)
    v2 = replace(
        v1,
        version=2,
        effective_from=local_day(datetime.now(UTC)),
        standing_charge_p_per_day=Decimal("55.00"),
        pricing=replace(v1.pricing, rates={"day": Decimal("31.50"), "night": Decimal("15.25")}),
    )
    jobs = [
        g.command(hub_id, "meter.add", {"meter": WATER, "protocol": "wmbus", "fuel": "water"}),
        g.command(hub_id, "tariff.update", tariff_update(v2, "electricity")),
        g.command(hub_id, "consent.set", {"recipient": "gdsc", "granularity": "half-hourly"}),
        g.command(hub_id, "consent.set", {"recipient": "SUP1", "granularity": "daily", "events": True}),
    ]
    voucher = g.issuer.issue(hub_id, "electricity", Decimal("30.00"), datetime.now(UTC))
    envelope = next(p.envelope for p in g.issuer.pending(hub_id) if p.voucher_id == voucher.voucher_id)
    jobs.append(g.command(hub_id, "prepayment.topup", PrepaymentTopup.parse(envelope)))
    for job in jobs:
        verdict = await g.verdict(job)
        assert verdict["status"] == "applied", verdict
    # The daily backup, as the upkeep asks every prepayment hub for it (asked again now: the
    # upkeep's first may have gone before the top-up).
    assert g.recoveries.snapshot_round(datetime.now(UTC), every=timedelta(0)) == 1
    with g.store.engine.connect() as conn:
        snap_job = conn.execute(
            select(func.max(urgent_work.c.id)).where(urgent_work.c.command_type == "recovery.snapshot")
        ).scalar_one()
    snapshot = (await g.verdict(snap_job))["result"]
    assert isinstance(snapshot, dict)
    (account,) = [a for a in snapshot["prepayment"] if a["fuel"] == "electricity"]
    assert [t[0] for t in account["topups"]] == [voucher.voucher_id]
    await old.stop()  # the hub dies (or is switched off to be wiped)
    # A top-up bought after the hub died: pending, never delivered.
    late = g.issuer.issue(hub_id, "electricity", Decimal("10.00"), datetime.now(UTC)) if late_topup else None
    return rows, {"account": account, "late": late and late.voucher_id, "v2": v2, "hub": old}


async def check_restored(
    h: HubProcess, rows: list[tuple], old: dict[str, object], *, moved_credit: Decimal
) -> None:
    """The restored hub serves its home's display with the history, the tariff, the consents
    and the balance, and its own storage holds what the GDSC held (stops the hub)."""
    new = h
    finished = datetime.now(UTC)
    # The home's display: the restored tariff version's rate, the balance, this month's figures.
    code = subprocess.run(
        [sys.executable, "-m", "smarthub.cli", "ihd-code", "--state", str(new.dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    url = f"http://127.0.0.1:{new.ihd_port}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        r = await pair_screen(s, url, code)
        assert r.url.path == "/", r.url
        summary = await (await s.get(url + "/api/summary")).json()
        page = await (await s.get(url + "/consent")).text()
    await new.stop()
    elec = summary["fuels"]["electricity"]
    rate = elec["current_rate"]
    assert rate is not None and rate["p_per_kwh_ex_vat"] in ("31.50", "15.25"), rate  # version 2's
    assert "SUP1" in page, page

    # The hub's own storage, read after it stopped: identical to what the GDSC holds.
    history = HistoryStore(new.dir / "history.sqlite")
    try:
        held = history.query(METER, ObisCode.parse(IMPORT), limit=100_000)
    finally:
        history.close()
    restored = {(r.start, r.value) for r in held if r.register_end == RESTORED_REGISTER}
    assert restored == {(t, v) for _h, _m, _o, t, _d, v, *_ in rows}
    assert min(t for t, _ in restored) <= int((finished - timedelta(days=395)).timestamp())
    # The display's month: every restored half-hour of this (local) month, and the new hub's own.
    since = int(day_start(local_day(finished).replace(day=1)).timestamp())
    restored_kwh = (
        sum(
            (Decimal(r.value) for r in held if r.start >= since and r.register_end == RESTORED_REGISTER),
            Decimal(0),
        )
        / 1000
    )
    own_kwh = (
        sum(
            (Decimal(r.value) for r in held if r.start >= since and r.register_end != RESTORED_REGISTER),
            Decimal(0),
        )
        / 1000
    )
    assert restored_kwh > 0
    assert restored_kwh <= Decimal(elec["month"]["kwh"]) <= restored_kwh + own_kwh, (
        elec,
        restored_kwh,
        own_kwh,
    )

    consent = ConsentStore(new.dir / "consent.sqlite")
    try:
        assert {k: v.value for k, v in consent.all().items()} == {"gdsc": "half-hourly", "SUP1": "daily"}
        assert consent.scope("SUP1").events is True
    finally:
        consent.close()

    # Prepayment: the backup's balance and top-up, the pending voucher moved to the new hub and
    # credited there, and what the new hub charged for its own half-hours since it started.
    acct = old["account"]
    db = sqlite3.connect(new.dir / "ihd" / "prepayment.sqlite")
    try:
        credit, debt = db.execute("SELECT credit, debt FROM accounts WHERE fuel = 'electricity'").fetchone()
        topups = db.execute("SELECT voucher_id, to_credit FROM topups WHERE fuel = 'electricity'").fetchall()
        charges = db.execute(
            "SELECT from_credit, to_debt FROM charges WHERE fuel = 'electricity' AND key NOT LIKE 'restore/%'"
        ).fetchall()
    finally:
        db.close()
    backed_up = {t[0] for t in acct["topups"]}  # type: ignore[index]
    moved = [Decimal(c) for v, c in topups if v not in backed_up]
    assert moved == ([moved_credit] if moved_credit else []), topups
    expected = Decimal(acct["credit"]) + moved_credit - sum((Decimal(c) for c, _ in charges), Decimal(0))  # type: ignore[arg-type]
    assert Decimal(credit) == expected, (credit, acct, charges)
    assert Decimal(debt) == Decimal(acct["debt"]) + sum((Decimal(d) for _, d in charges), Decimal(0))  # type: ignore[arg-type]
    # (The display read it before the last charges, if any.)
    assert (
        Decimal(summary["prepayment"]["electricity"]["credit"])
        >= Decimal(credit)
        > Decimal("25") + moved_credit
    ), summary

    registry = MeterRegistry(new.dir / "meters.sqlite", SystemClock())
    try:
        assert registry.is_active(WATER) and registry.is_active(METER)
    finally:
        registry.close()


async def recovered(
    g: Gdsc, hub_id: str, reason: str = "replaced", timeout: float = 240
) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        recs = [r for r in g.recoveries.of_hub(hub_id) if r.reason == reason]
        assert len(recs) <= 1, recs
        if not recs:
            assert asyncio.get_running_loop().time() < deadline, g.recoveries.of_hub(hub_id)
            await asyncio.sleep(0.3)
            continue
        rec = recs[0]
        if rec.state == "done":
            return rec.to_json()
        assert asyncio.get_running_loop().time() < deadline, rec
        await asyncio.sleep(0.3)


@pytest.mark.parametrize("kill", [False, True], ids=["uninterrupted", "killed-mid-recovery"])
async def test_a_blank_replacement_hub_is_restored_within_one_pull_cycle(gdsc: Gdsc, kill: bool) -> None:
    g = gdsc
    rows, old = await old_hub_life(g)
    new = g.hub_dir("HUB-NEW")
    commissioned = datetime.now(UTC)
    done = g.lifecycle.replace_hub("HUB-OLD", g.request(new, replaces="HUB-OLD"), commissioned)
    done.certificate.save(new.dir, "hub")
    new.start()
    if kill:
        # Killed once some of the restore has been applied, and started again on the same storage.
        deadline = asyncio.get_running_loop().time() + 120
        while True:
            recs = g.recoveries.of_hub("HUB-NEW")
            if recs and recs[0].applied >= 3:
                break
            assert asyncio.get_running_loop().time() < deadline, recs
            await asyncio.sleep(0.05)
        assert recs[0].state == "running" and recs[0].applied < recs[0].steps, recs[0]
        new.kill()
        new.start()
    await new.up()
    rec = await recovered(g, "HUB-NEW")
    finished = datetime.now(UTC)
    # Within one pull cycle (the plan's 30-minute window) of the commissioning.
    assert finished - commissioned < timedelta(minutes=30)
    print(
        f"recovery of {rec['steps']} steps ({rec['planned']['intervals']} intervals)"  # type: ignore[index]
        f" done {(finished - commissioned).total_seconds():.1f} s after commissioning (kill={kill})"
    )
    steps = g.recoveries.steps(int(rec["recovery"]))  # type: ignore[call-overload]
    assert rec["failed"] == 0 and rec["applied"] == rec["steps"] == len(steps), (rec, steps)
    assert rec["planned"]["intervals"] == len(rows)  # type: ignore[index]

    await check_restored(new, rows, old, moved_credit=Decimal("10.00"))
    with g.store.engine.connect() as conn:
        statuses = dict(
            conn.execute(
                select(vouchers.c.voucher_id, vouchers.c.status).where(vouchers.c.hub_id == "HUB-OLD")
            ).all()
        )
        assert statuses[old["late"]] == "moved"  # type: ignore[index]
        assert conn.execute(select(hubs.c.status).where(hubs.c.hub_id == "HUB-NEW")).scalar_one() == "active"


async def test_a_hub_whose_storage_was_wiped_says_so_with_its_next_pull_and_is_restored(gdsc: Gdsc) -> None:
    """A factory reset (or a worn-out flash replaced under the same id): the state directory is
    emptied but for the hub's certificate and configuration. Started again, the hub marks its
    storage blank; the GDSC reads that with its next pull (here an on-demand read, so the test
    need not wait for the next 30-minute window) and restores the hub from its own past."""
    g = gdsc
    rows, old = await old_hub_life(g, "HUB-W", late_topup=False)
    h = old["hub"]
    assert isinstance(h, HubProcess)
    before = json.loads((h.dir / "storage.json").read_text())
    keep = {"hub.pem", "hub.key", "hub.toml", "tariff.json", "stderr.log"}
    for p in sorted(h.dir.iterdir(), reverse=True):
        if p.name not in keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    h.start()
    await h.up()
    after = json.loads((h.dir / "storage.json").read_text())
    assert after["state"] == "blank" and after["id"] != before["id"], (before, after)
    assert g.scheduler.plan is not None
    g.scheduler.plan.enqueue_read("HUB-W", datetime.now(UTC))
    rec = await recovered(g, "HUB-W", reason="storage_lost")
    steps = g.recoveries.steps(int(rec["recovery"]))  # type: ignore[call-overload]
    assert rec["failed"] == 0 and rec["applied"] == rec["steps"] == len(steps), (rec, steps)
    assert rec["storage_id"] == after["id"] and rec["source_hub_id"] == "HUB-W"
    await check_restored(h, rows, old, moved_credit=Decimal(0))
    assert json.loads((h.dir / "storage.json").read_text())["state"] == "restored"


RADIO_METER = 77000001  # a wM-Bus water meter (security mode 5) at premises P-REC-KEYS


def radio_hub(g: Gdsc, hub_id: str, radio_port: int, key: bytes | None) -> HubProcess:
    """A hub with one wM-Bus water meter on a radio receiver (hex lines over TCP); the meter's
    key in its configuration file only if ``key`` is given (the installer's configuration)."""
    d = g.dir / hub_id
    d.mkdir()
    h = HubProcess(hub_id, d, d / "hub.toml", free_port(), free_port())
    meter = WMBusMeterSimulator(
        RADIO_METER, "LSE", "water", bytes(16), HouseholdProfile(2), datetime.now(UTC)
    )
    key_line = f'key = "{key.hex()}"' if key is not None else ""
    h.config.write_text(f"""
[hub]
id = "{hub_id}"
state = "{d}"
ca = "{g.dir / "ca" / "ca.pem"}"

[wan]
listen = "127.0.0.1"
port = {h.wan_port}

[transports.radio]
kind = "tcp"
host = "127.0.0.1"
port = {radio_port}
receiver = "hex-lines"

[[meters]]
id = "{meter.meter_id}"
protocol = "wmbus"
fuel = "water"
transport = "radio"
{key_line}
""")
    h.config.chmod(0o600)
    g.hubs.append(h)
    return h


async def wan_up(h: HubProcess, http: aiohttp.ClientSession, timeout: float = 60) -> str:
    """Until the hub serves its counters over mutual TLS (it is started by then); their text."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        assert h.proc is not None and h.proc.poll() is None, (h.dir / "stderr.log").read_text()
        with contextlib.suppress(aiohttp.ClientError):
            async with http.get(f"https://127.0.0.1:{h.wan_port}/metrics") as r:
                if r.status == 200:
                    return await r.text()
        assert asyncio.get_running_loop().time() < deadline, "hub did not come up"
        await asyncio.sleep(0.3)


async def test_a_replacement_hub_gets_its_meters_keys_from_the_escrow(gdsc: Gdsc) -> None:
    """The old hub's meter was re-keyed by the GDSC (``meter.key``, applied, its envelope cleared
    once delivered); the replacement's installer configures the meter with no key. The recovery
    opens the key from the GDSC's escrow and sends it, signed for the new hub: every frame the
    meter sends under it decodes there, none is rejected, and the key is in no hub file in clear."""
    g = gdsc
    writers: list[asyncio.StreamWriter] = []

    async def receiver(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError):
            await reader.read()

    server = await asyncio.start_server(receiver, "127.0.0.1", 0)
    radio = server.sockets[0].getsockname()[1]
    installed, rekeyed = os.urandom(16), os.urandom(16)
    t0 = datetime.now(UTC) - timedelta(hours=2)
    meter = WMBusMeterSimulator(RADIO_METER, "LSE", "water", rekeyed, HouseholdProfile(2), t0)
    meters = ((meter.meter_id, "water"),)
    ctx = client_context(g.dir / "collector.pem", g.dir / "collector.key", g.dir / "ca" / "ca.pem")
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))
    try:
        old = radio_hub(g, "HUB-KOLD", radio, installed)
        done = g.lifecycle.commission(g.request(old, meters=meters, premises="P-REC-KEYS"), datetime.now(UTC))
        done.certificate.save(old.dir, "hub")
        old.start()
        await wan_up(old, http)
        job = g.command("HUB-KOLD", "meter.key", {"meter": meter.meter_id, "key": rekeyed.hex()})
        assert (await g.verdict(job))["status"] == "applied"
        old.kill()  # the hub dies
        with g.store.engine.connect() as conn:  # the command no longer holds it: the escrow does
            assert (
                conn.execute(select(urgent_work.c.envelope).where(urgent_work.c.id == job)).scalar() is None
            )

        new = radio_hub(g, "HUB-KNEW", radio, None)
        assert "key" not in new.config.read_text().split("[[meters]]")[1]
        request = g.request(new, replaces="HUB-KOLD", meters=meters, premises="P-REC-KEYS")
        replaced = datetime.now(UTC)
        g.lifecycle.replace_hub("HUB-KOLD", request, replaced).certificate.save(new.dir, "hub")
        new.start()
        await wan_up(new, http)
        rec = await recovered(g, "HUB-KNEW")
        took = (datetime.now(UTC) - replaced).total_seconds()
        print(
            f"recovery with {rec['planned']['meter_keys']} escrowed key: {took:.1f} s after the replacement"
        )  # type: ignore[index]
        assert rec["failed"] == 0 and rec["planned"]["meter_keys"] == 1, rec  # type: ignore[index]
        steps = g.recoveries.steps(int(rec["recovery"]))  # type: ignore[call-overload]
        assert [s["state"] for s in steps if s["type"] == "meter.key"] == ["applied"], steps

        # The meter sends under the escrowed key; the new hub decodes every frame.
        frames = b"".join(
            meter.frame_at(t0 + timedelta(minutes=10 * i)).hex().encode() + b"\n" for i in range(1, 9)
        )
        counters: dict[str, float] = {}
        deadline = asyncio.get_running_loop().time() + 60
        sent = 0
        while counters.get('smarthub_hub_frames_total{result="ok"}', 0) < 8:
            assert asyncio.get_running_loop().time() < deadline, counters
            for w in writers[sent:]:  # the new hub's connection (the old hub's is closed)
                if not w.is_closing():
                    w.write(frames)
            sent = len(writers)
            await asyncio.sleep(0.3)
            counters = {
                line.split()[0]: float(line.split()[1])
                for line in (await wan_up(new, http)).splitlines()
                if line.startswith("smarthub_hub_frames_total")
            }
        assert counters.get('smarthub_hub_frames_total{result="error"}', 0) == 0, counters
        assert new.proc is not None
        new.proc.send_signal(signal.SIGTERM)
        # Waited for off the loop: the GDSC's connections to the hub close with it.
        assert await asyncio.to_thread(new.proc.wait, 20) == 0, (new.dir / "stderr.log").read_text()
        for path in new.dir.iterdir():  # in no hub file in clear (master.key wraps it)
            if path.is_file() and path.suffix != ".key":
                raw = path.read_bytes()
                assert rekeyed not in raw and rekeyed.hex().encode() not in raw, path.name
    finally:
        await http.close()
        server.close()
        for w in writers:
            w.close()
