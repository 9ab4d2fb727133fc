"""The privacy filter: each recipient gets the granularity the consumer allowed, enforced at the hub."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from lxml import etree

from smarthub.clock import ManualClock
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.han.p1 import P1Port
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.intervals import IntervalRecord
from smarthub.hub.privacy import ConsentStore, Granularity, HubPrivacy, SupplierEntry, aggregate
from smarthub.model import ObisCode, Quality
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.wan.client import sep2
from smarthub.wan.client.hub_client import HubClient, PullError
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

IMPORT = ObisCode.parse("1-0:1.8.0")
LONDON = ZoneInfo("Europe/London")
# 24 Oct 2026 00:00 BST = 23 Oct 23:00 UTC; UK clocks go back at 01:00 UTC on Sunday 25 Oct.
START = datetime(2026, 10, 23, 23, 0, tzinfo=UTC)
END = datetime(2026, 10, 27, 0, 0, tzinfo=UTC)  # 27 Oct 00:00 GMT


def half_hours() -> list[IntervalRecord]:
    out, t, register = [], START, 0
    while t < END:
        register += 100
        out.append(
            IntervalRecord("E1", IMPORT, int(t.timestamp()), 1800, 100, register, 0, int(Quality.VALID))
        )
        t += timedelta(minutes=30)
    return out


def test_local_days_have_48_50_48_half_hours_across_the_autumn_change() -> None:
    days = aggregate(half_hours(), Granularity.DAILY)
    assert [(d.intervals, d.duration, d.value) for d in days] == [
        (48, 86400, 4800),
        (50, 90000, 5000),
        (48, 86400, 4800),
    ]
    assert all(d.quality == int(Quality.VALID) for d in days)
    # An unfinished day is never served: its half-hours would leak one by one.
    partial = aggregate(half_hours()[:-1], Granularity.DAILY, complete_before=int(END.timestamp()) - 1800)
    assert len(partial) == 2


TARIFF_1 = ObisCode.parse("1-0:1.8.1")
TARIFF_2 = ObisCode.parse("1-0:1.8.2")
TELEGRAM_AT = END + timedelta(minutes=10)


@dataclass
class Rig:
    url: str
    lfdi: str
    dir: Path
    ca: CertificateAuthority
    consent: ConsentStore
    server: HubWanServer
    hub: SmartHub
    dsmr: DsmrMeterSimulator  # meter "E2": two import and two export tariff registers
    privacy: HubPrivacy


@pytest.fixture
async def rig(tmp_path: Path, wall_now: datetime) -> AsyncIterator[Rig]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    history = HistoryStore(tmp_path / "history.sqlite")
    history.add_meter("E1", "electricity")
    history.append(half_hours())
    hub = SmartHub("HUB1", history, clock=ManualClock(TELEGRAM_AT))
    # A DSMR meter's telegram, as the hub's P1 port receives it: its tariff registers reach the mirror.
    dsmr = DsmrMeterSimulator("E2", None, HouseholdProfile(5), START)
    p1 = hub.attach(P1Port("p1"))
    hub.accept(p1.receive(dsmr.telegram_at(TELEGRAM_AT)), TELEGRAM_AT, port="p1")
    consent = ConsentStore(tmp_path / "consent.sqlite")
    consent.set("gdsc", Granularity.DAILY, wall_now)  # the consumer allows daily reads for billing
    consent.set("octopus-advice", Granularity.HALF_HOURLY, wall_now)  # a third party the consumer chose
    consent.set("daily-advisor", Granularity.DAILY, wall_now)
    consent.set("tariff-supplier", Granularity.TARIFF_REGISTERS, wall_now)
    privacy = HubPrivacy(consent, history, mirror=hub.mirror)
    server = HubWanServer("HUB1", hub_cert.lfdi, hub, lambda: 0, privacy=privacy)
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    yield Rig(f"https://127.0.0.1:{port}", hub_cert.lfdi, tmp_path, ca, consent, server, hub, dsmr, privacy)
    await server.stop()
    history.close()
    consent.close()


def client(rig: Rig, role: Role, name: str, now: datetime, recipient: str | None = None) -> HubClient:
    rig.ca.issue(role, name, now).save(rig.dir, name)
    ctx = client_context(rig.dir / f"{name}.pem", rig.dir / f"{name}.key", rig.dir / "ca" / "ca.pem")
    return HubClient(rig.url, ctx, rig.lfdi, recipient=recipient)


async def test_daily_consent_never_yields_half_hourly_data(rig: Rig, wall_now: datetime) -> None:
    c = client(rig, Role.COLLECTOR, "collector", wall_now)
    try:
        got = await c.pull_intervals({})
        days = [i for i in got.intervals if i.duration]
        assert [(i.duration, i.value) for i in days] == [(86400, 4800), (90000, 5000), (86400, 4800)]
        assert all(i.duration >= 82800 for i in days)
        # The register only at the local midnights that close those days (BST's is 23:00 UTC), so
        # two reads differ by a day's total the recipient has anyway: nothing finer.
        reads = [(i.start, i.value) for i in got.intervals if not i.duration]
        assert reads == [(d.start + d.duration, v) for d, v in zip(days, (4800, 9800, 14600), strict=True)]
        assert [b - a for (_, a), (_, b) in itertools.pairwise(reads)] == [d.value for d in days[1:]]
        assert (await c.pull_intervals(got.cursors)).intervals == []  # incremental: nothing new
    finally:
        await c.close()


async def test_third_party_sees_what_it_was_granted_and_only_for_itself(rig: Rig, wall_now: datetime) -> None:
    advisor = client(rig, Role.PARTY, "octopus-advice", wall_now)
    spy = client(rig, Role.PARTY, "nosy-broker", wall_now)
    impostor = client(rig, Role.PARTY, "nosy-broker-2", wall_now, recipient="octopus-advice")
    try:
        got = await advisor.pull_intervals({})
        halves = [i for i in got.intervals if i.duration]
        assert len(halves) == len(half_hours()) and {i.duration for i in halves} == {1800}
        # half-hourly data: the register at every UTC midnight too (the GDSC's days)
        midnights = [int(datetime(2026, 10, d, tzinfo=UTC).timestamp()) for d in (24, 25, 26, 27)]
        assert [i.start for i in got.intervals if not i.duration] == midnights
        with pytest.raises(PullError, match=r"403.*not consented"):
            await spy.pull_intervals({})
        with pytest.raises(PullError, match="403"):
            await impostor.pull_intervals({})
    finally:
        for c in (advisor, spy, impostor):
            await c.close()


async def test_revocation_takes_effect_on_the_next_request(rig: Rig, wall_now: datetime) -> None:
    advisor = client(rig, Role.PARTY, "octopus-advice", wall_now)
    try:
        await advisor.pull_intervals({})
        rig.consent.set("octopus-advice", Granularity.NONE, wall_now)
        with pytest.raises(PullError, match="403"):
            await advisor.pull_intervals({})
    finally:
        await advisor.close()


async def test_monthly_default_for_billing_serves_only_complete_months(rig: Rig, wall_now: datetime) -> None:
    c = client(rig, Role.COLLECTOR, "collector", wall_now, recipient="new-supplier")
    rig.consent.suppliers.add("new-supplier")  # a supplier with no opt-in: the regulated monthly default
    try:
        assert rig.consent.granularity("new-supplier") is Granularity.MONTHLY
        assert (await c.pull_intervals({})).intervals == []  # October is not over at the hub yet
    finally:
        await c.close()


# -- every route, for a recipient with daily consent and one with tariff registers only ----------


def _local(el: Any) -> str:
    return str(etree.QName(el).localname)


def durations(body: bytes) -> tuple[list[int], list[int]]:
    """The durations of every timePeriod in a 2030.5 body, and every ReadingType intervalLength."""
    root = etree.fromstring(body)
    periods = [
        int(d.text)
        for tp in root.iter()
        if isinstance(tp.tag, str) and _local(tp) == "timePeriod"
        for d in tp
        if _local(d) == "duration"
    ]
    lengths = [
        int(el.text) for el in root.iter() if isinstance(el.tag, str) and _local(el) == "intervalLength"
    ]
    return periods, lengths


def register_instants(body: bytes) -> list[int]:
    """The starts of the Readings of duration 0 (register reads) in a 2030.5 body."""
    root = etree.fromstring(body)
    out = []
    for tp in root.iter():
        if isinstance(tp.tag, str) and _local(tp) == "timePeriod":
            fields = {_local(e): int(e.text or 0) for e in tp if isinstance(e.tag, str)}
            if fields.get("duration") == 0 and _local(tp.getparent()) == "Reading":
                out.append(fields["start"])
    return out


async def walk(
    rig: Rig, name: str, role: Role, now: datetime, recipient: str | None = None
) -> dict[str, bytes]:
    """GET every GET route of the hub's WAN server (the route table, so a route added later is
    walked too), with every meter, channel, tariff register and reading-set name filled in, plain,
    after ``a`` = 0 and paged; the 200 bodies by URL, and each status was 200, 403 or 404."""
    rig.ca.issue(role, name, now).save(rig.dir, name)
    ctx = client_context(rig.dir / f"{name}.pem", rig.dir / f"{name}.key", rig.dir / "ca" / "ca.pem")
    days = sorted({r.start - r.start % 86400 for r in half_hours()})
    channels = [
        sep2.channel_token(o)
        for o in (IMPORT, ObisCode.parse("1-0:2.8.0"), TARIFF_1, TARIFF_2, ObisCode.parse("1-0:1.8.0*126"))
    ]
    fill = {
        "meter": ["E1", "E2"],
        "ch": channels,
        "day": [str(d) for d in days] + ["daily", "monthly", "half-hourly", "tariff-registers"],
        "id": ["1"],
    }
    extra = {"recipient": recipient} if recipient else {}
    bodies: dict[str, bytes] = {}
    # The walk is a few hundred requests; the rate limit has its own tests.
    rig.server.limiter.rate, rig.server.limiter.burst = 1e9, 10**9
    async with aiohttp.ClientSession(rig.url, connector=aiohttp.TCPConnector(ssl=ctx)) as session:
        for route in rig.server.app.router.routes():
            if route.method != "GET":
                continue
            info = route.resource.get_info() if route.resource is not None else {}
            template = str(info.get("formatter") or info.get("path"))
            names = re.findall(r"{(\w+)}", template)
            for combo in itertools.product(*(fill[n] for n in names)):
                path = template.format(**dict(zip(names, combo, strict=True)))
                for params in ({}, {"a": 0}, {"s": 0, "l": 1000}):
                    async with session.get(path, params={**params, **extra}) as resp:
                        assert resp.status in (200, 403, 404), (path, resp.status)
                        if resp.status == 200:
                            bodies[f"{path}?{params}"] = await resp.read()
    return bodies


@pytest.mark.parametrize(
    ("name", "role", "recipient"),
    [("collector", Role.COLLECTOR, None), ("daily-advisor", Role.PARTY, None)],
    ids=["gdsc-collecting-for-billing", "third-party-for-itself"],
)
async def test_daily_consent_never_yields_half_hourly_data_on_any_route(
    rig: Rig, wall_now: datetime, name: str, role: Role, recipient: str | None
) -> None:
    bodies = await walk(rig, name, role, wall_now, recipient)
    readings = 0
    registers: set[int] = set()
    for url, body in bodies.items():
        if not body.startswith(b"<"):
            continue  # JSON (an event's detail): no metering data
        periods, lengths = durations(body)
        # a local day: 23, 24 or 25 hours; or a register read (an instant)
        assert all(d >= 23 * 3600 or d == 0 for d in periods), url
        assert 1800 not in lengths, url
        for at in register_instants(body):  # only at a local midnight: reveals day totals only
            local = datetime.fromtimestamp(at, UTC).astimezone(LONDON)
            assert (local.hour, local.minute) == (0, 0), (url, at)
            registers.add(at)
        readings += body.count(b"<Reading>") + body.count(b"<Reading ")
    assert readings > 0  # the daily readings themselves were served
    assert len(registers) == 3  # and the register at the three local midnights closing a day


async def test_tariff_register_consent_gets_the_registers_and_never_an_interval(
    rig: Rig, wall_now: datetime
) -> None:
    bodies = await walk(rig, "tariff-supplier", Role.PARTY, wall_now)
    for url, body in bodies.items():
        if body.startswith(b"<"):
            periods, lengths = durations(body)
            assert periods == [0] * len(periods) and lengths == [], url  # register readings only
            assert b"ReadingSet" not in body, url
    regs = rig.dsmr.registers
    expected = {TARIFF_1: (regs.import_t1_wh, 1), TARIFF_2: (regs.import_t2_wh, 2)}
    for obis, (wh, tier) in expected.items():
        body = bodies[f"{sep2.mr_href('E2', obis)}/r?{{}}"]
        reading = sep2.Reading.from_xml(body)
        assert (reading.value, int(reading.touTier or 0)) == (wh, tier)
        assert reading.timePeriod is not None and reading.timePeriod.start == int(TELEGRAM_AT.timestamp())
        rt = sep2.ReadingType.from_xml(bodies[f"{sep2.mr_href('E2', obis)}/rt?{{}}"])
        assert (rt.accumulationBehaviour, rt.uom, rt.powerOfTenMultiplier) == (3, 72, 0)  # cumulative Wh
    listed = sep2.MeterReadingListResponse.from_xml(bodies["/upt/E2/mr?{'s': 0, 'l': 1000}"])
    assert {m.description for m in listed.MeterReading_ or []} >= {"1-0:1.8.1", "1-0:1.8.2"}
    assert all(m.ReadingSetListLink is None for m in listed.MeterReading_ or [])
    assert sep2.MeterReadingListResponse.from_xml(bodies["/upt/E1/mr?{}"]).all_ == 0  # E1: intervals only
    tariff = client(rig, Role.PARTY, "tariff-supplier", wall_now)
    try:
        assert (await tariff.pull_intervals({})).intervals == []
        with pytest.raises(PullError, match=r"403.*tariff-register totals only"):
            await tariff.get(f"{sep2.mr_href('E1', IMPORT)}/rs", sep2.ReadingSetListResponse)
    finally:
        await tariff.close()


def test_tariff_registers_served_change_at_most_once_a_day(rig: Rig) -> None:
    """Pulling the totals every few minutes must not rebuild the intervals by differencing."""
    p1 = rig.hub.ports["p1"]

    def served() -> int:
        (reg,) = [r for r in rig.privacy.registers("E2") if r.obis == TARIFF_2]
        return reg.value

    first = served()
    assert first == rig.dsmr.registers.import_t2_wh
    for hours in (1, 6, 23):
        t = TELEGRAM_AT + timedelta(hours=hours)
        rig.hub.accept(p1.receive(rig.dsmr.telegram_at(t)), t, port="p1")
        assert served() == first
    assert rig.dsmr.registers.import_t2_wh > first  # the meter's register did move meanwhile
    t = TELEGRAM_AT + timedelta(days=1)
    rig.hub.accept(p1.receive(rig.dsmr.telegram_at(t)), t, port="p1")
    assert served() == rig.dsmr.registers.import_t2_wh
    assert rig.privacy.aggregates("E2", IMPORT, "tariff-registers", None) == []


async def test_a_supplier_sees_only_the_meters_of_the_fuels_it_supplies(rig: Rig, wall_now: datetime) -> None:
    """The supplier's keys are installed per fuel (``supplier.keys``): an electricity supplier
    reads the electricity meters and does not even see that a gas meter exists, whether it
    reads for itself or a GDSC collector pulls on its behalf."""
    rig.hub.history.add_meter("G1", "gas")
    cert = rig.ca.issue(Role.PARTY, "elec-only", wall_now)
    cert.save(rig.dir, "elec-only")
    rig.consent.install_supplier(
        SupplierEntry("electricity", "elec-only", cert.lfdi, wall_now - timedelta(hours=1))
    )
    rig.ca.issue(Role.COLLECTOR, "collector", wall_now).save(rig.dir, "collector")
    for stem, query in (("elec-only", ""), ("collector", "&recipient=elec-only")):
        ctx = client_context(rig.dir / f"{stem}.pem", rig.dir / f"{stem}.key", rig.dir / "ca" / "ca.pem")
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            async with s.get(f"{rig.url}/upt?l=10{query}") as resp:
                assert resp.status == 200, stem
                doc = etree.fromstring(await resp.read())
            listed = {e.text for e in doc.iter("{urn:ieee:std:2030.5:ns}description")}
            assert "G1" not in listed and {"E1", "E2"} <= listed, (stem, listed)
            async with s.get(f"{rig.url}/upt/G1?x=1{query}") as resp:
                assert resp.status == 404, stem
            async with s.get(f"{rig.url}/upt/E1?x=1{query}") as resp:
                assert resp.status == 200, stem
    # The GDSC's own collection (no supplier) still sees every meter.
    ctx = client_context(rig.dir / "collector.pem", rig.dir / "collector.key", rig.dir / "ca" / "ca.pem")
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s,
        s.get(f"{rig.url}/upt/G1") as resp,
    ):
        assert resp.status == 200
