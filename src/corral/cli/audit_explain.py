"""``corral audit explain ID`` and ``corral audit replay ID``: why a prediction came out, and does it again.

``explain`` shows the stored explanation, or computes one now (its version loaded from the registry,
the background drawn from the inputs that version recorded) and stores it; the table lists the top
contributions by size with the base value and the check that base plus contributions give the
recorded answer. ``replay`` re-runs the stored input through the archived version and says whether
the answer is identical.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from corral.app import Services, explain_prediction
from corral.audit.explain import check_sums, output_index, top_contributions
from corral.audit.records import Explanation
from corral.audit.replay import ReplayResult, replay_recorded
from corral.cli.context import services
from corral.cli.output import console, emit_json, fields, table


def explain(
    prediction_id: Annotated[str, typer.Argument(help="The prediction's id (from the response or the log).")],
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="How many contributions to show.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
) -> None:
    """Show which features pushed a recorded prediction, and by how much (SHAP values)."""
    svc = services()
    explanation, computed = explanation_for(svc, prediction_id)
    record = svc.database.audit.get(prediction_id)
    checks = check_sums(explanation, probabilities=record.probabilities, output=record.output)
    if as_json:
        emit_json({**explanation.to_dict(), "computed": computed, "checks": [c.to_dict() for c in checks]})
        return
    k = output_index(explanation, record.output)
    check = checks[k]
    fields(
        f"Prediction {prediction_id}",
        [
            ("model", f"{record.model}/{record.version}"),
            ("output", record.output),
            ("method", explanation.method),
            ("explains", explanation.outputs[k]),
            ("base value", check.base_value),
            ("explanation", "computed now and stored" if computed else "stored"),
        ],
    )
    items = top_contributions(explanation, output=k, top=top)
    table(
        f"Top {len(items)} of {len(explanation.contributions)} contributions to {explanation.outputs[k]}",
        ["feature", "value", "contribution"],
        [(name, record.inputs.get(name), f"{value:+.6g}") for name, value in items],
    )
    console.print(_sum_line(check), markup=False)


def replay(
    prediction_id: Annotated[str, typer.Argument(help="The prediction's id (from the response or the log).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
) -> None:
    """Re-run a recorded prediction's input through the archived version that made it, and compare."""
    result = replay_for(services(), prediction_id)
    if as_json:
        emit_json(result.to_dict())
    else:
        _show_replay(result)
    if not result.identical:
        raise typer.Exit(1)


def explanation_for(svc: Services, prediction_id: str) -> tuple[Explanation, bool]:
    """The stored explanation, or one computed now (and stored); ``True`` when computed."""
    return explain_prediction(svc, prediction_id)


def replay_for(svc: Services, prediction_id: str) -> ReplayResult:
    return replay_recorded(svc.database.audit, svc.loaded, prediction_id)


def _sum_line(check: Any) -> str:
    total = f"base value + contributions = {check.total:.9g}"
    if check.link != "identity":
        total += f" ({check.link}: {check.linked:.9g})"
    if check.expected is None:
        return total + "; nothing recorded to compare with"
    verdict = "matches" if check.ok else "DOES NOT match"
    return f"{total}; {verdict} the recorded {check.expected:.9g}"


def _show_replay(result: ReplayResult) -> None:
    verdict = "identical" if result.identical else "DIFFERENT"
    fields(
        f"Replay of {result.prediction_id} on {result.model}/{result.version}: {verdict}",
        [
            ("recorded output", result.recorded_output),
            ("replayed output", result.replayed_output),
            ("recorded probabilities", _numbers(result.recorded_probabilities)),
            ("replayed probabilities", _numbers(result.replayed_probabilities)),
            ("max abs difference", result.max_abs_difference),
            ("artifact", f"{result.artifact_sha256[:12]} ({_artifact(result.artifact_matches)})"),
        ],
    )


def _numbers(values: tuple[float | None, ...] | None) -> str | None:
    return None if values is None else ", ".join("-" if v is None else f"{v:.12g}" for v in values)


def _artifact(matches: bool | None) -> str:
    return {True: "the one recorded", False: "NOT the one recorded", None: "not recorded"}[matches]
