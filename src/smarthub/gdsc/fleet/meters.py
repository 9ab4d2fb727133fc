"""Meters across hubs: a meter's series from every hub that has served its premises, and the
meters that applied ``meter.replace`` commands put in place, learnt into the registry."""

from __future__ import annotations

import json

from sqlalchemy import select

from smarthub.gdsc.fleet.registry import hub_commissioning, hubs, meters
from smarthub.gdsc.pull.tables import DONE, FAILED, urgent_work
from smarthub.gdsc.readings.stored import channel_readings
from smarthub.gdsc.readings.tables import StoredReading
from smarthub.gdsc.store import Store


def meter_series(
    store: Store, premises_id: str, meter_id: str, obis: str, start: int | None = None, end: int | None = None
) -> list[StoredReading]:
    """One meter's readings at a premises from every hub that has served it, by start.

    A replaced hub's readings stay under its own id; this joins them with its successors'.
    Where two hubs hold the same interval, the one commissioned earlier is kept (it read the
    meter first); a differing value there is a conflict and raises ``ValueError``."""
    with store.engine.connect() as conn:
        order = [
            r.hub_id
            for r in conn.execute(
                select(hubs.c.hub_id, hub_commissioning.c.commissioned_at)
                .select_from(hubs.outerjoin(hub_commissioning, hub_commissioning.c.hub_id == hubs.c.hub_id))
                .where(hubs.c.premises_id == premises_id)
                .order_by(
                    hub_commissioning.c.commissioned_at.is_(None).desc(),
                    hub_commissioning.c.commissioned_at,
                )
            )
        ]
        out: dict[tuple[int, int], StoredReading] = {}
        for hub_id in order:
            for r in channel_readings(conn, hub_id, meter_id, obis, start, end):
                held = out.setdefault((r.interval_start, r.duration), r)
                if held is not r and (held.value, held.power_of_ten) != (r.value, r.power_of_ten):
                    raise ValueError(
                        f"meter {meter_id} {obis} at {r.interval_start}: hub {held.hub_id} stored "
                        f"{held.value}e{held.power_of_ten}, hub {r.hub_id} {r.value}e{r.power_of_ten}"
                    )
    return sorted(out.values(), key=lambda r: (r.interval_start, r.duration))


def learn_meter_replacements(store: Store, after_job: int = 0) -> int:
    """Register at the GDSC the meters that signed ``meter.replace`` commands put in place.

    For every ``meter.replace`` job after ``after_job`` the hub applied, the new meter joins
    the hub's meters (the command's fuel, else the old meter's); the old meter stays, so its
    history, stored under its own id, stays readable. Idempotent. Returns the job id up to
    which every ``meter.replace`` job is settled (pass it back next time)."""
    u = urgent_work
    with store.engine.connect() as conn:
        jobs = conn.execute(
            select(u.c.id, u.c.hub_id, u.c.state, u.c.result, u.c.envelope)
            .where(u.c.command_type == "meter.replace", u.c.id > after_job)
            .order_by(u.c.id)
        ).all()
    mark = after_job
    for job in jobs:
        if job.state not in (DONE, FAILED):
            break  # later jobs are looked at again next time
        mark = job.id
        verdict = json.loads(job.result) if job.state == DONE and job.result else {}
        if verdict.get("status") != "applied":
            continue
        try:
            body = json.loads(json.loads(job.envelope)["payload"])["body"]
            old, new = str(body["old"]), str(body["new"])
        except (ValueError, KeyError, TypeError):
            continue
        with store._write_lock, store.engine.begin() as conn:
            fuel = (
                body.get("fuel")
                or conn.execute(
                    select(meters.c.fuel).where(meters.c.hub_id == job.hub_id, meters.c.meter_id == old)
                ).scalar()
            )
            if fuel is None:
                continue  # neither the command nor the registry says what the meter measures
            conn.execute(
                store._insert(meters)
                .values(hub_id=job.hub_id, meter_id=new, fuel=str(fuel))
                .on_conflict_do_nothing(index_elements=["hub_id", "meter_id"])
            )
    return mark
