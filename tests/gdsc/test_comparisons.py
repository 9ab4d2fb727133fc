"""The similar-homes comparison job: cohorts from the stored data, k-anonymity, and the signed
``ihd.comparison`` carried through the pull plan to a real hub management interface (whose IHD
then shows it), as tests/gdsc/test_api_commands.py carries API commands."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import pytest
from cryptography import x509

from smarthub.clock import ManualClock
from smarthub.gdsc import comparisons
from smarthub.gdsc.commands import CommandSigner
from smarthub.gdsc.comparisons import ComparisonError, last_week, queue_comparisons
from smarthub.gdsc.plan import Priority, PullPlan
from smarthub.gdsc.store import Store, StoredReading
from smarthub.hub.ihd.commands import ihd_commands
from smarthub.hub.ihd.store import IhdStore
from smarthub.hub.management import ManagementInterface
from smarthub.sim.fleet import provision

WEEK = (date(2026, 8, 10), date(2026, 8, 17))  # Monday .. Monday, BST
WEEK_START = datetime(2026, 8, 9, 23, tzinfo=UTC)  # local midnight of 10 August
NOW = datetime(2026, 8, 19, 9, tzinfo=UTC)
HALF_HOURS = 7 * 48


def _elec(
    hub: str, meter: str, scale: int, n: int = HALF_HOURS, skip: int | None = None
) -> list[StoredReading]:
    """Wh per half-hour, varying with the home and the slot; a day either side of the week too."""
    t0 = int(WEEK_START.timestamp()) - 48 * 1800
    out = []
    for i in range(n + 96):
        if skip is not None and i == 48 + skip:
            continue
        out.append(
            StoredReading(hub, meter, "1-0:1.8.0", t0 + 1800 * i, 1800, scale + (i * 37) % 211, 0, 72, 0)
        )
    return out


def _gas(hub: str, meter: str, scale: int) -> list[StoredReading]:
    """Litres per half-hour (m³ × 10^-3)."""
    t0 = int(WEEK_START.timestamp()) - 48 * 1800
    return [
        StoredReading(hub, meter, "7-0:3.0.0", t0 + 1800 * i, 1800, scale + (i * 11) % 97, -3, 42, 0)
        for i in range(HALF_HOURS + 96)
    ]


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[tuple[Store, CommandSigner, x509.Certificate]]:
    store = Store(db_url)
    store.create_schema()
    state = tmp_path / "state"
    provision(state, [], NOW - timedelta(days=1))
    signer = CommandSigner.from_files(
        str(state / "gdsc" / "operator.pem"), str(state / "gdsc" / "operator.key"), store.next_command_counter
    )
    ca = x509.load_pem_x509_certificate((state / "ca" / "ca.pem").read_bytes())
    yield store, signer, ca
    store.close()


def _home(store: Store, i: int, gas: bool, *, skip: int | None = None) -> list[StoredReading]:
    hub, e, g = f"H{i:02d}", f"E{i:02d}", f"G{i:02d}"
    store.register_hub(
        hub_id=hub,
        premises_id=f"P{i:02d}",
        url=f"https://{hub}",
        lfdi=f"{i:040d}",
        meters_by_fuel=[(e, "electricity")] + ([(g, "gas")] if gas else []),
    )
    rows = _elec(hub, e, 40 + 13 * i, skip=skip) + (_gas(hub, g, 20 + 7 * i) if gas else [])
    store.ingest(hub, rows, {})
    return rows


def _expected_kwh(rows: list[StoredReading], obis: str) -> Decimal:
    """An independent total over the week, straight from the readings handed to the store."""
    lo, hi = int(WEEK_START.timestamp()), int(WEEK_START.timestamp()) + HALF_HOURS * 1800
    total = sum(
        (
            Decimal(r.value).scaleb(r.power_of_ten)
            for r in rows
            if r.obis == obis and lo <= r.interval_start < hi
        ),
        Decimal(0),
    )
    if obis == "1-0:1.8.0":
        return total / 1000
    return total * Decimal("1.02264") * Decimal("39.5") / Decimal("3.6")


def _q(x: Decimal) -> str:
    return str(x.quantize(Decimal("0.001"), ROUND_HALF_EVEN))


def _hub(hub_id: str, ca: x509.Certificate, tmp_path: Path) -> tuple[ManagementInterface, IhdStore]:
    clock = ManualClock(NOW)
    hub = ManagementInterface(hub_id, ca, clock, tmp_path / f"{hub_id}-mgmt.sqlite")
    ihd = IhdStore(tmp_path / f"{hub_id}-ihd.sqlite")
    hub.register("ihd.comparison", ihd_commands(ihd, None, clock)["ihd.comparison"])  # type: ignore[arg-type]
    return hub, ihd


def test_cohorts_get_figures_only_from_k_homes_and_the_figures_match_the_readings(
    world: tuple[Store, CommandSigner, x509.Certificate], tmp_path: Path
) -> None:
    store, signer, ca = world
    # Electricity-only: 4 homes, k - 1 with the default k = 5.
    for i in range(1, 5):
        _home(store, i, gas=False)
    # Electricity and gas: 11 homes, one of which lost a half-hour (left out of the figures).
    dual = {i: _home(store, i, gas=True) for i in range(10, 20)}
    _home(store, 20, gas=True, skip=100)
    assert last_week(NOW) == WEEK

    run = queue_comparisons(store, signer, *WEEK, NOW)
    (small, big) = run.cohorts
    assert (small.fuels, small.contributors, small.figures) == (frozenset({"electricity"}), 4, None)
    assert run.withheld == [small]
    assert big.fuels == frozenset({"electricity", "gas"}) and big.contributors == 10
    assert len(big.members) == 11
    # Every dual-fuel hub (the one with a gap too) and no electricity-only hub got a job.
    assert sorted(run.jobs) == [f"H{i}" for i in range(10, 21)]

    # The figures, worked out independently: the mean of the 10 complete homes, and the mean of the
    # lowest 5 (a fifth of 10 is 2, clamped up to k; 5 homes stay outside the group).
    for fuel, obis in (("electricity", "1-0:1.8.0"), ("gas", "7-0:3.0.0")):
        totals = sorted(_expected_kwh(rows, obis) for rows in dual.values())
        f = big.figures[fuel]  # type: ignore[index]
        assert str(f.average_kwh) == _q(sum(totals, Decimal(0)) / 10)
        assert str(f.efficient_kwh) == _q(sum(totals[:5], Decimal(0)) / 5)
        assert f.efficient_kwh < f.average_kwh

    # Carried to a real hub: claimed from the plan, verified by the hub, shown by its IHD.
    hub, ihd = _hub("H10", ca, tmp_path)
    plan = PullPlan(store)
    claims = plan.claim_urgent("A", NOW, 100)
    assert {c.hub.hub_id for c in claims} == set(run.jobs) and all(
        c.priority is Priority.BULK for c in claims
    )
    claim = next(c for c in claims if c.hub.hub_id == "H10")
    assert claim.envelope is not None
    verdict = json.loads(asyncio.run(hub.handle(claim.envelope)).to_json())
    assert verdict["status"] == "applied", verdict
    plan.finish_urgent(claim, True, NOW, result=verdict)
    shown = ihd.comparison()
    assert shown is not None
    assert (shown.start, shown.end, shown.homes) == (*WEEK, 10)
    assert shown.description == "homes with electricity and gas"
    assert shown.fuels["electricity"].average_kwh == big.figures["electricity"].average_kwh  # type: ignore[index]
    assert shown.fuels["gas"].efficient_kwh == big.figures["gas"].efficient_kwh  # type: ignore[index]
    # Another hub's command is refused by this one (the hub id is signed).
    other = next(c for c in claims if c.hub.hub_id == "H11")
    assert json.loads(asyncio.run(hub.handle(other.envelope)).to_json())["status"] == "refused"  # type: ignore[arg-type]


def test_a_cohort_of_k_minus_one_gets_nothing_and_k_is_configurable(
    world: tuple[Store, CommandSigner, x509.Certificate],
) -> None:
    store, signer, _ = world
    rows = {i: _home(store, i, gas=False) for i in range(1, 4)}
    run = queue_comparisons(store, signer, *WEEK, NOW)  # 3 homes, k = 5
    assert run.jobs == {} and run.cohorts[0].figures is None
    assert PullPlan(store).claim_urgent("A", NOW, 10) == []
    # The period was worked out once: a later run sends what it sent then, whatever its k.
    assert queue_comparisons(store, signer, *WEEK, NOW, k=3).jobs == {}
    (c,) = comparisons.cohorts(store.engine, *WEEK, k=3)
    totals = [_expected_kwh(r, "1-0:1.8.0") for r in rows.values()]
    f = c.figures["electricity"]  # type: ignore[index]
    # Fewer than 2k homes: no efficient group can be formed without exposing the rest.
    assert str(f.average_kwh) == _q(sum(totals, Decimal(0)) / 3) == str(f.efficient_kwh)
    # A gap in one home brings the cohort below k again: nothing, for anyone.
    store.register_hub(
        hub_id="H04",
        premises_id="P04",
        url="https://H04",
        lfdi="4" * 40,
        meters_by_fuel=[("E04", "electricity")],
    )
    store.ingest("H04", _elec("H04", "E04", 90, skip=7), {})
    assert comparisons.cohorts(store.engine, *WEEK, k=4)[0].figures is None


def test_attributes_split_cohorts_and_bad_requests_are_refused(
    world: tuple[Store, CommandSigner, x509.Certificate],
) -> None:
    store, signer, _ = world
    for i in range(1, 5):
        _home(store, i, gas=False)
    attrs = {"P01": "flat", "P02": "flat", "P03": "detached"}
    cohorts = comparisons.cohorts(store.engine, *WEEK, k=2, attributes=attrs)
    assert [(c.attribute, c.members, c.figures is not None) for c in cohorts] == [
        (None, ("P04",), False),
        ("detached", ("P03",), False),
        ("flat", ("P01", "P02"), True),
    ]
    assert cohorts[2].description == "flat homes with electricity"
    with pytest.raises(ComparisonError, match="has not ended"):
        queue_comparisons(store, signer, date(2026, 8, 17), date(2026, 8, 24), NOW)
    with pytest.raises(ComparisonError, match="is empty"):
        comparisons.cohorts(store.engine, WEEK[1], WEEK[0])
    with pytest.raises(ComparisonError, match="k >= 2"):
        comparisons.cohorts(store.engine, *WEEK, k=1)


def test_the_gdsc_upkeep_queues_last_weeks_comparison_once_across_processes(
    world: tuple[Store, CommandSigner, x509.Certificate], tmp_path: Path
) -> None:
    from smarthub.gdsc.plan import urgent_work
    from smarthub.gdsc.service import Upkeep

    store, signer, _ = world
    for i in range(5):
        _home(store, i, gas=False)

    def upkeep() -> Upkeep:  # one per GDSC process; only the comparison step is exercised
        clock = ManualClock(NOW)
        return Upkeep(tmp_path, store, None, signer, clock, clock, tmp_path / "crl.pem")  # type: ignore[arg-type]

    def queued() -> int:
        with store.engine.connect() as conn:
            rows = conn.execute(urgent_work.select().where(urgent_work.c.command_type == "ihd.comparison"))
            return len(rows.all())

    first = upkeep()
    first._comparisons(NOW)
    assert queued() == 5 and first.comparisons_week == WEEK
    first._comparisons(NOW + timedelta(hours=1))  # the same week: nothing more
    upkeep()._comparisons(NOW + timedelta(hours=2))  # another process: sees the week queued
    assert queued() == 5
    upkeep()._comparisons(NOW + timedelta(days=7))  # the next week's run (no data: all withheld)
    assert queued() == 5


def test_a_periods_figures_are_worked_out_once_so_they_cannot_be_differenced(
    world: tuple[Store, CommandSigner, x509.Certificate],
) -> None:
    """Issue 13 (item 3, the similar-homes side): before the fix each run for a period worked the
    figures out again, so a home whose data completed later changed the cohort's average from n to
    n + 1 homes, and n' x avg' - n x avg was that home's week."""
    store, signer, _ = world
    for i in range(1, 6):
        _home(store, i, gas=False)
    late = _home(store, 6, gas=False, skip=100)  # one half-hour missing: left out of the figures
    first = queue_comparisons(store, signer, *WEEK, NOW)
    (cohort,) = first.cohorts
    assert cohort.contributors == 5 and len(first.jobs) == 6
    sent = comparisons.comparison_body(cohort, *WEEK)
    # The missing half-hour arrives; the week is run again (another process, a retry).
    gap = late[48 + 100 - 1]
    store.ingest(
        "H06", [StoredReading("H06", "E06", "1-0:1.8.0", gap.interval_start + 1800, 1800, 7, 0, 72, 0)], {}
    )
    assert comparisons.cohorts(store.engine, *WEEK)[0].contributors == 6  # worked out now: 6 homes
    again = queue_comparisons(store, signer, *WEEK, NOW)
    assert comparisons.comparison_body(again.cohorts[0], *WEEK) == sent  # but what is sent: the same
    # A new split of the same week (an attribute) gets nothing: its figures were never worked out;
    # the home left in the recorded cohort gets that cohort's figures, as sent before.
    split = queue_comparisons(store, signer, *WEEK, NOW, attributes={f"P0{i}": "flat" for i in range(1, 6)})
    assert [(c.attribute, c.members, c.figures is not None) for c in split.cohorts] == [
        (None, ("P06",), True),
        ("flat", tuple(f"P0{i}" for i in range(1, 6)), False),
    ]
    assert sorted(split.jobs) == ["H06"] and comparisons.comparison_body(split.cohorts[0], *WEEK) == sent
    # An overlapping period would differ from this one by the days only one of them covers.
    with pytest.raises(ComparisonError, match=r"overlaps 2026-08-10\.\.2026-08-17"):
        queue_comparisons(store, signer, date(2026, 8, 11), date(2026, 8, 18), NOW + timedelta(days=2))
