"""The catalogue of tariffs the GDSC distributes: every tariff version sent to a hub, kept once.

A tariff reaches homes only as a ``tariff.update`` the GDSC signs (a supplier's
``…/commands/tariff-update`` through the API, or ``distribute_tariff``); each version it sends is
recorded here, keyed by tariff id, version and fuel, with the supplier that sent it first and
when. ``GET /v1/tariffs`` lists the latest version of each tariff, so a third-party service (the
tariff advisor, issue 25 item 2) prices a household's year under exactly the documents the hubs
are given, in the form they are given (:mod:`smarthub.model.tariff`'s JSON), instead of a file.

A tariff document is a supplier's published product terms (prices, standing charge, VAT,
structure), not a household's data: the catalogue carries no premises, hub or meter, so which
home is on which tariff is not disclosed by it. The first document recorded for a (tariff id,
version, fuel) is kept: a version is immutable once sent (the hub refuses a changed document
under a version it holds, :mod:`smarthub.hub.tariffs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Connection, DateTime, Engine, Integer, String, Table, Text, func, select
from sqlalchemy.exc import IntegrityError

from smarthub.gdsc.db.database import metadata
from smarthub.model.tariff import Tariff, tariff_from_json

tariff_catalogue = Table(
    "tariff_catalogue",
    metadata,
    Column("tariff_id", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("fuel", String(16), primary_key=True),
    Column("supplier_id", String(64)),  # None: distributed by the GDSC operator (distribute_tariff)
    Column("body", Text, nullable=False),  # the tariff's JSON as the hubs get it
    Column("first_sent", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    tariff: Tariff
    fuel: str
    supplier_id: str | None
    first_sent: datetime


class TariffCatalogue:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self,
        tariff: Tariff,
        fuel: str,
        supplier_id: str | None,
        now: datetime,
        conn: Connection | None = None,
    ) -> bool:
        """Keep a version being sent (True if it was not in the catalogue yet)."""
        row = {
            "tariff_id": tariff.tariff_id,
            "version": tariff.version,
            "fuel": fuel,
            "supplier_id": supplier_id,
            "body": tariff.to_json(),
            "first_sent": now,
        }
        if conn is not None:
            if self._has(conn, tariff, fuel):
                return False
            conn.execute(tariff_catalogue.insert().values(**row))
            return True
        try:
            with self.engine.begin() as own:
                if self._has(own, tariff, fuel):
                    return False
                own.execute(tariff_catalogue.insert().values(**row))
                return True
        except IntegrityError:  # another process recorded it between the check and the insert
            return False

    @staticmethod
    def _has(conn: Connection, tariff: Tariff, fuel: str) -> bool:
        t = tariff_catalogue.c
        q = select(t.tariff_id).where(
            t.tariff_id == tariff.tariff_id, t.version == tariff.version, t.fuel == fuel
        )
        return conn.execute(q).first() is not None

    def latest(self, fuel: str | None = None) -> list[CatalogueEntry]:
        """The latest version of each tariff (per fuel), by tariff id."""
        t = tariff_catalogue.c
        newest = (
            select(t.tariff_id, t.fuel, func.max(t.version).label("version"))
            .group_by(t.tariff_id, t.fuel)
            .subquery()
        )
        q = (
            select(tariff_catalogue)
            .join(
                newest,
                (t.tariff_id == newest.c.tariff_id)
                & (t.fuel == newest.c.fuel)
                & (t.version == newest.c.version),
            )
            .order_by(t.fuel, t.tariff_id)
        )
        if fuel is not None:
            q = q.where(t.fuel == fuel)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            CatalogueEntry(
                tariff_from_json(r.body),
                r.fuel,
                r.supplier_id,
                r.first_sent if r.first_sent.tzinfo else r.first_sent.replace(tzinfo=UTC),
            )
            for r in rows
        ]
