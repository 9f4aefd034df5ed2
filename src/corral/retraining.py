"""What a pipeline run does, composed from every room: read the data, check it, train in a child process,
register the candidate with its lineage, judge it against the champion at the evaluation gate, and start
its rollout as a shadow of the deployment.

The gate scores the candidate and the champion on the same evaluation rows — the newest fifth of the
training window, held out from training, plus recent labelled production data — and compares them with
the comparison statistics (:func:`corral.monitoring.comparison.compare`: McNemar for accuracy, paired
bootstrap for ROC AUC and RMSE). The candidate passes unless it is significantly worse on the pipeline's
metric or worse by more than the pipeline's margin. A candidate that fails the gate, or whose data failed a
data-quality check, is registered (for the record) but not deployed, and the run says why.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from corral.app import Services, deployment_comparison, member_event, set_members
from corral.core.refs import ModelRef
from corral.errors import AliasNotFoundError, ConflictError, CorralError, DataFileError
from corral.monitoring.feedback import Outcome
from corral.pipelines.entities import FAILED, REJECTED, SUCCEEDED, Pipeline, Run
from corral.pipelines.worker import Outcome as RunOutcome
from corral.pipelines.worker import RunLog
from corral.serving.entities import CANARY, SHADOW, Deployment, Member

HOLDOUT = 0.2
CANDIDATE = "candidate"  # the alias a rolling-out version carries; its history records every stage
PRODUCTION_EVAL_DAYS = 7


def execute_run(services: Services, run: Run, pipeline: Pipeline, log: RunLog) -> RunOutcome:
    """Carry out one run of ``pipeline`` (see the module docstring)."""
    from corral.pipelines.sources import check_training_data, combine
    from corral.pipelines.training import train_in_subprocess

    deployment = services.deployments.get(pipeline.deployment)
    champion = services.registry.resolve(deployment.target)
    frame = combine([read_source(services, pipeline, source, log) for source in pipeline.data])
    log.write(f"data: {len(frame)} rows, {frame.shape[1]} columns from {len(pipeline.data)} source(s)")
    if frame.empty:
        return RunOutcome(FAILED, "the training data is empty: nothing to train on")
    problems = check_training_data(frame, pipeline.target, expected_columns=[*champion.signature.columns])
    for problem in problems:
        log.write(f"data check: {problem}")
    cut = max(1, int(len(frame) * (1 - HOLDOUT)))
    train, holdout = frame.iloc[:cut], frame.iloc[cut:]
    previous = {"model": champion.name, "version": champion.version, "metrics": dict(champion.lineage.metrics)}
    trained = train_in_subprocess(
        pipeline.train, train, {"params": dict(pipeline.params), "previous": previous},
        timeout_seconds=pipeline.timeout_seconds, on_log=log.child,
    )  # fmt: skip
    log.child("")
    if trained.log:
        log.write(trained.log)
    log.write(f"trained in {trained.seconds:.1f} s")
    candidate = services.registry.log_model(
        trained.model,
        name=champion.name,
        training_data=train,
        target=pipeline.target,
        params={**pipeline.params, "pipeline": pipeline.name, "run": run.id},
        source=describe_sources(pipeline),
        description=f"retrained by pipeline {pipeline.name}, run {run.id} ({run.trigger}: {run.reason})",
        tags={"pipeline": pipeline.name, "run": run.id},
        created_by=run_actor(pipeline.name, run.id),
    )
    log.write(f"registered {candidate.ref}")
    result: dict[str, Any] = {"candidate": str(candidate.ref), "champion": str(champion.ref), "data_problems": problems}
    if problems:
        return RunOutcome(REJECTED, f"{candidate.ref} is not deployed: " + "; ".join(problems), result)
    trains_on_production = any(source.get("kind") == "production" for source in pipeline.data)
    recent = pd.DataFrame() if trains_on_production else production_rows(services, pipeline)  # never rows it saw
    evaluation = pd.concat([holdout, recent], ignore_index=True)
    gate = evaluate(services, pipeline, str(champion.ref), str(candidate.ref), evaluation)
    result["gate"] = gate
    log.write(f"gate: {gate['verdict']} ({gate['reason']})")
    if not gate["passed"]:
        return RunOutcome(REJECTED, f"{candidate.ref} is not deployed: {gate['reason']}", result)
    services.deployments.add_member(deployment.name, Member(candidate.name, candidate.version, SHADOW))  # fresh read
    actor = run_actor(pipeline.name, run.id)
    _retry(
        lambda: services.registry.set_alias(
            candidate.name, CANDIDATE, candidate.version, reason=f"rollout of {deployment.name}: shadow", actor=actor
        )
    )
    log.write(f"rollout: {candidate.ref} shadows {deployment.name}")
    result["rollout"] = "shadow"
    return RunOutcome(SUCCEEDED, f"{candidate.ref} passed the gate and shadows {deployment.name}", result)


def advance_rollouts(services: Services, *, now: datetime | None = None) -> list[str]:
    """Move every pipeline's candidate one stage on when production says so, or roll it back.

    A candidate is a member of its pipeline's deployment registered by that pipeline. Its stage is its role
    (shadow, then canary at each of the pipeline's steps); the stage began at the last move of the model's
    ``candidate`` alias. Once the stage has enough labelled requests (paired with the champion's for a
    shadow), a candidate the comparison finds worse on any test is taken off the traffic (an alert says why);
    otherwise it moves to the next step, and after the last one becomes the champion. Every move is in the
    alias history, with the pipeline run as who.

    Returns one line per action taken.
    """
    now = now or datetime.now(UTC)
    actions = []
    for pipeline in services.pipelines.store.list_pipelines():
        try:
            deployment = services.deployments.get(pipeline.deployment)
        except CorralError:
            continue
        for member in deployment.members:
            version = services.registry.get_version(member.model, member.version)
            if version.tags.get("pipeline") != pipeline.name:
                continue
            run = str(version.tags.get("run", "?"))
            action = _advance(services, pipeline, (deployment.name, deployment.alias), member, run=run, now=now)
            if action:
                actions.append(action)
        left = _taken_off(services, pipeline, deployment)
        if left:
            actions.append(left)
    return actions


def _taken_off(services: Services, pipeline: Pipeline, deployment: Deployment) -> str | None:
    """A candidate of ``pipeline`` that left the traffic without being promoted (a guard rule took it off for
    its errors or latency, or a person removed it): its rollout ends as rolled back, with the reason the
    removal's alert gave, in the alias history."""
    try:
        aliases = services.registry.get_model(deployment.model).aliases
    except CorralError:
        return None
    number = aliases.get(CANDIDATE)
    if number is None or aliases.get(deployment.alias) == number:
        return None
    if any(m.key == (deployment.model, number) for m in deployment.members):
        return None
    version = services.registry.get_version(deployment.model, number)
    if version.tags.get("pipeline") != pipeline.name:
        return None
    ref = f"{deployment.model}:{number}"
    rules = {member_event(kind, deployment.model, number) for kind in ("guard", "removed")}
    why = next(
        (a.message for a in services.alerts.list_alerts(deployment=deployment.name, limit=200) if a.rule in rules),
        "it was taken off the traffic",
    )
    actor = run_actor(pipeline.name, str(version.tags.get("run", "?")))
    gone = Member(deployment.model, number, SHADOW)
    _drop_candidate(services, gone, f"rolled back from {deployment.name}: {why}", actor)
    return f"rollout of {ref} on {deployment.name} rolled back: {why}"


def _advance(
    services: Services, pipeline: Pipeline, target: tuple[str, str], member: Member, *, run: str, now: datetime
) -> str | None:
    name, alias = target
    actor = run_actor(pipeline.name, run)
    events = [e for e in services.registry.alias_history(member.model, CANDIDATE) if e.to_version == member.version]
    since = events[-1].at if events else now - timedelta(days=1)

    def this_stage(o: Outcome) -> bool:  # the champion's answers, and this member's in its current role
        return o.role == "primary" or ((o.model, o.version) == member.key and o.role == member.role)

    result = deployment_comparison(services, name, since=since, keep=this_stage, bootstrap=300)
    entry = next((v for v in result.get("versions", []) if (v["model"], v["version"]) == member.key), None)
    if entry is None or entry.get("champion"):
        return None
    comparison = entry.get("comparison") or {}
    rows = int(comparison.get("rows") or 0)
    needed = pipeline.shadow_requests if member.role == SHADOW else pipeline.step_requests
    timed_out = pipeline.stage_seconds is not None and (now - since).total_seconds() >= pipeline.stage_seconds
    if rows < needed and not (timed_out and rows > 0):
        return None
    worse = [t for t in comparison.get("tests", []) if t.get("verdict") == "worse"]
    ref = f"{member.model}:{member.version}"
    if worse:
        found = "; ".join(f"{t['metric']} {t['challenger']:.4g} vs {t['champion']:.4g}" for t in worse)
        services.deployments.remove_member(name, member.model, member.version)
        _drop_candidate(services, member, f"rolled back from {name}: {found}", actor)
        message = (
            f"rollout of {ref} on {name} rolled back at its {member.role} stage: worse than the champion ({found})"
        )
        services.alerts.raise_event(name, f"rollout:{ref}", message)
        return message
    steps = [s for s in pipeline.canary_steps if member.role == SHADOW or s > member.percent]
    if steps:
        step = steps[0]
        others = [m for m in services.deployments.get(name).members if m.key != member.key]
        set_members(services, name, [*others, Member(member.model, member.version, CANARY, step)])
        _restage(services, member, f"rollout of {name}: canary {step:g}%", actor)
        return f"{ref} on {name}: canary at {step:g}% after {rows} requests"
    services.registry.promote(
        member.model, member.version, alias=alias, reason=f"rollout of {name} completed ({rows} requests)", actor=actor
    )
    services.deployments.remove_member(name, member.model, member.version)
    _drop_candidate(services, member, f"now the {alias} of {name}", actor)
    return f"{ref} is now the {alias} of {name}"


def _restage(services: Services, member: Member, reason: str, actor: str) -> None:
    """Record a stage change in the alias history (the alias moves off and back on, with the stage as why)."""
    with contextlib.suppress(AliasNotFoundError):  # another candidate's run may have moved it meanwhile
        _retry(lambda: services.registry.remove_alias(member.model, CANDIDATE, reason="next stage", actor=actor))
    _retry(lambda: services.registry.set_alias(member.model, CANDIDATE, member.version, reason=reason, actor=actor))


def _drop_candidate(services: Services, member: Member, reason: str, actor: str) -> None:
    """Take the ``candidate`` alias off ``member`` (if it still points at it: another run may have moved it)."""
    aliases = services.registry.get_model(member.model).aliases
    if aliases.get(CANDIDATE) == member.version:
        with contextlib.suppress(AliasNotFoundError):
            _retry(lambda: services.registry.remove_alias(member.model, CANDIDATE, reason=reason, actor=actor))


def _retry(move: Callable[[], object], attempts: int = 10) -> None:
    """An alias move, again when another process moved the alias between our read and our write."""
    for attempt in range(attempts):
        try:
            move()
            return
        except ConflictError:
            if attempt == attempts - 1:
                raise


def read_source(services: Services, pipeline: Pipeline, source: Any, log: RunLog) -> pd.DataFrame:
    """One data source as a frame: a file or glob, a SQL query, or labelled production data."""
    from corral.pipelines.sources import read_file_source

    kind = source.get("kind")
    if kind == "file":
        return read_file_source(str(source["path"]))
    if kind == "sql":
        from corral.storage.query import read_query

        return read_query(str(source["url"]), str(source["query"]))
    if kind == "production":
        window = float(source.get("window_seconds", 30 * 86400))
        return production_rows(services, pipeline, seconds=window)
    raise DataFileError(f"data source kind {kind!r} is not file, sql or production")


def production_rows(services: Services, pipeline: Pipeline, *, seconds: float | None = None) -> pd.DataFrame:
    """The deployment's answered requests with their feedback labels over the last ``seconds`` (default: the
    gate's evaluation window), as training rows: the recorded inputs plus the label as the target."""
    until = datetime.now(UTC)
    since = until - timedelta(seconds=seconds if seconds is not None else PRODUCTION_EVAL_DAYS * 86400)
    outcomes = services.database.feedback.outcomes(pipeline.deployment, since=since, until=until, labelled_only=True)
    if not outcomes:
        return pd.DataFrame()
    records = services.database.audit.get_many([o.prediction_id for o in outcomes])
    rows = []
    for o in outcomes:
        record = records.get(o.prediction_id)
        if record is not None:
            rows.append({**record.inputs, pipeline.target: o.label})
    return pd.DataFrame(rows)


def evaluate(
    services: Services, pipeline: Pipeline, champion: str, candidate: str, rows: pd.DataFrame
) -> dict[str, Any]:
    """Score both versions on ``rows`` and compare them on the same labelled rows (the gate's decision)."""
    from corral.monitoring.comparison import compare
    from corral.monitoring.performance import HIGHER_IS_BETTER

    if rows.empty:
        return {"passed": False, "verdict": "no evaluation data", "reason": "no held-out or labelled production rows"}
    features, labels = rows.drop(columns=[pipeline.target]), rows[pipeline.target].tolist()
    outcomes = []
    now = datetime.now(UTC)
    for role, ref in (("primary", champion), ("shadow", candidate)):
        loaded = services.registry.load(ref)
        predicted = loaded.predict_frame(features)
        proba_columns = [c for c in predicted.columns if c.startswith("proba_")]
        probabilities = predicted[proba_columns].to_numpy() if proba_columns else None
        version = loaded.version
        for i, value in enumerate(predicted["prediction"].tolist()):
            outcomes.append(
                Outcome(
                    prediction_id=f"eval-{i}",
                    timestamp=now,
                    deployment=pipeline.deployment,
                    model=version.name,
                    version=version.version,
                    role=role,
                    output=value.item() if isinstance(value, np.generic) else value,
                    probabilities=tuple(float(p) for p in probabilities[i]) if probabilities is not None else None,
                    label=labels[i],
                    labelled=True,
                )
            )
    spec = services.registry.resolve(champion).signature.outputs
    result = compare(outcomes, task=str(spec.task), classes=spec.classes, bootstrap=500)
    versions = [v for v in result["versions"] if not v.get("champion")]
    comparison = versions[0].get("comparison") or {}
    tests = {t["metric"]: t for t in comparison.get("tests", [])}
    metric = pipeline.metric
    test = tests.get(metric)
    ours = (comparison.get("challenger") or {}).get(metric) or {}
    theirs = (comparison.get("champion") or {}).get(metric) or {}
    if ours.get("value") is None or theirs.get("value") is None:
        return {"passed": False, "verdict": "not comparable", "reason": f"{metric} is undefined on the evaluation rows"}
    difference = float(ours["value"]) - float(theirs["value"])
    better_is_higher = HIGHER_IS_BETTER.get(metric, True)
    shortfall = -difference if better_is_higher else difference
    significant = test is not None and test.get("verdict") == "worse"
    passed = not significant and shortfall <= pipeline.margin
    reason = (
        f"{metric} {ours['value']:.4g} vs the champion's {theirs['value']:.4g} on {comparison.get('rows')} rows"
        + (f" ({test['test']}, p={test['p_value']:.3g})" if test and test.get("p_value") is not None else "")
        + ("" if passed else (": significantly worse" if significant else f": worse by more than {pipeline.margin:g}"))
    )
    return {
        "passed": passed,
        "verdict": "pass" if passed else "fail",
        "reason": reason,
        "metric": metric,
        "candidate": ours["value"],
        "champion": theirs["value"],
        "difference": difference,
        "test": test,
        "rows": comparison.get("rows"),
    }


def describe_sources(pipeline: Pipeline) -> str:
    parts = []
    for source in pipeline.data:
        kind = source.get("kind")
        if kind == "file":
            parts.append(str(source.get("path")))
        elif kind == "sql":
            parts.append(f"sql: {source.get('query')}")
        else:
            parts.append(f"production labels of {pipeline.deployment}")
    return "; ".join(parts)


def run_actor(pipeline: str, run_id: str) -> str:
    """Who a run's registrations and alias moves name: ``pipeline:<name>/<run id>``."""
    return f"pipeline:{pipeline}/{run_id}"


def describe_pipeline(services: Services, pipeline: Pipeline, *, runs: int) -> dict[str, Any]:
    """A pipeline's definition with ``next_run_at`` and ``last_run``, and its ``runs`` newest runs if asked."""
    store = services.pipelines.store
    recent = store.list_runs(pipeline=pipeline.name, limit=max(runs, 1))
    described = {
        **pipeline.to_dict(),
        "next_run_at": services.pipelines.next_run_at(pipeline),
        "last_run": recent[0].to_dict() if recent else None,
    }
    if runs:
        described["runs"] = [r.to_dict() for r in recent]
    return described


def rollout_of(services: Services, run: Run) -> list[dict[str, Any]]:
    """The candidate's rollout as its model's alias history records it: every move this run made (shadow, each
    canary step, champion, or the rollback), oldest first."""
    if run.candidate is None:
        return []
    try:
        events = services.registry.alias_history(ModelRef.parse(run.candidate).name)
    except CorralError:  # the model was deleted since, or the result is not a reference
        return []
    return [e.to_dict() for e in events if e.actor == run_actor(run.pipeline, run.id)]
