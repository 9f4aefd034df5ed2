"""predictions (the hash-chained audit log), its head, and feedback labels

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_TIME = sa.DateTime(timezone=True)
GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("seq", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("prediction_id", sa.String(64), nullable=False),
        sa.Column("timestamp", UTC_TIME, nullable=False),
        sa.Column("deployment", sa.String(128), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("artifact_sha256", sa.String(64), nullable=False),
        sa.Column("data_sha256", sa.String(64), nullable=True),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("output", JSON, nullable=True),
        sa.Column("probabilities", JSON, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("request_id", sa.String(256), nullable=True),
        sa.Column("caller", sa.String(256), nullable=True),
        sa.Column("anomaly_score", sa.Float, nullable=True),
        sa.Column("anomaly_flagged", sa.Boolean, nullable=False),
        sa.Column("out_of_range", JSON, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_predictions"),
        sa.UniqueConstraint("prediction_id", name="uq_predictions_prediction_id"),
    )
    op.create_index("ix_predictions_deployment_timestamp", "predictions", ["deployment", "timestamp"])
    op.create_index("ix_predictions_model_version_timestamp", "predictions", ["model", "version", "timestamp"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    op.create_table(
        "feedback",
        sa.Column("prediction_id", sa.String(64), nullable=False),
        sa.Column("label", JSON, nullable=False),
        sa.Column("received_at", UTC_TIME, nullable=False),
        sa.Column("caller", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("prediction_id", name="pk_feedback"),
        sa.ForeignKeyConstraint(["prediction_id"], ["predictions.prediction_id"], name="fk_feedback_prediction"),
    )


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("audit_head")
    op.drop_index("ix_predictions_model_version_timestamp", table_name="predictions")
    op.drop_index("ix_predictions_deployment_timestamp", table_name="predictions")
    op.drop_table("predictions")
