"""The deployments service: create, change and remove named endpoints."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from corral.core.refs import validate_alias, validate_name
from corral.errors import ConfigurationError, ConflictError, NotFoundError
from corral.serving.entities import BatchingPolicy, Deployment, ExecutionPolicy, GuardPolicy, Member
from corral.serving.ports import DeploymentStore

MAX_BATCH = 100_000


def check_batching(policy: BatchingPolicy) -> BatchingPolicy:
    """Refuse batching settings that cannot work, naming the setting."""
    if not 1 <= policy.max_batch_size <= MAX_BATCH:
        raise ConfigurationError(f"max_batch_size must be between 1 and {MAX_BATCH}, got {policy.max_batch_size}")
    if not 0 <= policy.max_wait_ms <= 1000:
        raise ConfigurationError(f"max_wait_ms must be between 0 and 1000, got {policy.max_wait_ms}")
    return policy


class Deployments:
    """Deployments in the store. Servers pick up every change on their next refresh."""

    def __init__(self, store: DeploymentStore, *, actor: str, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.actor = actor
        self.clock = clock or (lambda: datetime.now(UTC))

    def create(
        self,
        name: str,
        *,
        model: str,
        alias: str = "champion",
        batching: BatchingPolicy | None = None,
        description: str = "",
        actor: str | None = None,
        execution: ExecutionPolicy | None = None,
    ) -> Deployment:
        """Create a deployment serving ``model@alias``.

        Raises:
            InvalidNameError, ModelNotFoundError, AlreadyExistsError, ConfigurationError.
        """
        now = self.clock()
        deployment = Deployment(
            name=validate_name(name, what="deployment name"),
            model=validate_name(model),
            alias=validate_alias(alias),
            created_by=actor or self.actor,
            created_at=now,
            updated_at=now,
            batching=check_batching(batching or BatchingPolicy()),
            description=description,
            execution=execution or ExecutionPolicy(),
        )
        return self.store.create(deployment)

    def get(self, name: str) -> Deployment:
        return self.store.get(name)

    def list(self) -> list[Deployment]:
        return self.store.list()

    def update(
        self,
        name: str,
        *,
        alias: str | None = None,
        batching: BatchingPolicy | None = None,
        enabled: bool | None = None,
        description: str | None = None,
    ) -> Deployment:
        """Change what a deployment follows or how it batches; unchanged fields stay."""
        current = self.store.get(name)
        changed = replace(
            current,
            alias=validate_alias(alias) if alias is not None else current.alias,
            batching=check_batching(batching) if batching is not None else current.batching,
            enabled=enabled if enabled is not None else current.enabled,
            description=description if description is not None else current.description,
            updated_at=self.clock(),
        )
        return self.store.update(changed)

    def delete(self, name: str) -> None:
        self.store.delete(name)

    def set_members(self, name: str, members: Sequence[Member]) -> Deployment:
        """Replace the deployment's shadows, splits and canaries (servers follow within a refresh).

        Raises:
            ConfigurationError: a version listed twice, or splits and canaries taking 100 % or more.
        """
        checked = check_members(members)
        return self._change(name, lambda current: replace(current, members=checked))

    def add_member(self, name: str, member: Member) -> Deployment:
        """Add a member, or change the role or share of one already there."""

        def add(current: Deployment) -> Deployment:
            others = [m for m in current.members if m.key != member.key]
            return replace(current, members=check_members([*others, member]))

        return self._change(name, add)

    def set_execution(self, name: str, execution: ExecutionPolicy) -> Deployment:
        """Change where the deployment's versions run and their limits; servers reload them within a refresh."""
        return self._change(name, lambda current: replace(current, execution=execution))

    def set_guard(self, name: str, guard: GuardPolicy) -> Deployment:
        """Change when servers take a faulty member off this deployment's traffic."""
        return self._change(name, lambda current: replace(current, guard=guard))

    def remove_member(self, name: str, model: str, version: int) -> Deployment:
        """Take a version off the deployment's traffic.

        Raises:
            NotFoundError: the version is not a member.
        """

        def remove(current: Deployment) -> Deployment:
            kept = [m for m in current.members if m.key != (model, version)]
            if len(kept) == len(current.members):
                raise NotFoundError(f"deployment {name!r} has no member {model}/{version}")
            return replace(current, members=tuple(kept))

        return self._change(name, remove)

    def _change(self, name: str, change: Callable[[Deployment], Deployment], *, attempts: int = 10) -> Deployment:
        """Read, change and write back with compare-and-set, again on a conflict: concurrent changes (two
        pipeline runs adding candidates, a guard removing one) never lose each other."""
        for attempt in range(attempts):
            current = self.store.get(name)
            changed = replace(change(current), updated_at=max(self.clock(), current.updated_at))
            if changed.updated_at == current.updated_at:  # the clock did not move: keep the stamp unique
                changed = replace(changed, updated_at=current.updated_at + timedelta(microseconds=1))
            try:
                return self.store.update(changed, expected=current.updated_at)
            except ConflictError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")


def check_members(members: Sequence[Member]) -> tuple[Member, ...]:
    """Refuse member lists that cannot work, naming the problem."""
    seen: set[tuple[str, int]] = set()
    for member in members:
        if member.key in seen:
            raise ConfigurationError(f"{member.ref} is listed twice; give each version one role")
        seen.add(member.key)
    share = sum(m.percent for m in members)
    if share >= 100:
        raise ConfigurationError(f"splits and canaries take {share:g} % of the traffic; the champion needs some")
    return tuple(members)
