"""api_tokens (API tokens: only their SHA-256, one role, expiry, revocation) and auth_denials (refused
requests on management routes)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("expires_at", UTC_TIME, nullable=True),
        sa.Column("revoked_at", UTC_TIME, nullable=True),
        sa.Column("revoked_by", sa.String(256), nullable=True),
        sa.Column("active_name", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("hash", name="uq_api_tokens_hash"),
        sa.UniqueConstraint("active_name", name="uq_api_tokens_active_name"),
    )
    op.create_table(
        "auth_denials",
        sa.Column("id", sa.Integer, autoincrement=True, nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("route", sa.String(512), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("client", sa.String(256), nullable=True),
        sa.Column("token_id", sa.String(32), nullable=True),
        sa.Column("token_name", sa.String(128), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_auth_denials"),
    )
    op.create_index("ix_auth_denials_at", "auth_denials", ["at"])


def downgrade() -> None:
    op.drop_index("ix_auth_denials_at", table_name="auth_denials")
    op.drop_table("auth_denials")
    op.drop_table("api_tokens")
