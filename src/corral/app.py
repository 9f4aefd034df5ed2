"""The composition root: the one place that turns settings into wired services."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from corral.alerts.channels import Channel, channel_from_url
from corral.alerts.loop import AlertLoop
from corral.alerts.service import Alerts, Change
from corral.audit.checkpoints import Checkpointer, default_checkpoint_url
from corral.audit.keys import load_signer
from corral.audit.privacy import Protector
from corral.audit.records import Explanation, PredictionRecord
from corral.audit.sink import AuditSink
from corral.core.events import PredictionSink
from corral.core.profile import Profile
from corral.core.readings import Reading
from corral.errors import SchemaError, VersionArchivedError
from corral.isolation.environments import Environments
from corral.isolation.host import load_isolated, needs_isolation, requires_trusted_worker
from corral.monitoring.feedback import FeedbackService, Outcome
from corral.monitoring.service import Monitor, VersionFacts, readings
from corral.monitoring.sink import MonitoringSink
from corral.pipelines.service import Pipelines
from corral.pipelines.worker import Worker
from corral.registry.entities import ModelVersion, VersionStatus
from corral.registry.environment import current_user
from corral.registry.loaded import LoadedModel
from corral.registry.service import Registry
from corral.registry.signing import ArtifactSigning
from corral.security.service import Tokens
from corral.serving.deployments import Deployments
from corral.serving.entities import Deployment, Member
from corral.serving.server import ModelServer, ServingObserver
from corral.settings import Settings
from corral.storage import Database, open_artifact_store, open_database

if TYPE_CHECKING:
    from corral.audit.explain_worker import ExplainWorker


@dataclass
class Services:
    """Everything a front end (SDK functions, CLI, later the API) talks to."""

    settings: Settings
    registry: Registry
    deployments: Deployments
    database: Database
    feedback: FeedbackService
    monitor: Monitor
    alerts: Alerts
    pipelines: Pipelines
    tokens: Tokens
    environments: Environments
    _loaded: dict[tuple[str, int], Any] = field(default_factory=dict, repr=False)

    def loaded(self, model: str, version: int) -> Any:
        """A version loaded for explaining or replaying (kept: loading re-hashes and unpacks the artifact)."""
        key = (model, version)
        if key not in self._loaded:
            if len(self._loaded) >= 8:
                self._loaded.pop(next(iter(self._loaded)))
            self._loaded[key] = self._load(self.registry.get_version(model, version))
        return self._loaded[key]

    def _load(self, version: ModelVersion) -> LoadedModel:
        """In this process, or in a worker with its own environment when this one lacks its libraries or the
        version is a pickle (which an admin must have trusted, as for serving)."""
        trusted = requires_trusted_worker(version)
        if not trusted and not needs_isolation(version.lineage.requirements, version.flavor):
            return self.registry.load(version.ref)
        runtime = load_isolated(
            self.registry, version, self.environments, name=f"{version.ref} (replay)", trusted=trusted
        )
        return LoadedModel(version, runtime)

    def close(self) -> None:
        """Release database connections."""
        self.database.close()


def build_services(settings: Settings | None = None) -> Services:
    """Open the stores named by ``settings`` (migrating the schema) and wire the services."""
    settings = settings or Settings()
    database = open_database(settings.resolved_database_url())
    artifacts = open_artifact_store(settings.resolved_artifacts_url())
    actor = settings.user or current_user()
    registry = Registry(
        database.registry,
        artifacts,
        actor=actor,
        verify_rows=settings.registry.verify_rows,
        profile_rows=settings.registry.profile_rows,
        guards=[_recorded_predictions(database)],
        signing=ArtifactSigning.from_files(
            key_file=settings.resolved_signing_key_file(),
            public_keys_file=settings.signing.public_keys_file,
            required=settings.profile == "regulated",
        ),
        max_artifact_bytes=settings.loading.max_artifact_bytes,
        max_artifact_members=settings.loading.max_artifact_members,
    )
    deployments = Deployments(database.deployments, actor=actor)
    feedback = FeedbackService(database.feedback, lambda m, v: registry.get_version(m, v).signature.outputs)

    def facts(model: str, version: int) -> VersionFacts:
        record = registry.get_version(model, version)
        return VersionFacts(registry.get_profile(model, version), record.signature.outputs, record.lineage.metrics)

    monitor = Monitor(database.monitoring, database.feedback, facts)
    return Services(
        settings=settings,
        registry=registry,
        deployments=deployments,
        database=database,
        feedback=feedback,
        monitor=monitor,
        alerts=build_alerts(settings, database),
        pipelines=Pipelines(database.pipelines, actor=actor, check_deployment=deployments.get),
        tokens=Tokens(database.tokens, actor=actor, cache_seconds=settings.auth.cache_seconds),
        environments=build_environments(settings),
    )


def build_environments(settings: Settings) -> Environments:
    """The cache of isolated model environments that ``settings.isolation`` configures."""
    config = settings.isolation
    return Environments(
        config.root or settings.home / "environments",
        installer=config.installer,
        timeout=config.build_timeout_seconds,
        index_url=config.index_url,
    )


def _recorded_predictions(database: Database) -> Callable[[str, int], str | None]:
    """A registry guard: a version the prediction log references cannot be deleted (it must stay replayable)."""

    def guard(name: str, version: int) -> str | None:
        recorded = database.audit.count(model=name, version=version)
        return f"{recorded} recorded predictions reference it (archive it instead)" if recorded else None

    return guard


def build_alerts(settings: Settings, database: Database) -> Alerts:
    """Alert rules and notifications over ``database``, with the channels ``settings.alerts`` configures."""
    config = settings.alerts
    channels: dict[str, Channel] = {
        name: channel_from_url(name, url, timeout=config.timeout_seconds) for name, url in config.channels.items()
    }
    template = config.link
    link = (lambda deployment: template.replace("{deployment}", deployment)) if template else None
    return Alerts(
        database.alerts, channels, max_attempts=config.max_attempts, link=link, windows=settings.monitoring.windows
    )


def set_members(services: Services, name: str, members: Sequence[Member]) -> Deployment:
    """Replace deployment ``name``'s shadows, splits and canaries, once every listed version exists and is
    servable (every server follows within a refresh).

    Raises:
        DeploymentNotFoundError, VersionNotFoundError, VersionArchivedError, ConfigurationError.
    """
    services.deployments.get(name)
    for member in members:
        version = services.registry.get_version(member.model, member.version)
        if version.status is VersionStatus.ARCHIVED:
            raise VersionArchivedError(f"{version.ref} is archived and cannot take traffic; restore it first")
    return services.deployments.set_members(name, members)


def rollback_deployment(services: Services, name: str, *, reason: str = "") -> Deployment:
    """Move the alias deployment ``name`` follows back one step (every server swaps within a refresh)."""
    deployment = services.deployments.get(name)
    services.registry.rollback(deployment.model, alias=deployment.alias, reason=reason or f"rollback of {name}")
    return deployment


def deployment_comparison(
    services: Services,
    name: str,
    *,
    window: int = 3600,
    errors: Mapping[tuple[str, int], tuple[int, int]] | None = None,
    bootstrap: int = 1000,
    since: datetime | None = None,
    keep: Callable[[Outcome], bool] | None = None,
    labelled_only: bool = False,
) -> dict[str, Any]:
    """Every version on deployment ``name`` side by side over the last ``window`` seconds (or from ``since``),
    from the prediction log and the labels (see :func:`corral.monitoring.comparison.compare`); ``errors`` adds
    request and error counts (a server's own); ``keep`` chooses which recorded predictions count;
    ``labelled_only`` reads only the predictions that have a label (what quality tests need: a busy day's
    unlabelled rows are never loaded)."""
    from datetime import UTC, timedelta

    from corral.monitoring.comparison import compare

    if window <= 0:
        raise SchemaError(f"window must be a positive number of seconds, got {window}")
    deployment = services.deployments.get(name)
    champion = services.registry.resolve(deployment.target)
    until = datetime.now(UTC)
    since = since or until - timedelta(seconds=window)
    outcomes = services.database.feedback.outcomes(
        name, since=since, until=until, role=None, labelled_only=labelled_only
    )
    if keep is not None:
        outcomes = [o for o in outcomes if keep(o)]
    head = {"deployment": name, "window_seconds": window, "since": since.isoformat(), "until": until.isoformat()}
    if not any(o.role == "primary" for o in outcomes):
        return {**head, "versions": [], "reason": "no recorded predictions in this window"}
    outputs = champion.signature.outputs
    result = compare(
        outcomes,
        task=str(outputs.task),
        classes=outputs.classes,
        errors=errors,
        bootstrap=bootstrap,
        current_champion=(champion.name, champion.version),
    )
    return {**head, **result}


def guard_quality(services: Services, *, window: int = 86400) -> list[tuple[str, Member, str]]:
    """Remove every shadow, split or canary whose labelled quality is significantly worse than its champion's
    on the same requests (any of the comparison's tests says "worse" at alpha 0.05: accuracy by McNemar, ROC
    AUC or RMSE by paired bootstrap), once it has at least the guard's minimum of labelled rows; each removal
    raises an alert saying which and why."""
    removed = []
    for deployment in services.deployments.list():
        if not deployment.members or not deployment.guard.enabled:
            continue
        result = deployment_comparison(services, deployment.name, window=window, bootstrap=200, labelled_only=True)
        for version in result.get("versions", []):
            comparison = version.get("comparison") or {}
            worse = [t for t in comparison.get("tests", []) if t.get("verdict") == "worse"]
            if version.get("champion") or not worse or int(comparison.get("rows") or 0) < deployment.guard.min_requests:
                continue
            member = next((m for m in deployment.members if m.key == (version["model"], version["version"])), None)
            if member is None:
                continue
            found = "; ".join(
                f"{t['metric']} {t['challenger']:.4g} vs {t['champion']:.4g} ({t['test']}, p={t['p_value']:.3g})"
                for t in worse
            )
            reason = (
                f"labelled quality significantly worse than the champion's on {comparison['rows']} requests: {found}"
            )
            services.deployments.remove_member(deployment.name, member.model, member.version)
            _guarded(services, deployment.name, member, reason)
            removed.append((deployment.name, member, reason))
    return removed


def monitoring_snapshot(services: Services, name: str, *, window: int, reference: str = "training") -> dict[str, Any]:
    """The monitoring snapshot of the version ``name`` serves now, with the deployment's firing alerts.

    Raises:
        SchemaError: ``window`` is not a kept window length.
        DeploymentNotFoundError: no such deployment.
    """
    _check_window(services, window)
    version = services.registry.resolve(services.deployments.get(name).target)
    snapshot = services.monitor.snapshot(name, version.name, version.version, window=window, reference=reference)
    snapshot["alerts"] = [a.to_dict() for a in services.alerts.list_alerts(deployment=name, state="firing")]
    return snapshot


def drift_history(services: Services, name: str, *, window: int, limit: int = 48) -> dict[str, Any]:
    """Drift per feature and output over the last ``limit`` ``window``-second windows of the version ``name``
    serves now (see :meth:`corral.monitoring.service.Monitor.history`).

    Raises:
        SchemaError: ``window`` is not a kept window length, or ``limit`` is below 1.
        DeploymentNotFoundError: no such deployment.
    """
    _check_window(services, window)
    version = services.registry.resolve(services.deployments.get(name).target)
    return services.monitor.history(name, version.name, version.version, window=window, limit=limit)


def drift_histograms(services: Services, name: str, *, window: int, start: datetime | None = None) -> dict[str, Any]:
    """Reference against current histograms per feature and output, for the ``window``-second window of the
    version ``name`` serves now that starts at ``start`` (default: the latest; see
    :meth:`corral.monitoring.service.Monitor.histograms`).

    Raises:
        SchemaError: ``window`` is not a kept window length, or no stored window starts at ``start``.
        DeploymentNotFoundError: no such deployment.
    """
    _check_window(services, window)
    version = services.registry.resolve(services.deployments.get(name).target)
    return services.monitor.histograms(name, version.name, version.version, window=window, start=start)


def _check_window(services: Services, window: int) -> None:
    """Monitoring keeps windows of the configured lengths only."""
    lengths = services.settings.monitoring.windows
    if window not in lengths:
        raise SchemaError(f"window must be one of {lengths} seconds, got {window}")


def deployment_readings(services: Services, name: str, window: int) -> dict[str, Reading]:
    """The metric values alert rules judge for deployment ``name`` over its latest ``window``."""
    version = services.registry.resolve(services.deployments.get(name).target)
    return readings(services.monitor.snapshot(name, version.name, version.version, window=window))


def build_alert_loop(services: Services) -> AlertLoop | None:
    """The periodic rule evaluation and delivery a server process runs, or ``None`` when alerts are disabled."""
    config = services.settings.alerts
    if not config.enabled:
        return None
    return AlertLoop(
        services.alerts,
        lambda: [d.name for d in services.deployments.list() if d.enabled],
        lambda name, window: deployment_readings(services, name, window),
        windows=services.settings.monitoring.windows,
        evaluate_seconds=config.evaluate_seconds,
        dispatch_seconds=config.dispatch_seconds,
        hooks=[lambda: guard_quality(services)],
        on_change=lambda name, change: _retrain_on_alert(services, name, change),
    )


def _retrain_on_alert(services: Services, deployment: str, change: Change) -> None:
    """An alert just opened: queue the pipelines of ``deployment`` that listen to it."""
    if change.action != "opened" or change.alert_id is None:
        return
    alert = services.alerts.store.get_alert(change.alert_id)
    services.pipelines.on_alert(deployment, alert.rule, alert.metric)


def build_worker(services: Services, *, name: str | None = None) -> Worker:
    """A worker carrying out queued pipeline runs (:func:`corral.retraining.execute_run`)."""
    from corral.retraining import advance_rollouts, execute_run

    config = services.settings.pipelines
    last = [0.0]

    def between_runs() -> None:
        if time.monotonic() - last[0] >= config.rollout_seconds:
            last[0] = time.monotonic()
            advance_rollouts(services)

    return Worker(
        services.pipelines,
        lambda run, pipeline, log: execute_run(services, run, pipeline, log),
        name=name,
        lease_seconds=config.lease_seconds,
        poll_seconds=config.poll_seconds,
        between_runs=between_runs,
    )


def build_server(
    services: Services, observer: ServingObserver | None = None, sinks: Sequence[PredictionSink] = ()
) -> ModelServer:
    """The model server over ``services``, configured by ``services.settings.serving``."""
    serving = services.settings.serving
    return ModelServer(
        services.database.deployments,
        services.registry,
        refresh_seconds=serving.refresh_seconds,
        max_rows=serving.max_rows,
        max_body_bytes=serving.max_body_bytes,
        shadow_capacity=serving.shadow_capacity,
        shadow_max_wait=serving.shadow_max_wait_ms / 1000,
        sinks=sinks,
        observer=observer,
        on_guard=lambda name, member, reason: _guarded(services, name, member, reason),
        environments=services.environments,
    )


def member_event(kind: str, model: str, version: int) -> str:
    """The alert rule name of the event saying a version left a deployment's traffic: ``kind`` is ``guard``
    (a guard rule took it off) or ``removed`` (a person did)."""
    return f"{kind}:{model}:{version}"


def _guarded(services: Services, name: str, member: Member, reason: str) -> None:
    """A guard rule took ``member`` off deployment ``name``: raise an alert saying which and why."""
    message = f"{member.role} {member.model}:{member.version} was removed from {name} automatically: {reason}"
    services.alerts.raise_event(name, member_event("guard", member.model, member.version), message)


def build_monitoring(services: Services) -> MonitoringSink | None:
    """The sink that keeps production windows, or ``None`` when monitoring is disabled."""
    settings = services.settings.monitoring
    if not settings.enabled:
        return None
    registry = services.registry

    def describe(model: str, version: int) -> tuple[Profile | None, tuple[Any, ...] | None]:
        return registry.get_profile(model, version), registry.get_version(model, version).signature.outputs.classes

    return MonitoringSink(
        services.database.monitoring,
        describe,
        lengths=settings.windows,
        process_seconds=settings.process_seconds,
        flush_seconds=settings.flush_seconds,
        retention_seconds=settings.retention_days * 86400 if settings.retention_days is not None else None,
    )


def build_checkpointer(services: Services) -> Checkpointer:
    """Signs the prediction log's head now and then (the Ed25519 key is created on first start in <home>/audit)
    and publishes each checkpoint outside the database too."""
    config = services.settings.audit
    folder = (services.settings.home / "audit").resolve()
    return Checkpointer(
        services.database.audit,
        load_signer(folder),
        config.checkpoint_url or default_checkpoint_url(folder),
        every=config.checkpoint_every,
        seconds=config.checkpoint_seconds,
    )


def build_explainer(services: Services) -> ExplainWorker:
    """Explains the predictions of deployments whose audit policy says ``always`` or ``sampled:N%``."""
    from corral.audit.explain_worker import ExplainWorker  # shap and friends: imported when first needed

    return ExplainWorker(services.database.audit, services.loaded, services.registry.get_profile)


def explain_prediction(services: Services, prediction_id: str) -> tuple[Explanation, bool]:
    """A recorded prediction's explanation: the stored one, or one computed now and stored (``True``)."""
    from corral.audit.explain import explain_recorded

    return explain_recorded(
        services.database.audit, services.loaded, prediction_id, profile=services.registry.get_profile
    )


def build_audit(
    services: Services,
    checkpointer: Checkpointer | None = None,
    explainer: ExplainWorker | None = None,
    on_lost: Callable[[int], None] | None = None,
) -> AuditSink | None:
    """The sink that appends every answered row to the prediction log, or ``None`` when the audit is disabled."""
    settings = services.settings.audit
    if not settings.enabled:
        return None
    registry = services.registry

    def describe(model: str, version: int) -> tuple[str, str | None]:
        record = registry.get_version(model, version)
        return record.artifact_sha256, record.lineage.data.sha256 if record.lineage.data is not None else None

    return AuditSink(
        services.database.audit,
        describe,
        mode=settings.mode,
        max_batch=settings.max_batch,
        on_commit=_after_commit(checkpointer, explainer),
        protect=Protector.from_store(services.database.audit, secret=audit_secret(services.settings)),
        on_lost=on_lost,
    )


def _after_commit(
    checkpointer: Checkpointer | None, explainer: ExplainWorker | None
) -> Callable[[list[PredictionRecord]], None] | None:
    hooks = [h.after_commit for h in (checkpointer, explainer) if h is not None]
    if not hooks:
        return None

    def after_commit(records: list[PredictionRecord]) -> None:
        for hook in hooks:
            hook(records)

    return after_commit


def audit_secret(settings: Settings) -> bytes | None:
    """The installation secret for hashed and encrypted audit fields, if one is configured."""
    secret = settings.audit.secret
    return secret.get_secret_value().encode() if secret is not None else None


def upgrade_database(settings: Settings) -> tuple[str | None, str]:
    """Migrate the configured database to the newest schema; returns (before, after) revisions."""
    from corral.storage.sql.engine import create_engine, current_revision, head_revision, upgrade

    engine = create_engine(settings.resolved_database_url())
    try:
        before = current_revision(engine)
        upgrade(engine)
        return before, head_revision()
    finally:
        engine.dispose()


def database_revisions(settings: Settings) -> tuple[str | None, str]:
    """(revision of the configured database, newest revision this corral knows)."""
    from corral.storage.sql.engine import create_engine, current_revision, head_revision

    engine = create_engine(settings.resolved_database_url())
    try:
        return current_revision(engine), head_revision()
    finally:
        engine.dispose()
