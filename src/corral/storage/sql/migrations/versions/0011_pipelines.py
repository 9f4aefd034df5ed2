"""pipelines (retraining definitions) and pipeline_runs (their jobs, one active per pipeline by a unique key)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_pipelines"),
    )
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("pipeline", sa.String(128), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=True),
        sa.Column("finished_at", UTC_TIME, nullable=True),
        sa.Column("worker", sa.String(256), nullable=True),
        sa.Column("lease_until", UTC_TIME, nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("result", JSON, nullable=False),
        sa.Column("log", sa.Text, nullable=False),
        sa.Column("active_key", sa.String(160), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_runs"),
        sa.UniqueConstraint("active_key", name="uq_pipeline_runs_active_key"),
    )
    op.create_index("ix_pipeline_runs_state_created_at", "pipeline_runs", ["state", "created_at"])
    op.create_index("ix_pipeline_runs_pipeline_created_at", "pipeline_runs", ["pipeline", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_pipeline_runs_pipeline_created_at", table_name="pipeline_runs")
    op.drop_index("ix_pipeline_runs_state_created_at", table_name="pipeline_runs")
    op.drop_table("pipeline_runs")
    op.drop_table("pipelines")
