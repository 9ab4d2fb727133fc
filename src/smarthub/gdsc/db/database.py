"""The GDSC database: one engine over SQLite (the embedded default) or PostgreSQL (production),
through SQLAlchemy Core, brought to its current schema by the Alembic migrations in
``smarthub.gdsc.db.migrations``.

:class:`Database` is what every part of the store builds on (:class:`smarthub.gdsc.store.Store`
puts the parts together): the engine with its SQLite pragmas, the process's write lock, the
migrations, and the advisory-lock ids the parts share. ``metadata`` holds every table; a table
joins it when the module that owns it is imported (:mod:`smarthub.gdsc.db.schema` imports them
all).
"""

from __future__ import annotations

import threading
import zlib

from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite

DAY = 86400

# Stable constraint names, so migrations can refer to them on every dialect.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class Database:
    """Thread-safe access to the GDSC database (writes serialised per process)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        # hide_parameters: a logged statement (echo, or a DBAPI error in a traceback) must not
        # carry its values: readings are personal data and a queued meter.key command a key.
        self.engine: Engine = create_engine(url, echo=echo, future=True, hide_parameters=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._write_lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def display_url(self) -> str:
        """The database URL as it may be printed or logged: its password masked."""
        return self.engine.url.render_as_string(hide_password=True)

    def create_schema(self) -> None:
        """Bring the database to the newest migration (creating it if empty)."""
        from alembic import command

        from smarthub.gdsc.db import schema  # noqa: F401  (every table joins the metadata)

        with self._write_lock, self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Two GDSC processes starting together must not both run the migrations.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id("migrations")})
            tables = set(inspect(conn).get_table_names())
            if "alembic_version" not in tables and tables & set(metadata.tables):
                found = sorted(tables & set(metadata.tables))
                raise RuntimeError(
                    f"{self.display_url}: GDSC tables {found} exist but the database "
                    "has no migration version: it was created before the store had migrations "
                    "(one row per reading); move it aside and let the GDSC create a new one"
                )
            command.upgrade(alembic_config(conn), "head")

    def drop_schema(self) -> None:
        from smarthub.gdsc.db import schema  # noqa: F401  (every table joins the metadata)

        with self._write_lock, self.engine.begin() as conn:
            metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))

    def close(self) -> None:
        self.engine.dispose()

    def scrub_wal(self) -> None:
        """On SQLite, checkpoint the WAL into the database and truncate it, so a secret just
        cleared (``secure_delete`` zeroes it in the database) leaves the WAL's old frames too.
        Best effort: a reader in the way leaves the WAL for the next checkpoint. PostgreSQL has no
        equivalent (a dead tuple stays until VACUUM reuses its space, and its WAL is archived)."""
        if self.dialect != "sqlite":
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _insert(self, table: Table):
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)


def alembic_config(connection: Connection):
    """An Alembic configuration running the packaged migrations on ``connection``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "smarthub.gdsc.db:migrations")
    cfg.attributes["connection"] = connection
    return cfg


def lock_id(name: str) -> int:
    """A stable advisory-lock id per purpose (crc32 fits PostgreSQL's bigint key)."""
    return zlib.crc32(f"smarthub.gdsc.store:{name}".encode())


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL + synchronous=FULL: a committed ingest survives a crash of the GDSC process or host.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    # Deleted and replaced content is overwritten with zeros, not left in free space: a queued
    # meter.key command's envelope is cleared once delivered (gdsc.plan.SECRET_COMMANDS).
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()
