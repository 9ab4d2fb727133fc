"""`smarthub gdsc service ...`: the onboarding of a third-party data service from the command line
over a state directory's store; the credentials it prints obtain a token limited to the approval."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from smarthub.cli import app
from smarthub.clock import ManualClock
from smarthub.gdsc.api.auth.clients import ClientRegistry
from smarthub.gdsc.api.auth.oauth import TokenEndpoint
from smarthub.gdsc.governance.audit import AuditLog
from smarthub.gdsc.store import Store
from smarthub.sim.fleet import provision


def test_apply_approve_suspend_revoke_on_the_command_line(tmp_path: Path) -> None:
    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))
    runner = CliRunner()
    s = ["--state", str(state)]
    apply = [
        "gdsc", "service", "apply", "ADV", *s, "--organisation", "Advisor Ltd", "--purpose", "tariff advice",
        "--data-kind", "readings", "--granularity", "half-hourly", "--retention-days", "90",
    ]  # fmt: skip
    r = runner.invoke(app, apply)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"service": "ADV", "status": "applied"}
    r = runner.invoke(app, [*apply[:4], *s, "--organisation", "X", "--purpose", "p", "--data-kind", "gossip",
                            "--granularity", "daily", "--retention-days", "9"])  # fmt: skip
    assert r.exit_code != 0 and "gossip" in r.output
    r = runner.invoke(app, ["gdsc", "service", "refuse", "ADV", *s])
    assert r.exit_code != 0 and "reason" in r.output  # a refusal says why
    r = runner.invoke(app, ["gdsc", "service", "approve", "ADV", *s, "--by", "OPS-7"])
    assert r.exit_code == 0, r.output
    creds = json.loads(r.output)
    assert (creds["status"], creds["scope"]) == ("approved", "readings:read services tariffs:read")

    store = Store(f"sqlite:///{state / 'gdsc' / 'gdsc.sqlite'}")
    try:
        endpoint = TokenEndpoint(ClientRegistry(store.engine), ManualClock(datetime.now(UTC)))
        form = f"grant_type=client_credentials&client_id={creds['client_id']}&client_secret={creds['client_secret']}"
        headers = {"content-type": "application/x-www-form-urlencoded"}
        assert endpoint.handle("POST", headers, form.encode()).scope == "readings:read services tariffs:read"
        r = runner.invoke(app, ["gdsc", "service", "suspend", "ADV", *s, "--reason", "unpaid fees"])
        assert r.exit_code == 0 and json.loads(r.output)["status"] == "suspended", r.output
        r = runner.invoke(app, ["gdsc", "service", "revoke", "ADV", *s, "--reason", "unpaid fees, 90 days"])
        assert r.exit_code == 0, r.output
        assert ClientRegistry(store.engine).authenticate(creds["client_id"], creds["client_secret"]) is None
        listed = [
            json.loads(line)
            for line in runner.invoke(app, ["gdsc", "service", "list", *s]).output.splitlines()
        ]
        assert [(x["service"], x["status"], x["reason"]) for x in listed] == [
            ("ADV", "revoked", "unpaid fees, 90 days")
        ]
        audit = [
            (e.actor, e.action) for e in AuditLog(store.engine).entries() if e.action.startswith("service-")
        ]
        assert audit == [
            ("ADV", "service-apply"),
            ("OPS-7", "service-approve"),
            ("OPERATOR", "service-suspend"),
            ("OPERATOR", "service-revoke"),
        ]
    finally:
        store.close()
