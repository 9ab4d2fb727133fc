"""Meters registered from the field (issue 20 item 4): a meter a hub hears but was not told of,
registered against the premises once the manufacturer's shipment data and the installer's job
confirm it — with no table edited by hand, and no reading of it stored as truth before.

The parts, as a DLMS/OMS head-end runs them:

* **shipment files** — the manufacturer's list of the meters it shipped (serial, maker, protocol,
  fuel and, for an encrypting meter, its key), imported at the GDSC (``meter_shipments``;
  :meth:`FieldMeters.import_shipment`, ``POST /v1/meter-shipments``, CSV); the keys go to the
  GDSC's key escrow, sealed under its key-encryption key (:mod:`.key_escrow`), never in clear;
* **the installer's job** — what was fitted where: the meter, the premises, the meter it replaces
  (``meter_installs``; ``POST /v1/premises/{id}/meter-installs`` by the installer on site);
* **the hub's report** — the hub keeps the meters it hears but was not told of as *pending*
  (:mod:`smarthub.hub.registry`; their readings are refused, never stored) and lists them in
  its HAN scan. Hubs never push: for a hub whose premises has an open installer's job, the GDSC
  queues ``diagnostic.han_scan`` riding on the hub's pull (:meth:`FieldMeters.after_pulls`),
  and reads the pending meters from the verdict (``pending_meters``);
* **authentication**, where the protocol allows — an encrypting meter (wM-Bus security mode 5
  or 7, DLMS) gets the shipment's key first (``meter.key``), and is registered only once a later
  scan shows its frames decoded under that key (a meter whose frames do not decrypt under the key
  its maker shipped it with is not the meter shipped). A meter that sends in clear cannot be
  authenticated: it is registered on the shipment and the job alone, and recorded so;
* **registration** — ``meter.replace`` (the job names the meter it replaced, still registered
  for the hub) or ``meter.add``; once the hub has applied it, the meter joins the GDSC's
  registry (``meters``) and the job is closed. From then on its readings are the home's.

A pending meter's state (``status``): ``pending`` (waiting: ``reason`` says for what),
``keyed`` (the key is sent; waiting for decoded frames), ``commissioning`` (the command is
sent), ``registered``, or ``refused`` (the hub refused the command: the reason is kept; a new
installer's job starts again).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    String,
    Table,
    Text,
    and_,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from smarthub.gdsc.commands.signer import CommandSigner
from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.fleet.key_escrow import SHIPMENT, EscrowUnavailable, KeyEscrow, meter_key_escrow
from smarthub.gdsc.fleet.registry import hubs, meters
from smarthub.gdsc.pull.plan import PullPlan
from smarthub.gdsc.pull.tables import DONE, FAILED, PENDING, urgent_work
from smarthub.wan.contract.bodies import MeterAdd, MeterKey, MeterReplace

log = logging.getLogger(__name__)

_T = DateTime(timezone=True)
_ID = BigInteger().with_variant(Integer, "sqlite")

meter_shipments = Table(
    "meter_shipments",
    metadata,
    Column("meter_id", String(64), primary_key=True),
    Column("manufacturer", String(8), nullable=False),
    Column("protocol", String(16), nullable=False),
    Column("fuel", String(16), nullable=False),
    # Before migration 0023 the key in clear (hex); now always None: the keys are in the escrow,
    # sealed (smarthub.gdsc.fleet.key_escrow), which empties this column of older imports.
    Column("meter_key", String(32)),
    Column("shipment", String(64), nullable=False),  # the file it came in
    Column("imported_at", _T, nullable=False),
)

meter_installs = Table(
    "meter_installs",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("premises_id", String(64), nullable=False, index=True),
    Column("meter_id", String(64), nullable=False),
    Column("replaces", String(64)),
    Column("installer", String(64), nullable=False),
    Column("installed_at", _T, nullable=False),
    Column("closed_at", _T),  # the meter registered (or the job superseded)
)

pending_meters = Table(
    "pending_meters",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("protocol", String(16), nullable=False),
    Column("first_heard", _T, nullable=False),
    Column("last_heard", _T, nullable=False),
    Column("decoded", Integer, nullable=False),  # frames the hub decoded (none stored)
    Column("undecrypted", Integer, nullable=False),  # frames it could not decrypt
    Column("scan_job", _ID, nullable=False),  # the scan that last reported it
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("key_job", _ID),
    Column("register_job", _ID),
    Column("install_id", _ID),
    Column("authenticated", Integer, nullable=False),  # 1: frames decoded under the shipment's key
    Column("updated_at", _T, nullable=False),
)

SHIPMENT_COLUMNS = ("meter_id", "manufacturer", "protocol", "fuel", "key")
PROTOCOLS = ("wmbus", "zigbee", "dlms", "mbus", "p1", "iec62056-21", "sml")
FUELS = ("electricity", "gas", "water", "heat")


class ShipmentRefused(ValueError):
    """A shipment file the GDSC will not import; the message names the line and field."""


@dataclass(frozen=True, slots=True)
class Shipped:
    meter_id: str
    manufacturer: str
    protocol: str
    fuel: str
    key: str | None


def parse_shipment(text: str) -> list[Shipped]:
    """The rows of a shipment file: CSV with the header ``meter_id,manufacturer,protocol,fuel,key``
    (``key``: 32 hex digits, or empty for a meter that sends in clear)."""
    try:
        return _parse_shipment(text)
    except csv.Error as err:  # a field over the csv module's limit, a NUL byte, …
        raise ShipmentRefused(f"not a readable CSV file: {err}") from None


def _parse_shipment(text: str) -> list[Shipped]:
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != SHIPMENT_COLUMNS:
        raise ShipmentRefused(f"the header must be {','.join(SHIPMENT_COLUMNS)}, not {reader.fieldnames}")
    out: list[Shipped] = []
    seen: set[str] = set()
    for n, row in enumerate(reader, start=2):
        meter, maker = (row["meter_id"] or "").strip(), (row["manufacturer"] or "").strip()
        protocol, fuel, key = (
            (row["protocol"] or "").strip(),
            (row["fuel"] or "").strip(),
            (row["key"] or "").strip(),
        )
        if None in row or any(v is None for v in row.values()):
            raise ShipmentRefused(f"line {n}: not {len(SHIPMENT_COLUMNS)} fields")
        if not 0 < len(meter) <= 64 or meter in seen:
            raise ShipmentRefused(f"line {n}: meter_id {meter!r:.70} is empty, too long or repeated")
        if not (len(maker) == 3 and maker.isalpha() and maker.isupper()):
            raise ShipmentRefused(f"line {n}: manufacturer {maker!r:.20} is not a 3-letter flag id")
        if protocol not in PROTOCOLS:
            raise ShipmentRefused(f"line {n}: protocol {protocol!r:.20} is not one of {', '.join(PROTOCOLS)}")
        if fuel not in FUELS:
            raise ShipmentRefused(f"line {n}: fuel {fuel!r:.20} is not one of {', '.join(FUELS)}")
        if key and (len(key) != 32 or any(c not in "0123456789abcdefABCDEF" for c in key)):
            raise ShipmentRefused(f"line {n}: key must be 32 hex digits (or empty)")
        seen.add(meter)
        out.append(Shipped(meter, maker, protocol, fuel, key.lower() or None))
    if not out:
        raise ShipmentRefused("the shipment file lists no meter")
    return out


class FieldMeters:
    """The registration of meters from the field over one GDSC database (module docstring).

    ``rescan``: how long after a hub's last HAN scan another rides on its pull while its
    premises has an open installer's job. ``escrow``: where the shipments' keys are kept,
    sealed (without one, a shipment file with keys is refused)."""

    def __init__(
        self, engine: Engine, rescan: timedelta = timedelta(minutes=30), escrow: KeyEscrow | None = None
    ) -> None:
        self.engine = engine
        self.escrow = escrow
        self.dialect = engine.dialect.name
        self.rescan = rescan
        self.scans_read = 0  # the HAN-scan jobs up to this id are read

    def _insert(self, table: Table) -> Any:
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)

    # -- what comes in --------------------------------------------------------------------------
    def import_shipment(self, text: str, shipment: str, now: datetime) -> int:
        """Import (or re-import) a manufacturer's shipment file; how many meters it lists. Its
        keys go to the escrow, sealed; none is stored in clear."""
        rows = parse_shipment(text)
        keys = [(r.meter_id, bytes.fromhex(r.key)) for r in rows if r.key is not None]
        if keys and self.escrow is None:
            raise EscrowUnavailable("this GDSC has no key escrow: a shipment's keys cannot be stored")
        values = [
            {
                "meter_id": r.meter_id,
                "manufacturer": r.manufacturer,
                "protocol": r.protocol,
                "fuel": r.fuel,
                "meter_key": None,
                "shipment": shipment[:64],
                "imported_at": now.astimezone(UTC),
            }
            for r in rows
        ]
        ins = self._insert(meter_shipments)
        cols = ("manufacturer", "protocol", "fuel", "meter_key", "shipment", "imported_at")
        stmt = ins.on_conflict_do_update(
            index_elements=["meter_id"], set_={c: getattr(ins.excluded, c) for c in cols}
        )
        with self.engine.begin() as conn:
            for i in range(0, len(values), 5000):
                conn.execute(stmt, values[i : i + 5000])
            if keys:
                assert self.escrow is not None
                self.escrow.deposit_shipment(conn, keys, shipment, now)
        return len(values)

    def record_install(
        self, premises_id: str, meter_id: str, replaces: str | None, installer: str, now: datetime
    ) -> int:
        """The installer's job: ``meter_id`` fitted at ``premises_id`` (replacing ``replaces``);
        its id. An earlier open job for the same meter there is superseded."""
        mi = meter_installs
        with self.engine.begin() as conn:
            conn.execute(
                update(mi)
                .where(mi.c.premises_id == premises_id, mi.c.meter_id == meter_id, mi.c.closed_at.is_(None))
                .values(closed_at=now.astimezone(UTC))
            )
            res = conn.execute(
                mi.insert().values(
                    premises_id=premises_id,
                    meter_id=meter_id,
                    replaces=replaces,
                    installer=installer,
                    installed_at=now.astimezone(UTC),
                )
            )
            # A meter refused before gets another try with the new job.
            conn.execute(
                update(pending_meters)
                .where(
                    pending_meters.c.meter_id == meter_id,
                    pending_meters.c.status == "refused",
                    pending_meters.c.hub_id.in_(
                        select(hubs.c.hub_id).where(hubs.c.premises_id == premises_id)
                    ),
                )
                .values(status="pending", reason="a new installer's job", updated_at=now.astimezone(UTC))
            )
        key = res.inserted_primary_key
        assert key is not None
        return int(key[0])

    def pending(self, hub_id: str | None = None) -> list[dict[str, Any]]:
        q = select(pending_meters).order_by(pending_meters.c.hub_id, pending_meters.c.meter_id)
        if hub_id is not None:
            q = q.where(pending_meters.c.hub_id == hub_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def of_premises(self, premises_id: str) -> list[dict[str, Any]]:
        """The pending meters the hubs of ``premises_id`` reported (its replaced hubs' too)."""
        p = pending_meters
        q = (
            select(p)
            .join(hubs, hubs.c.hub_id == p.c.hub_id)
            .where(hubs.c.premises_id == premises_id)
            .order_by(p.c.hub_id, p.c.meter_id)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    # -- riding on the pulls ----------------------------------------------------------------------
    def after_pulls(
        self, plan: PullPlan, signer: CommandSigner, hub_ids: Sequence[str], now: datetime
    ) -> None:
        """After pulls of ``hub_ids``: read the scans that came back, advance every pending meter,
        and queue a HAN scan for each pulled hub whose premises has an open installer's job."""
        if not self._anything_open():  # no installer's job, nothing in flight: the usual case
            return
        self.settle(plan, signer, now)
        for hub_id in self._to_scan(hub_ids, now):
            plan.queue_command(signer, hub_id, "diagnostic.han_scan", {}, now)

    def _anything_open(self) -> bool:
        """An open installer's job, or a pending meter whose registration is under way."""
        with self.engine.connect() as conn:
            job = conn.execute(
                select(meter_installs.c.id).where(meter_installs.c.closed_at.is_(None)).limit(1)
            )
            if job.first() is not None:
                return True
            busy = pending_meters.c.status.in_(("keyed", "commissioning"))
            return conn.execute(select(pending_meters.c.hub_id).where(busy).limit(1)).first() is not None

    def _to_scan(self, hub_ids: Sequence[str], now: datetime) -> list[str]:
        if not hub_ids:
            return []
        h, mi, u = hubs, meter_installs, urgent_work
        with self.engine.connect() as conn:
            with_jobs = {
                r.hub_id
                for r in conn.execute(
                    select(h.c.hub_id)
                    .join(mi, and_(mi.c.premises_id == h.c.premises_id, mi.c.closed_at.is_(None)))
                    .where(h.c.hub_id.in_(list(hub_ids)), h.c.status == "active")
                )
            }
            if not with_jobs:
                return []
            scans = conn.execute(
                select(u.c.hub_id, u.c.state, func.max(u.c.queued).label("queued"))
                .where(u.c.hub_id.in_(sorted(with_jobs)), u.c.command_type == "diagnostic.han_scan")
                .group_by(u.c.hub_id, u.c.state)
            ).all()
        busy = {r.hub_id for r in scans if r.state not in (DONE, FAILED)}
        last: dict[str, datetime] = {}
        for r in scans:
            t = r.queued if r.queued.tzinfo else r.queued.replace(tzinfo=UTC)
            last[r.hub_id] = max(last.get(r.hub_id, t), t)
        return sorted(hub for hub in with_jobs - busy if hub not in last or now - last[hub] >= self.rescan)

    def settle(self, plan: PullPlan, signer: CommandSigner, now: datetime) -> None:
        """Read the HAN scans that came back, then move every pending meter on (module docstring)."""
        self._read_scans(now)
        self._finish_commands(now)
        self._advance(plan, signer, now)

    def _read_scans(self, now: datetime) -> None:
        u = urgent_work
        with self.engine.connect() as conn:
            jobs = conn.execute(
                select(u.c.id, u.c.hub_id, u.c.state, u.c.result)
                .where(u.c.command_type == "diagnostic.han_scan", u.c.id > self.scans_read)
                .order_by(u.c.id)
            ).all()
        for job in jobs:
            if job.state not in (DONE, FAILED):
                break  # read in order: a later one waits for this
            self.scans_read = job.id
            verdict = json.loads(job.result) if job.state == DONE and job.result else {}
            reported = (
                (verdict.get("result") or {}).get("pending") if verdict.get("status") == "applied" else None
            )
            if not isinstance(reported, list):
                continue
            self._record(job.hub_id, job.id, reported, now)

    def _record(self, hub_id: str, job: int, reported: list[Any], now: datetime) -> None:
        p = pending_meters
        with self.engine.begin() as conn:
            for entry in reported:
                try:
                    meter, protocol = str(entry["meter"])[:64], str(entry["protocol"])[:16]
                    first, last = int(entry["first_heard"]), int(entry["last_heard"])
                    decoded, undecrypted = int(entry["decoded"]), int(entry["undecrypted"])
                except (KeyError, TypeError, ValueError):
                    log.warning("hub %s: a pending meter entry without its fields: %.200r", hub_id, entry)
                    continue
                heard = {
                    "protocol": protocol,
                    "last_heard": datetime.fromtimestamp(last, UTC),
                    "decoded": decoded,
                    "undecrypted": undecrypted,
                    "scan_job": job,
                    "updated_at": now.astimezone(UTC),
                }
                ins = self._insert(p).values(
                    hub_id=hub_id,
                    meter_id=meter,
                    first_heard=datetime.fromtimestamp(first, UTC),
                    status="pending",
                    reason="reported by the hub",
                    authenticated=0,
                    **heard,
                )
                conn.execute(ins.on_conflict_do_update(index_elements=["hub_id", "meter_id"], set_=heard))

    def _job(self, conn: Any, job_id: int | None) -> Any:
        if job_id is None:
            return None
        return conn.execute(
            select(urgent_work.c.state, urgent_work.c.result).where(urgent_work.c.id == job_id)
        ).one_or_none()

    def _finish_commands(self, now: datetime) -> None:
        """Meters whose registering command the hub has applied join the registry."""
        p, s, mi = pending_meters, meter_shipments, meter_installs
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(p.c.hub_id, p.c.meter_id, p.c.register_job, p.c.install_id, s.c.fuel)
                .join(s, s.c.meter_id == p.c.meter_id)
                .where(p.c.status == "commissioning")
            ).all()
            for r in rows:
                job = self._job(conn, r.register_job)
                if job is None or job.state not in (DONE, FAILED):
                    continue
                verdict = json.loads(job.result) if job.state == DONE and job.result else {}
                key = and_(p.c.hub_id == r.hub_id, p.c.meter_id == r.meter_id)
                if verdict.get("status") != "applied":
                    why = verdict.get("detail") or ("not delivered" if job.state == FAILED else "refused")
                    conn.execute(
                        update(p)
                        .where(key)
                        .values(status="refused", reason=f"the hub: {why}"[:500], updated_at=now)
                    )
                    continue
                conn.execute(
                    self._insert(meters)
                    .values(hub_id=r.hub_id, meter_id=r.meter_id, fuel=r.fuel)
                    .on_conflict_do_nothing(index_elements=["hub_id", "meter_id"])
                )
                conn.execute(update(mi).where(mi.c.id == r.install_id).values(closed_at=now.astimezone(UTC)))
                conn.execute(update(p).where(key).values(status="registered", reason="", updated_at=now))

    def _advance(self, plan: PullPlan, signer: CommandSigner, now: datetime) -> None:
        p, s, mi, h, e = pending_meters, meter_shipments, meter_installs, hubs, meter_key_escrow
        ok = mi.c.closed_at.is_(None)  # an open job
        keyed = exists().where(e.c.source == SHIPMENT, e.c.meter_id == p.c.meter_id)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    p, s.c.protocol.label("shipped_protocol"), s.c.fuel, keyed.label("keyed"),
                    mi.c.id.label("job_id"), mi.c.replaces,
                )
                .join(h, h.c.hub_id == p.c.hub_id)
                .outerjoin(s, s.c.meter_id == p.c.meter_id)
                .outerjoin(mi, and_(mi.c.meter_id == p.c.meter_id, mi.c.premises_id == h.c.premises_id, ok))
                .where(p.c.status.in_(("pending", "keyed")), h.c.status == "active")
            ).all()  # fmt: skip
        for r in rows:
            key = and_(p.c.hub_id == r.hub_id, p.c.meter_id == r.meter_id)
            if r.fuel is None or r.job_id is None:
                why = (
                    "in no manufacturer's shipment"
                    if r.fuel is None
                    else "no installer's job at the premises"
                )
                if r.reason != why:
                    with self.engine.begin() as conn:
                        conn.execute(update(p).where(key).values(reason=why, updated_at=now))
                continue
            if r.status == "pending" and r.keyed:
                if self.escrow is None:
                    why = "no key escrow at this GDSC to read the shipment's key from"
                    if r.reason != why:
                        with self.engine.begin() as conn:
                            conn.execute(update(p).where(key).values(reason=why, updated_at=now))
                    continue
                with self.engine.begin() as conn:
                    shipped = self.escrow.shipment_key(conn, r.meter_id)
                    assert shipped is not None  # keyed: the escrow holds it
                    body = MeterKey(r.meter_id, shipped)
                    job = plan.queue_command(signer, r.hub_id, "meter.key", body, now, conn=conn)
                    why = "the shipment's key sent: waiting for frames decoded under it"
                    values = {"status": "keyed", "key_job": job, "install_id": r.job_id, "reason": why}
                    conn.execute(update(p).where(key).values(**values, updated_at=now))
                continue
            if r.status == "keyed":
                with self.engine.connect() as conn:
                    job = self._job(conn, r.key_job)
                if job is None or job.state == PENDING or job.state not in (DONE, FAILED):
                    continue
                applied = job.state == DONE and json.loads(job.result or "{}").get("status") == "applied"
                if not applied:
                    with self.engine.begin() as conn:
                        why = "the hub did not take the shipment's key"
                        conn.execute(
                            update(p).where(key).values(status="refused", reason=why, updated_at=now)
                        )
                    continue
                if r.scan_job < (r.key_job or 0) or r.decoded == 0:
                    why = (
                        "frames do not decrypt under the shipment's key"
                        if r.scan_job > (r.key_job or 0) and r.undecrypted
                        else "the shipment's key sent: waiting for frames decoded under it"
                    )
                    if r.reason != why:
                        with self.engine.begin() as conn:
                            conn.execute(update(p).where(key).values(reason=why, updated_at=now))
                    continue
            self._register(plan, signer, r, now, authenticated=r.status == "keyed")

    def _register(
        self, plan: PullPlan, signer: CommandSigner, r: Any, now: datetime, *, authenticated: bool
    ) -> None:
        p = pending_meters
        key = and_(p.c.hub_id == r.hub_id, p.c.meter_id == r.meter_id)
        with self.engine.begin() as conn:
            replaced = (
                r.replaces is not None
                and conn.execute(
                    select(meters.c.meter_id).where(
                        meters.c.hub_id == r.hub_id, meters.c.meter_id == r.replaces
                    )
                ).first()
            )
            if replaced:
                body: MeterAdd | MeterReplace = MeterReplace(
                    r.replaces, r.meter_id, r.shipped_protocol, r.fuel
                )
                ctype = "meter.replace"
            else:
                body, ctype = MeterAdd(r.meter_id, r.shipped_protocol, r.fuel), "meter.add"
            job = plan.queue_command(signer, r.hub_id, ctype, body, now, conn=conn)
            how = (
                "authenticated by its frames under the shipment's key" if authenticated else "sends in clear"
            )
            values = {
                "status": "commissioning",
                "register_job": job,
                "install_id": r.job_id,
                "authenticated": int(authenticated),
                "reason": f"{ctype} sent ({how})",
                "updated_at": now,
            }
            conn.execute(update(p).where(key).values(**values))


__all__ = [
    "FieldMeters",
    "ShipmentRefused",
    "Shipped",
    "meter_installs",
    "meter_shipments",
    "parse_shipment",
    "pending_meters",
]
