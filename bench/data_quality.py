"""Benchmark: the VEE gate on a simulated fleet with seeded faults in the *data*.

Every hub has an electricity meter (half-hourly Wh, register in Wh) and a gas meter (half-hourly
dm³, register in dm³). Each day's pull carries the day's 96 intervals and both registers at the
next midnight (duration-0 rows); the intervals are exact differences of the registers, as a
meter's load profile is. Faults are seeded at random hub-days (seeded RNG, so reproducible):

* ``spike`` — one interval beyond the connection's capacity;
* ``negative`` — one negative electricity interval (the meters cannot export);
* ``stuck_register`` — the day's closing register repeats the previous one;
* ``stuck_meter`` — a full day of zero electricity and a register that did not move (a stuck
  meter is only *suspected*: caught means flagged, the readings are stored questionable);
* ``clock_jump`` — the hub's clock jumped 30 days ahead: the whole pull is timestamped in the
  future (the hub re-sends the day correctly once its clock is fixed: the "late actuals");
* ``swapped`` — the electricity and gas intervals of a day swapped (plausible values each);
* ``register_reset`` — the closing register fell to a low value (not a rollover);
* ``duplicate`` — one interval sent twice in the pull with different values;
* ``resent_differs`` — yesterday's interval re-sent with another value;
* ``gap`` — intervals missing from the pull (short: 3, long: 20), delivered days later.

Legitimate events that must *not* be held: register rollovers (some meters start just below
10^6 kWh), empty-home days with gas off.

Caught: the faulty reading is in ``vee_findings`` (held or flagged). False quarantine: a good
reading held. Also printed: meter-days whose interval sum was compared with the register.
Throughput: the same pulls ingested into a store with the gate off (registers left out: no
table for them without VEE) and into one with it on, batch by batch alternately (so a busy
machine slows both alike), same database kind; the ratio on/off is measured in this run.

    .venv/bin/python bench/data_quality.py [--hubs 1000] [--days 15] [--pg] [--seed 7]

Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
import uuid
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from smarthub.gdsc.readings.vee import rules
from smarthub.gdsc.readings.vee.store import VeeSettings
from smarthub.gdsc.store import Store

DAY = 86400
DAY0 = 1_772_409_600 // DAY  # 2026-03-02
ELEC, GAS = "1-0:1.8.0", "7-0:3.0.0"
PG_URL = os.environ.get("SMARTHUB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ELEC_SHAPE = (
    [0.35] * 12 + [0.6, 0.9, 1.2, 1.1, 0.8, 0.7] + [0.6] * 14 + [1.4, 1.9, 2.2, 2.0, 1.6, 1.2] + [0.8] * 10
)
GAS_SHAPE = [0.0] * 11 + [0.3, 2.5, 3.0, 2.2, 1.0] + [0.2] * 16 + [0.6, 2.4, 2.8, 2.6, 1.8, 0.9] + [0.0] * 10
FAULTS = (
    "spike",
    "negative",
    "stuck_register",
    "stuck_meter",
    "clock_jump",
    "swapped",
    "register_reset",
    "duplicate",
    "resent_differs",
    "gap",
)
MODELS = {"E-100A": rules.electricity_profile("E-100A", max_current_a=100), "G4": rules.gas_profile("G4")}

Row = tuple[str, str, str, int, int, int, int, int, int]
Key = tuple[str, str, str, int, int, int]  # hub, meter, obis, duration, start, value


@dataclass
class Fleet:
    hubs: int
    days: int
    seed: int
    pulls: list[list[tuple[str, list[Row]]]] = field(default_factory=list)  # per day
    late: list[tuple[str, list[Row]]] = field(default_factory=list)  # delivered after the run
    faulty: set[Key] = field(default_factory=set)
    kind_of: dict[Key, str] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    rollovers: int = 0

    def build(self) -> None:
        rnd = random.Random(self.seed)
        regs = {}
        for n in range(self.hubs):
            h = f"HUB{n:07d}"
            near = n % 50 == 7  # some electricity registers roll over during the run
            regs[h] = [
                int(1e9) - rnd.randint(20_000, 60_000) if near else rnd.randint(10**6, 10**8),
                rnd.randint(10**5, 10**7),
            ]
        plan: dict[tuple[int, int], str] = {}
        for kind in FAULTS:
            count = max(2, self.hubs * self.days // 400)
            placed = 0
            while placed < count:
                hub, day = rnd.randrange(self.hubs), rnd.randrange(9 if kind == "gap" else 1, self.days - 1)
                if (hub, day) in plan or (hub, day - 1) in plan or (hub, day + 1) in plan:
                    continue
                plan[(hub, day)] = kind
                placed += 1
        self.kinds = {k: 0 for k in FAULTS}
        for d in range(self.days):
            day = DAY0 + d
            t = day * DAY
            out = []
            for n in range(self.hubs):
                h = f"HUB{n:07d}"
                r = random.Random(self.seed * 1_000_003 + n * 1009 + d)
                e_scale, g_scale = r.uniform(80, 400), r.uniform(50, 400) * (0 if n % 97 == 3 else 1)
                ev = [max(1, round(e_scale * k * r.uniform(0.7, 1.3))) for k in ELEC_SHAPE]
                gv = [max(0, round(g_scale * k * r.uniform(0.6, 1.4))) for k in GAS_SHAPE]
                kind = plan.get((n, d))
                if kind == "stuck_meter":
                    ev = [0] * 48
                e0, g0 = regs[h]
                e1, g1 = (e0 + sum(ev)) % int(1e9), g0 + sum(gv)
                if e1 < e0:
                    self.rollovers += 1
                regs[h] = [e1, g1]
                rows: list[Row] = [
                    (h, f"E{n}", ELEC, t + 1800 * i, 1800, v, 0, 72, 1) for i, v in enumerate(ev)
                ]
                rows += [(h, f"G{n}", GAS, t + 1800 * i, 1800, v, -3, 42, 1) for i, v in enumerate(gv)]
                if d == 0:
                    rows += [(h, f"E{n}", ELEC, t, 0, e0, 0, 72, 1), (h, f"G{n}", GAS, t, 0, g0, -3, 42, 1)]
                e_reg: Row = (h, f"E{n}", ELEC, t + DAY, 0, e1, 0, 72, 1)
                g_reg: Row = (h, f"G{n}", GAS, t + DAY, 0, g1, -3, 42, 1)
                rows += [e_reg, g_reg]
                if kind is not None:
                    before = set(self.faulty)
                    rows = self._inject(kind, r, rows, e_reg, e0, h, n, t)
                    self.kinds[kind] += 1
                    self.kind_of.update((k, kind) for k in self.faulty - before)
                out.append((h, rows))
            self.pulls.append(out)

    def _inject(
        self, kind: str, r: random.Random, rows: list[Row], e_reg: Row, e0: int, h: str, n: int, t: int
    ) -> list[Row]:
        bad = self.faulty
        i = r.randrange(48)
        if kind in ("spike", "negative"):
            v = 20_000 + r.randrange(100_000) if kind == "spike" else -r.randint(1, 500)
            rows[i] = (*rows[i][:5], v, *rows[i][6:])
            bad.add(_key(rows[i]))
        elif kind in ("stuck_register", "register_reset"):
            v = e0 if kind == "stuck_register" else r.randint(0, 1000)
            j = rows.index(e_reg)
            rows[j] = (*e_reg[:5], v, *e_reg[6:])
            bad.add(_key(rows[j]))
        elif kind == "stuck_meter":
            bad.update(_key(x) for x in rows[:48])
        elif kind == "clock_jump":
            self.late.append((h, list(rows)))
            rows = [(*x[:3], x[3] + 30 * DAY, *x[4:]) for x in rows]
            bad.update(_key(x) for x in rows)
        elif kind == "swapped":
            e, g = rows[:48], rows[48:96]
            rows[:48] = [(*a[:5], b[5], *a[6:]) for a, b in zip(e, g, strict=True)]
            rows[48:96] = [(*b[:5], a[5], *b[6:]) for a, b in zip(e, g, strict=True)]
            # every swapped reading came from the wrong meter, even one equal to the true value by chance
            bad.update(_key(x) for x in rows[:96])
        elif kind == "duplicate":
            other = (*rows[i][:5], rows[i][5] + 1 + r.randrange(300), *rows[i][6:])
            rows.append(other)
            bad.add(_key(other))
        elif kind == "resent_differs":
            y = (h, f"E{n}", ELEC, t - DAY + 1800 * i, 1800, 99_999 - i, 0, 72, 1)
            rows.append(y)
            bad.add(_key(y))
        elif kind == "gap":
            start = r.randrange(0, 48 - 20)
            length = 3 if r.random() < 0.5 else 20
            cut = set(range(start, start + length))
            gone = [x for j, x in enumerate(rows[:48]) if j in cut]
            self.late.append((h, gone))
            rows = [x for j, x in enumerate(rows) if j not in cut]
        return rows

    @property
    def readings(self) -> int:
        return sum(len(rows) for day in self.pulls for _, rows in day)


def _key(r: Row) -> Key:
    return (r[0], r[1], r[2], r[4], r[3], r[5])


def _store(url: str, vee: bool, clock: list[int]) -> Store:
    s = Store(url)
    s.create_schema()
    if vee:
        s.enable_vee(VeeSettings(now=lambda: clock[0], models=MODELS))
    return s


def _url(pg: bool, tmp: str, name: str) -> tuple[str, str | None]:
    if not pg:
        return f"sqlite:///{tmp}/{name}.sqlite", None
    import psycopg

    schema = f"dq_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}", schema


def _ingest(
    console: Console, off: Store, on: Store, fleet: Fleet, clock: list[int], batch: int
) -> tuple[float, int, float, int]:
    """The same batches into both stores, alternating batch by batch (which goes first
    alternates too), so a busy machine slows both alike: (seconds off, readings off, seconds
    on, readings on)."""
    t = {False: 0.0, True: 0.0}
    n = {False: 0, True: 0}
    with Progress(
        TextColumn("ingest, VEE off and on, batch by batch"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("ingest", total=len(fleet.pulls))
        k = 0
        for d, pulls in enumerate(fleet.pulls):
            clock[0] = (DAY0 + d + 1) * DAY + 3600  # the pull after midnight
            for i in range(0, len(pulls), batch):
                chunk = pulls[i : i + batch]
                k += 1
                for vee in (False, True) if k % 2 else (True, False):
                    # Without the gate there is no table for register readings: they are left out.
                    items = [(h, rows if vee else [x for x in rows if x[4]], {}) for h, rows in chunk]
                    t0 = time.perf_counter()
                    (on if vee else off).ingest_many(items)
                    t[vee] += time.perf_counter() - t0
                    n[vee] += sum(len(x[1]) for x in items)
            bar.advance(task)
    return t[False], n[False], t[True], n[True]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hubs", type=int, default=1000)
    ap.add_argument("--days", type=int, default=15)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    args = ap.parse_args()
    if args.days < 10:
        ap.error("--days must be at least 10 (profile estimation looks back a week)")
    console = Console(stderr=True)
    fleet = Fleet(args.hubs, args.days, args.seed)
    t0 = time.perf_counter()
    fleet.build()
    console.print(
        f"fleet: {args.hubs} hubs × {args.days} days, {fleet.readings:,} readings, "
        f"{len(fleet.faulty):,} faulty readings seeded {fleet.kinds}, {fleet.rollovers} rollovers "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    schemas = []
    with tempfile.TemporaryDirectory() as tmp:
        clock = [0]
        url_off, s1 = _url(args.pg, tmp, "off")
        url_on, s2 = _url(args.pg, tmp, "on")
        schemas = [s for s in (s1, s2) if s]
        off = _store(url_off, False, clock)
        on = _store(url_on, True, clock)
        on.vee_checked_days = set()
        t_off, n_off, t_on, n_on = _ingest(console, off, on, fleet, clock, args.batch)
        off.close()
        rate_off, rate_on = n_off / t_off, n_on / t_on
        console.print(
            f"throughput: VEE off {rate_off:,.0f} readings/s, on {rate_on:,.0f} readings/s, "
            f"ratio {rate_on / rate_off:.2f}"
        )
        # Gaps a re-pull could not fill: estimated two days after the run's last day.
        end = (DAY0 + args.days + 2) * DAY
        clock[0] = end
        estimated = on.estimate_gaps(end)
        console.print(f"estimated {estimated:,} intervals")
        # The hubs deliver what was missing (clock fixed, gaps re-sent): actuals replace estimates.
        for i in range(0, len(fleet.late), args.batch):
            on.ingest_many([(h, rows, {}) for h, rows in fleet.late[i : i + args.batch]])
        est_total, replaced = on.estimate_counts()
        findings = on.findings(limit=10**9)
        caught_keys = {
            (f["hub_id"], f["meter_id"], f["obis"], f["duration"], f["interval_start"], f["value"])
            for f in findings
        }
        held_keys = {
            (f["hub_id"], f["meter_id"], f["obis"], f["duration"], f["interval_start"], f["value"])
            for f in findings
            if f["action"] == "quarantine"
        }
        missed = fleet.faulty - caught_keys
        false_q = held_keys - fleet.faulty
        checked = len(on.vee_checked_days)
        unchecked = sorted(
            (f"HUB{n:07d}", f"{m}{n}", o, DAY0 + d)
            for n in range(args.hubs)
            for m, o in (("E", ELEC), ("G", GAS))
            for d in range(args.days)
            if (f"HUB{n:07d}", f"{m}{n}", o, DAY0 + d) not in on.vee_checked_days
        )
        meter_days = args.hubs * 2 * args.days
        by_rule: dict[str, int] = {}
        for f in findings:
            by_rule[f["rule"]] = by_rule.get(f["rule"], 0) + 1
        on.close()
    if schemas:
        import psycopg

        with psycopg.connect(PG_URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as c:
            for s in schemas:
                c.execute(f"DROP SCHEMA {s} CASCADE")
    readings = fleet.readings
    console.print(f"findings by rule: {by_rule}")
    console.print(f"meter-days {meter_days:,}, interval sum vs register compared on {checked:,}")
    if unchecked:
        console.print(f"[yellow]meter-days not compared: {len(unchecked)}; first: {unchecked[:4]}[/]")
    if missed:
        per_kind: dict[str, int] = {}
        for k in missed:
            per_kind[fleet.kind_of[k]] = per_kind.get(fleet.kind_of[k], 0) + 1
        console.print(f"[red]missed faults by kind: {per_kind}; first: {sorted(missed)[:3]}[/]")
    if false_q:
        console.print(f"[yellow]good readings held: {len(false_q)}; first: {sorted(false_q)[:5]}[/]")
    ratio = rate_on / rate_off
    goals = {
        "all_faults_caught": not missed,
        "false_quarantine_below_0.1pct": len(false_q) < 0.001 * readings,
        "throughput_ratio_at_least_0.5": ratio >= 0.5,
    }
    console.print(f"goals: {goals}")
    print(
        json.dumps(
            {
                "readings": readings,
                "faulty_injected": len(fleet.faulty),
                "faulty_caught": len(fleet.faulty & caught_keys),
                "false_quarantine": len(false_q),
                "false_quarantine_pct": round(100 * len(false_q) / readings, 4),
                "estimated": est_total,
                "estimates_replaced_by_actuals": replaced,
                "meter_days": meter_days,
                "meter_days_sum_checked": checked,
                "rollovers_accepted": fleet.rollovers,
                "ingest_readings_per_s_vee_off": round(rate_off),
                "ingest_readings_per_s_vee_on": round(rate_on),
                "throughput_ratio_on_off": round(ratio, 3),
                "database": "postgresql" if args.pg else "sqlite",
                "goals_met": all(goals.values()),
            }
        )
    )


if __name__ == "__main__":
    main()
