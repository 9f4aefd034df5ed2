"""audit_subject_keys (per-subject keys, destroyed on erasure), audit_anchors (where the pruned chain
resumes) and audit_policies (each deployment's retention and field protection)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_subject_keys",
        sa.Column("subject_ref", sa.String(64), nullable=False),
        sa.Column("key", sa.LargeBinary, nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("destroyed_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("subject_ref", name="pk_audit_subject_keys"),
    )
    op.create_table(
        "audit_anchors",
        sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("export_url", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_anchors"),
    )
    op.create_table(
        "audit_policies",
        sa.Column("deployment", sa.String(128), nullable=False),
        sa.Column("policy", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("deployment", name="pk_audit_policies"),
    )


def downgrade() -> None:
    op.drop_table("audit_policies")
    op.drop_table("audit_anchors")
    op.drop_table("audit_subject_keys")
