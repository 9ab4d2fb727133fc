"""Issue 13 item 5: the audit chain's anchors anchor.

Before the fix ``verify(expected_head)`` compared only when the log ended exactly at the anchor,
so entries deleted and re-appended went unnoticed; nothing signed or exported an anchor, nothing
ran ``verify``; on PostgreSQL TRUNCATE (or disabling the trigger) got around the append-only rule.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection, delete, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from smarthub.cli import app
from smarthub.clock import ManualClock
from smarthub.gdsc.audit import AuditLog, audit_log
from smarthub.gdsc.store import Store, StoredReading
from smarthub.sim.fleet import provision

T0 = datetime(2026, 8, 1, 9, tzinfo=UTC)


def append(log: AuditLog, n: int, who: str = "S1") -> None:
    for i in range(n):
        log.append(
            at=T0 + timedelta(minutes=i),
            actor=who,
            role="supplier",
            action="read-readings",
            premises_id="P1",
            allow=True,
            reason=f"{who} {i}",
        )


@contextlib.contextmanager
def as_owner_without_trigger(store: Store) -> Iterator[Connection]:
    """What the owner of the table (or a superuser) can still do on PostgreSQL."""
    with store.engine.begin() as c:
        if store.dialect == "postgresql":
            c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        yield c
        if store.dialect == "postgresql":
            c.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    s.create_schema()
    yield s
    s.close()


def test_deleting_and_reappending_is_detected_against_every_anchor(store: Store) -> None:
    log = AuditLog(store.engine)
    append(log, 2)
    early = log.head()
    append(log, 3)
    late = log.head()  # entry 5
    assert log.verify(anchors=[early, late]).ok
    # Entries 3.. deleted and three others appended in their place: a valid chain, one entry longer.
    with as_owner_without_trigger(store) as c:
        c.execute(delete(audit_log).where(audit_log.c.seq >= 3))
    append(log, 4, who="FORGER")
    assert log.verify().ok  # the chain alone cannot tell
    v = log.verify(expected_head=late)  # the log no longer ends at the anchor
    assert not v.ok and v.problems == (
        "entry 5 does not match its anchor: the log was rewritten from there on",
    )
    v = log.verify(anchors=[early, late])
    assert not v.ok and len(v.problems) == 1  # entry 2 is untouched and matches its anchor
    # Truncated below an anchor, and a missing anchored entry in the middle.
    with as_owner_without_trigger(store) as c:
        c.execute(delete(audit_log).where(audit_log.c.seq >= 2))
    v = log.verify(anchors=[early])
    assert v.problems == ("log ends at seq 1, an anchor says 2: entries removed",)


def test_signed_anchors_are_exported_and_checked(tmp_path: Path, store: Store) -> None:
    from smarthub.gdsc.audit_anchors import AnchorError, read_anchors, sign_anchor, write_anchor
    from smarthub.gdsc.pki import CertificateAuthority, Role

    now = datetime.now(UTC)
    ca = CertificateAuthority.create("GDSC CA", now - timedelta(days=1))
    operator = ca.issue(Role.OPERATOR, "gdsc-operations", now - timedelta(days=1))
    assert operator.private_key is not None
    log = AuditLog(store.engine)
    path = tmp_path / "anchors.jsonl"
    assert write_anchor(log, path, operator.private_key, operator.cert_pem, now) is None  # empty log
    append(log, 3)
    first = write_anchor(log, path, operator.private_key, operator.cert_pem, now)
    assert first is not None and first.pair == log.head()
    assert write_anchor(log, path, operator.private_key, operator.cert_pem, now) is None  # unchanged head
    append(log, 1)
    write_anchor(log, path, operator.private_key, operator.cert_pem, now + timedelta(hours=1))
    anchors = read_anchors(path, ca.certificate)
    assert [a.seq for a in anchors] == [3, 4]
    assert log.verify(anchors=[a.pair for a in anchors]).ok

    lines = path.read_text().splitlines()
    forged = json.loads(lines[0]) | {"hash": "0" * 64}
    (tmp_path / "forged.jsonl").write_text(json.dumps(forged) + "\n")
    with pytest.raises(AnchorError, match="line 1: anchor of entry 3: the signature does not verify"):
        read_anchors(tmp_path / "forged.jsonl", ca.certificate)
    # Signed by a key the GDSC CA did not certify as an operator: refused.
    other = CertificateAuthority.create("GDSC CA", now - timedelta(days=1)).issue(Role.OPERATOR, "x", now)
    installer = ca.issue(Role.INSTALLER, "Ann", now - timedelta(days=1))
    for cert in (other, installer):
        assert cert.private_key is not None
        (tmp_path / "bad.jsonl").write_text(sign_anchor(anchors[0], cert.private_key, cert.cert_pem) + "\n")
        with pytest.raises(AnchorError, match="signer refused"):
            read_anchors(tmp_path / "bad.jsonl", ca.certificate)


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["gdsc", "audit", *args])


def test_gdsc_audit_verify_and_anchor_commands(tmp_path: Path, db_url: str) -> None:
    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))
    db = ["--db", db_url]
    store = Store(db_url)
    store.create_schema()
    try:
        log = AuditLog(store.engine)
        append(log, 4)
        r = cli("anchor", "--state", str(state), *db)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["seq"] == 4
        assert (state / "gdsc" / "audit-anchors.jsonl").exists()
        r = cli("verify", "--state", str(state), *db)
        assert r.exit_code == 0, r.output
        report = json.loads(r.stdout)
        assert report | {"head": None, "anchor_file": None} == {
            "ok": True,
            "entries": 4,
            "head": None,
            "anchors": 1,
            "anchored_up_to": 4,
            "anchor_file": None,
            "problems": [],
        }
        with as_owner_without_trigger(store) as c:
            c.execute(delete(audit_log).where(audit_log.c.seq >= 2))
        append(log, 5, who="FORGER")
        r = cli("verify", "--state", str(state), *db)
        assert r.exit_code == 2, r.output
        assert json.loads(r.stdout)["problems"] == [
            "entry 4 does not match its anchor: the log was rewritten from there on"
        ]
        # A second party's copy of the anchors, forged: refused with the line that is wrong.
        copy = tmp_path / "copy.jsonl"
        copy.write_text((state / "gdsc" / "audit-anchors.jsonl").read_text().replace('"seq":4', '"seq":3'))
        r = cli("verify", "--state", str(state), *db, "--anchors", str(copy))
        assert r.exit_code == 2 and "line 1: anchor of entry 3: the signature does not verify" in r.stderr
    finally:
        store.close()


def test_the_running_gdsc_anchors_every_hour_when_the_chain_grew(tmp_path: Path) -> None:
    from smarthub.gdsc.audit_anchors import read_anchors
    from smarthub.gdsc.commands import CommandSigner
    from smarthub.gdsc.pki import CertificateAuthority
    from smarthub.gdsc.service import Upkeep

    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))
    store = Store(f"sqlite:///{state / 'gdsc' / 'gdsc.sqlite'}")
    store.create_schema()
    try:
        signer = CommandSigner.from_files(
            str(state / "gdsc" / "operator.pem"),
            str(state / "gdsc" / "operator.key"),
            store.next_command_counter,
        )
        clock = ManualClock(T0)
        upkeep = Upkeep(state, store, None, signer, clock, ManualClock(datetime.now(UTC)), state / "crl.pem")  # type: ignore[arg-type]
        log = AuditLog(store.engine)
        append(log, 2)
        upkeep._anchor(clock.now())
        append(log, 1)
        clock.advance(timedelta(minutes=59))
        upkeep._anchor(clock.now())  # not due yet
        clock.advance(timedelta(minutes=1))
        upkeep._anchor(clock.now())
        clock.advance(timedelta(hours=1))
        upkeep._anchor(clock.now())  # due, but nothing new to anchor
        ca = CertificateAuthority.load(state / "ca")
        anchors = read_anchors(state / "gdsc" / "audit-anchors.jsonl", ca.certificate)
        assert [a.seq for a in anchors] == [2, 3]
    finally:
        store.close()


@pytest.mark.postgres
def test_postgresql_application_role_cannot_get_around_the_append_only_audit_log(pg_url: str) -> None:
    """The owner is refused TRUNCATE by the trigger; the application role made by ``smarthub gdsc
    db-role`` can append and run the store, but cannot TRUNCATE, DELETE, UPDATE the audit log, nor
    disable its trigger, nor switch triggers off for its session."""
    from smarthub.gdsc.db_roles import grant_application_role

    owner = Store(pg_url)
    owner.create_schema()
    role = f"smarthub_app_{uuid.uuid4().hex[:10]}"
    app_store = None
    try:
        append(AuditLog(owner.engine), 2)
        with pytest.raises(DBAPIError, match=r"append-only \(TRUNCATE refused\)"), owner.engine.begin() as c:
            c.execute(text("TRUNCATE audit_log"))
        r = CliRunner().invoke(app, ["gdsc", "db-role", "--db", pg_url, "--role", role])
        assert r.exit_code == 0, r.output
        assert (
            "interval_blocks" in json.loads(r.stdout)["owns"]
            and "audit_log" not in json.loads(r.stdout)["owns"]
        )
        app_store = Store(pg_url.replace("postgres@", f"{role}@", 1))
        app_store.create_schema()  # at head: the application starts as usual
        log = AuditLog(app_store.engine)
        append(log, 1, who="APP")
        app_store.register_hub(
            hub_id="H1", premises_id="P1", url="https://h", lfdi="A" * 40, meters_by_fuel=[]
        )
        start = int(T0.timestamp())
        res = app_store.ingest("H1", [StoredReading("H1", "E1", "1-0:1.8.0", start, 1800, 5, 0, 72, 0)], {})
        assert res.inserted == 1  # a new day partition, created by the application role
        for stmt, refusal in (
            ("TRUNCATE audit_log", "permission denied"),
            ("DELETE FROM audit_log", "permission denied"),
            ("UPDATE audit_log SET actor = 'x'", "permission denied"),
            ("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only", "must be owner"),
            ("ALTER TABLE audit_log DISABLE TRIGGER ALL", "must be owner"),
            ("DROP TRIGGER audit_log_no_truncate ON audit_log", "must be owner"),
            ("SET session_replication_role = replica", "permission denied"),
        ):
            with pytest.raises(DBAPIError, match=refusal), app_store.engine.begin() as c:
                c.execute(text(stmt))
        v = log.verify()
        assert v.ok and v.entries == 3
        # A superuser (here the owner) cannot be made the application role.
        with pytest.raises(ValueError, match="is a superuser"):
            grant_application_role(owner.engine, "postgres")
    finally:
        if app_store is not None:
            app_store.close()
        owner.close()
        with owner.engine.begin() as c:
            # The role's backends drop their temporary tables as they exit: wait for them to go.
            for _ in range(500):
                left = c.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE usename = :r"), {"r": role}
                )
                if left.scalar_one() == 0:
                    break
                c.execute(text("SELECT pg_sleep(0.01), pg_stat_clear_snapshot()"))
            c.execute(text(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER'))
            c.execute(text(f'DROP OWNED BY "{role}"'))
            c.execute(text(f'DROP ROLE IF EXISTS "{role}"'))


def test_operator_key_is_the_anchor_signer(tmp_path: Path) -> None:
    """The anchor file of a state directory is signed with its operator key (the one hubs trust)."""
    from smarthub.gdsc.audit_anchors import anchor_state, read_anchors
    from smarthub.gdsc.pki import CertificateAuthority

    state = tmp_path / "state"
    provision(state, [], datetime.now(UTC) - timedelta(minutes=5))
    store = Store(f"sqlite:///{state / 'gdsc' / 'gdsc.sqlite'}")
    store.create_schema()
    append(AuditLog(store.engine), 1)
    store.close()
    anchor_state(state, datetime.now(UTC))
    (a,) = read_anchors(
        state / "gdsc" / "audit-anchors.jsonl", CertificateAuthority.load(state / "ca").certificate
    )
    line = json.loads((state / "gdsc" / "audit-anchors.jsonl").read_text())
    assert line["signer"] == (state / "gdsc" / "operator.pem").read_text() and a.seq == 1
    key = serialization.load_pem_private_key((state / "gdsc" / "operator.key").read_bytes(), None)
    assert key is not None
