"""Shared fixtures: a PostgreSQL schema per test when the server answers, a GDSC PKI on disk."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

PG_URL = os.environ.get("SMARTHUB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_answers() -> str | None:
    try:
        import psycopg

        conninfo = PG_URL.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo, connect_timeout=3):
            return None
    except Exception as err:  # any failure means "not available"; the reason is reported
        return f"{type(err).__name__}: {err}"


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    problem = _pg_answers()
    if problem is not None:
        msg = f"PostgreSQL not answering at {PG_URL}: {problem}"
        if os.environ.get("SMARTHUB_REQUIRE_POSTGRES"):
            pytest.fail(msg + " (SMARTHUB_REQUIRE_POSTGRES is set: CI must run these tests)")
        pytest.skip(msg)
    return PG_URL


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    conninfo = pg_base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in pg_base_url else "?"
    yield f"{pg_base_url}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gdsc.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def wall_now() -> datetime:
    """Certificates are checked by OpenSSL against the real clock, so they are issued with it."""
    return datetime.now(UTC)
