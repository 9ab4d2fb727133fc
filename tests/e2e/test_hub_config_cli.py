"""`smarthub hub --config hub.toml` as a process: it starts from the file, serves 2030.5, takes
signed commands that reach its meters, and stops cleanly on SIGTERM; a mistake in the file is one
line naming its line and field, exit status 2."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from smarthub.gdsc.commands import CommandSigner
from smarthub.gdsc.pki import CertificateAuthority, Role
from smarthub.wan.client.hub_client import HubClient, PullError
from smarthub.wan.tls import client_context

from .test_hub_cli import free_port


async def test_a_hub_process_from_a_config_file(tmp_path: Path, wall_now: datetime) -> None:
    ca = CertificateAuthority.create("GDSC CA", wall_now)
    ca.save(tmp_path / "ca")
    state = tmp_path / "hub"
    state.mkdir()
    hub_cert = ca.issue(Role.HUB, "HUB7", wall_now, hosts=("127.0.0.1",))
    hub_cert.save(state, "hub")
    ca.issue(Role.COLLECTOR, "c1", wall_now).save(tmp_path, "collector")
    operator = ca.issue(Role.OPERATOR, "ops", wall_now)
    wan_port = free_port()
    sml_id = "0a01454d480000003039"
    config = tmp_path / "hub.toml"
    config.write_text(f"""
[hub]
id = "HUB7"
state = "{state}"
ca = "{tmp_path / "ca" / "ca.pem"}"

[wan]
listen = "127.0.0.1"
port = {wan_port}

[transports.p1]
kind = "simulated"
options = {{ seed = 3 }}

[[meters]]
id = "E00000000007"
protocol = "dsmr"
transport = "p1"

[[meters]]
id = "G00000000007"
protocol = "dsmr"
fuel = "gas"
transport = "p1"

[[meters]]
id = "{sml_id}"
protocol = "sml"
transport = {{ kind = "simulated", options = {{ seed = 4 }} }}
poll_every = "2s"
""")
    proc = subprocess.Popen(
        [sys.executable, "-m", "smarthub.cli", "hub", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ctx = client_context(tmp_path / "collector.pem", tmp_path / "collector.key", tmp_path / "ca" / "ca.pem")
    client = HubClient(f"https://127.0.0.1:{wan_port}", ctx, hub_cert.lfdi)
    counter = iter(range(1, 100))
    assert operator.private_key is not None
    signer = CommandSigner(operator.private_key, operator.cert_pem, next_counter=lambda hub: next(counter))
    try:
        verdict = None
        for _ in range(150):
            try:
                test = signer.command("HUB7", "diagnostic.link_test", {"meter": sml_id}, wall_now)
                verdict = await client.post_command(test.envelope())
                break
            except PullError:
                await asyncio.sleep(0.1)  # the hub process is still starting
        assert verdict is not None and verdict["status"] == "applied", verdict
        assert verdict["result"]["ok"] is True  # the command reached the meter through its loop
        unknown = signer.command("HUB7", "diagnostic.link_test", {"meter": "nope"}, wall_now)
        assert (await client.post_command(unknown.envelope()))["status"] == "failed"
    finally:
        await client.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(20)
        stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert code == 0, stderr  # stopped cleanly: every part closed
    assert "hub HUB7 serving IEEE 2030.5" in stderr and "sml: " + sml_id in stderr

    config.write_text(config.read_text().replace('protocol = "sml"', 'protocol = "smll"'))
    bad = subprocess.run(
        [sys.executable, "-m", "smarthub.cli", "hub", "--config", str(config)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith(
        "meters[2].protocol: 'smll' is not one of dsmr, dlms, iec62056-21, mbus, wmbus, zigbee, sml (did you mean 'sml'?)"
    )
    assert f"{config} line 28: " in bad.stderr
