"""a meter's fuel names a building's sub-meters (issue 21: heat_cost_allocator is 19 characters)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # The registry's meters carry the media of the building's sub-meters as fuels (as the
    # building's own meter table does, 24 characters): heat-cost allocators, warm water.
    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.alter_column(
            "fuel", existing_type=sa.String(length=16), type_=sa.String(length=24), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("meters", schema=None) as batch_op:
        batch_op.alter_column(
            "fuel", existing_type=sa.String(length=24), type_=sa.String(length=16), existing_nullable=False
        )
