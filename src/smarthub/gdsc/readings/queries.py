"""Readings served to parties: the premises' stored intervals, cut to the ranges the policy allowed
and summed to the granularity granted.

Only *complete* calendar buckets wholly inside an allowed range are served: a daily total whose
day were clipped to one half-hour by a range boundary would be that half-hour's reading, i.e. a
finer granularity than granted. Days and months follow the consumer's local calendar
(Europe/London), so a clock-change day has 46 or 50 half-hours.

A meter's series is read across every hub that has served its premises (:func:`find_meter` fills
:attr:`Meter.hubs`): a replaced hub's readings stay stored under its own id, the new hub's under
its id, and a party reading the meter sees one series across the swap (as
:meth:`smarthub.gdsc.fleet.lifecycle.HubLifecycle.meter_series` does). Where two hubs hold the same
interval, the one commissioned earlier is served (it read the meter first).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, and_, select

from smarthub.gdsc.db.database import DAY
from smarthub.gdsc.fleet.registry import hub_commissioning, hubs, meters
from smarthub.gdsc.governance.access import TimeRange
from smarthub.gdsc.governance.parties import Granularity, tenancies
from smarthub.gdsc.readings.stored import channel_readings
from smarthub.gdsc.readings.tables import interval_blocks, interval_channels

LONDON = ZoneInfo("Europe/London")
SERVED = (Granularity.HALF_HOURLY, Granularity.DAILY, Granularity.MONTHLY)


class NotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Meter:
    hub_id: str  # the hub serving the meter now (commands go there)
    meter_id: str
    fuel: str
    # Every hub whose stored readings of the meter are served, earliest commissioned first
    # (empty: ``hub_id`` only).
    hubs: tuple[str, ...] = ()

    @property
    def series_hubs(self) -> tuple[str, ...]:
        return self.hubs or (self.hub_id,)


@dataclass(frozen=True, slots=True)
class Bucket:
    start: int  # epoch seconds, UTC
    duration: int
    value: int
    power_of_ten: int
    uom: int
    quality: int  # OR of the qualities summed
    intervals: int  # how many stored intervals it sums


def find_meter(engine: Engine, premises_id: str, meter_id: str) -> Meter:
    """The meter at the premises: its current hub (an active one first) and every hub of the
    premises whose readings of it are served (module docstring)."""
    q = (
        select(meters.c.hub_id, meters.c.meter_id, meters.c.fuel)
        .join(hubs, hubs.c.hub_id == meters.c.hub_id)
        .where(and_(hubs.c.premises_id == premises_id, meters.c.meter_id == meter_id))
        .order_by((hubs.c.status == "active").desc(), meters.c.hub_id)
    )
    hc = hub_commissioning
    served = (
        select(hubs.c.hub_id)
        .select_from(hubs.outerjoin(hc, hc.c.hub_id == hubs.c.hub_id))
        .where(hubs.c.premises_id == premises_id)
        .order_by(hc.c.commissioned_at.is_(None).desc(), hc.c.commissioned_at, hubs.c.hub_id)
    )
    with engine.connect() as conn:
        r = conn.execute(q).first()
        if r is None:
            raise NotFound(f"no meter {meter_id!r} at premises {premises_id!r}")
        order = tuple(h for (h,) in conn.execute(served))
    return Meter(r.hub_id, r.meter_id, r.fuel, order)


def premises_meters(engine: Engine, premises_id: str) -> set[str]:
    q = (
        select(meters.c.meter_id)
        .join(hubs, hubs.c.hub_id == meters.c.hub_id)
        .where(hubs.c.premises_id == premises_id)
    )
    with engine.connect() as conn:
        return {r.meter_id for r in conn.execute(q)}


def readings(
    engine: Engine,
    meter: Meter,
    obis: str,
    ranges: Sequence[TimeRange],
    granularity: Granularity,
    tz: ZoneInfo = LONDON,
) -> list[Bucket]:
    """Buckets of ``granularity`` lying wholly inside one of ``ranges``, in time order."""
    return list(iter_readings(engine, meter, obis, ranges, granularity, tz))


def iter_readings(
    engine: Engine,
    meter: Meter,
    obis: str,
    ranges: Sequence[TimeRange],
    granularity: Granularity,
    tz: ZoneInfo = LONDON,
) -> Iterator[Bucket]:
    """:func:`readings` one local calendar month at a time, so a bulk export of years of
    half-hourly data holds one month of rows in memory, never the whole period.

    Chunks start at local midnight of the 1st, so no daily or monthly bucket straddles two chunks;
    only months with stored data are visited (one query on the blocks' key finds the days that have any),
    so a period of centuries costs no more than the data in it.
    """
    if granularity not in SERVED:
        raise ValueError(f"readings are served half-hourly, daily or monthly, not {granularity.value}")
    if not ranges:
        return
    spans = [(int(r.start.timestamp()), int(r.end.timestamp())) for r in ranges]
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    with engine.connect() as conn:
        days = _data_days(conn, meter, obis, lo, hi)
    # A UTC day can start in one local month and end in the next (BST): both months are visited.
    months = sorted(
        {_bucket(t, 1, Granularity.MONTHLY, tz) for d in days for t in (d * DAY, d * DAY + DAY - 1)}
    )
    for chunk, following in months:
        inside = [(max(a, chunk), min(b, following)) for a, b in spans if a < following and b > chunk]
        if inside:
            yield from _chunk(engine, meter, obis, spans, inside, granularity, tz)


def _data_days(conn: Connection, meter: Meter, obis: str, lo: int, hi: int) -> list[int]:
    """The UTC days (since the epoch) in [lo, hi) holding any stored reading of the channel
    (from any of the meter's hubs)."""
    b, c = interval_blocks, interval_channels
    q = (
        select(b.c.day)
        .distinct()
        .select_from(b.join(c, and_(b.c.hub_id == c.c.hub_id, b.c.channel_no == c.c.channel_no)))
        .where(
            b.c.hub_id.in_(meter.series_hubs),
            c.c.meter_id == meter.meter_id,
            c.c.obis == obis,
            b.c.day >= lo // DAY,
            b.c.day <= (hi - 1) // DAY,
        )
    )
    return [int(r[0]) for r in conn.execute(q)]


def _chunk(
    engine: Engine,
    meter: Meter,
    obis: str,
    spans: list[tuple[int, int]],
    inside: list[tuple[int, int]],
    granularity: Granularity,
    tz: ZoneInfo,
) -> list[Bucket]:
    held: dict[tuple[int, int], tuple[int, int, int, int, int, int]] = {}
    with engine.connect() as conn:
        for hub_id in meter.series_hubs:  # earliest commissioned first: its value is kept
            for a, b in inside:
                for r in channel_readings(conn, hub_id, meter.meter_id, obis, a, b):
                    held.setdefault(
                        (r.interval_start, r.duration),
                        (r.interval_start, r.duration, r.value, r.power_of_ten, r.uom, r.quality),
                    )
    rows = sorted(held.values())
    out: dict[int, list[int]] = {}  # bucket start -> [end, value, p10, uom, quality, n]
    for start, duration, value, p10, uom, quality in rows:
        b_start, b_end = _bucket(start, duration, granularity, tz)
        if not any(lo <= b_start and b_end <= hi for lo, hi in spans):
            continue  # a bucket cut by a range boundary would leak finer data
        acc = out.get(b_start)
        if acc is None:
            out[b_start] = [b_end, value, p10, uom, quality, 1]
            continue
        if acc[3] != uom:
            raise ValueError(f"meter {meter.meter_id} {obis}: mixed units {acc[3]} and {uom} in one bucket")
        if p10 < acc[2]:  # rescale to the finer power of ten so the sum stays exact
            acc[1] *= 10 ** (acc[2] - p10)
            acc[2] = p10
        acc[1] += value * 10 ** (p10 - acc[2])
        acc[4] |= quality
        acc[5] += 1
    return [Bucket(s, a[0] - s, a[1], a[2], a[3], a[4], a[5]) for s, a in sorted(out.items())]


def customer_sites(engine: Engine, consumer_id: str) -> list[tuple[str, datetime, datetime | None]]:
    """Every tenancy a consumer holds or held, as (premises, start, end): a non-domestic customer's
    sites are simply the premises it is the occupant of (one tenancy per site)."""
    t = tenancies
    q = select(t.c.premises_id, t.c.start, t.c.end).where(t.c.consumer_id == consumer_id)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(t.c.premises_id, t.c.start)).all()
    return [(r.premises_id, _aware(r.start), None if r.end is None else _aware(r.end)) for r in rows]


def premises_mpans(engine: Engine, premises_ids: Sequence[str]) -> dict[str, str]:
    """The MPAN of each of these premises that has one."""
    from smarthub.gdsc.fleet.registry import premises

    out: dict[str, str] = {}
    with engine.connect() as conn:
        for i in range(0, len(premises_ids), 1000):
            chunk = list(premises_ids[i : i + 1000])
            q = select(premises.c.premises_id, premises.c.mpan).where(premises.c.premises_id.in_(chunk))
            out.update({r.premises_id: r.mpan for r in conn.execute(q) if r.mpan})
    return out


def premises_meter_list(engine: Engine, premises_id: str) -> list[Meter]:
    q = (
        select(meters.c.hub_id, meters.c.meter_id, meters.c.fuel)
        .join(hubs, hubs.c.hub_id == meters.c.hub_id)
        .where(hubs.c.premises_id == premises_id)
        .order_by(meters.c.meter_id)
    )
    with engine.connect() as conn:
        return [Meter(r.hub_id, r.meter_id, r.fuel) for r in conn.execute(q)]


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _bucket(start: int, duration: int, g: Granularity, tz: ZoneInfo) -> tuple[int, int]:
    if g is Granularity.HALF_HOURLY:
        return start, start + duration
    local = datetime.fromtimestamp(start, tz)
    if g is Granularity.DAILY:
        day = local.date()
        return _midnight(day, tz), _midnight(day + timedelta(days=1), tz)
    first = local.date().replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return _midnight(first, tz), _midnight(following, tz)


def _midnight(d: date, tz: ZoneInfo) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp())
