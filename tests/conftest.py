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


# Variants of the longest end-to-end runs that `make test` leaves to `make bench` (marked slow
# here, by node id, so the test bodies stay one): each has a sibling that `make test` runs — the
# same test on the other backend, or the other way of being interrupted — so every behaviour and
# both backends are still exercised there, within the suite's 15 minutes on 2 cores.
SIBLING_IN_MAKE_TEST = frozenset(
    {
        "tests/e2e/test_hub_recovery.py::test_a_blank_replacement_hub_is_restored_within_one_pull_cycle"
        "[sqlite-uninterrupted]",
        "tests/e2e/test_hub_recovery.py::test_a_blank_replacement_hub_is_restored_within_one_pull_cycle"
        "[postgresql-killed-mid-recovery]",
        "tests/e2e/test_hub_recovery.py::test_a_hub_whose_storage_was_wiped_says_so_with_its_next_pull_and_is_restored"
        "[sqlite]",
        "tests/e2e/test_hub_recovery.py::test_a_replacement_hub_gets_its_meters_keys_from_the_escrow[postgresql]",
        "tests/reliability/test_chaos.py::test_half_the_fleet_on_channels_only_loses_nothing_through_channel_cuts"
        "[postgresql]",
        # (the chaos run on SQLite stays in make test through the channel variant above's sibling)
        "tests/reliability/test_chaos.py::test_a_fleet_with_faults_loses_nothing[sqlite]",
        "tests/e2e/test_demo.py::test_half_the_fleet_behind_a_nat_is_pulled_through_channels_and_loses_nothing"
        "[sqlite]",
        "tests/e2e/test_demo.py::test_the_fleet_on_ipv6_half_of_it_behind_a_nat_loses_nothing[sqlite]",
        # (the demo on PostgreSQL stays in make test through its NAT and IPv6 variants)
        "tests/e2e/test_demo.py::test_demo_day_loses_nothing[postgresql]",
        "tests/e2e/test_crl_fleet.py::test_top_ups_reach_the_hub_every_day_for_ten_days_after_a_revocation[sqlite]",
        "tests/e2e/test_real_transports.py::test_a_hub_from_a_config_reads_every_protocol_on_real_transports_and_the_gdsc_stores_them"
        "[sqlite]",
        # Issue 25's services, each backend kept by one of a pair (appliances on PostgreSQL stay
        # in make test through the healthy fleet and the refusal tests)
        "tests/services/test_appliance_health.py::test_a_degrading_fridge_and_washer_and_a_short_cycling_heat_pump"
        "_are_flagged_within_a_week[postgresql]",
        "tests/services/test_appliance_health.py::test_a_healthy_fleet_flags_nothing[sqlite]",
        "tests/services/test_dr_aggregator.py::test_the_measured_reduction_is_what_the_hub_removed[postgresql]",
        "tests/services/test_dr_aggregator.py::test_withdrawal_suspension_and_revocation_refuse_the_next_dispatch"
        "[sqlite]",
        "tests/e2e/test_appliance_path.py::test_plugs_reach_the_consented_service_only_after_the_occupant_consents"
        "[postgresql]",
        # A data service's message on a real hub's display: the PostgreSQL path of the same API is
        # in make test through tests/gdsc/test_service_messages.py
        "tests/e2e/test_service_ihd_message.py::test_a_consented_service_message_reaches_the_display_under_its_own_name"
        "[postgresql]",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid in SIBLING_IN_MAKE_TEST:
            item.add_marker(pytest.mark.slow)
