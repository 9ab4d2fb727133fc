"""Operator edits with day versions, and the data-quality figures: functions over an engine,
shared by the store (:class:`.store.VeeData`) and the data services API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, case, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from smarthub.gdsc.db.database import DAY
from smarthub.gdsc.readings import interval_block
from smarthub.gdsc.readings.tables import HUB_LOCKS, LOCK_HUBS, interval_blocks, interval_channels
from smarthub.gdsc.readings.vee import rules
from smarthub.gdsc.readings.vee.tables import (
    meter_models,
    register_reads,
    vee_day_versions,
    vee_estimates,
    vee_findings,
)


def channel_blocks(
    conn: Connection, hub_id: str, meter: str, obis: str, duration: int, days: Sequence[int]
) -> dict[int, tuple[int, int, int, dict[int, tuple[int, int]]]]:
    """{day: (channel_no, uom, p10, slots)} of one (meter, obis, duration) of a hub."""
    c, b = interval_channels, interval_blocks
    q = (
        select(b.c.day, b.c.channel_no, c.c.uom, c.c.power_of_ten, b.c.block)
        .select_from(b.join(c, and_(b.c.hub_id == c.c.hub_id, b.c.channel_no == c.c.channel_no)))
        .where(
            b.c.hub_id == hub_id,
            c.c.meter_id == meter,
            c.c.obis == obis,
            c.c.duration == duration,
            b.c.day.in_(list(days)),
        )
    )
    out = {}
    for day, no, uom, p10, block in conn.execute(q):
        out[day] = (no, uom, p10, interval_block.decode(bytes(block), DAY // duration))
    return out


# ---------------------------------------------------------------------------------


def edit_day(
    engine: Engine,
    hub_id: str,
    meter: str,
    obis: str,
    day: int,
    values: Mapping[int, int],
    *,
    actor: str,
    reason: str,
    now: int,
    duration: int = 1800,
) -> int:
    """An operator's correction of a channel-day: the block as it was is kept as a version,
    the edited slots are marked MANUALLY_EDITED. Returns the new version's number."""
    if not reason.strip():
        raise ValueError("an edit needs a reason")
    n_slots = DAY // duration
    bad = [s for s in values if not 0 <= s < n_slots]
    if bad:
        raise ValueError(f"slots {bad} outside the day's {n_slots}")
    with engine.begin() as conn:
        return _edit(conn, hub_id, meter, obis, day, values, actor, reason, now, duration)


def _edit(
    conn: Connection,
    hub_id: str,
    meter: str,
    obis: str,
    day: int,
    values: Mapping[int, int],
    actor: str,
    reason: str,
    now: int,
    duration: int,
) -> int:
    n_slots = DAY // duration
    v = vee_day_versions
    if conn.dialect.name == "postgresql":
        # The hub's merge lock: an ingest merging into this block meanwhile would otherwise
        # lose its readings to this write-back, or this edit to its own.
        conn.exec_driver_sql(LOCK_HUBS, (HUB_LOCKS, [hub_id]))
    got = channel_blocks(conn, hub_id, meter, obis, duration, [day]).get(day)
    if got is None:
        raise LookupError(f"no {obis} readings of meter {meter} of hub {hub_id} on day {day}")
    no, _, _, slots = got
    old = conn.execute(
        select(interval_blocks.c.block).where(
            interval_blocks.c.hub_id == hub_id,
            interval_blocks.c.day == day,
            interval_blocks.c.channel_no == no,
        )
    ).scalar_one()
    version = (
        conn.execute(
            select(func.max(v.c.version)).where(
                v.c.hub_id == hub_id,
                v.c.meter_id == meter,
                v.c.obis == obis,
                v.c.duration == duration,
                v.c.day == day,
            )
        ).scalar()
        or 0
    ) + 1
    conn.execute(
        insert(v).values(
            hub_id=hub_id,
            meter_id=meter,
            obis=obis,
            duration=duration,
            day=day,
            version=version,
            block=bytes(old),
            superseded_at=now,
            edited_by=actor,
            reason=reason,
        )
    )
    merged = dict(slots)
    for s, val in values.items():
        merged[s] = (int(val), rules.MANUALLY_EDITED | rules.VALID)
    conn.execute(
        update(interval_blocks)
        .where(
            interval_blocks.c.hub_id == hub_id,
            interval_blocks.c.day == day,
            interval_blocks.c.channel_no == no,
        )
        .values(n=len(merged), block=interval_block.encode(n_slots, merged))
    )
    return version + 1


def held(
    engine: Engine, hub_ids: Sequence[str], meter_id: str | None = None, limit: int = 1000
) -> list[dict]:
    """The quarantined readings still held of these hubs (of one meter), oldest first."""
    f = vee_findings
    q = select(f).where(f.c.hub_id.in_(list(hub_ids)), f.c.status == "held")
    if meter_id is not None:
        q = q.where(f.c.meter_id == meter_id)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.order_by(f.c.interval_start, f.c.obis).limit(limit))]


def resolve(
    engine: Engine,
    key: tuple[str, str, str, int, int, str, int],
    *,
    decision: str,
    actor: str,
    reason: str,
    now: int,
) -> int | None:
    """An operator's decision on a held reading, ``key`` = (hub, meter, obis, duration, start,
    rule, value): ``reject`` (it stays out, marked so) or ``release`` (it becomes truth: an
    interval through an edit of its day — a new day version, MANUALLY_EDITED —, a register into
    the register reads). Returns the day's new version for a released interval."""
    if decision not in ("release", "reject"):
        raise ValueError(f"a held reading is released or rejected, not {decision!r}")
    if not reason.strip():
        raise ValueError("a decision on a held reading needs a reason")
    hub_id, meter, obis, duration, start, rule, value = key
    f = vee_findings
    match = and_(
        f.c.hub_id == hub_id, f.c.meter_id == meter, f.c.obis == obis, f.c.duration == duration,
        f.c.interval_start == start, f.c.rule == rule, f.c.value == value,
    )  # fmt: skip
    version = None
    with engine.begin() as conn:
        row = conn.execute(select(f).where(match, f.c.status == "held")).first()
        if row is None:
            raise LookupError(f"no held {obis} reading of meter {meter} at {start} ({rule}, value {value})")
        if decision == "release":
            if duration == 0:
                ins = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(register_reads)
                conn.execute(
                    ins.on_conflict_do_nothing(),
                    {
                        "hub_id": hub_id,
                        "meter_id": meter,
                        "obis": obis,
                        "read_at": start,
                        "value": value,
                        "power_of_ten": row.power_of_ten,
                        "uom": row.uom,
                        "quality": row.quality | rules.MANUALLY_EDITED,
                    },
                )
            else:
                day, rem = divmod(start, DAY)
                if not channel_blocks(conn, hub_id, meter, obis, duration, [day]):
                    raise ValueError(
                        f"the store holds no {obis} readings of meter {meter} on day {day} to release into"
                        " (the day's other readings arrive first, or an estimate)"
                    )
                version = _edit(conn, hub_id, meter, obis, day, {rem // duration: value}, actor,
                                f"released from quarantine ({rule}): {reason}", now, duration)  # fmt: skip
        conn.execute(
            update(f)
            .where(match)
            .values(
                status="released" if decision == "release" else "rejected",
                resolved_by=actor,
                resolved_reason=reason,
            )
        )
    return version


def day_versions(
    engine: Engine, hub_id: str, meter: str, obis: str, day: int, duration: int = 1800
) -> list[dict]:
    """Every earlier version of a channel-day, oldest first: {version, slots, superseded_at,
    edited_by, reason} (the current version is in the store, numbered last + 1)."""
    v = vee_day_versions
    with engine.connect() as conn:
        rows = conn.execute(
            select(v)
            .where(
                v.c.hub_id == hub_id,
                v.c.meter_id == meter,
                v.c.obis == obis,
                v.c.duration == duration,
                v.c.day == day,
            )
            .order_by(v.c.version)
        ).all()
    return [
        {
            "version": r.version,
            "slots": interval_block.decode(bytes(r.block), DAY // duration),
            "superseded_at": r.superseded_at,
            "edited_by": r.edited_by,
            "reason": r.reason,
        }
        for r in rows
    ]


# -- data quality --------------------------------------------------------------------------


def quality_figures(engine: Engine, by: str = "hub") -> list[dict]:
    """Findings per hub, meter model or supplier: quarantined, flagged and by rule; and the
    GDSC's estimates (with how many were replaced by actual readings)."""
    from smarthub.gdsc.fleet.registry import hubs
    from smarthub.gdsc.governance.parties import supply_periods

    f, e = vee_findings, vee_estimates
    fk: Any
    ek: Any
    fq: Any
    eq: Any
    if by == "hub":
        fk, ek = f.c.hub_id, e.c.hub_id
        fq, eq = (
            select(fk.label("k"), f.c.rule, f.c.action, func.count()),
            select(ek.label("k"), func.count(), func.count(e.c.replaced_at)),
        )
    elif by == "model":
        mm = meter_models
        fk = func.coalesce(mm.c.model, "unknown")
        fq = select(fk.label("k"), f.c.rule, f.c.action, func.count()).select_from(
            f.outerjoin(mm, and_(mm.c.hub_id == f.c.hub_id, mm.c.meter_id == f.c.meter_id))
        )
        ek = func.coalesce(mm.c.model, "unknown")
        eq = select(ek.label("k"), func.count(), func.count(e.c.replaced_at)).select_from(
            e.outerjoin(mm, and_(mm.c.hub_id == e.c.hub_id, mm.c.meter_id == e.c.meter_id))
        )
    elif by == "supplier":
        sp = supply_periods
        fuel_f = func.substr(f.c.obis, 1, 1)
        fk = func.coalesce(sp.c.supplier_id, "unknown")
        fq = select(fk.label("k"), f.c.rule, f.c.action, func.count()).select_from(
            f.outerjoin(hubs, hubs.c.hub_id == f.c.hub_id).outerjoin(
                sp,
                and_(
                    sp.c.premises_id == hubs.c.premises_id,
                    sp.c.end.is_(None),
                    sp.c.fuel == _fuel_case(fuel_f),
                ),
            )
        )
        fuel_e = func.substr(e.c.obis, 1, 1)
        ek = func.coalesce(sp.c.supplier_id, "unknown")
        eq = select(ek.label("k"), func.count(), func.count(e.c.replaced_at)).select_from(
            e.outerjoin(hubs, hubs.c.hub_id == e.c.hub_id).outerjoin(
                sp,
                and_(
                    sp.c.premises_id == hubs.c.premises_id,
                    sp.c.end.is_(None),
                    sp.c.fuel == _fuel_case(fuel_e),
                ),
            )
        )
    else:
        raise ValueError(f"data quality is grouped by hub, model or supplier, not {by!r}")
    out: dict[str, dict] = {}

    def entry(k: str) -> dict:
        return out.setdefault(
            k,
            {by: k, "quarantined": 0, "flagged": 0, "estimated": 0, "estimates_replaced": 0, "rules": {}},
        )

    with engine.connect() as conn:
        for k, rule, action, n in conn.execute(fq.group_by(fk, f.c.rule, f.c.action)):
            d = entry(k)
            d["quarantined" if action == "quarantine" else "flagged"] += n
            d["rules"][rule] = d["rules"].get(rule, 0) + n
        for k, n, r in conn.execute(eq.group_by(ek)):
            d = entry(k)
            d["estimated"] += n
            d["estimates_replaced"] += r
    return [out[k] for k in sorted(out)]


def _fuel_case(medium):
    return case((medium == "1", "electricity"), (medium == "7", "gas"), else_="other")
