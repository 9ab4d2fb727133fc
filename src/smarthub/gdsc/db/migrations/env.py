"""Alembic environment: runs on the connection given by ``Store.create_schema`` (or a URL)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from smarthub.gdsc.db.migrations import include_name
from smarthub.gdsc.db.schema import metadata


def run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            _configure_and_run(conn)
        engine.dispose()
    else:
        _configure_and_run(connection)


def _configure_and_run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=include_name,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
