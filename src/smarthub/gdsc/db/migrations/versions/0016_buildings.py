"""apartment blocks: buildings, flats with heated area, their meters and housing providers (issue 21)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 16:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "buildings",
        sa.Column("building_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("wan_link", sa.String(length=64), nullable=False),
        sa.Column("uplink_max_in_flight", sa.Integer(), nullable=False),
        sa.Column("common_premises_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("building_id", name=op.f("pk_buildings")),
    )
    op.create_table(
        "building_flats",
        sa.Column("premises_id", sa.String(length=64), nullable=False),
        sa.Column("building_id", sa.String(length=64), nullable=False),
        sa.Column("flat", sa.String(length=32), nullable=False),
        sa.Column("heated_area_dm2", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["building_id"], ["buildings.building_id"], name=op.f("fk_building_flats_building_id_buildings")
        ),
        sa.PrimaryKeyConstraint("premises_id", name=op.f("pk_building_flats")),
    )
    op.create_index(op.f("ix_building_flats_building_id"), "building_flats", ["building_id"], unique=False)
    op.create_table(
        "building_meters",
        sa.Column("building_id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("medium", sa.String(length=24), nullable=False),
        sa.Column("premises_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["building_id"], ["buildings.building_id"], name=op.f("fk_building_meters_building_id_buildings")
        ),
        sa.PrimaryKeyConstraint("building_id", "meter_id", name=op.f("pk_building_meters")),
    )
    op.create_table(
        "building_managements",
        sa.Column("building_id", sa.String(length=64), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("end", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["building_id"],
            ["buildings.building_id"],
            name=op.f("fk_building_managements_building_id_buildings"),
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["parties.party_id"], name=op.f("fk_building_managements_provider_id_parties")
        ),
        sa.PrimaryKeyConstraint("building_id", "start", name=op.f("pk_building_managements")),
    )


def downgrade() -> None:
    op.drop_table("building_managements")
    op.drop_table("building_meters")
    op.drop_index(op.f("ix_building_flats_building_id"), table_name="building_flats")
    op.drop_table("building_flats")
    op.drop_table("buildings")
