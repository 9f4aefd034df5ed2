"""shadow records share their request's prediction id: unique per (prediction id, model, version)

The answering record and every shadow's record of one request carry the same prediction id, so the id alone
is no longer unique; labels and explanations, keyed by the id, are checked against the log by the stores
(foreign keys cannot point at a non-unique column).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_constraint("fk_feedback_prediction", type_="foreignkey")
    with op.batch_alter_table("explanations") as batch:
        batch.drop_constraint("fk_explanations_prediction", type_="foreignkey")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_constraint("uq_predictions_prediction_id", type_="unique")
        batch.create_unique_constraint(
            "uq_predictions_prediction_id_model_version", ["prediction_id", "model", "version"]
        )
        batch.create_index("ix_predictions_prediction_id", ["prediction_id"])


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_index("ix_predictions_prediction_id")
        batch.drop_constraint("uq_predictions_prediction_id_model_version", type_="unique")
        batch.create_unique_constraint("uq_predictions_prediction_id", ["prediction_id"])
    with op.batch_alter_table("explanations") as batch:
        batch.create_foreign_key("fk_explanations_prediction", "predictions", ["prediction_id"], ["prediction_id"])
    with op.batch_alter_table("feedback") as batch:
        batch.create_foreign_key("fk_feedback_prediction", "predictions", ["prediction_id"], ["prediction_id"])
