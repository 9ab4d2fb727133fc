"""The outage tables: alerts received (each once), refusals, hubs' alert keys, outages and their
premises, and the event log the API's push subscription reads.

Tables that hold one hub's data carry ``hub_id`` first in their primary key (``outage_alerts``,
``alert_keys``) and are distributed by hub id on Citus; the outages themselves stay on the
coordinator (:mod:`smarthub.gdsc.db.placement`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from smarthub.gdsc.db.database import metadata
from smarthub.gdsc.outages.correlate import Change, Outage, PremisesOut
from smarthub.security.certificates import lfdi_from_der
from smarthub.wan.contract.alerts import Alert

alert_keys = Table(
    "alert_keys",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("lfdi", String(40), nullable=False),
    Column("public_key", LargeBinary, nullable=False),  # SubjectPublicKeyInfo DER
)

outage_alerts = Table(
    "outage_alerts",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", SmallInteger, nullable=False),
    Column("cause", SmallInteger, nullable=False),
    Column("sent", DateTime(timezone=True), nullable=False),
    Column("lost_at", DateTime(timezone=True), nullable=False),
    Column("duration_s", BigInteger, nullable=False),
    Column("source", String(64), nullable=False, default=""),
    Column("received", DateTime(timezone=True), nullable=False),
)

alert_refusals = Table(
    "alert_refusals",
    metadata,
    Column("hub_id", String(64), primary_key=True),  # "" when the datagram named none
    Column("reason", String(32), primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("last_at", DateTime(timezone=True), nullable=False),
    Column("last_source", String(64), nullable=False, default=""),
)

outages = Table(
    "outages",
    metadata,
    Column("outage_id", Integer, primary_key=True, autoincrement=False),
    Column("level", String(16), nullable=False),
    Column("location", String(64), nullable=False, index=True),
    Column("opened", DateTime(timezone=True), nullable=False),
    Column("started", DateTime(timezone=True)),
    Column("closed", DateTime(timezone=True)),
    Column("merged_into", Integer),
    Column("customers", Integer, nullable=False),
    Column("premises_heard", Integer, nullable=False),
    Column("restored", Integer, nullable=False),
    Column("duration_s", BigInteger),
)

outage_premises = Table(
    "outage_premises",
    metadata,
    Column("outage_id", Integer, primary_key=True, autoincrement=False),
    Column("premises_id", String(64), primary_key=True),
    Column("hub_id", String(64), nullable=False),
    Column("lost_at", DateTime(timezone=True), nullable=False),
    Column("heard", DateTime(timezone=True), nullable=False),
    Column("restored_at", DateTime(timezone=True)),
    Column("duration_s", BigInteger),
)

# Outage start/end/change, in order: what the push subscription (SSE) streams.
outage_events = Table(
    "outage_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("outage_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)


def _insert(engine: Engine, table: Table) -> Any:
    return (sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert)(table)


def _upsert(engine: Engine, table: Table, keys: list[str]) -> Any:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET every other column, for executemany."""
    ins = _insert(engine, table)
    return ins.on_conflict_do_update(
        index_elements=keys, set_={c.name: ins.excluded[c.name] for c in table.columns if c.name not in keys}
    )


def _aware(t: datetime | None) -> datetime | None:
    return t if t is None or t.tzinfo is not None else t.replace(tzinfo=UTC)


def _at(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


class UnknownKey(LookupError):
    pass


def alert_key_row(hub_id: str, certificate_pem: bytes, lfdi: str | None = None) -> dict[str, Any]:
    """The ``alert_keys`` row of a hub's certificate; ValueError if its fingerprint is not the
    hub's LFDI (a key is only ever registered for the hub that holds the certificate)."""
    cert = x509.load_pem_x509_certificate(certificate_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    found = lfdi_from_der(der).upper()
    if lfdi is not None and found != lfdi.upper():
        raise ValueError(f"hub {hub_id}: certificate fingerprint {found} is not its LFDI {lfdi}")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError(f"hub {hub_id}: certificate key is not EC")
    spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return dict(hub_id=hub_id, lfdi=found, public_key=spki)


def register_alert_key(
    engine: Engine, conn: Connection | None, hub_id: str, certificate_pem: bytes, lfdi: str | None = None
) -> ec.EllipticCurvePublicKey:
    """Write (or replace) a hub's alert key, in ``conn``'s transaction if given (commissioning
    and certificate renewal write it with the hub's registration); the key."""
    row = alert_key_row(hub_id, certificate_pem, lfdi)
    stmt = (
        _insert(engine, alert_keys).values(**row).on_conflict_do_update(index_elements=["hub_id"], set_=row)
    )
    if conn is None:
        with engine.begin() as c:
            c.execute(stmt)
    else:
        conn.execute(stmt)
    key = serialization.load_der_public_key(row["public_key"])
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


class AlertKeys:
    """Each hub's alert-verification key: the public key of the certificate whose fingerprint is
    its registered LFDI (so a key can only be registered for the hub that holds the certificate).

    Keys are cached for ``ttl_s`` wall seconds: a hub revoked, decommissioned or renewed by another
    process (``smarthub gdsc revoke``, the upkeep's renewals) is seen by a running endpoint within
    that time; :meth:`forget` drops one at once. The endpoint reads every active hub's key at
    start and again every ``ttl_s / 2`` (:meth:`refresh_all`, off the alert path), so a last gasp
    never waits for a database read; :meth:`load` reads only a hub the cache does not hold (one
    commissioned since the last refresh)."""

    def __init__(self, engine: Engine, ttl_s: float = 300.0) -> None:
        self.engine = engine
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[ec.EllipticCurvePublicKey, float]] = {}
        self._lock = threading.Lock()  # the endpoint's verifier reads, its writer refreshes

    def register(self, hub_id: str, certificate_pem: bytes, lfdi: str | None = None) -> None:
        register_alert_key(self.engine, None, hub_id, certificate_pem, lfdi)
        self.forget(hub_id)

    def register_many(self, certificates: Iterable[tuple[str, bytes, str | None]]) -> int:
        """:meth:`register` for many hubs (hub id, certificate PEM, LFDI) in one transaction."""
        n = 0
        with self.engine.begin() as conn:
            for hub_id, pem, lfdi in certificates:
                register_alert_key(self.engine, conn, hub_id, pem, lfdi)
                self.forget(hub_id)
                n += 1
        return n

    def _query(self, hub_ids: list[str] | None, limit: int | None = None) -> list[tuple[str, bytes]]:
        from smarthub.gdsc.fleet.registry import hubs

        q = select(alert_keys.c.hub_id, alert_keys.c.public_key).join(
            hubs, hubs.c.hub_id == alert_keys.c.hub_id
        )
        q = q.where(hubs.c.status == "active")
        if hub_ids is not None:
            q = q.where(alert_keys.c.hub_id.in_(hub_ids))
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [(h, bytes(spki)) for h, spki in conn.execute(q)]

    def refresh_all(self, limit: int | None = None) -> int:
        """Read every active hub's key (at most ``limit``) and make the cache exactly those: a
        revoked hub's key is gone, a renewed one's replaced. The number of keys held."""
        expires = time.monotonic() + self.ttl_s
        fresh: dict[str, tuple[ec.EllipticCurvePublicKey, float]] = {}
        for hub_id, spki in self._query(None, limit):
            key = serialization.load_der_public_key(spki)
            if isinstance(key, ec.EllipticCurvePublicKey):
                fresh[hub_id] = (key, expires)
        with self._lock:
            self._cache = fresh
        return len(fresh)

    def load(self, hub_ids: Iterable[str]) -> dict[str, ec.EllipticCurvePublicKey]:
        """The keys of these hubs (cached; missing ones read in one query)."""
        hub_ids = list(hub_ids)
        now = time.monotonic()
        with self._lock:
            cache = self._cache
            want = [h for h in set(hub_ids) if h not in cache or cache[h][1] < now]
            for h in want:
                cache.pop(h, None)
        if want:
            got = self._query(want)
            with self._lock:
                for hub_id, spki in got:
                    key = serialization.load_der_public_key(spki)
                    if isinstance(key, ec.EllipticCurvePublicKey):
                        self._cache[hub_id] = (key, now + self.ttl_s)
        with self._lock:
            return {h: self._cache[h][0] for h in hub_ids if h in self._cache}

    def forget(self, hub_id: str) -> None:
        """A revoked or decommissioned hub: its alerts are refused from now on."""
        with self._lock:
            self._cache.pop(hub_id, None)


@dataclass(frozen=True, slots=True)
class OutageRows:
    """The rows one set of correlation changes writes (:meth:`OutageStore.rows`)."""

    outages: list[dict[str, Any]]
    premises: list[dict[str, Any]]
    events: list[dict[str, Any]]

    @classmethod
    def merge(cls, parts: Sequence[OutageRows]) -> OutageRows:
        """Several, in the order taken, as one: each outage's and premises' latest row (one
        statement may not upsert a row twice), every event."""
        outages: dict[Any, dict[str, Any]] = {}
        premises: dict[Any, dict[str, Any]] = {}
        for p in parts:
            outages.update((r["outage_id"], r) for r in p.outages)
            premises.update(((r["outage_id"], r["premises_id"]), r) for r in p.premises)
        return cls(
            list(outages.values()), list(premises.values()), _coalesce([e for p in parts for e in p.events])
        )


@dataclass(frozen=True, slots=True)
class StoredAlert:
    alert: Alert
    received: datetime


class OutageStore:
    """Writes what the receiver and the correlator decide; reads for the API and the console."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- alerts ----------------------------------------------------------------------------
    def highest_seq(self, hub_ids: Sequence[str]) -> dict[str, int]:
        if not hub_ids:
            return {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outage_alerts.c.hub_id, func.max(outage_alerts.c.seq))
                .where(outage_alerts.c.hub_id.in_(list(hub_ids)))
                .group_by(outage_alerts.c.hub_id)
            )
            return {h: int(s) for h, s in rows}

    def highest_seqs(self, limit: int) -> dict[str, int]:
        """Every hub's highest stored sequence number (at most ``limit`` hubs): the replay windows
        an endpoint starts with."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outage_alerts.c.hub_id, func.max(outage_alerts.c.seq))
                .group_by(outage_alerts.c.hub_id)
                .limit(limit)
            )
            return {h: int(s) for h, s in rows}

    def store_alerts(self, batch: Sequence[StoredAlert]) -> set[tuple[str, int]]:
        """Insert each alert once; the (hub, seq) actually inserted (the others were there)."""
        if not batch:
            return set()
        rows = [
            dict(
                hub_id=s.alert.hub_id,
                seq=s.alert.seq,
                kind=int(s.alert.kind),
                cause=int(s.alert.cause),
                sent=s.alert.sent,
                lost_at=s.alert.lost_at,
                duration_s=s.alert.duration_s,
                source=s.alert.source,
                received=s.received,
            )
            for s in batch
        ]
        stmt = (
            _insert(self.engine, outage_alerts)
            .on_conflict_do_nothing(index_elements=["hub_id", "seq"])
            .returning(outage_alerts.c.hub_id, outage_alerts.c.seq)
        )
        with self.engine.begin() as conn:
            got = conn.execute(stmt, rows)
            return {(h, int(s)) for h, s in got}

    def count_alerts(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(outage_alerts)).scalar_one())

    def refused(self, counts: dict[tuple[str, str], tuple[int, datetime, datetime, str]]) -> None:
        """Add refusal counts per (hub, reason): (count, first, last, last source address)."""
        if not counts:
            return
        with self.engine.begin() as conn:
            for (hub, reason), (n, first, last, source) in counts.items():
                t = alert_refusals
                row = dict(
                    hub_id=hub[:64],
                    reason=reason,
                    count=n,
                    first_at=first,
                    last_at=last,
                    last_source=source[:64],
                )
                conn.execute(
                    _insert(self.engine, t)
                    .values(**row)
                    .on_conflict_do_update(
                        index_elements=["hub_id", "reason"],
                        set_=dict(count=t.c.count + n, last_at=last, last_source=source[:64]),
                    )
                )

    def refusals(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(alert_refusals).order_by(alert_refusals.c.last_at.desc()))
            return [dict(r._mapping) for r in rows]

    # -- outages ---------------------------------------------------------------------------
    def next_outage_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(outages.c.outage_id), 0))).scalar_one()) + 1

    def save(self, changes: Sequence[Change]) -> None:
        """Write the outages these changes touched (:meth:`rows` then :meth:`write`)."""
        self.write(self.rows(changes))

    @staticmethod
    def rows(changes: Sequence[Change]) -> OutageRows:
        """What :meth:`write` writes for these changes, taken now: the outages they touched, their
        premises added or restored since the last save (``Outage.dirty``, cleared here), and the
        events. Pure: the correlating thread takes it under its lock, a writer writes it later."""
        touched = {c.outage.outage_id: c.outage for c in changes}
        orows = [
            dict(
                outage_id=o.outage_id,
                level=o.level,
                location=o.location,
                opened=o.opened,
                started=o.started,
                closed=o.closed,
                merged_into=o.merged_into,
                customers=o.customers,
                premises_heard=len(o.premises),
                restored=o.restored,
                duration_s=o.duration_s(),
            )
            for o in touched.values()
        ]
        prows = []
        for o in touched.values():
            if o.merged_into is None:  # a merged outage's premises live on in the one it joined
                for pid in sorted(o.dirty):
                    p = o.premises[pid]
                    prows.append(
                        dict(
                            outage_id=o.outage_id,
                            premises_id=p.premises_id,
                            hub_id=p.hub_id,
                            lost_at=p.lost_at,
                            heard=p.heard,
                            restored_at=p.restored_at,
                            duration_s=p.duration_s,
                        )
                    )
            o.dirty.clear()
        events = _coalesce([dict(outage_id=c.outage.outage_id, kind=c.kind, at=c.at) for c in changes])
        return OutageRows(orows, prows, events)

    def write(self, rows: OutageRows) -> None:
        """One statement per table (executemany), in one transaction."""
        if not rows.events:
            return
        with self.engine.begin() as conn:
            conn.execute(_upsert(self.engine, outages, ["outage_id"]), rows.outages)
            if rows.premises:
                conn.execute(
                    _upsert(self.engine, outage_premises, ["outage_id", "premises_id"]), rows.premises
                )
            conn.execute(outage_events.insert(), rows.events)

    def load_open(self) -> dict[int, Outage]:
        """Open outages with their premises (a restarted GDSC carries on correlating)."""
        out: dict[int, Outage] = {}
        with self.engine.connect() as conn:
            for r in conn.execute(
                select(outages).where(outages.c.closed.is_(None), outages.c.merged_into.is_(None))
            ):
                out[r.outage_id] = Outage(
                    r.outage_id, r.level, r.location, _at(r.opened), r.customers, started=_aware(r.started)
                )
            if out:
                rows = conn.execute(select(outage_premises).where(outage_premises.c.outage_id.in_(list(out))))
                for p in rows:
                    out[p.outage_id].premises[p.premises_id] = PremisesOut(
                        p.premises_id,
                        p.hub_id,
                        _at(p.lost_at),
                        _at(p.heard),
                        _aware(p.restored_at),
                        p.duration_s,
                    )
        return out

    def find(
        self,
        *,
        live: bool | None = None,
        location: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        q = select(outages).where(outages.c.merged_into.is_(None))
        if live is True:
            q = q.where(outages.c.closed.is_(None))
        elif live is False:
            q = q.where(outages.c.closed.is_not(None))
        if location is not None:
            q = q.where(outages.c.location == location)
        if since is not None:
            q = q.where(outages.c.opened >= since)
        if until is not None:
            q = q.where(outages.c.opened < until)
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(outages.c.opened.desc()).limit(limit))
            return [_row(r) for r in rows]

    def get(self, outage_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(select(outages).where(outages.c.outage_id == outage_id)).first()
            return None if r is None else _row(r)

    def premises_of(self, outage_id: int) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(outage_premises).where(outage_premises.c.outage_id == outage_id))
            return [_row(r) for r in rows]

    def events_after(self, event_id: int, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outage_events, outages.c.level, outages.c.location, outages.c.customers)
                .join(outages, outages.c.outage_id == outage_events.c.outage_id)
                .where(outage_events.c.event_id > event_id)
                .order_by(outage_events.c.event_id)
                .limit(limit)
            )
            return [_row(r) for r in rows]

    def mark_closed(self, outage_id: int, at: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(outages).where(outages.c.outage_id == outage_id).values(closed=at))


def _coalesce(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``grew`` event for a run of them on the same outage (the last): a storm of last gasps
    growing one outage writes, and streams to the push subscription, one event per batch rather
    than one per premises; a subscriber reads the outage for its premises anyway."""
    out: list[dict[str, Any]] = []
    for e in events:
        if (
            out
            and e["kind"] == "grew"
            and out[-1]["kind"] == "grew"
            and out[-1]["outage_id"] == e["outage_id"]
        ):
            out[-1] = e
        else:
            out.append(e)
    return out


def _row(r: Any) -> dict[str, Any]:
    out = {}
    for k, v in r._mapping.items():
        out[k] = _aware(v).isoformat() if isinstance(v, datetime) else v  # type: ignore[union-attr]
    return out
