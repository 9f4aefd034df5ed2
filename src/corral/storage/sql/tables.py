"""Table definitions. The schema itself is created by the Alembic migrations
in ``migrations/versions``; a test checks that the two agree."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC_TIME = sa.DateTime(timezone=True)

registered_models = sa.Table(
    "registered_models",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False, server_default="0"),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("name", sa.String(128), sa.ForeignKey("registered_models.name"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("flavor", sa.String(32), nullable=False),
    sa.Column("artifact_sha256", sa.String(64), nullable=False, index=True),
    sa.Column("artifact_size", sa.BigInteger, nullable=False),
    sa.Column("data_sha256", sa.String(64), nullable=True, index=True),
    sa.Column("signature", JSON, nullable=False),
    sa.Column("runtime", JSON, nullable=False),
    sa.Column("lineage", JSON, nullable=False),
    sa.Column("tags", JSON, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_reason", sa.Text, nullable=True),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("trust", JSON, nullable=True),  # an admin's opt-in to load a pickle: by, at, reason
    sa.Column("artifact_signature", JSON, nullable=True),  # algorithm, key_id, value
)

reference_profiles = sa.Table(
    "reference_profiles",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("profile", JSON, nullable=False),
    sa.ForeignKeyConstraint(
        ["name", "version"],
        ["model_versions.name", "model_versions.version"],
        ondelete="CASCADE",
        name="fk_reference_profiles_version",
    ),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.ForeignKeyConstraint(
        ["name", "version"], ["model_versions.name", "model_versions.version"], name="fk_aliases_version"
    ),
)

alias_events = sa.Table(
    "alias_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(128), sa.ForeignKey("registered_models.name"), nullable=False),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("from_version", sa.Integer, nullable=True),
    sa.Column("to_version", sa.Integer, nullable=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(256), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("at", UTC_TIME, nullable=False),
    sa.Index("ix_alias_events_name_alias", "name", "alias", "id"),
)

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(128), sa.ForeignKey("registered_models.name"), nullable=False),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("batching_enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("max_batch_size", sa.Integer, nullable=False, server_default="64"),
    sa.Column("max_wait_ms", sa.Float, nullable=False, server_default="1.0"),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
    sa.Column("members", JSON, nullable=False, server_default="[]"),
    sa.Column("guard", JSON, nullable=False, server_default="{}"),
    sa.Column("execution", JSON, nullable=False, server_default="{}"),
)

monitoring_windows = sa.Table(
    "monitoring_windows",
    metadata,
    sa.Column("deployment", sa.String(128), primary_key=True),
    sa.Column("model", sa.String(128), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("length", sa.Integer, primary_key=True),
    sa.Column("start", sa.BigInteger, primary_key=True),
    sa.Column("data", JSON, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
    sa.Index("ix_monitoring_windows_start", "start"),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("prediction_id", sa.String(64), nullable=False, index=True),
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
    sa.UniqueConstraint("prediction_id", "model", "version", name="uq_predictions_prediction_id_model_version"),
    sa.Index("ix_predictions_deployment_timestamp", "deployment", "timestamp"),
    sa.Index("ix_predictions_model_version_timestamp", "model", "version", "timestamp"),
)

audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("prediction_id", sa.String(64), primary_key=True),  # checked against predictions when stored
    sa.Column("label", JSON, nullable=False),
    sa.Column("received_at", UTC_TIME, nullable=False),
    sa.Column("caller", sa.String(256), nullable=True),
)

alert_rules = sa.Table(
    "alert_rules",
    metadata,
    sa.Column("deployment", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("metric", sa.String(256), nullable=False),
    sa.Column("op", sa.String(4), nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("window", sa.Integer, nullable=False),
    sa.Column("min_samples", sa.Integer, nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("cooldown_seconds", sa.Float, nullable=False),
    sa.Column("channels", JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("deployment", sa.String(128), nullable=False),
    sa.Column("rule", sa.String(128), nullable=False),
    sa.Column("metric", sa.String(256), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("opened_at", UTC_TIME, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
    sa.Column("window_start", UTC_TIME, nullable=True),
    sa.Column("resolved_at", UTC_TIME, nullable=True),
    sa.Column("acked_by", sa.String(256), nullable=True),
    sa.Column("acked_at", UTC_TIME, nullable=True),
    # f"{deployment}\x1f{rule}" while firing, NULL once resolved: the unique constraint makes
    # duplicate suppression hold across processes (NULLs never collide).
    sa.Column("firing_key", sa.String(300), nullable=True, unique=True),
    sa.Index("ix_alerts_deployment_opened_at", "deployment", "opened_at"),
)

alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("alert_id", sa.String(64), sa.ForeignKey("alerts.id", name="fk_alert_deliveries_alert"), nullable=False),
    sa.Column("channel", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("payload", JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTC_TIME, nullable=True),
    sa.Column("held_until", UTC_TIME, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("delivered_at", UTC_TIME, nullable=True),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Index("ix_alert_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
)

monitoring_configs = sa.Table(
    "monitoring_configs",
    metadata,
    sa.Column("deployment", sa.String(128), primary_key=True),
    sa.Column("config", JSON, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
)

audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(256), nullable=False),
)

explanations = sa.Table(
    "explanations",
    metadata,
    sa.Column("prediction_id", sa.String(64), primary_key=True),  # checked against predictions when stored
    sa.Column("data", JSON, nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
)

audit_subject_keys = sa.Table(
    "audit_subject_keys",
    metadata,
    sa.Column("subject_ref", sa.String(64), primary_key=True),
    sa.Column("key", sa.LargeBinary, nullable=True),  # wrapped; NULL once destroyed (the subject was erased)
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("destroyed_at", UTC_TIME, nullable=True),
)

audit_anchors = sa.Table(
    "audit_anchors",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("export_url", sa.Text, nullable=False),
)

audit_policies = sa.Table(
    "audit_policies",
    metadata,
    sa.Column("deployment", sa.String(128), primary_key=True),
    sa.Column("policy", JSON, nullable=False),
    sa.Column("updated_at", UTC_TIME, nullable=False),
)

pipelines = sa.Table(
    "pipelines",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("data", JSON, nullable=False),  # Pipeline.to_dict()
    sa.Column("updated_at", UTC_TIME, nullable=False),
)

pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
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
    # the pipeline's name while the run is queued or running, NULL once it ended: the unique constraint lets
    # one active run per pipeline exist across processes (NULLs never collide).
    sa.Column("active_key", sa.String(160), nullable=True, unique=True),
    sa.Index("ix_pipeline_runs_state_created_at", "state", "created_at"),
    sa.Index("ix_pipeline_runs_pipeline_created_at", "pipeline", "created_at"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False, unique=True),  # SHA-256 of the token; never the token
    sa.Column("created_by", sa.String(256), nullable=False),
    sa.Column("created_at", UTC_TIME, nullable=False),
    sa.Column("expires_at", UTC_TIME, nullable=True),
    sa.Column("revoked_at", UTC_TIME, nullable=True),
    sa.Column("revoked_by", sa.String(256), nullable=True),
    # the name while the token is not revoked, NULL after: names are unique among tokens not revoked
    sa.Column("active_name", sa.String(128), nullable=True, unique=True),
)

auth_denials = sa.Table(
    "auth_denials",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", UTC_TIME, nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("route", sa.String(512), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("client", sa.String(256), nullable=True),
    sa.Column("token_id", sa.String(32), nullable=True),
    sa.Column("token_name", sa.String(128), nullable=True),
    sa.Index("ix_auth_denials_at", "at"),
)
