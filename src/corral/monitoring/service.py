"""A deployment version's monitoring snapshot: drift and data quality of its latest window, and its
performance, realized on the labelled rows and estimated (CBPE) on all of them.

:class:`Monitor` is what the API, the CLI and the alert loop read; :func:`readings` flattens a snapshot
into the metric values alert rules judge.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from corral.core.profile import Profile
from corral.core.readings import Reading
from corral.core.schema import OutputSpec, Task
from corral.errors import SchemaError
from corral.monitoring.feedback import Outcome
from corral.monitoring.ports import FeedbackStore, MonitoringStore

if TYPE_CHECKING:
    from corral.monitoring.aggregator import DeploymentWindow
    from corral.monitoring.config import MonitoringConfig
    from corral.monitoring.quality import QualityThresholds


@dataclass(frozen=True, slots=True)
class VersionFacts:
    """What monitoring needs to know about a model version."""

    profile: Profile | None
    outputs: OutputSpec
    metrics: Mapping[str, float] = field(default_factory=dict)


Describe = Callable[[str, int], VersionFacts]


class Monitor:
    """Reads windows and labelled predictions into snapshots.

    Args:
        windows: the production windows.
        feedback: recorded predictions joined to their labels (``None``: no performance section).
        describe: a version's reference profile, outputs and registered metrics.
        bootstrap: resamples for the realized metrics' confidence intervals.
    """

    def __init__(
        self,
        windows: MonitoringStore,
        feedback: FeedbackStore | None,
        describe: Describe,
        *,
        thresholds: QualityThresholds | None = None,
        bootstrap: int = 100,
    ) -> None:
        self.windows = windows
        self.feedback = feedback
        self.describe = describe
        self.thresholds = thresholds
        self.bootstrap = bootstrap

    def snapshot(
        self, deployment: str, model: str, version: int, *, window: int, reference: str = "training"
    ) -> dict[str, Any]:
        """The latest ``window``-second window of ``model/version`` on ``deployment``, judged."""
        head: dict[str, Any] = {"deployment": deployment, "model": model, "version": version, "window_seconds": window}
        facts = self.describe(model, version)
        windows = self.windows.get_windows(deployment, length=window, model=model, version=version)
        if not windows or facts.profile is None:
            empty: dict[str, Any] = {"window": None, "features": [], "outputs": [], "quality_issues": []}
            return {**head, **empty, "performance": None, "reason": _why(facts)}
        from corral.monitoring.status import choose_reference, status  # scipy: imported when first needed

        latest = windows[-1]
        profile = choose_reference(facts.profile, windows, reference)
        config = self.config(deployment)
        judged = status(profile, latest, detectors=config.choice(), thresholds=config.quality)
        out = {**head, "reference": reference, **judged}
        since, until = latest.key.start_time, latest.key.end_time
        out["performance"] = self.performance(deployment, model, version, facts, window=(since, until))
        return out

    def history(
        self, deployment: str, model: str, version: int, *, window: int, limit: int = 48, reference: str = "training"
    ) -> dict[str, Any]:
        """Drift per feature and output in each of the last ``limit`` stored ``window``-second windows of
        ``model/version`` on ``deployment``, judged as :meth:`snapshot` judges the latest one
        (see :func:`corral.monitoring.history.drift_history` for the shape).

        Raises:
            SchemaError: ``limit`` is not a positive whole number, or a ``reference`` no stored window starts at.
        """
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise SchemaError(f"limit must be a whole number of windows >= 1, got {limit!r}")
        head: dict[str, Any] = {"deployment": deployment, "model": model, "version": version, "window_seconds": window}
        facts = self.describe(model, version)
        windows = self.windows.get_windows(deployment, length=window, model=model, version=version)
        if not windows or facts.profile is None:
            empty: dict[str, Any] = {"windows": [], "features": {}, "drifted": {}}
            empty["outputs"] = {"scores": {}, "drifted": {}}
            return {**head, **empty, "threshold_score": 1.0, "reason": _why(facts)}
        from corral.monitoring.history import drift_history  # scipy: imported when first needed
        from corral.monitoring.status import choose_reference

        profile = choose_reference(facts.profile, windows, reference)
        judged = drift_history(profile, windows[-limit:], detectors=self.config(deployment).choice())
        return {**head, "reference": reference, **judged}

    def histograms(
        self,
        deployment: str,
        model: str,
        version: int,
        *,
        window: int,
        start: datetime | None = None,
        reference: str = "training",
    ) -> dict[str, Any]:
        """The reference's and a window's histograms per feature and output: the ``window``-second window
        starting at ``start`` (a naive time is UTC), or the latest one (see
        :func:`corral.monitoring.history.histograms` for each entry).

        Raises:
            SchemaError: no stored window starts at ``start``, or a ``reference`` no stored window starts at.
        """
        head: dict[str, Any] = {"deployment": deployment, "model": model, "version": version, "window_seconds": window}
        facts = self.describe(model, version)
        windows = self.windows.get_windows(deployment, length=window, model=model, version=version)
        if facts.profile is None or (not windows and start is None):
            return {**head, "window": None, "histograms": [], "reason": _why(facts)}
        if start is None:
            chosen = windows[-1]
        else:
            at = (start if start.tzinfo else start.replace(tzinfo=UTC)).timestamp()
            found = [w for w in windows if w.key.start == at]
            if not found:
                raise SchemaError(
                    f"no {window}-second window of {model}/{version} on {deployment!r} starts at {start.isoformat()}"
                    f" ({len(windows)} stored{_span(windows)}; they start at multiples of {window} seconds, UTC)"
                )
            chosen = found[0]
        from corral.monitoring.history import histograms
        from corral.monitoring.status import choose_reference

        profile = choose_reference(facts.profile, windows, reference)
        key = chosen.key
        shown = {"start": key.start, "start_time": key.start_time.isoformat(), "end_time": key.end_time.isoformat()}
        return {
            **head,
            "reference": reference,
            "window": {**shown, "rows": chosen.rows},
            "histograms": histograms(profile, chosen),
        }

    def config(self, deployment: str) -> MonitoringConfig:
        """The deployment's monitoring configuration (the defaults until one is set)."""
        from corral.monitoring.config import MonitoringConfig  # scipy, via the detectors

        stored = self.windows.get_config(deployment)
        if stored is None:
            return MonitoringConfig(quality=self.thresholds) if self.thresholds is not None else MonitoringConfig()
        return MonitoringConfig.from_dict(stored)

    def configure(self, deployment: str, config: Mapping[str, Any] | None) -> MonitoringConfig:
        """Validate and store ``config`` (a partial one keeps the defaults for what it leaves out);
        ``None`` goes back to the defaults.

        Raises:
            MonitoringError, SchemaError: an unknown kind, detector or setting, or a bad threshold (named).
        """
        if config is None:
            self.windows.set_config(deployment, None)
            return self.config(deployment)
        from corral.monitoring.config import MonitoringConfig

        parsed = MonitoringConfig.from_dict(config)
        self.windows.set_config(deployment, parsed.to_dict())
        return parsed

    def performance(
        self, deployment: str, model: str, version: int, facts: VersionFacts, *, window: tuple[datetime, datetime]
    ) -> dict[str, Any] | None:
        """Realized and estimated quality of the version's predictions made in ``[since, until)`` (``window``).

        Only the labelled rows are read as :class:`Outcome` objects; CBPE gets the others' probabilities as one
        array (:meth:`FeedbackStore.scores`). The alert loop judges the latest hour every minute: an Outcome
        per row of it grew a busy server's memory by about half a kilobyte per row served that hour.
        """
        if self.feedback is None:
            return None
        since, until = window
        labelled = self.feedback.outcomes(
            deployment, since=since, until=until, model=model, version=version, labelled_only=True
        )
        rows, scored = _scores(self.feedback.scores(deployment, since=since, until=until, model=model, version=version))
        return performance(labelled, facts, bootstrap=self.bootstrap, rows=rows, scored=scored)


def _why(facts: VersionFacts) -> str:
    return "no reference profile for this version" if facts.profile is None else "no traffic recorded yet"


def _span(windows: list[DeploymentWindow]) -> str:
    if not windows:
        return ""
    first, last = windows[0].key.start_time.isoformat(), windows[-1].key.start_time.isoformat()
    return f", from {first} to {last}"


def performance(
    outcomes: list[Outcome],
    facts: VersionFacts,
    *,
    bootstrap: int = 100,
    rows: int | None = None,
    scored: np.ndarray | None = None,
) -> dict[str, Any]:
    """Realized metrics on the labelled outcomes, CBPE estimates on all of them, and the registered figures.

    ``rows`` (how many predictions in all) and ``scored`` (the probabilities of those that have them) stand in
    for the unlabelled outcomes when given, so that ``outcomes`` need only hold the labelled ones.
    """
    from corral.monitoring import performance as perf  # scikit-learn: imported when first needed

    labelled = [o for o in outcomes if o.labelled]
    if rows is None:
        rows = len(outcomes)
    if scored is None:
        scored = _probabilities([o for o in outcomes if o.probabilities is not None])
    out: dict[str, Any] = {"rows": rows, "labelled": len(labelled), "realized": {}, "estimated": {}}
    spec = facts.outputs
    if spec.task == Task.CLASSIFICATION and spec.classes is not None:
        classes = list(spec.classes)
        if labelled:
            proba = _probabilities(labelled)
            realized = perf.classification_metrics(
                [o.label for o in labelled], [o.output for o in labelled], classes, proba, bootstrap=bootstrap
            )
            out["realized"] = {k: m.to_dict() for k, m in realized.items()}
        if scored is not None and len(scored):
            estimated = perf.estimate_classification(scored, classes)
            out["estimated"] = {k: m.to_dict() for k, m in estimated.items()}
    elif labelled:
        realized = perf.regression_metrics(
            [float(o.label) for o in labelled], [float(o.output) for o in labelled], bootstrap=bootstrap
        )
        out["realized"] = {k: m.to_dict() for k, m in realized.items()}
    registered = {k: float(v) for k, v in facts.metrics.items() if k in perf.HIGHER_IS_BETTER}
    out["registered"] = registered
    current = {k: perf.Metric.from_dict(v) for k, v in out["realized"].items()}
    out["compared_to_registered"] = perf.compare_to_registered(current, registered) if current else {}
    return out


def _scores(found: Iterable[tuple[float, ...] | None], chunk: int = 10_000) -> tuple[int, np.ndarray | None]:
    """How many rows ``found`` gives, and the probabilities of those that have them as one array, built a chunk
    at a time (a tuple kept per row of a busy hour costs several times the array)."""
    rows = 0
    parts: list[np.ndarray] = []
    pending: list[tuple[float, ...]] = []
    for probabilities in found:
        rows += 1
        if probabilities is not None:
            pending.append(probabilities)
            if len(pending) == chunk:
                parts.append(np.asarray(pending, dtype="float64"))
                pending = []
    if pending:
        parts.append(np.asarray(pending, dtype="float64"))
    return rows, np.concatenate(parts) if parts else None


def _probabilities(outcomes: list[Outcome]) -> np.ndarray | None:
    if not outcomes or any(o.probabilities is None for o in outcomes):
        return None
    return np.asarray([o.probabilities for o in outcomes], dtype="float64")


def readings(snapshot: Mapping[str, Any]) -> dict[str, Reading]:
    """The metric values a snapshot gives, by the names alert rules use (see :data:`corral.alerts.entities.METRICS`)."""
    window = snapshot.get("window")
    if not window:
        return {}
    rows = int(window["rows"])
    start = datetime.fromisoformat(window["start_time"])
    out: dict[str, Reading] = {"rows": Reading(rows, rows, start)}
    features = snapshot.get("features", [])
    judged = [f for f in features if f.get("drift")]
    drifted = [f for f in judged if f["drift"]["drifted"]]
    if judged:
        names = ", ".join(f["name"] for f in drifted) or None
        out["drifted_features"] = Reading(len(drifted), rows, start, names)
        out["drifted_share"] = Reading(len(drifted) / len(judged), rows, start, names)
    for f in judged:
        out[f"drift_score:{f['name']}"] = Reading(f["drift"]["score"], rows, start)
    for f in features:
        quality = f.get("quality", {})
        out[f"missing_rate:{f['name']}"] = Reading(quality.get("missing_rate"), rows, start)
    outputs = [o for o in snapshot.get("outputs", []) if o.get("drift")]
    if outputs:
        out["prediction_drift"] = Reading(float(any(o["drift"]["drifted"] for o in outputs)), rows, start)
    issues = snapshot.get("quality_issues", [])
    critical = [i for i in issues if i["severity"] == "critical"]
    out["quality_issues"] = Reading(len(issues), rows, start, _messages(issues))
    out["critical_quality_issues"] = Reading(len(critical), max(rows, 1), start, _messages(critical))
    performance = snapshot.get("performance") or {}
    labelled, scored = int(performance.get("labelled", 0)), int(performance.get("rows", 0))
    for name, metric in performance.get("realized", {}).items():
        out[name] = Reading(metric.get("value"), labelled, start)
    for name, metric in performance.get("estimated", {}).items():
        out[f"estimated_{name}"] = Reading(metric.get("value"), scored, start)
    registered = performance.get("registered", {}).get("accuracy")
    if registered is not None:
        for key, samples in (("accuracy", labelled), ("estimated_accuracy", scored)):
            current = out.get(key)
            if current is not None and current.value is not None:
                out[f"{'estimated_' if key.startswith('estimated') else ''}accuracy_drop"] = Reading(
                    registered - current.value, samples, start
                )
    return out


def _messages(issues: list[dict[str, Any]], most: int = 3) -> str | None:
    shown = "; ".join(str(i["message"]) for i in issues[:most])
    return (shown + (f" (and {len(issues) - most} more)" if len(issues) > most else "")) or None
