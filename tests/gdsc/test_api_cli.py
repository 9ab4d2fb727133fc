"""`smarthub gdsc token` and `smarthub gdsc api`: a token issued on the command line authenticates
against the API served by uvicorn (a real process on a loopback port) over the state's store."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from typer.testing import CliRunner

from smarthub.cli import app
from smarthub.gdsc.api.auth.tokens import TokenStore, token_digest
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import provision


def state_dir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))
    return state


def test_token_is_printed_once_and_only_its_hash_stored(tmp_path: Path) -> None:
    state = state_dir(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["gdsc", "token", "--state", str(state), "--party", "S1"])
    assert r.exit_code == 2 and "no party 'S1'; give --role to create it" in r.output
    r = runner.invoke(app, ["gdsc", "token", "--state", str(state), "--party", "S1", "--role", "grocer"])
    assert r.exit_code == 2 and "roles: supplier" in r.output
    r = runner.invoke(app, ["gdsc", "token", "--state", str(state), "--party", "S1", "--role", "supplier"])
    assert r.exit_code == 0, r.output
    token = r.output.strip()
    again = runner.invoke(app, ["gdsc", "token", "--state", str(state), "--party", "S1"]).output.strip()
    assert token != again and len(token) >= 40
    store = Store(f"sqlite:///{state / 'gdsc' / 'gdsc.sqlite'}")
    tokens = TokenStore(store.engine)
    assert tokens[token_digest(token)] == "S1" and len(tokens) == 2
    assert token not in (state / "gdsc" / "gdsc.sqlite").read_bytes().decode("latin-1")
    assert tokens.revoke(token, datetime.now(UTC)) and token_digest(token) not in tokens
    store.close()
    r = runner.invoke(app, ["gdsc", "token", "--state", str(tmp_path / "nowhere"), "--party", "S1"])
    assert r.exit_code == 2 and "has no gdsc/ directory" in r.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_api_is_served_over_the_state_store(tmp_path: Path) -> None:
    state = state_dir(tmp_path)
    runner = CliRunner()
    args = ["gdsc", "token", "--state", str(state), "--party"]
    supplier = runner.invoke(app, [*args, "S1", "--role", "supplier"]).output.strip()
    customer = runner.invoke(app, [*args, "ACME", "--role", "consumer"]).output.strip()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smarthub.cli", "gdsc", "api", "--state", str(state), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):  # wait (at most ~20 s) for uvicorn to listen
            try:
                spec = httpx.get(f"{base}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
                time.sleep(0.1)
        else:
            raise AssertionError("the API did not start listening")
        assert "/v1/premises/{premises_id}/commands/top-up" in spec.json()["paths"]
        r = httpx.get(f"{base}/v1/portfolio", headers={"Authorization": f"Bearer {customer}"})
        assert r.status_code == 200 and r.json() == {"customer_id": "ACME", "sites": [], "next_after": None}
        r = httpx.get(f"{base}/v1/portfolio", headers={"Authorization": f"Bearer {supplier}"})
        assert r.status_code == 403 and "S1 is a supplier" in r.json()["detail"]
        r = httpx.get(f"{base}/v1/portfolio", headers={"Authorization": "Bearer forged"})
        assert r.status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)
