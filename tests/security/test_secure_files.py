"""Secrets at rest (issue 13, item 9): the hub's SQLite files are owner-only, and a delivered
``meter.key`` command's envelope is gone from the GDSC's SQLite file and its WAL, not only from
the row.

The bytes are read from the files as any local user (or a backup) would read them."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from smarthub.clock import ManualClock
from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE
from smarthub.gdsc.store import Store
from smarthub.hub.delivered_keys import FILE_NAME as DELIVERED_KEYS_FILE
from smarthub.hub.delivered_keys import DeliveredKeys
from smarthub.hub.diagnostics import DiagnosticsLog
from smarthub.hub.history import HistoryStore
from smarthub.hub.ihd.store import IhdStore
from smarthub.hub.management import ManagementInterface
from smarthub.hub.prepayment import PrepaymentLedger
from smarthub.hub.privacy import ConsentStore, Granularity
from smarthub.hub.registry import MeterRegistry

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual default: files come out 0644 unless asked otherwise
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_hub_database_and_its_wal_is_owner_only(tmp_path: Path, loose_umask: None) -> None:
    ca = CertificateAuthority.create("test CA", T0)
    clock = ManualClock(T0)
    history = HistoryStore(tmp_path / "history.sqlite")
    history.add_meter("E1", "electricity")
    opened = [
        history,
        DiagnosticsLog.beside(tmp_path / "history.sqlite"),
        ManagementInterface("HUB1", ca.certificate, clock, tmp_path / "management.sqlite"),
        IhdStore(tmp_path / "ihd.sqlite"),
        PrepaymentLedger(tmp_path / "prepayment.sqlite", "HUB1", ca.certificate),
        MeterRegistry(tmp_path / "meters.sqlite", clock),
        DeliveredKeys(tmp_path / DELIVERED_KEYS_FILE, os.urandom(32)),
    ]
    consent = ConsentStore(tmp_path / "consent.sqlite")
    consent.set("TP1", Granularity.DAILY, T0)
    opened.append(consent)
    files = sorted(p for p in tmp_path.iterdir() if ".sqlite" in p.name)
    assert {p.name for p in files} >= {
        f"{n}.sqlite" for n in ("history", "management", "consent", "ihd", "meter_keys")
    }
    assert any(p.name.endswith("-wal") for p in files)  # WAL mode: the side files exist and are checked
    for p in files:
        assert _mode(p) == 0o600, f"{p.name} is {oct(_mode(p))}"
    for store in opened:
        if isinstance(store, DiagnosticsLog):
            store.disconnect()
        else:
            store.close()  # type: ignore[attr-defined]


def test_a_database_an_older_version_left_world_readable_is_tightened_on_open(
    tmp_path: Path, loose_umask: None
) -> None:
    path = tmp_path / "consent.sqlite"
    ConsentStore(path).close()
    os.chmod(path, 0o644)
    ConsentStore(path).close()
    assert _mode(path) == 0o600


def _raw(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name))


def test_a_delivered_meter_key_is_gone_from_the_sqlite_file_and_its_wal(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("test CA", T0)
    operator = ca.issue(Role.OPERATOR, "ops", T0)
    db = tmp_path / "gdsc.sqlite"
    store = Store(f"sqlite:///{db}")
    store.create_schema()
    store.register_hub(
        hub_id="HUB1", premises_id="P1", url="https://127.0.0.1:1", lfdi="0" * 40, meters_by_fuel=[]
    )
    assert operator.private_key is not None
    signer = CommandSigner(operator.private_key, operator.cert_pem, store.next_command_counter)
    plan = PullPlan(store)
    key = "5ec2e7" + "a1" * 13  # 16 bytes, hex, easy to find
    job = plan.queue_command(signer, "HUB1", "meter.key", {"meter": "W1", "key": key}, T0)
    assert key.encode() in _raw(db)  # while it may be sent, the envelope holds the key
    (claim,) = plan.claim_urgent("c1", T0, 10)
    plan.finish_urgent(claim, True, T0, result={"meter": "W1", "ports": 1, "pending": False})
    assert plan.urgent_job(job)["state"] == DONE
    # Not in the row (cleared), nor in a free slot of its page, nor in the WAL's old frames.
    assert key.encode() not in _raw(db)
    assert key.upper().encode() not in _raw(db)
    store.close()
