"""Bulk export of readings (CSV and Parquet) against the JSON readings endpoint: same data, same
policy and granularity limit, one audit entry per export; a year of half-hourly data streams."""

from __future__ import annotations

import csv
import io
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from gdsc.api_world import DAY1, World, build, readings
from smarthub.gdsc.governance.access import TimeRange
from smarthub.gdsc.governance.parties import Granularity
from smarthub.gdsc.readings import export
from smarthub.gdsc.readings import queries as dataservices

EXPORT = "/v1/premises/P1/readings/export"
READINGS = "/v1/premises/P1/readings"


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    w = build(db_url, tmp_path / "state")
    yield w
    w.store.close()


def params(granularity: str, fmt: str | None = None, **kw: object) -> dict[str, object]:
    p: dict[str, object] = {
        "meter_id": "E1",
        "start": DAY1.isoformat(),
        "end": (DAY1 + timedelta(days=2)).isoformat(),
        "granularity": granularity,
        **kw,
    }
    if fmt:
        p["format"] = fmt
    return p


def as_json_rows(page: dict) -> list[tuple]:  # type: ignore[type-arg]
    return [
        (
            datetime.fromisoformat(r["start"]),
            r["duration"],
            r["value"],
            r["power_of_ten"],
            r["uom"],
            r["quality"],
            r["intervals"],
        )
        for r in page["readings"]
    ]


@pytest.mark.parametrize("granularity", ["half-hourly", "daily"])
def test_csv_and_parquet_match_the_json_endpoint(world: World, granularity: str) -> None:
    with world.client() as client:
        h = world.auth("C1")
        page = client.get(READINGS, params=params(granularity, limit=10_000), headers=h)
        assert page.status_code == 200, page.text
        want = as_json_rows(page.json())
        assert len(want) == (96 if granularity == "half-hourly" else 2)

        c = client.get(EXPORT, params=params(granularity, "csv"), headers=h)
        assert c.status_code == 200, c.text
        assert c.headers["content-type"].startswith("text/csv")
        assert f"P1-E1-20260809-20260811-{granularity}.csv" in c.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(c.text)))
        assert tuple(rows[0]) == export.COLUMNS
        got_csv = [(datetime.fromisoformat(r[0]), *map(int, r[1:])) for r in rows[1:]]
        assert got_csv == want

        p = client.get(EXPORT, params=params(granularity, "parquet"), headers=h)
        assert p.status_code == 200, p.text
        assert p.headers["content-type"] == "application/vnd.apache.parquet"
        table = pq.read_table(io.BytesIO(p.content))
        assert table.column_names == list(export.COLUMNS)
        got_pq = [tuple(r.values()) for r in table.to_pylist()]
        assert got_pq == want
        meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
        assert meta["premises_id"] == "P1" and meta["granularity"] == granularity
    # Three data requests, three allowed entries; the exports name their format.
    entries = world.guard.audit.entries()
    assert [(e.action, e.allow) for e in entries] == [
        ("read-readings", True),
        ("export", True),
        ("export", True),
    ]
    assert [e.detail["detail"]["format"] for e in entries[1:]] == ["csv", "parquet"]


def test_export_has_the_readings_policy_and_granularity_limit(world: World) -> None:
    with world.client() as client:
        # The supplier's default is monthly: daily needs the occupant's consent, as for JSON.
        r = client.get(EXPORT, params=params("daily", "parquet"), headers=world.auth("S1"))
        assert r.status_code == 403
        assert r.json() == {
            "detail": "daily data needs the occupant's consent; supplier default is monthly",
            "max_granularity": "monthly",
        }
        r = client.get(EXPORT, params=params("monthly", "csv"), headers=world.auth("S1"))
        assert r.status_code == 200 and r.text.strip() == ",".join(export.COLUMNS)  # August is not over
        r = client.get(EXPORT, params=params("daily", "csv"), headers=world.auth("TP"))
        assert r.status_code == 403 and "no live consent for TP" in r.json()["detail"]
        r = client.get(EXPORT, params=params("daily", "xlsx"), headers=world.auth("C1"))
        assert r.status_code == 422
        r = client.get(EXPORT, params=params("tariff-register", "csv"), headers=world.auth("C1"))
        assert r.status_code == 422 and "query.granularity" in r.json()["detail"]  # not in its enum
        r = client.get(EXPORT, params=params("daily", "csv", meter_id="X9"), headers=world.auth("C1"))
        assert r.status_code == 404 and r.json()["detail"] == "no meter 'X9' at premises 'P1'"
        assert client.get(EXPORT, params=params("daily", "csv")).status_code == 401
    assert [(e.actor, e.action, e.allow) for e in world.guard.audit.entries()] == [
        ("S1", "export", False),
        ("S1", "export", True),
        ("TP", "export", False),
    ]


def test_a_year_of_half_hourly_data_streams_month_by_month(tmp_path: Path) -> None:
    """17,520 half-hours (2024-25) exported as Parquet: every one arrives, in several row groups,
    and the chunked reader returns exactly what the one-query reader would."""
    w = build(f"sqlite:///{tmp_path / 'year.sqlite'}", tmp_path / "state")
    start = datetime(2024, 9, 1, tzinfo=UTC)  # clear of the two days build() stored
    n = 365 * 48
    w.store.ingest("H1", readings("H1", "E1", start, n, base=0), {})
    # C1 moved in on 1 July 2026; a year-long view belongs to a consumer who lived there throughout.
    from smarthub.gdsc.governance.parties import Tenancy

    w.guard.parties.add_tenancy(Tenancy("T0", "P1", "C1", start, datetime(2026, 7, 1, tzinfo=UTC)))
    period = TimeRange(start, start + timedelta(days=365))
    meter = dataservices.find_meter(w.store.engine, "P1", "E1")
    tracemalloc.start()
    streamed = sum(
        1
        for _ in dataservices.iter_readings(
            w.store.engine, meter, "1-0:1.8.0", [period], Granularity.HALF_HOURLY
        )
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert streamed == n
    print(f"iter_readings over {n} half-hours: peak {peak / 1e6:.1f} MB traced")
    with TestClient(w.client().app) as client:
        r = client.get(
            EXPORT,
            params={
                "meter_id": "E1",
                "start": start.isoformat(),
                "end": period.end.isoformat(),
                "granularity": "half-hourly",
                "format": "parquet",
            },
            headers=w.auth("C1"),
        )
    assert r.status_code == 200, r.text
    f = pq.ParquetFile(io.BytesIO(r.content))
    assert f.metadata.num_rows == n and f.num_row_groups == -(-n // export.ROW_GROUP)
    values = f.read(columns=["value"]).column("value").to_pylist()
    assert values == list(range(n))
    w.store.close()


def test_a_period_of_centuries_costs_only_the_data_in_it(world: World) -> None:
    """Only months holding data are read (a month-by-month walk from year 1000 to 9000 would be
    96,000 queries): the answer is the two stored days, as for the exact period."""
    wide = {"start": "1000-01-01T00:00:00Z", "end": "9000-01-01T00:00:00Z"}
    with world.client() as client:
        exact = client.get(EXPORT, params=params("half-hourly", "csv"), headers=world.auth("C1"))
        r = client.get(EXPORT, params={**params("half-hourly", "csv"), **wide}, headers=world.auth("C1"))
        assert r.status_code == 200 and r.text == exact.text and len(r.text.splitlines()) == 97
        page = client.get(READINGS, params={**params("daily"), **wide}, headers=world.auth("C1")).json()
        assert [x["intervals"] for x in page["readings"]] == [48, 48]
