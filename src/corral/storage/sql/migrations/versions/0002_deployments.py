"""deployments: named endpoints that follow a model alias

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("batching_enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("max_batch_size", sa.Integer, nullable=False, server_default="64"),
        sa.Column("max_wait_ms", sa.Float, nullable=False, server_default="1.0"),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_deployments"),
        sa.ForeignKeyConstraint(["model"], ["registered_models.name"], name="fk_deployments_model_registered_models"),
    )


def downgrade() -> None:
    op.drop_table("deployments")
