"""A meter key delivered by the signed ``meter.key`` command outlives the hub process: the hub
is killed (SIGKILL) and started again from the same configuration file (which still names the
old key), and the meter's frames encrypted with the new key decode and their readings are stored (smarthub.hub.delivered_keys)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.hub.delivered_keys import FILE_NAME
from smarthub.hub.history import HistoryStore
from smarthub.sim.load_profile import HouseholdProfile
from smarthub.sim.wmbus_meter import WMBusMeterSimulator
from smarthub.wan.client.hub_client import HubClient, PullError
from smarthub.wan.tls import client_context

from .test_hub_cli import free_port

CONFIGURED = bytes.fromhex("000102030405060708090A0B0C0D0E0F")


async def test_a_delivered_meter_key_survives_a_killed_and_restarted_hub(
    tmp_path: Path, wall_now: datetime
) -> None:
    ca = CertificateAuthority.create("GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    state = tmp_path / "hub"
    state.mkdir()
    hub_cert = ca.issue(Role.HUB, "HUB8", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(state, "hub")
    ca.issue(Role.COLLECTOR, "c1", wall_now).save(tmp_path, "collector")
    operator = ca.issue(Role.OPERATOR, "ops", wall_now)
    assert operator.private_key is not None
    new_key = os.urandom(16)
    t0 = wall_now.replace(minute=0, second=0, microsecond=0, tzinfo=UTC) - timedelta(hours=3)
    meter = WMBusMeterSimulator(12345678, "LSE", "water", CONFIGURED, HouseholdProfile(2), t0)

    # The radio receiver: each connection gets the lines queued for it, then the line stays open.
    lines: list[bytes] = []

    writers: list[asyncio.StreamWriter] = []

    async def receiver(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        writer.write(b"".join(lines))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await reader.read()

    server = await asyncio.start_server(receiver, "127.0.0.1", 0)
    radio_port = server.sockets[0].getsockname()[1]
    wan_port = free_port()
    config = tmp_path / "hub.toml"
    config.write_text(f"""
[hub]
id = "HUB8"
state = "{state}"
ca = "{tmp_path / "ca" / "ca.pem"}"

[wan]
listen = "127.0.0.1"
port = {wan_port}

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
key = "{CONFIGURED.hex()}"
""")
    config.chmod(0o600)  # it holds a key inline
    ctx = client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    counter = iter(range(1, 100))
    signer = CommandSigner(operator.private_key, operator.cert_pem, next_counter=lambda hub: next(counter))

    def start(log_name: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / log_name, "wb") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "smarthub.cli", "hub", "--config", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    async def command(client: HubClient, ctype: str, body: dict[str, object]) -> dict[str, object]:
        for _ in range(300):
            try:
                return await client.post_command(signer.command("HUB8", ctype, body, wall_now).envelope())
            except PullError:
                await asyncio.sleep(0.1)  # the hub process is still starting
        raise AssertionError(f"the hub never took {ctype}: {(tmp_path / 'first.log').read_text()}")

    proc = start("first.log")
    client = HubClient(f"https://127.0.0.1:{wan_port}", ctx, hub_cert.lfdi)
    try:
        verdict = await command(client, "meter.key", {"meter": meter.meter_id, "key": new_key.hex()})
        assert verdict["status"] == "applied", verdict
        assert new_key.hex() not in str(verdict)
    finally:
        await client.close()
        os.kill(proc.pid, signal.SIGKILL)  # no clean stop: the key must already be on disk
        proc.wait(20)
    assert (state / FILE_NAME).exists()
    for path in state.iterdir():  # in no hub file in clear (master.key is the wrapping key)
        if path.is_file() and path.suffix != ".key":
            raw = path.read_bytes()
            assert new_key not in raw and new_key.hex().encode() not in raw, path.name

    # The meter now sends under the new key only; the configuration file still names the old one.
    meter.key = new_key
    lines[:] = [meter.frame_at(t0 + timedelta(minutes=10 * i)).hex().encode() + b"\n" for i in range(1, 14)]
    proc = start("second.log")

    async def frames() -> dict[str, float]:  # the hub's counters, as the GDSC's collectors read them
        async with httpx.AsyncClient(verify=ctx, timeout=10) as http:
            text = (await http.get(f"https://127.0.0.1:{wan_port}/metrics")).text
        return {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line.startswith(("smarthub_hub_frames_total", "smarthub_hub_readings_total"))
        }

    counters: dict[str, float] = {}
    try:
        for _ in range(600):
            try:
                counters = await frames()
            except httpx.HTTPError:
                await asyncio.sleep(0.1)  # the hub process is still starting
                continue
            if counters.get('smarthub_hub_frames_total{result="ok"}', 0) >= 13:
                break
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        server.close()
        for w in writers:
            w.close()
        await asyncio.sleep(0)
    second = (tmp_path / "second.log").read_text()
    assert code == 0, second
    assert "rejected frame" not in second, second
    assert new_key.hex() not in second.lower()
    # Every frame sent under the new key decoded, none failed, and their readings were taken.
    assert counters['smarthub_hub_frames_total{result="ok"}'] == 13, counters
    assert counters['smarthub_hub_frames_total{result="error"}'] == 0, counters
    assert counters["smarthub_hub_readings_total"] > 0, counters
    # ...and reached the history (the first run heard no frame: the meter is there from these).
    store = HistoryStore(state / "history.sqlite")
    try:
        assert store.meters() == {meter.meter_id: "water"}
    finally:
        store.close()
