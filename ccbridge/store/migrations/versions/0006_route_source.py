"""calls.route_source: who routed the call (bridge, a held route with or without it, static)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Calls routed by a route held in the PBX while the bridge was not asked send no event of
their own (README, "Routes held in the PBX"); the dialplan marks them in the channel
variable CCB_HELD, which every AMI event of the call carries, and the record keeps it
here so reports can count the calls routed without the bridge.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("route_source", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("route_source")
