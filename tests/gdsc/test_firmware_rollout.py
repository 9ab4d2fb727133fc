"""A firmware roll-out offers the version again to a hub whose delivery the plan gave up (issue 24:
the 30-day chaos run's good version reached 46 of 49 hubs, the others away through their batch)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from smarthub.gdsc.commands.firmware_rollout import FirmwareRollout
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.fleet.registry import hubs
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE, FAILED, urgent_work
from smarthub.gdsc.store import Store

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ACTIVE = json.dumps({"status": "applied", "result": {"status": "active"}})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'gdsc.sqlite'}")
    s.create_schema()
    for hub in ("H1", "H2", "H3", "H4"):
        s.register_hub(
            hub_id=hub, premises_id=f"P-{hub}", url="https://127.0.0.1:1", lfdi="A" * 40, meters_by_fuel=[]
        )
    yield s
    s.close()


def _finish(store: Store, job: int, state: str, result: str | None = None) -> None:
    with store.engine.begin() as conn:
        conn.execute(update(urgent_work).where(urgent_work.c.id == job).values(state=state, result=result))


def test_an_undelivered_hub_is_offered_the_version_again_and_the_roll_out_completes(store: Store) -> None:
    ca = CertificateAuthority.create("GDSC CA", T0 - timedelta(days=1))
    op = ca.issue(Role.OPERATOR, "operator", T0 - timedelta(days=1))
    assert op.private_key is not None
    signer = CommandSigner(op.private_key, op.cert_pem, store.next_command_counter)
    rollout = FirmwareRollout(PullPlan(store), signer, b"package", ["H1", "H2", "H3", "H4"], (1, 2))
    assert rollout.tick(T0) == 1
    _finish(store, rollout.queued["H1"], DONE, ACTIVE)
    assert rollout.tick(T0 + timedelta(minutes=30)) == 2  # H2, H3
    # H2 was away through its batch: the plan gave its delivery up. Not a reason to halt (it
    # never ran the version), and not a hub the roll-out is done with.
    _finish(store, rollout.queued["H2"], FAILED)
    _finish(store, rollout.queued["H3"], DONE, ACTIVE)
    first = rollout.queued["H2"]
    assert rollout.tick(T0 + timedelta(hours=1)) == 1  # H4, the next batch
    assert rollout.verdicts["H2"] == "undelivered" and rollout.halted is None and not rollout.done
    # H4 is revoked meanwhile and its delivery dropped: it is not offered again.
    with store.engine.begin() as conn:
        conn.execute(update(hubs).where(hubs.c.hub_id == "H4").values(status="revoked"))
    _finish(store, rollout.queued["H4"], FAILED)
    assert rollout.tick(T0 + timedelta(hours=2)) == 0  # too soon to offer H2 again
    assert rollout.tick(T0 + timedelta(hours=8)) == 1  # H2 again; H4 ended
    assert rollout.queued["H2"] != first and rollout.verdicts["H4"] == "ended"
    assert not rollout.done
    _finish(store, rollout.queued["H2"], DONE, ACTIVE)
    assert rollout.tick(T0 + timedelta(hours=9)) == 0
    assert rollout.done and rollout.halted is None
    assert rollout.updated == ["H1", "H2", "H3"]
