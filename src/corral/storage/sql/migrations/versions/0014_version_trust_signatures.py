"""model_versions.trust (an admin's opt-in to load a pickle) and model_versions.artifact_signature (Ed25519
over the version's name, number and artifact SHA-256)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("trust", JSON, nullable=True))
        batch.add_column(sa.Column("artifact_signature", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("artifact_signature")
        batch.drop_column("trust")
