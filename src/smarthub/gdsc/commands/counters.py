"""Command counters: the last management-command counter issued per hub, which hubs refuse to
see repeated (``CommandCounters`` is the store's part that takes them)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Connection, String, Table, select

from smarthub.gdsc.db.database import Database, metadata

# The last management-command counter issued per hub (hubs refuse any counter not above it).
command_counters = Table(
    "command_counters",
    metadata,
    Column("hub_id", String(64), primary_key=True),
    Column("counter", BigInteger, nullable=False),
)


class CommandCounters(Database):
    """Rising command counters per hub (the counter part of the store)."""

    def next_command_counter(self, hub_id: str, conn: Connection | None = None) -> int:
        """Atomically take the next command counter for a hub (survives restarts; never reused).

        Inside ``conn``'s transaction the counter row stays locked until that transaction ends
        (PostgreSQL's ON CONFLICT DO UPDATE row lock; SQLite's single writer), so whatever the
        caller writes with the counter is committed before anyone takes the next one.
        """
        if conn is None:
            with self._write_lock, self.engine.begin() as own:
                return self.next_command_counter(hub_id, own)
        ins = self._insert(command_counters).values(hub_id=hub_id, counter=1)
        conn.execute(
            ins.on_conflict_do_update(
                index_elements=["hub_id"], set_={"counter": command_counters.c.counter + 1}
            )
        )
        return int(
            conn.execute(
                select(command_counters.c.counter).where(command_counters.c.hub_id == hub_id)
            ).scalar_one()
        )
