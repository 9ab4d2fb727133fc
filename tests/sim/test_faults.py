"""The chaos run's faults act for real: a cut WAN link refuses the GDSC, a HAN gate drops frames."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from smarthub.gdsc.pki import CertificateAuthority, Role
from smarthub.han.ports import PortBatch
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.model.datapoint import DataPoint
from smarthub.sim.faults import HanGate, WanLink
from smarthub.wan.client.hub_client import HubClient, PullError
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context

T0 = datetime.fromisoformat("2026-03-02T00:00:00+00:00")


async def test_a_cut_wan_link_refuses_the_gdsc_and_a_restored_one_serves_again(
    tmp_path: Path, wall_now: datetime
) -> None:
    ca = CertificateAuthority.create("CA", wall_now)
    ca.save(tmp_path / "ca")
    cert = ca.issue(Role.HUB, "H1", wall_now, hosts=("127.0.0.1",))
    cert.save(tmp_path, "hub")
    ca.issue(Role.COLLECTOR, "c", wall_now).save(tmp_path, "c")
    hub = SmartHub("H1", HistoryStore(tmp_path / "history.sqlite"))
    server = HubWanServer("H1", cert.lfdi, hub, lambda: int(T0.timestamp()))
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )
    link = WanLink("cell-1")
    relay = await link.relay("127.0.0.1", port)
    ctx = client_context(tmp_path / "c.pem", tmp_path / "c.key", tmp_path / "ca" / "ca.pem")

    async def pull() -> int:
        client = HubClient(f"https://127.0.0.1:{relay}", ctx, cert.lfdi)
        try:
            return (await client.pull_intervals({})).requests
        finally:
            await client.close()

    try:
        assert await pull() >= 1
        link.cut()
        with pytest.raises(PullError):
            await pull()
        link.restore()
        assert await pull() >= 1
        assert link.cuts == 1
    finally:
        await link.close()
        await server.stop()
        hub.history.close()


def test_a_han_gate_drops_one_meter_or_everything(tmp_path: Path) -> None:
    hub = SmartHub("H1", HistoryStore(tmp_path / "history.sqlite"))
    gate = HanGate(hub)

    def batch(t: datetime) -> PortBatch:
        return PortBatch([DataPoint(m, "dsmr", "1-0:1.8.0", Decimal(1), "kWh", t) for m in ("E1", "E2")])

    hub.accept(batch(T0), T0)
    assert sorted(hub.mirror.meters()) == ["E1", "E2"]
    gate.silence("E2")
    hub.accept(batch(T0), T0)
    gate.silence(None)
    hub.accept(batch(T0), T0)
    assert gate.dropped == 1 + 2
    gate.restore(None)
    gate.restore("E2")
    hub.accept(batch(T0), T0)
    assert gate.dropped == 3
    hub.history.close()
