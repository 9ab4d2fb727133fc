"""The privacy filter: each recipient gets the granularity the consumer allowed, enforced at the hub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from smarthub.gdsc.pki import CertificateAuthority, Role
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.intervals import IntervalRecord
from smarthub.hub.privacy import ConsentStore, Granularity, HubPrivacy, aggregate
from smarthub.model import ObisCode, Quality
from smarthub.wan.client import HubClient, PullError
from smarthub.wan.server import HubWanServer
from smarthub.wan.tls import client_context, server_context

IMPORT = ObisCode.parse("1-0:1.8.0")
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


@dataclass
class Rig:
    url: str
    lfdi: str
    dir: Path
    ca: CertificateAuthority
    consent: ConsentStore


@pytest.fixture
async def rig(tmp_path: Path, wall_now: datetime) -> AsyncIterator[Rig]:
    ca = CertificateAuthority.create("test GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    history = HistoryStore(tmp_path / "history.sqlite")
    history.add_meter("E1", "electricity")
    history.append(half_hours())
    hub = SmartHub("HUB1", history)
    consent = ConsentStore(tmp_path / "consent.sqlite")
    consent.set("gdsc", Granularity.DAILY, wall_now)  # the consumer allows daily reads for billing
    consent.set("octopus-advice", Granularity.HALF_HOURLY, wall_now)  # a third party the consumer chose
    server = HubWanServer("HUB1", hub_cert.lfdi, hub, lambda: 0, privacy=HubPrivacy(consent, history))
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    yield Rig(f"https://127.0.0.1:{port}", hub_cert.lfdi, tmp_path, ca, consent)
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
        assert [(i.duration, i.value) for i in got.intervals] == [(86400, 4800), (90000, 5000), (86400, 4800)]
        assert all(i.duration >= 82800 for i in got.intervals)
        assert (await c.pull_intervals(got.cursors)).intervals == []  # incremental: nothing new
    finally:
        await c.close()


async def test_third_party_sees_what_it_was_granted_and_only_for_itself(rig: Rig, wall_now: datetime) -> None:
    advisor = client(rig, Role.PARTY, "octopus-advice", wall_now)
    spy = client(rig, Role.PARTY, "nosy-broker", wall_now)
    impostor = client(rig, Role.PARTY, "nosy-broker-2", wall_now, recipient="octopus-advice")
    try:
        got = await advisor.pull_intervals({})
        assert len(got.intervals) == len(half_hours()) and {i.duration for i in got.intervals} == {1800}
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
