"""The hub's SQLite files: owner-only, and deleted content overwritten.

Every store of the hub (history, management log, consents, the display's pairing and sessions,
the prepayment ledger, the meter registry, ...) opens its database through :func:`connect`:

* the file is created with mode 0600 (read and write for the hub's user only), whatever the
  process's umask, and a file an older version created world-readable is made 0600 on open.
  SQLite creates a database's ``-wal``, ``-shm`` and ``-journal`` files with the database
  file's permissions (its unix VFS, ``findCreateFileMode``), so they follow; any already there
  are tightened too;
* ``PRAGMA secure_delete=ON``: SQLite overwrites deleted content with zeros, in the page and
  on freed pages, so what a store deletes or replaces (a session token's hash, a wrapped meter
  key dropped at a change of tenancy, a pairing code's hash) does not stay readable in free
  space (https://www.sqlite.org/pragma.html#pragma_secure_delete).

The WAL still holds the frames written before a delete until it is checkpointed and reset;
:func:`scrub_wal` does that (``wal_checkpoint(TRUNCATE)``) for a store that has just dropped a
secret.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

__all__ = ["PRIVATE_MODE", "connect", "make_private", "scrub_wal"]

PRIVATE_MODE = 0o600
_SIDE_FILES = ("-wal", "-shm", "-journal")


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


def connect(path: Path | str) -> sqlite3.Connection:
    """An autocommit connection (the stores run their own BEGIN/COMMIT) usable from any thread,
    to a database file made owner-only, with ``secure_delete`` on (module docstring)."""
    name = str(path)
    if name != ":memory:" and not name.startswith("file:"):
        make_private(name)
    db = sqlite3.connect(name, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA secure_delete=ON")
    return db


def scrub_wal(db: sqlite3.Connection) -> None:
    """Copy the WAL into the database and truncate it to zero bytes, so frames holding content
    deleted since (with ``secure_delete``, zeroed in the database) leave the WAL file too."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
