"""Network configuration from the GDSC: a client allowlist takes effect at once; bad settings are refused."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from smarthub.clock import SystemClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.hub.history import HistoryStore
from smarthub.hub.hub import SmartHub
from smarthub.hub.management import ManagementInterface
from smarthub.hub.network import NetworkConfig, NetworkConfigError, NetworkSettings, network_command
from smarthub.wan.client.hub_client import HubClient, PullError
from smarthub.wan.server.resources import HubWanServer
from smarthub.wan.tls import client_context, server_context


async def test_allowlist_shuts_out_a_collector_at_once(tmp_path: Path, wall_now: datetime) -> None:
    ca = CertificateAuthority.create("CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(tmp_path, "hub")
    good = ca.issue(Role.COLLECTOR, "good", wall_now)
    good.save(tmp_path, "good")
    stolen = ca.issue(Role.COLLECTOR, "stolen", wall_now)
    stolen.save(tmp_path, "stolen")
    ops = ca.issue(Role.OPERATOR, "ops", wall_now)
    counter = iter(range(1, 10))
    signer = CommandSigner(ops.private_key, ops.cert_pem, lambda hub: next(counter))  # type: ignore[arg-type]
    hub = SmartHub("HUB1", HistoryStore(tmp_path / "h.sqlite"))
    mgmt = ManagementInterface("HUB1", ca.certificate, SystemClock(), tmp_path / "m.sqlite")
    settings = NetworkSettings(tmp_path / "network.json")
    mgmt.register("network.configure", network_command(settings))
    server = HubWanServer(
        "HUB1", hub_cert.lfdi, hub, lambda: 0, management=mgmt, client_allowed=settings.client_allowed
    )
    port = await server.start(
        "127.0.0.1", 0, server_context(tmp_path / "hub.pem", tmp_path / "hub.key", tmp_path / "ca" / "ca.pem")
    )

    def client(stem: str) -> HubClient:
        ctx = client_context(tmp_path / f"{stem}.pem", tmp_path / f"{stem}.key", tmp_path / "ca" / "ca.pem")
        return HubClient(f"https://127.0.0.1:{port}", ctx, hub_cert.lfdi)

    g, s = client("good"), client("stolen")
    try:
        await s.pull_intervals({})  # any GDSC-CA certificate gets in while the list is empty
        cmd = signer.command("HUB1", "network.configure", {"allowed_clients": [good.lfdi]}, wall_now)
        verdict = await g.post_command(cmd.envelope())
        assert verdict["status"] == "applied" and verdict["result"]["restart_required"] is False
        with pytest.raises(PullError, match=r"403.*allowlist"):
            await s.pull_intervals({})
        await g.pull_intervals({})
        assert NetworkSettings(tmp_path / "network.json").config.allowed_clients == (good.lfdi,)  # persisted
        bad = signer.command("HUB1", "network.configure", {"port": 70000}, wall_now)
        verdict = await g.post_command(bad.envelope())
        assert verdict["status"] == "refused" and "'port' must be in 1..65535" in verdict["detail"], verdict
    finally:
        await g.close()
        await s.close()
        await server.stop()
        mgmt.close()
        hub.history.close()


@pytest.mark.parametrize("body", [{"listen": "not-an-ip"}, {"allowed_clients": ["abc"]}, {"port": "x"}])
def test_bad_network_settings_are_refused(body: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(NetworkConfigError):
        NetworkConfig.from_dict(body)
