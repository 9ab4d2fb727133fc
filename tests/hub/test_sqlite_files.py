"""The hub's SQLite helper (issue 16 item 4): every store opens its file through it, and a file
written by a release before versioned migrations is upgraded in place without losing a row.

The old files are built by tests/hub/legacy_files.py with the DDL the stores executed on main
before this change (and, for consents and the IHD, older shapes still), then opened by today's
store. Checked for each: ``user_version`` is the schema's; the upgraded schema is the one a new
file gets (columns with types, NOT NULL, defaults and keys; indexes); every row of every table
is still there with the values it had; the store reads its data through its own API.
"""

from __future__ import annotations

import ast
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hub import legacy_files as legacy
from smarthub.clock import ManualClock
from smarthub.gdsc.fleet.pki import CertificateAuthority
from smarthub.hub import sqlite_files
from smarthub.hub.appliances import ApplianceController
from smarthub.hub.delivered_keys import DeliveredKeys
from smarthub.hub.diagnostics import DiagnosisCode, DiagnosticsLog
from smarthub.hub.drlc import DrlcClient
from smarthub.hub.history import HistoryStore
from smarthub.hub.ihd.revocations import RevocationRequests
from smarthub.hub.ihd.store import IhdStore
from smarthub.hub.management import ManagementInterface
from smarthub.hub.prepayment import PrepaymentLedger
from smarthub.hub.prepayment_bridge import SupplyHolds
from smarthub.hub.privacy import ConsentStore, Granularity
from smarthub.hub.registry import MeterRegistry
from smarthub.hub.tariffs import TariffStore
from smarthub.hub.transfer_policy import TransferPolicyStore
from smarthub.model import ObisCode
from smarthub.sim.smart_plug import SimulatedPlugLink

SRC = Path(__file__).resolve().parents[2] / "src" / "smarthub"
NOW = datetime.fromtimestamp(legacy.T + 3600, UTC)


@pytest.fixture(scope="module")
def ca_cert() -> Any:
    return CertificateAuthority.create("test CA", NOW).certificate


def _openers(ca_cert: Any) -> dict[str, Callable[[Path], Any]]:
    """How the hub opens each store (tests/hub/legacy_files.py names the same stores)."""
    clock = ManualClock(NOW)
    return {
        "history": lambda p: HistoryStore(p, legacy.MASTER),
        "diagnostics": lambda p: DiagnosticsLog(p, legacy.MASTER),
        "registry": lambda p: MeterRegistry(p, clock),
        "supply_holds": SupplyHolds,
        "consent": lambda p: ConsentStore(p, clock=clock),
        "ihd": IhdStore,
        "management": lambda p: ManagementInterface("HUB1", ca_cert, clock, p),
        "tariffs": TariffStore,
        "prepayment": lambda p: PrepaymentLedger(p, "HUB1", ca_cert),
        "drlc": lambda p: DrlcClient(p, "A" * 40),
        "appliances": lambda p: ApplianceController(p, clock, SimulatedPlugLink(clock, [])),
        "meter_keys": lambda p: DeliveredKeys(p, legacy.MASTER),
        "transfer_policy": TransferPolicyStore,
        "ihd_revocations": RevocationRequests,
    }


#: Stores created after versions began: no release wrote their file unversioned (no legacy file).
BORN_VERSIONED = {"meter_keys", "transfer_policy", "ihd_revocations"}


def _close(store: Any) -> None:
    if isinstance(store, DiagnosticsLog):
        store.disconnect()
    else:
        store.close()


def _schema(path: Path) -> dict[str, Any]:
    """What a file's tables are, as SQLite reports them (not the DDL's text, which differs
    between a table created whole and one grown by ALTER TABLE)."""
    db = sqlite3.connect(path)
    try:
        out: dict[str, Any] = {}
        for t in sorted(sqlite_files.tables(db) - {"sqlite_sequence"}):
            indexes = db.execute(f"PRAGMA index_list({t})").fetchall()
            out[t] = (
                db.execute(f"PRAGMA table_info({t})").fetchall(),
                sorted(
                    (i[1], i[2], i[4], db.execute(f"PRAGMA index_info({i[1]})").fetchall()) for i in indexes
                ),
            )
        return out
    finally:
        db.close()


def _rows(path: Path) -> dict[str, tuple[list[str], set[tuple[Any, ...]]]]:
    db = sqlite3.connect(path)
    try:
        out = {}
        for t in sqlite_files.tables(db) - {"sqlite_sequence"}:
            cur = db.execute(f"SELECT * FROM {t}")
            out[t] = ([d[0] for d in cur.description], set(cur.fetchall()))
        return out
    finally:
        db.close()


def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def _check_api(case: str, store: Any) -> None:
    """The store reads what the old release wrote, through its own API."""
    if case == "history":
        last = store.last("E1", ObisCode.parse("1-0:1.8.0"))
        assert (last.start, last.value, last.register_end) == (legacy.T, 412, 1_234_567)
        assert store.meters() == {"E1": "electricity"}
    elif case == "diagnostics":
        event = store.get(1)
        assert (event.code, event.device, event.count) == (DiagnosisCode(1), "E1", 2)
        assert (event.evidence, event.numbers) == (legacy.DIAGNOSIS["evidence"], legacy.DIAGNOSIS["numbers"])
    elif case == "registry":
        assert store.is_active("W1") and not store.is_active("W0")
        assert [e.replaced_by for e in store.entries()] == ["W1", None]
    elif case == "supply_holds":
        assert store.held("gas") and not store.held("electricity")
    elif case.startswith("consent"):
        assert store.granularity("TP1", NOW) == Granularity.DAILY
        assert store.version("TP1") == (0 if case == "consent_v1" else 4)  # before versions: 0
        if case == "consent_main":
            assert store.granularity("TP1", NOW, meter="E1") == Granularity.DAILY
    elif case.startswith("ihd"):
        (message,) = store.messages(NOW)
        assert (message.text, message.start is None) == ("Meter visit on Tuesday", case == "ihd_v1")
        assert store.appliances() == {"P1": "kettle"}
        assert store.session_valid(legacy.IHD_TOKEN, NOW)  # paired before: a year from its pairing
        assert not store.pairing_open(NOW)  # the clear-text code of an old release is gone
    elif case == "management":
        assert store.last_counter == 41
        assert store.log() == [(legacy.T, 41, "consent.set", "done", "")]
    elif case == "prepayment":
        b = store.balance("electricity")
        assert (b.credit, b.debt) == (Decimal("12.34"), Decimal("1.00"))
    elif case == "appliances":
        assert list(store.appliances()) == ["washer"]
        assert store.switchings() == [(datetime.fromtimestamp(legacy.T, UTC), "plug-1", True)]


@pytest.mark.parametrize("case", sorted(legacy.LEGACY))
def test_a_file_written_before_migrations_is_upgraded_in_place_without_loss(
    case: str, tmp_path: Path, ca_cert: Any
) -> None:
    store_name = case.split("_v")[0].removesuffix("_main")
    open_store = _openers(ca_cert)[store_name]
    fresh = tmp_path / "fresh" / legacy.LEGACY[case].file
    fresh.parent.mkdir()
    _close(open_store(fresh))
    old = tmp_path / legacy.LEGACY[case].file
    legacy.LEGACY[case].build(old)
    before = _rows(old)
    assert _user_version(old) == 0

    store = open_store(old)
    version = store._file.schema.version
    after = _rows(old)  # before the API is used: reading may write (a session's last-seen time)
    try:
        _check_api(case, store)
    finally:
        _close(store)

    assert _user_version(old) == version == _user_version(fresh)
    assert _schema(old) == _schema(fresh)
    for table, (cols, rows) in before.items():
        if case in ("ihd_v1", "ihd_v2") and table == "pairing":
            assert table not in after  # the code kept in clear is dropped on purpose (migration 3)
            continue
        now_cols, now_rows = after[table]
        if case in ("ihd_v1", "ihd_v2") and table == "sessions":
            cols = ["token_hash", "created"]  # last_seen and expires are set from created: below
        pick = [now_cols.index(c) for c in cols]
        assert {tuple(r[i] for i in pick) for r in now_rows} >= {tuple(r[: len(cols)]) for r in rows}
        assert len(now_rows) == len(rows), f"{table}: rows added or lost"
    if case in ("ihd_v1", "ihd_v2"):
        cols, ((_, created, _, last_seen, expires),) = after["sessions"]
        assert cols == ["token_hash", "created", "name", "last_seen", "expires"]
        assert (last_seen, expires) == (created, created + 365 * 86400)

    settled = _rows(old)
    _close(open_store(old))  # a second open finds nothing to do
    assert _rows(old) == settled and _user_version(old) == version


def test_every_hub_store_opens_its_file_through_the_helper(tmp_path: Path, ca_cert: Any) -> None:
    """Each store has a schema, and its file is 0600, in WAL, with secure_delete and busy_timeout."""
    schemas = {
        value
        for module in _hub_modules()
        for value in vars(module).values()
        if isinstance(value, sqlite_files.Schema)
    }
    seen = set()
    for name, open_store in _openers(ca_cert).items():
        store = open_store(tmp_path / f"{name}.sqlite")
        try:
            assert isinstance(store._file, sqlite_files.Database)
            db = store._file.connection
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
            assert db.execute("PRAGMA secure_delete").fetchone()[0] == 1
            assert db.execute("PRAGMA busy_timeout").fetchone()[0] == sqlite_files.BUSY_TIMEOUT_MS
            assert db.execute("PRAGMA user_version").fetchone()[0] == store._file.schema.version >= 1
            seen.add(store._file.schema)
        finally:
            _close(store)
        assert (tmp_path / f"{name}.sqlite").stat().st_mode & 0o777 == 0o600
    assert seen == schemas, "a hub store's Schema is not opened by this test (add it to _openers)"
    assert {n.split("_v")[0].removesuffix("_main") for n in legacy.LEGACY} == set(
        _openers(ca_cert)
    ) - BORN_VERSIONED


def _hub_modules() -> list[Any]:
    import importlib

    out = []
    for path in sorted((SRC / "hub").rglob("*.py")):
        name = ".".join(("smarthub", *path.relative_to(SRC).with_suffix("").parts))
        out.append(importlib.import_module(name.removesuffix(".__init__")))
    return out


def _connects(path: Path) -> list[int]:
    """Lines of ``path`` that open an SQLite connection with the standard library directly."""
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "sqlite3":
            lines += [node.lineno for a in node.names if a.name == "connect"]
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "connect"
            and isinstance(node.value, ast.Name)
            and node.value.id == "sqlite3"
        ):
            lines.append(node.lineno)
    return lines


def test_nothing_but_the_helper_calls_sqlite3_connect() -> None:
    found = {str(p.relative_to(SRC)): lines for p in sorted(SRC.rglob("*.py")) if (lines := _connects(p))}
    assert set(found) == {"hub/sqlite_files.py"}, found


# -- the helper itself --------------------------------------------------------------------------

TWO_STEPS = sqlite_files.Schema(
    "test", ["CREATE TABLE IF NOT EXISTS t (a INTEGER);", "ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'x';"]
)


def test_a_failing_migration_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    sqlite_files.open_database(path, sqlite_files.Schema("test", TWO_STEPS.migrations[:1])).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT INTO t VALUES (7)")
    db.close()
    broken = sqlite_files.Schema(
        "test", [*TWO_STEPS.migrations, "ALTER TABLE t ADD COLUMN c TEXT;", "NOT SQL;"]
    )
    with pytest.raises(sqlite3.OperationalError):
        sqlite_files.open_database(path, broken)
    assert _user_version(path) == 1
    assert _rows(path) == {"t": (["a"], {(7,)})}  # neither b nor c: the steps before were undone too
    db2 = sqlite_files.open_database(path, TWO_STEPS)
    assert db2.connection.execute("SELECT a, b FROM t").fetchall() == [(7, "x")]
    db2.close()


def test_a_file_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    sqlite_files.open_database(path, TWO_STEPS).close()
    with pytest.raises(sqlite_files.SchemaTooNew, match="schema version 2; this hub knows versions up to 1"):
        sqlite_files.open_database(path, sqlite_files.Schema("test", TWO_STEPS.migrations[:1]))
    assert _user_version(path) == 2


def test_a_transaction_rolls_back_on_error_and_releases_the_lock(tmp_path: Path) -> None:
    db = sqlite_files.open_database(tmp_path / "t.sqlite", TWO_STEPS)
    with pytest.raises(ZeroDivisionError), db.transaction() as c:
        c.execute("INSERT INTO t (a) VALUES (1)")
        raise ZeroDivisionError
    with db.transaction() as c:
        c.execute("INSERT INTO t (a) VALUES (2)")
    assert db.connection.execute("SELECT a FROM t").fetchall() == [(2,)]
    assert not db.lock.locked()
    db.close()


def test_statements_splits_a_script_on_complete_statements_only() -> None:
    script = """
    CREATE TABLE x (a TEXT DEFAULT ';', -- a comment; with a semicolon
                    b INTEGER);
    CREATE TRIGGER tr AFTER INSERT ON x BEGIN UPDATE x SET b = 1; END;
    -- trailing comment
    """
    out = sqlite_files.statements(script)
    assert [s.split()[1] for s in out] == ["TABLE", "TRIGGER"]
    with pytest.raises(ValueError, match="incomplete SQL"):
        sqlite_files.statements("CREATE TABLE y (a)")
