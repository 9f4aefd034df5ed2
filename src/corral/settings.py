"""Settings, from ``CORRAL_*`` environment variables (nested: ``CORRAL_<SECTION>__<FIELD>``).

Only :mod:`corral.app` and :mod:`corral.cli` read settings; everything below
them receives plain values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class RegistrySettings(BaseModel):
    """``CORRAL_REGISTRY__*``: how registration checks and profiles models."""

    verify_rows: int = Field(200, ge=1, description="training rows used to check a saved model reproduces the original")
    profile_rows: int = Field(10_000, ge=1, description="rows sampled to profile the model's outputs")


class ServingSettings(BaseModel):
    """``CORRAL_SERVING__*``: the model server's limits and how it follows the store."""

    refresh_seconds: float = Field(1.0, gt=0, le=60, description="how often servers look for alias changes")
    max_body_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="largest request body accepted (10 MiB), counted while it is read, with or without "
        "Content-Length; also the most a gzip or deflate body may inflate to",
    )
    max_rows: int = Field(10_000, ge=1, description="most rows scored in one request")
    access_log: bool = Field(True, description="one JSON line per request on stderr")
    max_json_depth: int = Field(
        32, ge=2, le=200, description="deepest nesting of arrays and objects in a JSON body (the outermost is 1)"
    )
    shadow_max_wait_ms: float = Field(
        100.0,
        ge=0,
        le=10_000,
        description="how long a shadow waits after a request's copy arrives for more to score in one call (off "
        "the response path: it only delays the shadow's records)",
    )
    shadow_capacity: int = Field(
        1000, ge=1, description="request copies each shadow may have waiting; beyond it they are dropped and counted"
    )


class IsolationSettings(BaseModel):
    """``CORRAL_ISOLATION__*``: the virtual environments isolated model versions run in."""

    root: Path | None = Field(None, description="where environments are built and cached; default <home>/environments")
    installer: Literal["auto", "uv", "pip"] = Field("auto", description="uv when found (auto), or venv and pip")
    build_timeout_seconds: float = Field(900.0, gt=0, le=7200, description="longest one environment may take to build")
    index_url: str | None = Field(None, description="package index to install from instead of the default")


class MonitoringSettings(BaseModel):
    """``CORRAL_MONITORING__*``: production windows kept by every server process."""

    enabled: bool = Field(True, description="aggregate served rows into windows")
    windows: list[int] = Field(default_factory=lambda: [3600, 86400], description="window lengths in seconds")
    flush_seconds: float = Field(5.0, gt=0, le=3600, description="how often windows are written to the store")
    process_seconds: float = Field(0.5, gt=0, le=60, description="how often buffered rows are aggregated")
    retention_days: float | None = Field(90.0, gt=0, description="windows older than this are deleted; null keeps all")


class AuditSettings(BaseModel):
    """``CORRAL_AUDIT__*``: the prediction log."""

    enabled: bool = Field(True, description="record every answered row in the hash-chained prediction log")
    mode: Literal["sync", "async"] = Field(
        "sync",
        description="sync: a response goes out only once its rows are committed; async: commits in the background "
        "and may lose the last uncommitted rows if the process dies",
    )
    max_batch: int = Field(10_000, ge=1, description="most rows one group commit takes")
    checkpoint_url: str | None = Field(
        None,
        description="folder or fsspec URL outside the database where signed checkpoints are also written; "
        "default <home>/audit/checkpoints",
    )
    checkpoint_every: int = Field(1000, ge=1, description="sign a checkpoint after this many recorded rows")
    checkpoint_seconds: float = Field(60.0, gt=0, description="or at the first commit this long after the last one")
    secret: SecretStr | None = Field(
        None,
        description="installation secret (16 bytes or more): keys hashed fields and subject references and wraps "
        "per-subject keys; needed once an audit policy hashes or encrypts fields",
    )
    export_url: str | None = Field(
        None, description="folder or fsspec URL receiving records past retention; default <home>/audit/exports"
    )


class AlertSettings(BaseModel):
    """``CORRAL_ALERTS__*``: alert evaluation and the channels notifications go to."""

    enabled: bool = Field(True, description="evaluate alert rules and deliver notifications in every server process")
    channels: dict[str, str] = Field(
        default_factory=lambda: {"log": "log"},
        description="channel name -> URL: https://... (webhook), slack+https://... (Slack), "
        "smtp://user:pass@host:port?from=...&to=... (e-mail), log",
    )
    evaluate_seconds: float = Field(60.0, gt=0, le=86400, description="how often rules are evaluated")
    dispatch_seconds: float = Field(5.0, gt=0, le=3600, description="how often due notifications are sent")
    max_attempts: int = Field(8, ge=1, le=100, description="deliveries failing this often are given up")
    timeout_seconds: float = Field(5.0, gt=0, le=120, description="bound on one webhook or Slack send")
    link: str | None = Field(None, description="URL put in notifications; {deployment} is replaced")


class PipelineSettings(BaseModel):
    """``CORRAL_PIPELINES__*``: the worker that carries out retraining runs."""

    worker: bool = Field(True, description="run a pipeline worker inside every `corral serve` process")
    lease_seconds: float = Field(60.0, gt=1, le=3600, description="a run whose worker stops reporting this long fails")
    poll_seconds: float = Field(2.0, gt=0, le=600, description="how often an idle worker looks for queued runs")
    rollout_seconds: float = Field(30.0, gt=0, le=3600, description="how often staged rollouts are judged")


class AuthSettings(BaseModel):
    """``CORRAL_AUTH__*``: API tokens and roles, CORS and the trusted-host check of every server."""

    enabled: bool = Field(
        True,
        description="require a token on every route but health, the dashboard's sign-in page and static files; "
        "false serves everything to anyone and confines `corral serve` to the loopback address",
    )
    token_file: Path | None = Field(
        None,
        description="where the first admin token is written on first start (mode 0600); default <home>/admin-token",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="origins (https://app.example.com) whose pages may call the API from a browser; none: CORS off",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="host names clients may address the server by, besides localhost, 127.0.0.1, ::1 and the "
        "address it listens on; '*' turns the check off",
    )
    bind_host: str | None = Field(None, description="the address `corral serve` listens on (set by it)")
    cache_seconds: float = Field(
        5.0, ge=0, le=300, description="a checked token is trusted this long before the store is asked again"
    )
    record_denials: bool = Field(True, description="keep refused requests on management routes in the database")


class SigningSettings(BaseModel):
    """``CORRAL_SIGNING__*``: Ed25519 signatures over registered artifacts (see docs/safe-loading.md)."""

    key_file: Path | None = Field(
        None,
        description="private key that signs every registered version (PEM, created with mode 0600 when missing); "
        "default <home>/signing/artifact-key.pem under the regulated profile, none otherwise",
    )
    public_keys_file: Path | None = Field(
        None, description="PEM public keys whose signatures are also accepted (a CI system's, another server's)"
    )


class LoadingSettings(BaseModel):
    """``CORRAL_LOADING__*``: limits on what an artifact may unpack to."""

    max_artifact_bytes: int = Field(4 * 1024**3, ge=1, description="most bytes one artifact may unpack to")
    max_artifact_members: int = Field(10_000, ge=1, description="most files and folders one artifact may hold")


class Settings(BaseSettings):
    """Where corral keeps its state, and who is acting.

    Attributes:
        home: ``CORRAL_HOME``, the folder for the embedded defaults (``./.corral``).
        database_url: ``CORRAL_DATABASE_URL``; default ``sqlite:///<home>/corral.db``.
        artifacts_url: ``CORRAL_ARTIFACTS_URL``; a folder or fsspec URL, default ``<home>/artifacts``.
        user: ``CORRAL_USER``, recorded as the actor; default the login name.
    """

    model_config = SettingsConfigDict(env_prefix="CORRAL_", env_nested_delimiter="__", extra="ignore")

    home: Path = Path(".corral")
    database_url: str | None = None
    artifacts_url: str | None = None
    user: str | None = None
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    isolation: IsolationSettings = Field(default_factory=IsolationSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    pipelines: PipelineSettings = Field(default_factory=PipelineSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    profile: Literal["default", "regulated"] = Field(
        "default", description="``CORRAL_PROFILE``: regulated loads only versions whose artifact signature verifies"
    )
    signing: SigningSettings = Field(default_factory=SigningSettings)
    loading: LoadingSettings = Field(default_factory=LoadingSettings)

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'corral.db').resolve()}"

    def resolved_artifacts_url(self) -> str:
        return self.artifacts_url or str((self.home / "artifacts").resolve())

    def resolved_signing_key_file(self) -> Path | None:
        """The artifact signing key: configured, or under ``<home>/signing`` with the regulated profile."""
        if self.signing.key_file is not None:
            return self.signing.key_file
        return (self.home / "signing" / "artifact-key.pem").resolve() if self.profile == "regulated" else None

    def resolved_token_file(self) -> Path:
        return self.auth.token_file or (self.home / "admin-token").resolve()
