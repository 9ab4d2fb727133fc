"""The GDSC's meter key escrow (smarthub.gdsc.fleet.key_escrow), on SQLite and PostgreSQL: keys
sealed under the key-encryption key and bound to their meter; a wrong KEK or a row moved to another
meter fails with an error naming them; no key in clear in the database's raw bytes — SQLite's file
and WAL, PostgreSQL's heap pages with their dead tuples (read with pageinspect) — neither for a
shipment file's keys, nor for a ``meter.key`` queued, nor for the keys stored in clear before
migration 0023 once a GDSC opens the store with its KEK."""

from __future__ import annotations

import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, insert, select

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.fleet.field_meters import FieldMeters, meter_shipments
from smarthub.gdsc.fleet.key_escrow import (
    DELIVERED,
    SHIPMENT,
    EscrowKeyError,
    EscrowUnavailable,
    KeyEscrow,
    load_or_create_kek,
    meter_key_escrow,
)
from smarthub.gdsc.fleet.pki import CertificateAuthority, Role
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.store import Store

NOW = datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
KEK = bytes(range(32))
KEY_A, KEY_B, KEY_C = bytes.fromhex("a1" * 16), bytes.fromhex("b2" * 16), bytes.fromhex("c3" * 16)


def _forms(key: bytes) -> list[bytes]:
    """How a key may sit in a file: raw, or as hex text in either case."""
    return [key, key.hex().encode(), key.hex().upper().encode()]


def _pg_raw(conn: Connection, table: str) -> bytes:
    """Every heap page of ``table`` as PostgreSQL holds it (live and dead tuples alike)."""
    schema = conn.exec_driver_sql("SELECT current_schema()").scalar()
    if conn.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pageinspect'").first() is None:
        conn.exec_driver_sql(f"CREATE EXTENSION pageinspect SCHEMA {schema}")  # dropped with the schema
    pages = conn.exec_driver_sql(
        f"SELECT pg_relation_size('{table}') / current_setting('block_size')::int"
    ).scalar_one()
    return b"".join(
        bytes(conn.exec_driver_sql(f"SELECT get_raw_page('{table}', {i})").scalar_one()) for i in range(pages)
    )


def _raw(store: Store, db_url: str, *tables: str) -> bytes:
    if store.dialect == "sqlite":
        path = Path(db_url.removeprefix("sqlite:///"))
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return b"".join(_pg_raw(conn, t) for t in tables)


def _assert_absent(raw: bytes, *keys: bytes) -> None:
    for key in keys:
        for form in _forms(key):
            assert form not in raw, f"{form!r} found in the database's raw bytes"


@pytest.fixture
def store(db_url: str) -> Store:
    s = Store(db_url)
    s.create_schema()
    s.register_hub(hub_id="H1", premises_id="P1", url="https://h1", lfdi="A" * 40, meters_by_fuel=[])
    yield s  # type: ignore[misc]
    s.close()


def test_a_sealed_key_opens_only_under_its_kek_and_for_its_meter() -> None:
    escrow = KeyEscrow(KEK)
    nonce, sealed = escrow.seal("LSE00000001", KEY_A)
    assert KEY_A not in sealed and len(sealed) == 16 + 16  # ciphertext and GCM tag
    assert escrow.open("LSE00000001", nonce, sealed) == KEY_A
    with pytest.raises(EscrowKeyError, match=r"meter LSE00000002: .* does not open under key-encryption key"):
        escrow.open("LSE00000002", nonce, sealed)  # the row moved to another meter
    other = KeyEscrow(bytes(32))
    with pytest.raises(EscrowKeyError, match=f"meter LSE00000001: .*{other.kek_id}"):
        other.open("LSE00000001", nonce, sealed)
    # A row that names the KEK it was sealed under says which, not just "wrong tag".
    with pytest.raises(
        EscrowKeyError, match=f"sealed under key-encryption key {escrow.kek_id}, this GDSC holds"
    ):
        other.open("LSE00000001", nonce, sealed, escrow.kek_id)
    with pytest.raises(ValueError, match="16 bytes"):
        escrow.seal("LSE00000001", b"short")


def test_the_kek_file_is_created_once_0600_and_then_read(tmp_path: Path) -> None:
    path = tmp_path / "gdsc" / "escrow.key"
    first = load_or_create_kek(path)
    assert len(first) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_kek(path) == first  # not replaced by a second process
    assert [p.name for p in path.parent.iterdir()] == ["escrow.key"]  # no temporary left
    path.write_bytes(b"too short")
    with pytest.raises(EscrowKeyError, match="holds 9 bytes"):
        load_or_create_kek(path)


def test_shipment_and_delivered_keys_are_in_no_table_in_clear(
    store: Store, db_url: str, tmp_path: Path
) -> None:
    store.enable_key_escrow(KeyEscrow(KEK))
    field = FieldMeters(store.engine, escrow=store.key_escrow)
    csv = "meter_id,manufacturer,protocol,fuel,key\n" + (
        f"LSE00000001,LSE,wmbus,water,{KEY_A.hex()}\nLSE00000002,LSE,wmbus,water,{KEY_B.hex()}\n"
        "LSE00000003,LSE,wmbus,water,\n"
    )
    assert field.import_shipment(csv, "LSE-2026-12", NOW) == 3
    # A meter.key queued for a hub: the escrow keeps it, sealed, beside the job that carries it.
    now = NOW
    ca = CertificateAuthority.create("ca", now)
    op = ca.issue(Role.OPERATOR, "ops", now)
    signer = CommandSigner(op.private_key, op.cert_pem, store.next_command_counter)
    job = PullPlan(store).queue_command(
        signer, "H1", "meter.key", {"meter": "LSE00000001", "key": KEY_C.hex()}, now
    )
    with store.engine.connect() as conn:
        escrow = store.key_escrow
        assert escrow is not None
        assert escrow.shipment_key(conn, "LSE00000001") == KEY_A
        assert escrow.shipment_key(conn, "LSE00000003") is None  # sends in clear: no key
        delivered = escrow.of_job(conn, job)
        assert delivered is not None and (delivered.meter_id, delivered.key, delivered.hub_id) == (
            "LSE00000001",
            KEY_C,
            "H1",
        )
        # The meter's current key: the delivery once a hub applied it, the shipment's before.
        assert escrow.current(conn, {"LSE00000001"}, set())["LSE00000001"].source == SHIPMENT
        assert escrow.current(conn, {"LSE00000001"}, {job})["LSE00000001"].source == DELIVERED
        assert conn.execute(select(meter_shipments.c.meter_key)).scalars().all() == [None, None, None]
    # Delivered: the command's envelope is cleared (SECRET_COMMANDS); until then it holds the key
    # in clear in urgent_work (README "Not done yet"), so SQLite's whole file is read after it.
    plan = PullPlan(store)
    (claim,) = plan.claim_urgent("c1", now, 10)
    plan.finish_urgent(claim, True, now, result={"status": "applied"})
    store.scrub_wal()
    _assert_absent(_raw(store, db_url, "meter_shipments", "meter_key_escrow"), KEY_A, KEY_B, KEY_C)
    # Re-importing a shipment replaces its meters' keys (one shipment key per meter).
    field.import_shipment(csv.replace(KEY_B.hex(), KEY_C.hex()), "LSE-2026-12b", NOW)
    with store.engine.connect() as conn:
        assert store.key_escrow.shipment_key(conn, "LSE00000002") == KEY_C
        rows = conn.execute(select(meter_key_escrow.c.meter_id).where(meter_key_escrow.c.source == SHIPMENT))
        assert sorted(rows.scalars()) == ["LSE00000001", "LSE00000002"]


def test_a_shipment_with_keys_is_refused_without_an_escrow(store: Store) -> None:
    csv = f"meter_id,manufacturer,protocol,fuel,key\nLSE00000001,LSE,wmbus,water,{KEY_A.hex()}\n"
    with pytest.raises(EscrowUnavailable, match="no key escrow"):
        FieldMeters(store.engine).import_shipment(csv, "S", NOW)
    # A shipment of meters that send in clear needs none.
    assert FieldMeters(store.engine).import_shipment(csv.replace(KEY_A.hex(), ""), "S", NOW) == 1


def test_keys_stored_in_clear_before_the_escrow_are_sealed_and_gone_from_the_raw_bytes(
    store: Store, db_url: str
) -> None:
    # A shipment imported before migration 0023 kept its key in clear in meter_shipments.
    with store.engine.begin() as conn:
        conn.execute(
            insert(meter_shipments).values(
                meter_id="LSE00000009", manufacturer="LSE", protocol="wmbus", fuel="water",
                meter_key=KEY_A.hex(), shipment="old", imported_at=NOW,
            )
        )  # fmt: skip
    raw = _raw(store, db_url, "meter_shipments")
    assert any(form in raw for form in _forms(KEY_A))  # the check sees a key in clear
    store.enable_key_escrow(KeyEscrow(KEK))  # a GDSC opening the store with its KEK
    with store.engine.connect() as conn:
        assert conn.execute(select(meter_shipments.c.meter_key)).scalar_one() is None
        assert store.key_escrow is not None and store.key_escrow.shipment_key(conn, "LSE00000009") == KEY_A
    # Not in the live row, nor in the old row version (SQLite: secure_delete and the WAL
    # truncated; PostgreSQL: the dead tuple gone with VACUUM FULL — unless a transaction older
    # than the update, anywhere in the database, may still see it: VACUUM then copies it, so on
    # this shared server the rewrite is repeated until those transactions have ended).
    _assert_absent(_raw(store, db_url, "meter_key_escrow"), KEY_A)
    deadline = time.monotonic() + 30
    while store.dialect != "sqlite" and KEY_A.hex().encode() in _raw(store, db_url, "meter_shipments"):
        assert time.monotonic() < deadline, "the dead tuple outlived every transaction"
        time.sleep(0.5)
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM FULL meter_shipments")
    _assert_absent(_raw(store, db_url, "meter_shipments"), KEY_A)
    # Under another KEK the escrowed key does not open, and says so.
    with store.engine.connect() as conn, pytest.raises(EscrowKeyError, match="LSE00000009"):
        KeyEscrow(bytes(32)).shipment_key(conn, "LSE00000009")


def test_a_malformed_meter_key_is_queued_for_the_hub_to_refuse_and_not_escrowed(store: Store) -> None:
    """Found by the keys-never-logged fleet day: a 17-byte key queued through the plan raised in
    the escrow's deposit; the hub is the one to refuse it (malformed), so it is queued as before."""
    store.enable_key_escrow(KeyEscrow(KEK))
    ca = CertificateAuthority.create("ca", NOW)
    op = ca.issue(Role.OPERATOR, "ops", NOW)
    signer = CommandSigner(op.private_key, op.cert_pem, store.next_command_counter)
    job = PullPlan(store).queue_command(signer, "H1", "meter.key", {"meter": "M1", "key": "00" * 17}, NOW)
    assert job > 0
    with store.engine.connect() as conn:
        assert conn.execute(select(meter_key_escrow.c.id)).first() is None
