"""The hub's SQLite files: one way to open them, owner-only, deleted content overwritten, and
the schema upgraded in place by numbered migrations.

Every store of the hub (history, diagnostics, management log, consents, the display's pairing
and sessions, the prepayment ledger and supply holds, the meter registry, tariffs, DRLC events,
the appliance controller) opens its database with :func:`open_database`, giving its
:class:`Schema`. Nothing else in the package calls ``sqlite3.connect``
(tests/hub/test_sqlite_files.py checks it).

What every file gets:

* mode 0600 (read and write for the hub's user only), whatever the process's umask, and a file
  an older version created world-readable is made 0600 on open. SQLite creates a database's
  ``-wal``, ``-shm`` and ``-journal`` files with the database file's permissions (its unix VFS,
  ``findCreateFileMode``), so they follow; any already there are tightened too;
* ``PRAGMA secure_delete=ON``: SQLite overwrites deleted content with zeros, in the page and
  on freed pages, so what a store deletes or replaces (a session token's hash, a wrapped meter
  key dropped at a change of tenancy, a pairing code's hash) does not stay readable in free
  space (https://www.sqlite.org/pragma.html#pragma_secure_delete);
* the WAL journal with ``synchronous=FULL``: a transaction that returned from COMMIT survives
  a power cut at any instant (https://www.sqlite.org/pragma.html#pragma_synchronous);
  ``busy_timeout`` so that a second process (``smarthub ihd pair`` beside a running hub) waits
  for the write lock instead of failing at once;
* an autocommit connection usable from any thread, with the lock that serialises the store's
  use of it (:attr:`Database.lock`) and :meth:`Database.transaction` (``BEGIN IMMEDIATE`` …
  ``COMMIT``, ``ROLLBACK`` on any exception);
* the schema at the version the code expects. ``PRAGMA user_version`` (a number in the file's
  header, https://www.sqlite.org/pragma.html#pragma_user_version) says which migrations a file
  has had; those it has not run in one transaction, so a file is never left half-upgraded.
  A file newer than the code (a hub rolled back to older firmware) is refused with
  :class:`SchemaTooNew` rather than used blindly.

Files written before versions were kept have ``user_version`` 0 and any of the shapes older
code left. Each store's first migration is written with ``IF NOT EXISTS`` so that it also
adopts such a file; a store whose tables later changed shape says which migrations an
unversioned file already has (:attr:`Schema.unversioned`), by looking at it once.

The WAL still holds the frames written before a delete until it is checkpointed and reset;
:func:`scrub_wal` does that (``wal_checkpoint(TRUNCATE)``) for a store that has just dropped a
secret.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUSY_TIMEOUT_MS",
    "PRIVATE_MODE",
    "Database",
    "Migration",
    "Schema",
    "SchemaTooNew",
    "columns",
    "make_private",
    "open_database",
    "scrub_wal",
    "statements",
    "tables",
]

PRIVATE_MODE = 0o600
BUSY_TIMEOUT_MS = 5000
_SIDE_FILES = ("-wal", "-shm", "-journal")

#: One migration: an SQL script (one or more statements), or a function given the connection
#: inside the migration's transaction (for a step that has to compute values).
Migration = str | Callable[[sqlite3.Connection], None]


class SchemaTooNew(Exception):
    """The file was written by a newer version of the hub than this one."""

    def __init__(self, path: str, schema: str, found: int, known: int) -> None:
        self.path, self.found, self.known = path, found, known
        super().__init__(
            f"{schema} database {path} is at schema version {found}; this hub knows versions up to"
            f" {known} (written by a newer release?): not opened, nothing changed"
        )


def _never_versioned(_db: sqlite3.Connection) -> int:
    return 0


@dataclass(frozen=True)
class Schema:
    """A store's schema as the list of its migrations: ``migrations[i]`` brings a file from
    version ``i`` to ``i + 1``, so the current version is ``len(migrations)``. Migrations are
    only ever appended: a released one is never edited, since files in the field ran it."""

    name: str
    migrations: Sequence[Migration]
    #: How many migrations a file written before versions (``user_version`` 0) already has.
    #: The default, 0, runs them all, which the first migration's ``IF NOT EXISTS`` makes safe.
    unversioned: Callable[[sqlite3.Connection], int] = _never_versioned

    def __post_init__(self) -> None:
        object.__setattr__(self, "migrations", tuple(self.migrations))  # frozen, hashable

    @property
    def version(self) -> int:
        return len(self.migrations)


def statements(script: str) -> list[str]:
    """The statements of an SQL script, each complete (``sqlite3.complete_statement``).

    ``executescript`` would do, but it COMMITs any open transaction first, and a migration must
    run inside the transaction that also sets ``user_version``."""
    out: list[str] = []
    start = 0
    for i, ch in enumerate(script):
        if ch == ";" and sqlite3.complete_statement(script[start : i + 1]):
            out.append(script[start : i + 1].strip())
            start = i + 1
    rest = "\n".join(
        line for line in script[start:].splitlines() if line.strip() and not line.strip().startswith("--")
    )
    if rest:
        raise ValueError(f"incomplete SQL statement at the end of a migration: {rest[:80]!r}")
    return out


def tables(db: sqlite3.Connection) -> set[str]:
    """The names of the file's tables (for :attr:`Schema.unversioned`)."""
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def columns(db: sqlite3.Connection, table: str) -> set[str]:
    """The column names of ``table`` (empty if there is no such table)."""
    return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def make_private(path: Path | str) -> None:
    """Create ``path`` (empty) with mode 0600 if it does not exist; set 0600 if it does."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    try:
        os.fchmod(fd, PRIVATE_MODE)  # the umask may have narrowed it; an old file may be 0644
    finally:
        os.close(fd)
    for suffix in _SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", PRIVATE_MODE)


def _connect(name: str) -> sqlite3.Connection:
    if name != ":memory:" and not name.startswith("file:"):
        make_private(name)
    db = sqlite3.connect(name, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA secure_delete=ON")
    db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode=WAL")  # outside any transaction: SQLite refuses it inside one
    db.execute("PRAGMA synchronous=FULL")
    return db


def _user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _migrate(db: sqlite3.Connection, schema: Schema, path: str) -> None:
    if _user_version(db) == schema.version:
        return  # the usual case: no write, no lock
    db.execute("BEGIN IMMEDIATE")
    try:
        found = _user_version(db)  # again, under the write lock: another process may have run them
        if found > schema.version:
            raise SchemaTooNew(path, schema.name, found, schema.version)
        done = found if found else schema.unversioned(db)
        for step in schema.migrations[done:]:
            if isinstance(step, str):
                for statement in statements(step):
                    db.execute(statement)
            else:
                step(db)
        db.execute(f"PRAGMA user_version = {schema.version:d}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class Database:
    """A hub store's open SQLite file: its connection and the lock serialising its use."""

    def __init__(self, path: Path | str, schema: Schema) -> None:
        self.path = str(path)
        self.schema = schema
        self.lock = threading.Lock()
        self.connection = _connect(self.path)
        try:
            _migrate(self.connection, schema, self.path)
        except BaseException:
            self.connection.close()
            raise

    @contextlib.contextmanager
    def transaction(self, *, locked: bool = False) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` holding :attr:`lock` (``locked``: the caller holds
        it already); ``ROLLBACK`` on any exception."""
        with contextlib.nullcontext() if locked else self.lock:
            self.connection.execute("BEGIN IMMEDIATE")
            try:
                yield self.connection
                self.connection.execute("COMMIT")
            except BaseException:
                if self.connection.in_transaction:  # also when COMMIT itself failed (disk full)
                    self.connection.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self.lock:
            self.connection.close()


def open_database(path: Path | str, schema: Schema) -> Database:
    """Open (creating if need be) the store's file at ``path`` (module docstring)."""
    return Database(path, schema)


def scrub_wal(db: sqlite3.Connection) -> None:
    """Copy the WAL into the database and truncate it to zero bytes, so frames holding content
    deleted since (with ``secure_delete``, zeroed in the database) leave the WAL file too."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
