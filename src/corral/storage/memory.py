"""In-process stores: for tests, notebooks and ``memory:`` URLs.

It keeps the same rules as the SQL store (the contract suite runs on both),
with one lock standing in for database transactions.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from corral.audit.ports import AuditStore
from corral.audit.records import GENESIS, PredictionRecord, plain
from corral.core.profile import Profile
from corral.errors import (
    AliasNotFoundError,
    AlreadyExistsError,
    ConflictError,
    DeploymentNotFoundError,
    ModelNotFoundError,
    PredictionNotFoundError,
    VersionArchivedError,
    VersionInUseError,
    VersionNotFoundError,
)
from corral.monitoring.aggregator import DeploymentWindow, WindowKey, merge_all
from corral.monitoring.feedback import Label, Outcome
from corral.monitoring.ports import FeedbackStore, MonitoringStore
from corral.registry.entities import AliasAction, AliasEvent, ModelVersion, RegisteredModel, VersionStatus
from corral.registry.ports import ANY, RegistryStore
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

    def create_version(self, draft: ModelVersion, profile: Profile | None) -> ModelVersion:
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
            )
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
            if expected is not ANY and expected != current:
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

    def update(self, deployment: Deployment) -> Deployment:
        with self._lock:
            current = self.get(deployment.name)
            updated = replace(
                current,
                alias=deployment.alias,
                enabled=deployment.enabled,
                batching=deployment.batching,
                description=deployment.description,
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
        self._by_id: dict[str, PredictionRecord] = {}

    def append(self, records: Sequence[PredictionRecord]) -> list[PredictionRecord]:
        with self._lock:
            ids = [r.prediction_id for r in records]
            clash = [pid for pid in ids if pid in self._by_id] or (ids if len(set(ids)) < len(ids) else [])
            if clash:
                raise AlreadyExistsError(f"prediction id {clash[0]} is already recorded; nothing was written")
            seq, prev = self.head()
            stored = []
            for record in records:
                seq += 1
                placed = PredictionRecord.from_dict(record.chained(seq, prev).to_dict())  # as a database keeps it
                prev = placed.hash
                stored.append(placed)
            self._records.extend(stored)
            self._by_id.update((r.prediction_id, r) for r in stored)
            return stored

    def get(self, prediction_id: str) -> PredictionRecord:
        with self._lock:
            if prediction_id not in self._by_id:
                raise PredictionNotFoundError(f"no recorded prediction has id {prediction_id!r}")
            return self._by_id[prediction_id]

    def get_many(self, prediction_ids: Sequence[str]) -> dict[str, PredictionRecord]:
        with self._lock:
            return {pid: self._by_id[pid] for pid in prediction_ids if pid in self._by_id}

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
    ) -> list[PredictionRecord]:
        with self._lock:
            found = (
                r
                for r in self._records[after_seq:]
                if (deployment is None or r.deployment == deployment)
                and (model is None or r.model == model)
                and (version is None or r.version == version)
                and (since is None or r.timestamp >= since)
                and (until is None or r.timestamp < until)
            )
            return list(itertools.islice(found, limit))

    def scan(self, *, after_seq: int = 0, chunk: int = 5000) -> Iterator[PredictionRecord]:
        with self._lock:
            records = list(self._records[after_seq:])
        yield from records

    def head(self) -> tuple[int, str]:
        with self._lock:
            return (len(self._records), self._records[-1].hash) if self._records else (0, GENESIS)

    def close(self) -> None:
        """Nothing to release."""

    def replace_record(self, seq: int, record: PredictionRecord) -> None:
        """Overwrite a stored record (for tamper-detection tests only)."""
        with self._lock:
            self._records[seq - 1] = record
            self._by_id[record.prediction_id] = record


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
        role: str = "primary",
        labelled_only: bool = False,
    ) -> list[Outcome]:
        with self.audit._lock:
            records = self.audit.search(
                deployment=deployment, model=model, version=version, since=since, until=until, limit=2**62
            )
            out = [self._outcome(r) for r in records if r.role == role]
        return [o for o in out if o.labelled] if labelled_only else out

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
        )

    def close(self) -> None:
        """Nothing to release."""


_a: type[AuditStore] = MemoryAuditStore
_f: type[FeedbackStore] = MemoryFeedbackStore
