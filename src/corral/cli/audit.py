"""``corral audit ...``: verify the prediction log, find and show predictions, export them for a regulator.

``verify`` exits 1 when anything does not match (the first problem is printed with its record's id);
``show`` prints a prediction with the lineage of the version that made it; ``search`` and ``export``
take the same filters (deployment, model, version, time range, output value, input field values).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from corral.audit.checkpoints import Checkpointer
from corral.audit.records import PredictionRecord
from corral.audit_log import audit_folder, checkpoint_url, prediction_detail, signer, verify_log
from corral.cli.context import services
from corral.cli.output import console, emit_json, errors, fields, table, when
from corral.errors import ConfigurationError, StoreError

app = typer.Typer(
    help="The prediction log: verify its hash chain, find and show predictions, export them.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
EXPORT_FORMATS = (".csv", ".parquet", ".jsonl")
PAGE = 1000


@app.command()
def verify(
    from_seq: Annotated[int, typer.Option("--from", min=1, help="First record to check (sequence number).")] = 1,
    to_seq: Annotated[
        int | None, typer.Option("--to", min=1, help="Last record to check; default the newest.", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-walk the hash chain and check it against the signed checkpoints; exit 1 when anything does not match.

    The first problem (altered, missing, inserted, reordered record; a rewritten chain; a bad or missing
    checkpoint) is printed last, on stderr, with its record's sequence number and prediction id.
    """
    report = verify_log(services(), from_seq=from_seq, to_seq=to_seq)
    if as_json:
        emit_json(report.to_dict())
    elif report.ok:
        console.print(
            f"OK: {report.checked} records match (records {report.started_after + 1} to {report.last_seq}); "
            f"{report.checkpoints_matched} signed checkpoints agree "
            f"({report.checkpoints} in the database, {report.external_checkpoints} in {report.external_url})",
            markup=False,
        )
    else:
        for problem in report.problems[1:]:
            errors.print(f"also {problem.kind}: {problem.message}", markup=False)
    if not report.ok:
        first = report.problems[0]
        where = f" at record {first.seq}" if first.seq is not None else ""
        where += f" (prediction {first.prediction_id})" if first.prediction_id else ""
        raise StoreError(
            f"the prediction log does not verify ({report.checked} records checked after record "
            f"{report.started_after}): {first.kind}{where}: {first.message}"
        )


@app.command("public-key")
def public_key() -> None:
    """Print the Ed25519 public key (PEM) that checks the log's checkpoints; give it to auditors."""
    print(signer(services()).public_pem(), end="")


@app.command()
def checkpoint() -> None:
    """Sign the log's newest record now, in the database and outside it."""
    svc = services()
    made = Checkpointer(svc.database.audit, signer(svc), checkpoint_url(svc)).checkpoint_now()
    if made is None:
        console.print("The prediction log is empty: nothing to checkpoint.")
        return
    console.print(f"Checkpoint of record {made.seq} ({made.hash}) signed by key {made.key_id}", markup=False)


@app.command()
def show(
    prediction_id: Annotated[str, typer.Argument(help="The prediction id (as returned with the prediction).")],
    as_json: JsonOpt = False,
) -> None:
    """A recorded prediction and the lineage of the version that made it."""
    detail = prediction_detail(services(), prediction_id)
    if as_json:
        emit_json(detail)
        return
    record = detail["record"]
    fields(
        f"Prediction {escape(prediction_id)}",
        [
            ("recorded", f"{record['timestamp']} (record {record['seq']})"),
            ("deployment", escape(record["deployment"])),
            ("model", f"{escape(record['model'])}/{record['version']} ({record['role']})"),
            ("output", json.dumps(record["output"])),
            ("probabilities", record["probabilities"]),
            ("inputs", {escape(k): v for k, v in record["inputs"].items()}),
            (
                "anomaly",
                f"{record['anomaly_score']} (flagged)" if record["anomaly_flagged"] else record["anomaly_score"],
            ),
            ("out of range", record["out_of_range"]),
            ("request", record["request_id"]),
            ("caller", escape(record["caller"]) if record["caller"] else None),
            ("latency ms", record["latency_ms"]),
            ("hash", record["hash"]),
        ],
    )
    version = detail["version"]
    if version is None:
        console.print(f"Version: {detail['version_error']}", markup=False)
        return
    lineage = version["lineage"]
    data = lineage.get("data") or {}
    fields(
        f"Version {escape(version['name'])}/{version['version']}",
        [
            ("status", version["status"]),
            (
                "artifact sha256",
                version["artifact_sha256"] + ("" if version["artifact_matches_record"] else " (≠ record!)"),
            ),
            ("training data sha256", data.get("sha256")),
            ("training data", f"{data['rows']} rows × {data['columns']} columns" if data else None),
            ("data source", data.get("source")),
            (
                "code commit",
                (lineage["code_commit"] or "-") + (" (uncommitted changes)" if lineage["code_dirty"] else ""),
            ),
            ("params", lineage["params"]),
            ("metrics", lineage["metrics"]),
            ("registered", f"{version['created_at']} by {version['created_by']}"),
        ],
    )
    if version["aliases"]:
        table(
            "Alias moves involving this version",
            ["when", "alias", "action", "from", "to", "who", "reason"],
            [
                (
                    when(datetime.fromisoformat(e["at"])),
                    escape(e["alias"]),
                    e["action"],
                    e["from_version"],
                    e["to_version"],
                    escape(e["actor"]),
                    escape(e["reason"]),
                )
                for e in version["aliases"]
            ],
        )
    else:
        console.print("No alias ever pointed at this version.")


# -- search and export ------------------------------------------------------------------------------

DeploymentOpt = Annotated[str | None, typer.Option("--deployment", "-d", help="Only this deployment's.")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Only this model's.")]
VersionOpt = Annotated[int | None, typer.Option("--version", "-v", help="Only this version's (with --model).")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="From this ISO time (inclusive; no zone = UTC).")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Before this ISO time (exclusive).")]
OutputOpt = Annotated[str | None, typer.Option("--output", help="Only this output value (JSON or text).")]
FieldOpt = Annotated[list[str] | None, typer.Option("--field", help="NAME=VALUE: an input field's value (repeatable).")]


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"not an ISO 8601 time such as 2024-05-01T12:00:00Z: {text!r}", param_hint=option
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _filters(
    deployment: str | None,
    model: str | None,
    version: int | None,
    since: str | None,
    until: str | None,
    output: str | None,
    field: list[str] | None,
) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for item in field or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE (e.g. customer_id=C-1)", param_hint="--field")
        pairs[name.strip()] = _value(value)
    return {
        "deployment": deployment,
        "model": model,
        "version": version,
        "since": _time(since, "--since"),
        "until": _time(until, "--until"),
        "output": _value(output) if output is not None else None,
        "fields": pairs,
    }


@app.command()
def search(
    deployment: DeploymentOpt = None,
    model: ModelOpt = None,
    version: VersionOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    output: OutputOpt = None,
    field: FieldOpt = None,
    after: Annotated[int, typer.Option("--after", min=0, help="Continue after this record (from the last page).")] = 0,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="Most records to show.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Recorded predictions matching every filter, in log order, a page at a time."""
    filters = _filters(deployment, model, version, since, until, output, field)
    found = services().database.audit.search(**filters, after_seq=after, limit=limit)
    following = found[-1].seq if len(found) == limit else None
    if as_json:
        emit_json({"records": [r.to_dict() for r in found], "next_after": following})
        return
    if not found:
        console.print("No recorded predictions match.")
        return
    table(
        f"Predictions ({len(found)})",
        ["seq", "time", "id", "deployment", "version", "output", "inputs"],
        [
            (
                r.seq,
                r.timestamp,
                r.prediction_id,
                escape(r.deployment),
                escape(f"{r.model}/{r.version}"),
                escape(json.dumps(r.output)),
                escape(_short(r.inputs)),
            )
            for r in found
        ],
    )
    if following is not None:
        console.print(f"More: add --after {following}", markup=False)


def _short(inputs: Any, width: int = 60) -> str:
    text = ", ".join(f"{k}={v}" for k, v in inputs.items())
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="The file to write: .csv, .parquet or .jsonl.")],
    deployment: DeploymentOpt = None,
    model: ModelOpt = None,
    version: VersionOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    output: OutputOpt = None,
    field: FieldOpt = None,
) -> None:
    """Write every matching prediction to a file; CSV and Parquet put each input in an ``input.<name>`` column."""
    suffix = out.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ConfigurationError(f"cannot export to {out.name!r}: the file must end in {', '.join(EXPORT_FORMATS)}")
    filters = _filters(deployment, model, version, since, until, output, field)
    store = services().database.audit

    def pages() -> Iterator[list[PredictionRecord]]:
        after = 0
        while True:
            page = store.search(**filters, after_seq=after, limit=PAGE)
            if page:
                yield page
            if len(page) < PAGE:
                return
            after = page[-1].seq

    out.parent.mkdir(parents=True, exist_ok=True)
    count = _write_jsonl(out, pages()) if suffix == ".jsonl" else _write_table(out, suffix, pages())
    console.print(f"Exported {count} predictions to {out}", markup=False)


def _write_jsonl(out: Path, pages: Iterator[list[PredictionRecord]]) -> int:
    count = 0
    with open(out, "w", encoding="utf-8") as fh:
        for page in pages:
            for record in page:
                fh.write(json.dumps(record.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
                count += 1
    return count


def _flat(record: PredictionRecord) -> dict[str, Any]:
    data = record.to_dict()
    inputs = data.pop("inputs")
    data.pop("format", None)
    data["output"] = json.dumps(data["output"])  # outputs of several models mix types: one text column
    data["probabilities"] = json.dumps(data["probabilities"]) if data["probabilities"] is not None else None
    data["out_of_range"] = ",".join(data["out_of_range"])
    data.update({f"input.{k}": (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in inputs.items()})
    return data


def _write_table(out: Path, suffix: str, pages: Iterator[list[PredictionRecord]]) -> int:
    import pandas as pd

    rows = [_flat(record) for page in pages for record in page]
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        kinds = {type(v) for v in frame[column] if v is not None and not pd.isna(v)}
        if len(kinds) > 1:  # an input whose type differs between models: text keeps every value
            frame[column] = [None if v is None else str(v) for v in frame[column]]
    if suffix == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    return len(rows)


@app.command()
def policy(
    deployment: Annotated[str, typer.Argument(help="Deployment name.")],
    retention_days: Annotated[int | None, typer.Option(help="Keep records this many days (default 183).")] = None,
    keep_forever: Annotated[
        bool, typer.Option("--keep-forever", help="Never prune this deployment's records.")
    ] = False,
    hash_field: Annotated[list[str] | None, typer.Option("--hash", help="Store this input field hashed.")] = None,
    redact: Annotated[list[str] | None, typer.Option(help="Do not store this input field's value.")] = None,
    encrypt: Annotated[
        list[str] | None, typer.Option(help="Store this input field encrypted with the data subject's key.")
    ] = None,
    subject_field: Annotated[str | None, typer.Option(help="The input field naming the data subject.")] = None,
    explain: Annotated[
        str | None, typer.Option(help="Explain predictions as they are recorded: on_demand, always or sampled:N%.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Back to the defaults.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show or set what the log keeps of a deployment's predictions: retention, hashed, redacted or encrypted
    fields, and explanations. Options given replace those parts; the rest is kept."""
    from corral.app import audit_secret
    from corral.audit.privacy import AuditPolicy

    svc = services()
    svc.deployments.get(deployment)
    store = svc.database.audit
    current = AuditPolicy.from_dict(store.get_policy(deployment)).to_dict()
    if clear:
        store.set_policy(deployment, None)
        current = AuditPolicy().to_dict()
    elif any(v is not None for v in (retention_days, hash_field, redact, encrypt, subject_field, explain)) or (
        keep_forever
    ):
        if keep_forever or retention_days is not None:
            current["retention_days"] = None if keep_forever else retention_days
        for names, mode in ((hash_field, "hash"), (redact, "redact"), (encrypt, "encrypt")):
            current["fields"].update(dict.fromkeys(names or (), mode))
        if subject_field is not None:
            current["subject_field"] = subject_field
        if explain is not None:
            current["explain"] = explain
        checked = AuditPolicy.from_dict(current)
        if checked.needs_secret and audit_secret(svc.settings) is None:
            raise ConfigurationError(
                "hashing or encrypting fields needs an installation secret: set CORRAL_AUDIT__SECRET (16+ bytes)"
            )
        store.set_policy(deployment, checked.to_dict())
        current = checked.to_dict()
    if as_json:
        emit_json({"deployment": deployment, **current})
        return
    fields_text = ", ".join(f"{k}: {v}" for k, v in current["fields"].items()) or "none"
    retention = current["retention_days"]
    console.print(
        f"{deployment}: retention {'forever' if retention is None else f'{retention} days'}; protected fields "
        f"{fields_text}; subject field {current['subject_field'] or '-'}; explanations {current['explain']}",
        markup=False,
    )


@app.command()
def forget(subject: Annotated[str, typer.Argument(help="The data subject's identifier (e.g. a customer id).")]) -> None:
    """Erase a data subject: destroy their key, so their encrypted fields read "[erased]" everywhere, while the
    hash chain still verifies."""
    from corral.app import audit_secret
    from corral.audit.privacy import StoreSubjectKeys
    from corral.audit.privacy import forget as erase

    svc = services()
    secret = audit_secret(svc.settings)
    if secret is None:
        raise ConfigurationError("erasure needs the installation secret: set CORRAL_AUDIT__SECRET")
    erased = erase(subject, StoreSubjectKeys(svc.database.audit, secret), secret)
    console.print("erased" if erased else "no live key for this subject (nothing was encrypted for it, or it was "
                  "already erased)")  # fmt: skip


@app.command()
def prune(
    export_url: Annotated[str | None, typer.Option(help="Where exports go (default <home>/audit/exports).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move records past their deployment's retention out of the log: a verified export first, then removal of
    that prefix of the chain, anchored so the rest still verifies."""
    from corral.audit.retention import load_policies
    from corral.audit.retention import prune as prune_log

    svc = services()
    store = svc.database.audit
    Checkpointer(store, signer(svc), checkpoint_url(svc)).checkpoint_now()
    url = export_url or svc.settings.audit.export_url or str(audit_folder(svc) / "exports")
    result = prune_log(store, url, load_policies(store), datetime.now(UTC))
    if as_json:
        emit_json(result.to_dict())
        return
    data = result.to_dict()
    console.print(f"{data.get('pruned', 0)} records exported and removed; exports: {data.get('exports') or '-'}")


def _register_explain_and_replay() -> None:
    from corral.cli import audit_explain

    app.command("explain")(audit_explain.explain)
    app.command("replay")(audit_explain.replay)


_register_explain_and_replay()
