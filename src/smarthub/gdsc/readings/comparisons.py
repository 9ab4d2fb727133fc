"""Similar-homes comparison: a GDSC job that works out, per cohort of similar homes, what a home
like yours used over a period, and sends it to each home's IHD as a signed ``ihd.comparison``.

The figures come from the stored intervals only (the single source of truth), never from a hub.

**Cohorts.** The GDSC knows little about a home: its supplies (the meters registered at the
premises) and its consumption. A cohort is the set of premises with the same **fuel set**
(electricity only; electricity and gas), optionally split further by a premises attribute the
caller supplies (``attributes``: premises id -> a label such as a property type from an external
register; premises without a label form their own group). Water and heat meters do not count.

**Who contributes.** A premises contributes for the period when it has an active hub and, for
every fuel of its set, stored half-hours covering the whole period (local days ``start`` ..
``end`` exclusive, Europe/London, so a clock-change day has 46 or 50 half-hours); intervals of
all the premises' meters of a fuel are taken together, so a meter exchanged mid-week still
covers it. A home with a gap is left out of the figures, but still receives its cohort's figures.

**k-anonymity** (as the data services' aggregates, :mod:`smarthub.gdsc.governance.aggregates`, default
k = 5): a cohort with fewer than ``k`` contributing homes gets **nothing** (a figure over
fewer homes says too much about each of them). What is sent, per fuel, in kWh over the period
(the IHD sets it beside the home's own total over the same days):

* ``average_kwh``: the mean of the contributing homes' totals;
* ``efficient_kwh``: the mean of the lowest-consuming fifth of them, that group clamped to at
  least ``k`` homes *and* leaving at least ``k`` outside it: otherwise the two figures together
  would give away the sum of the few homes outside the group (n × average − m × efficient). A
  cohort of fewer than 2k homes cannot form such a group, and its efficient figure is its average.

No median is sent: the median of an odd number of homes *is* one home's figure.

**Worked out once per period** (issue 13: the differencing the data services' aggregates were
open to, :mod:`smarthub.gdsc.governance.aggregates`). A cohort's average over n homes and the same cohort's
average over n + 1 homes for the same week (a home whose data completed later, a home newly
active, a new attribute label splitting a cohort) subtract to one home's week. So the first run
for a period records every cohort's figures — withheld ones too — in ``comparison_releases``, and
every later run for that period sends exactly those figures, computes nothing, and gives a cohort
the first run did not have nothing at all; a period that overlaps a recorded one without being
it is refused (two overlapping weeks differ by the days only one of them covers).

Gas is stored as volume (m³, 7-0:3.0.0) and converted as GB suppliers bill it: kWh = m³ × 1.02264
(correction to standard temperature and pressure) × calorific value (MJ/m³) / 3.6 (Gas
(Calculation of Thermal Energy) Regulations 1996), the same rule the hub's IHD uses. Figures are
rounded to the Wh (0.001 kWh).

The commands go into the shared pull plan (:meth:`smarthub.gdsc.pull.plan.PullPlan.queue_command`), at
bulk priority by default: a comparison is never more urgent than a household's supply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from math import ceil
from zoneinfo import ZoneInfo

from sqlalchemy import Column, Date, DateTime, Engine, Integer, String, Table, Text, and_, select
from sqlalchemy.dialects import postgresql, sqlite

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.fleet.registry import hubs, meters
from smarthub.gdsc.governance.access import TimeRange
from smarthub.gdsc.governance.parties import Granularity
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import Priority
from smarthub.gdsc.readings.queries import LONDON, Meter, readings
from smarthub.gdsc.store import Store
from smarthub.wan.contract.bodies import FuelFigures as SentFigures
from smarthub.wan.contract.bodies import IhdComparison

DEFAULT_K = 5
GAS_VOLUME_CORRECTION = Decimal("1.02264")
DEFAULT_CALORIFIC_VALUE = Decimal("39.5")  # MJ/m³, a typical GB declared CV (as the hub's default)
UOM_WH, UOM_M3 = 72, 42  # IEEE 2030.5 UomType
# The register each fuel's consumption is stored under, and its unit.
FUEL_CHANNELS = {"electricity": ("1-0:1.8.0", UOM_WH), "gas": ("7-0:3.0.0", UOM_M3)}
EFFICIENT_SHARE = 5  # the "efficient" group is the lowest-consuming 1/5 (clamped, see above)
_KWH = Decimal("0.001")


# A period's cohorts as the first run for it worked them out: never worked out again.
comparison_releases = Table(
    "comparison_releases",
    metadata,
    Column("start", Date, primary_key=True),
    Column("end", Date, primary_key=True),
    Column("cohort", String(200), primary_key=True),  # cohort_key(fuels, attribute)
    Column("contributors", Integer, nullable=False),
    Column("figures", Text),  # JSON {fuel: {average_kwh, efficient_kwh}}; NULL: withheld
    Column("released", DateTime(timezone=True), nullable=False),
)


class ComparisonError(ValueError):
    """A comparison the GDSC will not work out; the text says why."""


@dataclass(frozen=True, slots=True)
class FuelFigures:
    average_kwh: Decimal
    efficient_kwh: Decimal


@dataclass(frozen=True, slots=True)
class Cohort:
    fuels: frozenset[str]
    attribute: str | None
    members: tuple[str, ...]  # premises ids in the cohort (all of them)
    contributors: int  # premises whose data covers the whole period
    figures: dict[str, FuelFigures] | None  # None: withheld (fewer than k contributors)

    @property
    def description(self) -> str:
        fuels = " and ".join(sorted(self.fuels))
        label = f"{self.attribute} homes" if self.attribute else "homes"
        return f"{label} with {fuels}"[:120]


@dataclass
class ComparisonRun:
    cohorts: list[Cohort]
    jobs: dict[str, int] = field(default_factory=dict)  # hub id -> plan job id

    @property
    def withheld(self) -> list[Cohort]:
        return [c for c in self.cohorts if c.figures is None]


def last_week(now: datetime, tz: ZoneInfo = LONDON) -> tuple[date, date]:
    """The last complete local week (Monday .. the following Monday, exclusive) before ``now``."""
    today = now.astimezone(tz).date()
    monday = today - timedelta(days=today.weekday())
    return monday - timedelta(days=7), monday


def gas_kwh(m3: Decimal, calorific_value: Decimal = DEFAULT_CALORIFIC_VALUE) -> Decimal:
    return m3 * GAS_VOLUME_CORRECTION * calorific_value / Decimal("3.6")


def period_range(start: date, end: date, tz: ZoneInfo = LONDON) -> TimeRange:
    if end <= start:
        raise ComparisonError(f"comparison period {start}..{end} is empty")
    return TimeRange(
        datetime(start.year, start.month, start.day, tzinfo=tz),
        datetime(end.year, end.month, end.day, tzinfo=tz),
    )


def home_totals(
    engine: Engine,
    premises_id: str,
    fuel_meters: Sequence[Meter],
    fuel: str,
    period: TimeRange,
    calorific_value: Decimal = DEFAULT_CALORIFIC_VALUE,
) -> Decimal | None:
    """One premises' kWh of ``fuel`` over ``period``; None unless its meters' stored half-hours
    (taken together) cover the whole period."""
    obis, uom = FUEL_CHANNELS[fuel]
    lo, hi = int(period.start.timestamp()), int(period.end.timestamp())
    spans: list[tuple[int, int]] = []
    total = Decimal(0)
    for m in fuel_meters:
        for b in readings(engine, m, obis, [period], Granularity.HALF_HOURLY):
            if b.uom != uom:
                raise ComparisonError(
                    f"premises {premises_id} meter {m.meter_id} {obis}: unit {b.uom}, expected {uom}"
                )
            spans.append((b.start, b.start + b.duration))
            total += Decimal(b.value).scaleb(b.power_of_ten)
    if _covered(spans, lo, hi) != hi - lo:
        return None
    kwh = total / 1000 if uom == UOM_WH else gas_kwh(total, calorific_value)
    return kwh


def _covered(spans: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Seconds of [lo, hi) covered by the union of ``spans``."""
    covered, reach = 0, lo
    for a, b in sorted(spans):
        a, b = max(a, reach), min(b, hi)
        if b > a:
            covered += b - a
            reach = b
    return covered


def figures(totals: Sequence[Decimal], k: int) -> FuelFigures:
    """Average and efficient figures of ``totals`` (at least ``k`` homes; see the module docstring)."""
    n = len(totals)
    if n < k:
        raise ComparisonError(f"{n} homes; at least {k} are required")
    ordered = sorted(totals)
    average = sum(ordered, Decimal(0)) / n
    if n < 2 * k:
        efficient = average
    else:
        m = min(max(k, ceil(n / EFFICIENT_SHARE)), n - k)
        efficient = sum(ordered[:m], Decimal(0)) / m
    return FuelFigures(_round(average), _round(efficient))


def _round(kwh: Decimal) -> Decimal:
    return kwh.quantize(_KWH, ROUND_HALF_EVEN)


def cohort_key(fuels: frozenset[str], attribute: str | None) -> str:
    return json.dumps([sorted(fuels), attribute], separators=(",", ":"))[:200]


CohortGroups = dict[tuple[frozenset[str], str | None], list[str]]


def _partition(
    engine: Engine, attributes: Mapping[str, str] | None
) -> tuple[CohortGroups, dict[str, dict[str, list[Meter]]]]:
    """The premises with an active hub by (fuel set, attribute), and each one's meters per fuel."""
    q = (
        select(hubs.c.premises_id, meters.c.hub_id, meters.c.meter_id, meters.c.fuel)
        .join(hubs, hubs.c.hub_id == meters.c.hub_id)
        .where(meters.c.fuel.in_(list(FUEL_CHANNELS)))
    )
    active = select(hubs.c.premises_id).where(hubs.c.status == "active")
    with engine.connect() as conn:
        live = {r.premises_id for r in conn.execute(active)}
        rows = conn.execute(q.order_by(hubs.c.premises_id, meters.c.meter_id)).all()
    by_premises: dict[str, dict[str, list[Meter]]] = {}
    for r in rows:
        if r.premises_id in live:
            by_premises.setdefault(r.premises_id, {}).setdefault(r.fuel, []).append(
                Meter(r.hub_id, r.meter_id, r.fuel)
            )
    groups: CohortGroups = {}
    for p, fuels in sorted(by_premises.items()):
        label = (attributes or {}).get(p)
        groups.setdefault((frozenset(fuels), label), []).append(p)
    ordered = dict(sorted(groups.items(), key=lambda g: (sorted(g[0][0]), g[0][1] or "")))
    return ordered, by_premises


def cohorts(
    engine: Engine,
    start: date,
    end: date,
    *,
    k: int = DEFAULT_K,
    attributes: Mapping[str, str] | None = None,
    calorific_value: Decimal = DEFAULT_CALORIFIC_VALUE,
) -> list[Cohort]:
    """Every cohort of premises with an active hub, with its figures worked out now (None where
    withheld). What is *sent* is :func:`released_cohorts`' record: see the module docstring."""
    if k < 2:
        raise ComparisonError(f"k-anonymity needs k >= 2, not {k}")
    period = period_range(start, end)
    groups, by_premises = _partition(engine, attributes)
    out = []
    for (fuels, label), members in groups.items():
        per_fuel: dict[str, list[Decimal]] = {f: [] for f in fuels}
        contributors = 0
        for p in members:
            totals = {f: home_totals(engine, p, by_premises[p][f], f, period, calorific_value) for f in fuels}
            if any(v is None for v in totals.values()):
                continue
            contributors += 1
            for f, v in totals.items():
                assert v is not None
                per_fuel[f].append(v)
        figs = None if contributors < k else {f: figures(v, k) for f, v in per_fuel.items()}
        out.append(Cohort(fuels, label, tuple(members), contributors, figs))
    return out


def released_cohorts(
    engine: Engine,
    start: date,
    end: date,
    now: datetime,
    *,
    k: int = DEFAULT_K,
    attributes: Mapping[str, str] | None = None,
    calorific_value: Decimal = DEFAULT_CALORIFIC_VALUE,
) -> list[Cohort]:
    """The period's cohorts as first worked out (module docstring): worked out and recorded now if
    this is the period's first run, else read from the record; cohorts the record does not have
    (new homes in a new cohort, a new attribute label) get nothing. Members are today's."""
    period_range(start, end)
    r = comparison_releases
    overlapping = and_(r.c.start < end, r.c.end > start)
    with engine.connect() as conn:
        other = conn.execute(
            select(r.c.start, r.c.end).where(overlapping, ~and_(r.c.start == start, r.c.end == end)).limit(1)
        ).first()
    if other is not None:
        raise ComparisonError(
            f"comparison period {start}..{end} overlaps {other.start}..{other.end}, whose figures were sent: "
            "figures over overlapping periods could be subtracted"
        )
    record = _record(engine, start, end)
    if not record:
        worked_out = cohorts(engine, start, end, k=k, attributes=attributes, calorific_value=calorific_value)
        rows = [
            dict(
                start=start,
                end=end,
                cohort=cohort_key(c.fuels, c.attribute),
                contributors=c.contributors,
                figures=None if c.figures is None else json.dumps(_figures_json(c.figures), sort_keys=True),
                released=now,
            )
            for c in worked_out
        ]
        if rows:
            insert = (postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert)(r)
            with engine.begin() as conn:  # another GDSC process may record the period first: it stays
                conn.execute(insert.on_conflict_do_nothing(), rows)
        record = _record(engine, start, end)
    groups, _ = _partition(engine, attributes)
    out = []
    for (fuels, label), members in groups.items():
        contributors, figs = record.get(cohort_key(fuels, label), (0, None))
        out.append(Cohort(fuels, label, tuple(members), contributors, figs))
    return out


def _record(engine: Engine, start: date, end: date) -> dict[str, tuple[int, dict[str, FuelFigures] | None]]:
    r = comparison_releases
    q = select(r.c.cohort, r.c.contributors, r.c.figures).where(r.c.start == start, r.c.end == end)
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    out: dict[str, tuple[int, dict[str, FuelFigures] | None]] = {}
    for row in rows:
        figs = None
        if row.figures is not None:
            figs = {
                f: FuelFigures(Decimal(v["average_kwh"]), Decimal(v["efficient_kwh"]))
                for f, v in json.loads(row.figures).items()
            }
        out[row.cohort] = (int(row.contributors), figs)
    return out


def _figures_json(figs: Mapping[str, FuelFigures]) -> dict[str, dict[str, str]]:
    return {
        f: {"average_kwh": str(x.average_kwh), "efficient_kwh": str(x.efficient_kwh)} for f, x in figs.items()
    }


def comparison_body(cohort: Cohort, start: date, end: date) -> dict[str, object]:
    """The ``ihd.comparison`` body's JSON (:func:`comparison_command`)."""
    return comparison_command(cohort, start, end).to_json()


def comparison_command(cohort: Cohort, start: date, end: date) -> IhdComparison:
    """The ``ihd.comparison`` body (the WAN contract's) for one cohort's figures."""
    if cohort.figures is None:
        raise ComparisonError("a withheld cohort has no comparison to send")
    fuels = {fuel: SentFigures(f.average_kwh, f.efficient_kwh) for fuel, f in cohort.figures.items()}
    return IhdComparison(start, end, cohort.contributors, cohort.description, fuels)


def queue_comparisons(
    store: Store,
    signer: CommandSigner,
    start: date,
    end: date,
    now: datetime,
    *,
    k: int = DEFAULT_K,
    attributes: Mapping[str, str] | None = None,
    calorific_value: Decimal = DEFAULT_CALORIFIC_VALUE,
    priority: Priority = Priority.BULK,
) -> ComparisonRun:
    """Work out every cohort over local days ``start`` .. ``end`` (exclusive) and queue a signed
    ``ihd.comparison`` for each active hub of every cohort that has at least ``k`` contributors;
    a period already worked out sends the figures it was given then (:func:`released_cohorts`)."""
    if end > now.astimezone(LONDON).date():
        raise ComparisonError(f"comparison period {start}..{end} has not ended by {now.isoformat()}")
    if k < 2:
        raise ComparisonError(f"k-anonymity needs k >= 2, not {k}")
    run = ComparisonRun(
        released_cohorts(
            store.engine, start, end, now, k=k, attributes=attributes, calorific_value=calorific_value
        )
    )
    hubs_at: dict[str, list[str]] = {}
    for h in store.active_hubs():
        hubs_at.setdefault(h.premises_id, []).append(h.hub_id)
    plan = PullPlan(store)
    for c in run.cohorts:
        if c.figures is None:
            continue
        body = comparison_command(c, start, end)
        for p in c.members:
            for hub_id in hubs_at.get(p, []):
                run.jobs[hub_id] = plan.queue_command(signer, hub_id, "ihd.comparison", body, now, priority)
    return run
