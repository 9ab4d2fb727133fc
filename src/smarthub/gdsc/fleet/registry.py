"""The registry: premises, their hubs and the hubs' meters, as the GDSC knows them.

``HubRegistry`` is the store's part that writes and reads them (:class:`smarthub.gdsc.store.Store`
is every part together). ``hubs`` and ``meters`` have the hub first in their primary keys and are
distributed by hub id on Citus; ``premises`` is a reference table (:mod:`smarthub.gdsc.db.placement`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, Connection, DateTime, ForeignKey, String, Table, Text, select, text

from smarthub.gdsc.db.database import Database, lock_id, metadata

premises = Table(
    "premises",
    metadata,
    Column("premises_id", String(64), primary_key=True),
    Column("address", Text, nullable=False, default=""),
    Column("mpan", String(13)),
    Column("mprn", String(10)),
)

hubs = Table(
    "hubs",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("premises_id", String(64), ForeignKey("premises.premises_id"), nullable=False),
    Column("url", Text, nullable=False),
    Column("lfdi", String(40), nullable=False),
    Column("status", String(16), nullable=False, default="active"),
    # The WAN link (cell, concentrator, backhaul) the hub sits behind: the scheduler limits
    # how many hubs behind one link it pulls at once. None: a link of its own.
    Column("wan_link", String(64)),
)

meters = Table(
    "meters",
    metadata,
    Column("hub_id", String(64), ForeignKey("hubs.hub_id"), primary_key=True),
    Column("meter_id", String(64), primary_key=True),
    Column("fuel", String(24), nullable=False),  # a sub-meter's medium too (heat_cost_allocator)
)


# Who commissioned which hub, with which certificate, and how its life ended (hub first in the
# key, like every per-hub table, so it can be distributed by hub id).
hub_commissioning = Table(
    "hub_commissioning",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("premises_id", String(64), nullable=False),
    Column("installer", String(255), nullable=False),  # the installer certificate's CN
    Column("installer_lfdi", String(40), nullable=False),
    Column("installer_serial", String(48), nullable=False),  # decimal: serials are up to 159 bits
    Column("commissioned_at", DateTime(timezone=True), nullable=False),
    Column("cert_serial", String(48), nullable=False),
    Column("cert_lfdi", String(40), nullable=False),
    Column("cert_pem", Text),  # the hub's current certificate, to renew it (None: commissioned earlier)
    Column("replaces", String(64)),
    Column("ended_at", DateTime(timezone=True)),
    Column("end_status", String(16)),  # revoked / decommissioned
    Column("end_reason", Text),
)


PROVISIONING = "provisioning"  # the installer named on a hub the GDSC's own provisioning made


@dataclass(frozen=True, slots=True)
class ProvisionedCertificate:
    """A hub certificate the GDSC's provisioning issued (serial in decimal, PEM text)."""

    serial: str
    pem: str
    issued: datetime


@dataclass(frozen=True, slots=True)
class HubRecord:
    hub_id: str
    premises_id: str
    url: str
    lfdi: str
    status: str
    wan_link: str | None = None


class HubRegistry(Database):
    """Premises, hubs and meters (the registry part of the store)."""

    def register_hub(
        self,
        *,
        hub_id: str,
        premises_id: str,
        url: str,
        lfdi: str,
        meters_by_fuel: Sequence[tuple[str, str]],
        address: str = "",
        mpan: str | None = None,
        mprn: str | None = None,
        wan_link: str | None = None,
        provisioned: ProvisionedCertificate | None = None,
    ) -> None:
        """Bind premises ↔ hub ↔ meters (re-registering the same hub updates it, its status kept).

        ``provisioned``: the certificate the GDSC's own provisioning issued the hub (a factory
        run, the simulator's fleet), recorded as its commissioning once (a later renewal's record
        is kept), so the GDSC can renew it (``HubLifecycle.renew_hub``)."""
        with self._write_lock, self.engine.begin() as conn:
            ins = self._insert(premises).values(
                premises_id=premises_id, address=address, mpan=mpan, mprn=mprn
            )
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["premises_id"], set_=dict(address=address, mpan=mpan, mprn=mprn)
                )
            )
            ins = self._insert(hubs).values(
                hub_id=hub_id, premises_id=premises_id, url=url, lfdi=lfdi, status="active", wan_link=wan_link
            )
            # Re-registering keeps the hub's status: a manifest read again when the GDSC restarts
            # must not bring a revoked or decommissioned hub back to life.
            conn.execute(
                ins.on_conflict_do_update(
                    index_elements=["hub_id"],
                    set_=dict(premises_id=premises_id, url=url, lfdi=lfdi, wan_link=wan_link),
                )
            )
            for meter_id, fuel in meters_by_fuel:
                ins = self._insert(meters).values(hub_id=hub_id, meter_id=meter_id, fuel=fuel)
                conn.execute(ins.on_conflict_do_nothing(index_elements=["hub_id", "meter_id"]))
            if provisioned is not None:
                ins = self._insert(hub_commissioning).values(
                    hub_id=hub_id,
                    premises_id=premises_id,
                    installer=PROVISIONING,
                    installer_lfdi="0" * 40,
                    installer_serial="0",
                    commissioned_at=provisioned.issued,
                    cert_serial=provisioned.serial,
                    cert_lfdi=lfdi,
                    cert_pem=provisioned.pem,
                )
                conn.execute(ins.on_conflict_do_nothing(index_elements=["hub_id"]))

    def active_hubs(self) -> list[HubRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(hubs).where(hubs.c.status == "active").order_by(hubs.c.hub_id))
            return [HubRecord(r.hub_id, r.premises_id, r.url, r.lfdi, r.status, r.wan_link) for r in rows]

    def wan_link(self, hub_id: str) -> str | None:
        """The WAN link (cell) the hub sits behind, if known."""
        with self.engine.connect() as conn:
            link = conn.execute(select(hubs.c.wan_link).where(hubs.c.hub_id == hub_id)).scalar()
        return None if link is None else str(link)

    def hub_lfdi(self, hub_id: str) -> str | None:
        """The LFDI the registry pins for the hub (None: no such hub)."""
        with self.engine.connect() as conn:
            lfdi = conn.execute(select(hubs.c.lfdi).where(hubs.c.hub_id == hub_id)).scalar()
        return None if lfdi is None else str(lfdi)

    def hub_meters(self, hub_id: str) -> dict[str, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(meters.c.meter_id, meters.c.fuel).where(meters.c.hub_id == hub_id))
            return {r.meter_id: r.fuel for r in rows}


def lock_hub_status(conn: Connection, *, exclusive: bool) -> None:
    """Order hub status changes against ingests (see ``IntervalIngest._inactive_hubs``).

    PostgreSQL: a transaction-scoped advisory lock, shared for ingests (they run in parallel),
    exclusive for a status change. SQLite: the transaction takes the database write lock at
    once (``BEGIN IMMEDIATE``), which serialises every writer; call it first in the transaction.
    """
    if conn.dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        conn.execute(text(f"SELECT {fn}(:k)"), {"k": lock_id("hub_status")})
    else:
        dbapi = conn.connection.dbapi_connection
        if dbapi is not None and not dbapi.in_transaction:  # pysqlite begins lazily, at the first write
            conn.exec_driver_sql("BEGIN IMMEDIATE")
