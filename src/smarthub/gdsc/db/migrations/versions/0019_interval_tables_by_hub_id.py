"""the interval tables keyed by the hub id, hub_keys dropped (issue 23 item 1: one distribution
key, the text hub_id, for every table of a hub's data, so Citus co-locates all of a hub's rows)

``interval_channels`` and ``interval_blocks`` were keyed by an integer ``hub_key`` allocated in
``hub_keys``; Citus colocates tables only when their distribution columns have the same type,
so the interval tables were a colocation group of their own. They now carry the ``hub_id``
(appended as the last column: on PostgreSQL after the fixed-width ones, so no alignment
padding), first in their primary keys, and ``hub_keys`` goes.

PostgreSQL: ALTERs on the partitioned parent, which PostgreSQL applies to every day
partition; every stored block row is rewritten once by the UPDATE (on a large store: run it
in a maintenance window, and VACUUM afterwards). SQLite: the two tables are rebuilt.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None

# The primary key of each table after its hub column.
_PK = {"interval_channels": ["channel_no"], "interval_blocks": ["day", "channel_no"]}
_SPEC = ["meter_id", "obis", "duration", "uom", "power_of_ten"]  # interval_channels' unique spec


def _kept(table: str) -> list[sa.Column]:
    """The columns a table keeps, in their order (new objects on every call)."""
    if table == "interval_channels":
        return [
            sa.Column("channel_no", sa.SmallInteger(), autoincrement=False, nullable=False),
            sa.Column("meter_id", sa.String(length=64), nullable=False),
            sa.Column("obis", sa.String(length=32), nullable=False),
            sa.Column("duration", sa.Integer(), nullable=False),
            sa.Column("uom", sa.SmallInteger(), nullable=False),
            sa.Column("power_of_ten", sa.SmallInteger(), nullable=False),
        ]
    return [
        sa.Column("day", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("channel_no", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("block", sa.LargeBinary(), nullable=False),
    ]


def _rebuild_sqlite(table: str, key: str, key_type: sa.types.TypeEngine, fill: str) -> None:
    """SQLite cannot change a primary key in place: a new table with ``key`` (filled by the
    scalar SQL ``fill`` over the old row ``o``) in place of the other hub column, rows copied,
    the old table dropped and the new one renamed."""
    cols = _kept(table)
    constraints: list[sa.Constraint] = [sa.PrimaryKeyConstraint(key, *_PK[table], name=f"pk_{table}")]
    if table == "interval_channels":
        constraints.append(sa.UniqueConstraint(key, *_SPEC, name="uq_interval_channels_spec"))
    hub = sa.Column(key, key_type, autoincrement=False, nullable=False)
    op.create_table(f"{table}_0019", *cols, hub, *constraints)
    listed = ", ".join(c.name for c in cols)
    op.execute(f"INSERT INTO {table}_0019 ({listed}, {key}) SELECT {listed}, {fill} FROM {table} o")
    op.drop_table(table)
    op.rename_table(f"{table}_0019", table)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, pk in _PK.items():
        if sqlite:
            # A block or channel whose hub_key has no hub_keys row gets NULL: refused (NOT NULL).
            _rebuild_sqlite(
                table,
                "hub_id",
                sa.String(length=64),
                "(SELECT k.hub_id FROM hub_keys k WHERE k.hub_key = o.hub_key)",
            )
            continue
        op.add_column(table, sa.Column("hub_id", sa.String(length=64), nullable=True))
        op.execute(f"UPDATE {table} t SET hub_id = k.hub_id FROM hub_keys k WHERE k.hub_key = t.hub_key")
        op.alter_column(table, "hub_id", existing_type=sa.String(length=64), nullable=False)
        if table == "interval_channels":
            op.drop_constraint("uq_interval_channels_spec", table, type_="unique")
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.drop_column(table, "hub_key")
        op.create_primary_key(f"pk_{table}", table, ["hub_id", *pk])
        if table == "interval_channels":
            op.create_unique_constraint("uq_interval_channels_spec", table, ["hub_id", *_SPEC])
    op.drop_table("hub_keys")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "hub_keys",
        sa.Column("hub_key", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("hub_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("hub_key", name=op.f("pk_hub_keys")),
        sa.UniqueConstraint("hub_id", name=op.f("uq_hub_keys_hub_id")),
    )
    op.execute(
        "INSERT INTO hub_keys (hub_id) SELECT hub_id FROM "
        "(SELECT hub_id FROM interval_channels UNION SELECT hub_id FROM interval_blocks) AS h ORDER BY hub_id"
    )
    for table, pk in _PK.items():
        if sqlite:
            _rebuild_sqlite(
                table, "hub_key", sa.Integer(), "(SELECT k.hub_key FROM hub_keys k WHERE k.hub_id = o.hub_id)"
            )
            continue
        op.add_column(table, sa.Column("hub_key", sa.Integer(), autoincrement=False, nullable=True))
        op.execute(f"UPDATE {table} t SET hub_key = k.hub_key FROM hub_keys k WHERE k.hub_id = t.hub_id")
        op.alter_column(table, "hub_key", existing_type=sa.Integer(), nullable=False)
        if table == "interval_channels":
            op.drop_constraint("uq_interval_channels_spec", table, type_="unique")
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.drop_column(table, "hub_id")
        op.create_primary_key(f"pk_{table}", table, ["hub_key", *pk])
        if table == "interval_channels":
            op.create_unique_constraint("uq_interval_channels_spec", table, ["hub_key", *_SPEC])
