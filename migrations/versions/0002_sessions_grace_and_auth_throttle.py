"""sessions: refresh generation and rotation time (refresh grace); auth_throttle counters

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A server default fills existing rows without rewriting them (PostgreSQL >= 11).
    op.add_column("sessions", sa.Column("refresh_generation", sa.Integer(), server_default="0", nullable=False))
    op.add_column("sessions", sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "auth_throttle",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_auth_throttle")),
    )
    op.create_index(op.f("ix_auth_throttle_window_started_at"), "auth_throttle", ["window_started_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_auth_throttle_window_started_at"), table_name="auth_throttle")
    op.drop_table("auth_throttle")
    op.drop_column("sessions", "rotated_at")
    op.drop_column("sessions", "refresh_generation")
