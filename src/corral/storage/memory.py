"""In-process stores: for tests, notebooks and ``memory:`` URLs.

It keeps the same rules as the SQL store (the contract suite runs on both),
with one lock standing in for database transactions.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.alerts.entities import DELIVERED, FIRING, PENDING, RESOLVED, Alert, Delivery, Rule
from corral.alerts.ports import AlertStore
from corral.audit.ports import AuditStore
from corral.audit.records import GENESIS, Checkpoint, Explanation, PredictionRecord, plain
from corral.audit.retention import Anchor
from corral.core.profile import Profile
from corral.errors import (
    AliasNotFoundError,
    AlreadyExistsError,
    ConflictError,
    DeploymentNotFoundError,
    ModelNotFoundError,
    NotFoundError,
    PredictionNotFoundError,
    VersionArchivedError,
    VersionInUseError,
    VersionNotFoundError,
)
from corral.monitoring.aggregator import DeploymentWindow, WindowKey, merge_all
from corral.monitoring.feedback import Label, Outcome
from corral.monitoring.ports import FeedbackStore, MonitoringStore
from corral.registry.entities import (
    AliasAction,
    AliasEvent,
    ArtifactSignature,
    ModelVersion,
    RegisteredModel,
    VersionStatus,
    VersionTrust,
)
from corral.registry.ports import ANY, AliasHead, RegistryStore, Seal
from corral.serving.entities import Deployment
from corral.serving.ports import DeploymentStore


class MemoryRegistryStore:
    """Registry store held in dictionaries."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._models: dict[str, RegisteredModel] = {}
        self._versions: dict[tuple[str, int], ModelVersion] = {}
        self._profiles: dict[tuple[str, int], Profile] = {}
        self._events: list[AliasEvent] = []

    def create_version(self, draft: ModelVersion, profile: Profile | None, *, seal: Seal | None = None) -> ModelVersion:
        with self._lock:
            created_at = _utc(draft.created_at)
            model = self._models.get(draft.name) or RegisteredModel(
                draft.name, created_at, draft.created_by, 0, description=draft.description
            )
            stored = replace(
                draft,
                version=model.latest_version + 1,
                status=VersionStatus.READY,
                status_reason=None,
                created_at=created_at,
                trust=None,
                artifact_signature=None,
            )
            if seal is not None:
                stored = replace(stored, artifact_signature=seal(stored))
            self._models[draft.name] = replace(model, latest_version=stored.version)
            self._versions[(draft.name, stored.version)] = stored
            if profile is not None:
                self._profiles[(draft.name, stored.version)] = profile
            return stored

    def get_model(self, name: str) -> RegisteredModel:
        with self._lock:
            model = self._models.get(name)
            if model is None:
                raise ModelNotFoundError(f"no model named {name!r}")
            return replace(model, aliases=self._aliases(name))

    def list_models(self) -> list[RegisteredModel]:
        with self._lock:
            return [self.get_model(name) for name in sorted(self._models)]

    def get_version(self, name: str, version: int) -> ModelVersion:
        with self._lock:
            found = self._versions.get((name, version))
            if found is None:
                self.get_model(name)
                raise VersionNotFoundError(f"model {name!r} has no version {version}")
            return found

    def list_versions(self, name: str) -> list[ModelVersion]:
        with self._lock:
            self.get_model(name)
            return sorted((v for (n, _), v in self._versions.items() if n == name), key=lambda v: v.version)

    def get_profile(self, name: str, version: int) -> Profile | None:
        with self._lock:
            self.get_version(name, version)
            return self._profiles.get((name, version))

    def move_alias(
        self,
        name: str,
        alias: str,
        to_version: int | None,
        *,
        expected: object,
        action: AliasAction,
        actor: str,
        reason: str,
        at: datetime,
    ) -> AliasEvent:
        with self._lock:
            current = self._aliases(name).get(alias)
            self.get_model(name)
            if to_version is not None:
                target = self.get_version(name, to_version)
                if target.status is VersionStatus.ARCHIVED:
                    raise VersionArchivedError(f"{name}/{to_version} is archived; restore it before giving it an alias")
            elif current is None:
                raise AliasNotFoundError(f"model {name!r} has no alias {alias!r}")
            if isinstance(expected, AliasHead):
                newest = max((e.id for e in self._events if e.name == name and e.alias == alias), default=None)
                if (current, newest) != (expected.version, expected.event_id):
                    raise ConflictError(f"alias {name}@{alias} moved meanwhile; look again and retry")
            elif expected is not ANY and expected != current:
                raise ConflictError(f"alias {name}@{alias} moved to {current} meanwhile; look again and retry")
            event = AliasEvent(len(self._events) + 1, name, alias, current, to_version, action, actor, reason, _utc(at))
            self._events.append(event)
            return event

    def alias_events(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        with self._lock:
            self.get_model(name)
            return [e for e in self._events if e.name == name and (alias is None or e.alias == alias)]

    def set_status(self, name: str, version: int, status: VersionStatus, *, reason: str | None) -> ModelVersion:
        with self._lock:
            found = self.get_version(name, version)
            if status is VersionStatus.ARCHIVED:
                self._refuse_if_aliased(name, version, "archive")
            updated = replace(found, status=status, status_reason=reason)
            self._versions[(name, version)] = updated
            return updated

    def delete_version(self, name: str, version: int) -> None:
        with self._lock:
            self.get_version(name, version)
            self._refuse_if_aliased(name, version, "delete")
            del self._versions[(name, version)]
            self._profiles.pop((name, version), None)

    def set_trust(self, name: str, version: int, trust: VersionTrust | None) -> ModelVersion:
        with self._lock:
            found = self.get_version(name, version)
            if trust is not None:
                trust = replace(trust, at=_utc(trust.at))
            updated = self._versions[(name, version)] = replace(found, trust=trust)
            return updated

    def set_signature(self, name: str, version: int, signature: ArtifactSignature) -> ModelVersion:
        with self._lock:
            found = self.get_version(name, version)
            updated = self._versions[(name, version)] = replace(found, artifact_signature=signature)
            return updated

    def set_requirements(self, name: str, version: int, requirements: dict[str, str]) -> ModelVersion:
        with self._lock:
            found = self.get_version(name, version)
            lineage = replace(found.lineage, requirements=dict(sorted(requirements.items())))
            updated = self._versions[(name, version)] = replace(found, lineage=lineage)
            return updated

    def artifact_in_use(self, sha256: str) -> bool:
        with self._lock:
            return any(v.artifact_sha256 == sha256 for v in self._versions.values())

    def close(self) -> None:
        """Nothing to release."""

    def _aliases(self, name: str) -> dict[str, int]:
        aliases: dict[str, int] = {}
        for event in self._events:
            if event.name != name:
                continue
            if event.to_version is None:
                aliases.pop(event.alias, None)
            else:
                aliases[event.alias] = event.to_version
        return dict(sorted(aliases.items()))

    def _refuse_if_aliased(self, name: str, version: int, verb: str) -> None:
        holders = sorted(a for a, v in self._aliases(name).items() if v == version)
        if holders:
            raise VersionInUseError(
                f"cannot {verb} {name}/{version}: alias {', '.join(holders)} points at it; move the alias first"
            )


def _utc(value: datetime) -> datetime:
    """Times are kept in UTC, as the SQL store returns them; naive values are taken to be UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_: type[RegistryStore] = MemoryRegistryStore


class MemoryDeploymentStore:
    """Deployments held in a dictionary, checked against a memory registry store."""

    def __init__(self, registry: MemoryRegistryStore) -> None:
        self._registry = registry
        self._lock = threading.RLock()
        self._deployments: dict[str, Deployment] = {}

    def create(self, deployment: Deployment) -> Deployment:
        with self._lock:
            try:
                self._registry.get_model(deployment.model)
            except ModelNotFoundError:
                raise ModelNotFoundError(f"no model named {deployment.model!r} to deploy") from None
            if deployment.name in self._deployments:
                raise AlreadyExistsError(f"a deployment named {deployment.name!r} already exists")
            self._deployments[deployment.name] = deployment
            return deployment

    def get(self, name: str) -> Deployment:
        with self._lock:
            found = self._deployments.get(name)
            if found is None:
                raise DeploymentNotFoundError(f"no deployment named {name!r}")
            return found

    def list(self) -> list[Deployment]:
        with self._lock:
            return [self._deployments[n] for n in sorted(self._deployments)]

    def update(self, deployment: Deployment, *, expected: datetime | None = None) -> Deployment:
        with self._lock:
            current = self.get(deployment.name)
            if expected is not None and current.updated_at != expected:
                raise ConflictError(f"deployment {deployment.name!r} changed meanwhile; read it again")
            updated = replace(
                current,
                alias=deployment.alias,
                enabled=deployment.enabled,
                batching=deployment.batching,
                description=deployment.description,
                members=deployment.members,
                guard=deployment.guard,
                execution=deployment.execution,
                updated_at=deployment.updated_at,
            )
            self._deployments[deployment.name] = updated
            return updated

    def delete(self, name: str) -> None:
        with self._lock:
            self.get(name)
            del self._deployments[name]

    def close(self) -> None:
        """Nothing to release."""


_d: type[DeploymentStore] = MemoryDeploymentStore


class MemoryMonitoringStore:
    """Monitoring windows held in a dictionary; one lock makes each call atomic."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._windows: dict[WindowKey, DeploymentWindow] = {}
        self._configs: dict[str, dict[str, Any]] = {}

    def get_config(self, deployment: str) -> dict[str, Any] | None:
        with self._lock:
            config = self._configs.get(deployment)
            return json.loads(json.dumps(config)) if config is not None else None

    def set_config(self, deployment: str, config: Mapping[str, Any] | None) -> None:
        with self._lock:
            if config is None:
                self._configs.pop(deployment, None)
            else:
                self._configs[deployment] = json.loads(json.dumps(config))

    def add_windows(self, windows: Sequence[DeploymentWindow]) -> None:
        incoming = merge_all(windows)
        with self._lock:
            merged: dict[WindowKey, DeploymentWindow] = {}
            for key, window in incoming.items():  # merge everything first: a failure changes nothing
                stored = self._windows.get(key)
                merged[key] = window if stored is None else stored.merge(window)
            self._windows.update(merged)

    def get_windows(
        self,
        deployment: str,
        *,
        length: int,
        since: int | None = None,
        model: str | None = None,
        version: int | None = None,
    ) -> list[DeploymentWindow]:
        with self._lock:
            found = [
                w.copy()
                for k, w in self._windows.items()
                if k.deployment == deployment
                and k.length == length
                and (since is None or k.start >= since)
                and (model is None or k.model == model)
                and (version is None or k.version == version)
            ]
        return sorted(found, key=lambda w: (w.key.start, w.key.model, w.key.version))

    def delete_before(self, start: int) -> int:
        with self._lock:
            old = [k for k in self._windows if k.start < start]
            for key in old:
                del self._windows[key]
            return len(old)

    def close(self) -> None:
        """Nothing to release."""


_m: type[MonitoringStore] = MemoryMonitoringStore


class MemoryAuditStore:
    """The prediction log in a list; one lock makes each append atomic."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._records: list[PredictionRecord] = []
        self._by_id: dict[str, PredictionRecord] = {}  # the record that answered (never a shadow's)
        self._keys: set[tuple[str, str, int]] = set()  # (prediction id, model, version): shadows share ids
        self._checkpoints: dict[int, Checkpoint] = {}
        self._explanations: dict[str, Explanation] = {}
        self._anchors: list[Anchor] = []
        self._pruned = 0  # records seq <= this were pruned: self._records[i] has seq _pruned + i + 1
        self._subject_keys: dict[str, bytes | None] = {}
        self._policies: dict[str, dict[str, Any]] = {}

    def append(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        with self._lock:
            keys = [(r.prediction_id, r.model, r.version) for r in records]
            clash = [k for k in keys if k in self._keys] or (keys if len(set(keys)) < len(keys) else [])
            if clash:
                pid, model, version = clash[0]
                raise AlreadyExistsError(
                    f"prediction id {pid} is already recorded for {model}/{version}; nothing was written"
                )
            seq, prev = self.head()
            stored = []
            for record in records:
                seq += 1
                placed = PredictionRecord.from_dict(record.chained(seq, prev).to_dict())  # as a database keeps it
                prev = placed.hash
                stored.append(placed)
            self._records.extend(stored)
            self._keys.update((r.prediction_id, r.model, r.version) for r in stored)
            self._by_id.update((r.prediction_id, r) for r in stored if r.role != "shadow")
            return stored

    def get(self, prediction_id: str) -> PredictionRecord:
        with self._lock:
            if prediction_id not in self._by_id:
                raise PredictionNotFoundError(f"no recorded prediction has id {prediction_id!r}")
            return self._by_id[prediction_id]

    def get_many(self, prediction_ids: Sequence[str]) -> dict[str, PredictionRecord]:
        with self._lock:
            return {pid: self._by_id[pid] for pid in prediction_ids if pid in self._by_id}

    def records_for(self, prediction_id: str) -> list[PredictionRecord]:
        with self._lock:
            return [r for r in self._records if r.prediction_id == prediction_id]

    def search(
        self,
        *,
        deployment: str | None = None,
        model: str | None = None,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after_seq: int = 0,
        limit: int = 100,
        output: Any = None,
        fields: Mapping[str, Any] | None = None,
    ) -> list[PredictionRecord]:
        with self._lock:
            found = (
                r
                for r in self._records[max(0, after_seq - self._pruned) :]
                if (output is None or _same(r.output, output))
                and all(_same(r.inputs.get(k), v) for k, v in (fields or {}).items())
                and (deployment is None or r.deployment == deployment)
                and (model is None or r.model == model)
                and (version is None or r.version == version)
                and (since is None or r.timestamp >= since)
                and (until is None or r.timestamp < until)
            )
            return list(itertools.islice(found, limit))

    def scan(self, *, after_seq: int = 0, chunk: int = 5000) -> Iterator[PredictionRecord]:
        with self._lock:
            records = list(self._records[max(0, after_seq - self._pruned) :])
        yield from records

    def head(self) -> tuple[int, str]:
        with self._lock:
            if self._records:
                return self._pruned + len(self._records), self._records[-1].hash
            return (self._anchors[-1].seq, self._anchors[-1].hash) if self._anchors else (0, GENESIS)

    def count(self, *, model: str | None = None, version: int | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self._records
                if (model is None or r.model == model) and (version is None or r.version == version)
            )

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        with self._lock:
            self._checkpoints.setdefault(checkpoint.seq, checkpoint)

    def checkpoints(self, *, after_seq: int = 0) -> list[Checkpoint]:
        with self._lock:
            return [c for seq, c in sorted(self._checkpoints.items()) if seq > after_seq]

    def put_explanation(self, explanation: Explanation) -> None:
        with self._lock:
            if explanation.prediction_id not in self._by_id:
                raise PredictionNotFoundError(f"no recorded prediction has id {explanation.prediction_id!r}")
            self._explanations[explanation.prediction_id] = explanation

    def get_explanation(self, prediction_id: str) -> Explanation | None:
        with self._lock:
            return self._explanations.get(prediction_id)

    def close(self) -> None:
        """Nothing to release."""

    def replace_record(self, seq: int, record: PredictionRecord) -> None:
        """Overwrite a stored record (for tamper-detection tests only)."""
        with self._lock:
            self._records[seq - 1 - self._pruned] = record
            if record.role != "shadow":
                self._by_id[record.prediction_id] = record

    def subject_key(self, subject_ref: str, *, create: bytes | None = None) -> bytes | None:
        with self._lock:
            key = self._subject_keys.get(subject_ref)
            if key is None and create is not None:
                key = self._subject_keys[subject_ref] = bytes(create)
            return key

    def destroy_subject_key(self, subject_ref: str) -> bool:
        with self._lock:
            if self._subject_keys.get(subject_ref) is None:
                return False
            self._subject_keys[subject_ref] = None
            return True

    def anchors(self) -> list[Anchor]:
        with self._lock:
            return list(self._anchors)

    def delete_through(self, seq: int, *, hash: str, export_url: str, after_seq: int) -> int:
        if seq < 1:
            raise ValueError(f"seq must be at least 1, got {seq}")
        with self._lock:
            head = self.head()[0]
            if seq > head:
                raise ConflictError(f"cannot prune through record {seq}: the log ends at record {head}")
            same = next((a for a in self._anchors if a.seq == seq), None)
            if same is not None:
                if same.hash == hash:
                    return 0
                raise ConflictError(f"record {seq} was already pruned with hash {same.hash}, not {hash}")
            if self._pruned != after_seq or seq <= after_seq:
                raise ConflictError(
                    f"the newest anchor is at record {self._pruned}, not {after_seq}: "
                    "another prune ran meanwhile; run it again"
                )
            stored = self._records[seq - 1 - self._pruned].hash
            if stored != hash:
                raise ConflictError(f"record {seq} has hash {stored}, not {hash}: nothing was deleted")
            doomed = self._records[: seq - self._pruned]
            del self._records[: seq - self._pruned]
            for record in doomed:
                self._keys.discard((record.prediction_id, record.model, record.version))
                if self._by_id.get(record.prediction_id) is record:
                    self._by_id.pop(record.prediction_id, None)
                self._explanations.pop(record.prediction_id, None)
            self._anchors.append(Anchor(seq, hash, datetime.now(UTC), export_url))
            self._pruned = seq
            return len(doomed)

    def get_policy(self, deployment: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._policies.get(deployment)
            return json.loads(json.dumps(found)) if found is not None else None

    def set_policy(self, deployment: str, policy: Mapping[str, Any] | None) -> None:
        with self._lock:
            if policy is None:
                self._policies.pop(deployment, None)
            else:
                self._policies[deployment] = json.loads(json.dumps(dict(policy)))  # as a database keeps it

    def policies(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: json.loads(json.dumps(p)) for name, p in sorted(self._policies.items())}


def _same(stored: Any, wanted: Any) -> bool:
    """JSON-value equality the way the SQL store compares: numbers as numbers, the rest as text."""
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return stored is wanted or (stored == wanted and type(stored) is type(wanted))
    if isinstance(wanted, (int, float)):
        return isinstance(stored, (int, float)) and float(stored) == float(wanted)
    return stored is not None and str(stored) == str(wanted)


class MemoryFeedbackStore:
    """Labels in a dictionary, joined to a :class:`MemoryAuditStore`."""

    def __init__(self, audit: MemoryAuditStore) -> None:
        self.audit = audit
        self._labels: dict[str, Label] = {}

    def outcomes_for(self, prediction_ids: Sequence[str]) -> dict[str, Outcome]:
        with self.audit._lock:
            found = self.audit.get_many(prediction_ids)
            return {pid: self._outcome(r) for pid, r in found.items()}

    def add_labels(self, labels: Sequence[Label]) -> None:
        with self.audit._lock:
            known = self.audit.get_many([label.prediction_id for label in labels])
            for label in labels:
                if label.prediction_id not in known:
                    raise PredictionNotFoundError(f"no recorded prediction has id {label.prediction_id}")
                old = self._labels.get(label.prediction_id)
                if old is not None and old.label != label.label:
                    raise AlreadyExistsError(f"prediction {label.prediction_id} is already labelled {old.label!r}")
            for label in labels:
                self._labels.setdefault(label.prediction_id, label)

    def outcomes(
        self,
        deployment: str,
        *,
        since: datetime,
        until: datetime,
        model: str | None = None,
        version: int | None = None,
        role: str | None = "primary",
        labelled_only: bool = False,
    ) -> list[Outcome]:
        with self.audit._lock:
            records = self.audit.search(
                deployment=deployment, model=model, version=version, since=since, until=until, limit=2**62
            )
            out = [self._outcome(r) for r in records if role is None or r.role == role]
        return [o for o in out if o.labelled] if labelled_only else out

    def scores(
        self,
        deployment: str,
        *,
        since: datetime,
        until: datetime,
        model: str | None = None,
        version: int | None = None,
        role: str | None = "primary",
    ) -> Iterator[tuple[float, ...] | None]:
        with self.audit._lock:
            records = self.audit.search(
                deployment=deployment, model=model, version=version, since=since, until=until, limit=2**62
            )
        return iter([r.probabilities for r in records if role is None or r.role == role])

    def _outcome(self, record: PredictionRecord) -> Outcome:
        label = self._labels.get(record.prediction_id)
        return Outcome(
            prediction_id=record.prediction_id,
            timestamp=record.timestamp,
            deployment=record.deployment,
            model=record.model,
            version=record.version,
            role=record.role,
            output=plain(record.output),
            probabilities=record.probabilities,
            label=label.label if label is not None else None,
            labelled=label is not None,
            latency_ms=record.latency_ms,
        )

    def close(self) -> None:
        """Nothing to release."""


_a: type[AuditStore] = MemoryAuditStore
_f: type[FeedbackStore] = MemoryFeedbackStore


class MemoryAlertStore:
    """Rules, alerts and the delivery outbox in dictionaries; one lock makes each call atomic."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._rules: dict[tuple[str, str], Rule] = {}
        self._alerts: dict[str, Alert] = {}
        self._deliveries: dict[str, Delivery] = {}
        self._held: dict[str, datetime] = {}

    def put_rule(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules[(rule.deployment, rule.name)] = rule
            return rule

    def delete_rule(self, deployment: str, name: str) -> None:
        with self._lock:
            if self._rules.pop((deployment, name), None) is None:
                raise NotFoundError(f"deployment {deployment!r} has no alert rule named {name!r}")

    def list_rules(self, deployment: str | None = None) -> list[Rule]:
        with self._lock:
            return [r for k, r in sorted(self._rules.items()) if deployment is None or k[0] == deployment]

    def open_alert(self, alert: Alert, deliveries: Sequence[Delivery]) -> Alert | None:
        with self._lock:
            if any(
                a.state == FIRING and a.deployment == alert.deployment and a.rule == alert.rule
                for a in self._alerts.values()
            ):
                return None
            self._alerts[alert.id] = alert
            self._deliveries.update((d.id, d) for d in deliveries)
            return alert

    def touch_alert(self, alert_id: str, value: float | None, at: datetime) -> None:
        with self._lock:
            alert = self._alerts.get(alert_id)
            if alert is not None and alert.state == FIRING:
                self._alerts[alert_id] = replace(alert, value=value, updated_at=at)

    def resolve_alert(self, alert_id: str, at: datetime, value: float | None, deliveries: Sequence[Delivery]) -> bool:
        with self._lock:
            alert = self._alerts.get(alert_id)
            if alert is None or alert.state != FIRING:
                return False
            self._alerts[alert_id] = replace(alert, state=RESOLVED, resolved_at=at, updated_at=at, value=value)
            self._deliveries.update((d.id, d) for d in deliveries)
            return True

    def ack_alert(self, alert_id: str, by: str, at: datetime) -> Alert:
        with self._lock:
            alert = replace(self.get_alert(alert_id), acked_by=by, acked_at=at)
            self._alerts[alert_id] = alert
            return alert

    def get_alert(self, alert_id: str) -> Alert:
        with self._lock:
            if alert_id not in self._alerts:
                raise NotFoundError(f"no alert has id {alert_id!r}")
            return self._alerts[alert_id]

    def list_alerts(
        self, *, deployment: str | None = None, state: str | None = None, rule: str | None = None, limit: int = 100
    ) -> list[Alert]:
        with self._lock:
            found = [
                a
                for a in self._alerts.values()
                if (deployment is None or a.deployment == deployment)
                and (state is None or a.state == state)
                and (rule is None or a.rule == rule)
            ]
        return sorted(found, key=lambda a: (a.opened_at, a.id), reverse=True)[:limit]

    def claim_deliveries(self, now: datetime, *, limit: int, lease_seconds: float) -> list[Delivery]:
        with self._lock:
            due = [
                d
                for d in sorted(self._deliveries.values(), key=lambda d: (d.created_at or now, d.id))
                if d.status == PENDING
                and (d.next_attempt_at is None or d.next_attempt_at <= now)
                and self._held.get(d.id, now) <= now
            ][:limit]
            for d in due:
                self._held[d.id] = now + timedelta(seconds=lease_seconds)
            return due

    def finish_delivery(
        self,
        delivery_id: str,
        *,
        status: str,
        attempts: int,
        at: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        with self._lock:
            delivery = self._deliveries.get(delivery_id)
            if delivery is None:
                raise NotFoundError(f"no alert delivery has id {delivery_id!r}")
            self._deliveries[delivery_id] = replace(
                delivery,
                status=status,
                attempts=attempts,
                last_error=error,
                next_attempt_at=next_attempt_at,
                delivered_at=at if status == DELIVERED else None,
            )
            self._held.pop(delivery_id, None)

    def list_deliveries(self, *, alert_id: str | None = None, limit: int = 100) -> list[Delivery]:
        with self._lock:
            found = [d for d in self._deliveries.values() if alert_id is None or d.alert_id == alert_id]
        return sorted(found, key=lambda d: (d.created_at or datetime.min.replace(tzinfo=UTC), d.id), reverse=True)[
            :limit
        ]

    def close(self) -> None:
        """Nothing to release."""


_al: type[AlertStore] = MemoryAlertStore


from corral.pipelines.entities import FAILED, QUEUED, RUNNING, STATES, Pipeline, Run  # noqa: E402
from corral.pipelines.ports import PipelineStore  # noqa: E402


class MemoryPipelineStore:
    """Pipelines and runs in dictionaries; one lock makes each call atomic."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pipelines: dict[str, Pipeline] = {}
        self._runs: dict[str, Run] = {}

    def put_pipeline(self, pipeline: Pipeline) -> Pipeline:
        with self._lock:
            self._pipelines[pipeline.name] = pipeline
            return pipeline

    def get_pipeline(self, name: str) -> Pipeline:
        with self._lock:
            if name not in self._pipelines:
                raise NotFoundError(f"no pipeline is named {name!r}")
            return self._pipelines[name]

    def list_pipelines(self) -> list[Pipeline]:
        with self._lock:
            return [self._pipelines[name] for name in sorted(self._pipelines)]

    def delete_pipeline(self, name: str) -> None:
        with self._lock:
            self.get_pipeline(name)
            active = self._active(name)
            if active is not None:
                raise ConflictError(
                    f"pipeline {name!r} has a {active.state} run ({active.id}); wait for it to end, then delete"
                )
            del self._pipelines[name]

    def enqueue(self, run: Run) -> Run | None:
        """As the protocol says; also raises NotFoundError for an unknown pipeline."""
        with self._lock:
            self.get_pipeline(run.pipeline)
            if run.state in (QUEUED, RUNNING) and self._active(run.pipeline) is not None:
                return None
            if run.id in self._runs:
                raise AlreadyExistsError(f"a run with id {run.id!r} is already stored; nothing was written")
            self._runs[run.id] = run
            return run

    def claim(self, worker: str, now: datetime, lease_seconds: float) -> Run | None:
        now = _utc(now)
        with self._lock:
            queued = [r for r in self._runs.values() if r.state == QUEUED]
            if not queued:
                return None
            run = min(queued, key=_run_order)
            claimed = replace(
                run,
                state=RUNNING,
                worker=worker,
                started_at=run.started_at or now,
                lease_until=now + timedelta(seconds=lease_seconds),
                attempt=run.attempt + 1,
            )
            self._runs[run.id] = claimed
            return claimed

    def renew(self, run_id: str, worker: str, lease_until: datetime, log: str | None = None) -> bool:
        with self._lock:
            run = self._held(run_id, worker)
            if run is None:
                return False
            self._runs[run_id] = replace(run, lease_until=_utc(lease_until), log=run.log if log is None else log)
            return True

    def finish(
        self, run_id: str, worker: str, *, state: str, at: datetime, reason: str, result: Mapping[str, Any], log: str
    ) -> bool:
        if state not in STATES or state in (QUEUED, RUNNING):
            raise ValueError(f"a run ends succeeded, failed or rejected, not {state!r}")
        with self._lock:
            run = self._held(run_id, worker)
            if run is None:
                return False
            self._runs[run_id] = replace(
                run, state=state, finished_at=_utc(at), reason=reason, result=json.loads(json.dumps(result)), log=log
            )
            return True

    def expire(self, now: datetime) -> list[Run]:
        now = _utc(now)
        with self._lock:
            expired = []
            for run in sorted(self._runs.values(), key=_run_order):
                if run.state == RUNNING and run.lease_until is not None and _utc(run.lease_until) < now:
                    lapsed = _utc(run.lease_until).isoformat()
                    reason = f"the worker stopped reporting (lease lapsed at {lapsed})"
                    failed = replace(run, state=FAILED, finished_at=now, reason=reason)
                    self._runs[run.id] = failed
                    expired.append(failed)
            return expired

    def get_run(self, run_id: str) -> Run:
        with self._lock:
            if run_id not in self._runs:
                raise NotFoundError(f"no pipeline run has id {run_id!r}")
            return self._runs[run_id]

    def list_runs(self, *, pipeline: str | None = None, limit: int = 50) -> list[Run]:
        with self._lock:
            found = [r for r in self._runs.values() if pipeline is None or r.pipeline == pipeline]
        return sorted(found, key=_run_order, reverse=True)[: max(limit, 0)]

    def last_run(self, pipeline: str, *, trigger: str | None = None) -> Run | None:
        with self._lock:
            found = [
                r for r in self._runs.values() if r.pipeline == pipeline and (trigger is None or r.trigger == trigger)
            ]
        return max(found, key=_run_order, default=None)

    def close(self) -> None:
        """Nothing to release."""

    def _active(self, pipeline: str) -> Run | None:
        return next((r for r in self._runs.values() if r.pipeline == pipeline and r.state in (QUEUED, RUNNING)), None)

    def _held(self, run_id: str, worker: str) -> Run | None:
        run = self._runs.get(run_id)
        return run if run is not None and run.state == RUNNING and run.worker == worker else None


def _run_order(run: Run) -> tuple[datetime, str]:
    """Oldest first: by creation, then id (as the SQL store orders them)."""
    return _utc(run.created_at), run.id


_pi: type[PipelineStore] = MemoryPipelineStore


from corral.errors import TokenNotFoundError  # noqa: E402
from corral.security.entities import Denial, Token  # noqa: E402
from corral.security.ports import TokenStore  # noqa: E402


class MemoryTokenStore:
    """API tokens (hashes) and denied attempts in lists; one lock makes each call atomic."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tokens: dict[str, Token] = {}
        self._denials: list[Denial] = []

    def add_token(self, token: Token) -> Token:
        with self._lock:
            if token.id in self._tokens:
                raise AlreadyExistsError(f"a token with id {token.id!r} exists")
            if any(t.name == token.name and t.revoked_at is None for t in self._tokens.values()):
                raise AlreadyExistsError(f"a token named {token.name!r} exists; revoke it first or pick another name")
            if any(t.hash == token.hash for t in self._tokens.values()):
                raise AlreadyExistsError("a token with this secret exists")
            stored = replace(
                token,
                created_at=_utc(token.created_at),
                expires_at=_utc(token.expires_at) if token.expires_at else None,
            )
            self._tokens[token.id] = stored
            return stored

    def get_token(self, token_id: str) -> Token:
        with self._lock:
            if token_id not in self._tokens:
                raise TokenNotFoundError(f"no token has the id {token_id!r}")
            return self._tokens[token_id]

    def find_token(self, token_hash: str) -> Token | None:
        with self._lock:
            return next((t for t in self._tokens.values() if t.hash == token_hash), None)

    def list_tokens(self) -> list[Token]:
        with self._lock:
            return sorted(self._tokens.values(), key=lambda t: (t.created_at, t.id))

    def revoke_token(self, token_id: str, *, at: datetime, by: str) -> Token:
        with self._lock:
            token = self.get_token(token_id)
            if token.revoked_at is None:
                token = replace(token, revoked_at=_utc(at), revoked_by=by)
                self._tokens[token_id] = token
            return token

    def add_denial(self, denial: Denial) -> None:
        with self._lock:
            self._denials.append(replace(denial, id=len(self._denials) + 1, at=_utc(denial.at)))

    def denials(self, *, since: datetime | None = None, limit: int = 100) -> list[Denial]:
        with self._lock:
            found = [d for d in self._denials if since is None or d.at >= _utc(since)]
            return sorted(found, key=lambda d: (d.at, d.id or 0), reverse=True)[:limit]

    def close(self) -> None:
        pass


_to: type[TokenStore] = MemoryTokenStore
