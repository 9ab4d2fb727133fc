"""`smarthub hub` as a user runs it against a P1-over-TCP bridge; the GDSC pulls it and manages it."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from smarthub.gdsc.commands import CommandSigner
from smarthub.gdsc.pki import CertificateAuthority, Role
from smarthub.sim.dsmr_meter import DsmrMeterSimulator
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.wan.client.hub_client import HubClient, PullError
from smarthub.wan.tls import client_context

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_hub_process_reads_a_p1_bridge_serves_2030_5_and_takes_commands(
    tmp_path: Path, wall_now: datetime
) -> None:
    ca = CertificateAuthority.create("GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    hub_cert = ca.issue(Role.HUB, "HUB1", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(hub_dir, "hub")
    shutil.copy(tmp_path / "ca" / "ca.pem", hub_dir / "ca.pem")
    ca.issue(Role.COLLECTOR, "c1", wall_now).save(tmp_path, "collector")

    meter = DsmrMeterSimulator("E0000000042", "G0000000042", HouseholdProfile(3), start=T0)
    telegrams = b"".join(meter.telegram_at(T0 + timedelta(minutes=m)) for m in range(0, 61))

    async def bridge(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(telegrams)
        await writer.drain()
        await reader.read()  # keep the line open, as a P1 dongle does

    server = await asyncio.start_server(bridge, "127.0.0.1", 0)
    bridge_port = server.sockets[0].getsockname()[1]
    wan_port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smarthub.cli",
            "hub",
            "--state",
            str(hub_dir),
            "--hub-id",
            "HUB1",
            "--tcp",
            f"127.0.0.1:{bridge_port}",
            "--listen",
            "127.0.0.1",
            "--port",
            str(wan_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ctx = client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    client = HubClient(f"https://127.0.0.1:{wan_port}", ctx, hub_cert.lfdi)
    counter = iter(range(1, 100))
    signer = CommandSigner(*_operator(ca, wall_now), next_counter=lambda hub: next(counter))
    try:
        # The consumer's opt-in to half-hourly reads reaches the hub as a signed command.
        consent = signer.command(
            "HUB1", "consent.set", {"recipient": "gdsc", "granularity": "half-hourly"}, wall_now
        )
        verdict = None
        for _ in range(100):
            try:
                verdict = await client.post_command(consent.envelope())
                break
            except PullError:
                await asyncio.sleep(0.1)  # the hub process is still starting
        assert verdict is not None and verdict["status"] == "applied", verdict
        pulled = None
        for _ in range(100):
            pulled = await client.pull_intervals({})
            if len(pulled.intervals) >= 6:
                break
            await asyncio.sleep(0.1)
        assert pulled is not None and len(pulled.intervals) == 6, proc.stderr  # 2 half-hours × 3 channels
        ping = signer.command("HUB1", "diagnostic.ping", {"nonce": 42}, wall_now)
        verdict = await client.post_command(ping.envelope())
        assert verdict["status"] == "applied" and verdict["result"] == {"pong": 42}
    finally:
        await client.close()
        proc.terminate()
        proc.wait(10)
        server.close()


def _operator(ca: CertificateAuthority, now: datetime):  # type: ignore[no-untyped-def]
    issued = ca.issue(Role.OPERATOR, "ops", now)
    return issued.private_key, issued.cert_pem
