"""The prediction log as every front end shows it (API, CLI, dashboard): one prediction with the lineage of the
version that made it, the chain's verification against the signed checkpoints, and the search filters' syntax."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from corral.app import Services
from corral.audit.checkpoints import default_checkpoint_url
from corral.audit.keys import Signer, load_signer
from corral.audit.verify import VerifyReport, verify
from corral.errors import InvalidJSONError, NotFoundError, SchemaError
from corral.protocol import strict_json


def audit_folder(services: Services) -> Path:
    """``<CORRAL_HOME>/audit``: the signing key and, by default, the external checkpoints."""
    return (services.settings.home / "audit").resolve()


def checkpoint_url(services: Services) -> str:
    """Where checkpoints are written outside the database (``CORRAL_AUDIT__CHECKPOINT_URL`` when set)."""
    configured = services.settings.audit.checkpoint_url
    return str(configured) if configured else default_checkpoint_url(audit_folder(services))


def signer(services: Services) -> Signer:
    """The installation's Ed25519 checkpoint key (created on first use)."""
    return load_signer(audit_folder(services))


def verify_log(services: Services, *, from_seq: int = 1, to_seq: int | None = None) -> VerifyReport:
    """Re-walk the hash chain from ``from_seq`` to ``to_seq`` (default the newest record) and check it against
    the signed checkpoints, in the database and outside it."""
    return verify(
        services.database.audit,
        verifier=signer(services).verifier(),
        external_url=checkpoint_url(services),
        from_seq=from_seq,
        to_seq=to_seq,
    )


def prediction_detail(services: Services, prediction_id: str) -> dict[str, Any]:
    """The recorded prediction and the lineage of the version that made it.

    ``version`` holds the version's data fingerprint and source, code commit, parameters and metrics,
    whether its artifact is the one the record names, and every alias move that involved it (who
    promoted it to which alias, when and why). A version deleted since is reported as ``null`` with the
    reason in ``version_error``.

    Raises:
        PredictionNotFoundError: no prediction has this id.
    """
    record = services.database.audit.get(prediction_id)
    detail: dict[str, Any] = {"record": record.to_dict(), "version": None, "version_error": None}
    try:
        version = services.registry.get_version(record.model, record.version)
    except NotFoundError as exc:
        detail["version_error"] = str(exc)
    else:
        moves = [
            event.to_dict()
            for event in services.registry.alias_history(record.model)
            if record.version in (event.to_version, event.from_version)
        ]
        detail["version"] = {
            "name": version.name,
            "version": version.version,
            "flavor": version.flavor,
            "status": str(version.status),
            "artifact_sha256": version.artifact_sha256,
            "artifact_matches_record": version.artifact_sha256 == record.artifact_sha256,
            "created_by": version.created_by,
            "created_at": version.created_at.isoformat(),
            "lineage": version.lineage.to_dict(),
            "aliases": moves,
        }
    explanation = services.database.audit.get_explanation(prediction_id)
    detail["explanation"] = explanation.to_dict() if explanation is not None else None
    return detail


def parse_value(text: str) -> Any:
    """A filter value: JSON when it parses strictly (``1``, ``true``, ``"x"``), else the text itself (also for
    ``NaN``, numbers past a float's range and deep nesting, which no recorded value can equal)."""
    try:
        return strict_json.loads(text)
    except InvalidJSONError:
        return text


def parse_fields(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs as a dict (values as :func:`parse_value`).

    Raises:
        SchemaError: an item has no ``=`` or no name.
    """
    fields: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise SchemaError(f"field filter {item!r} is not NAME=VALUE (e.g. customer_id=C-1)")
        if len(name) > 256 or not name.isprintable():  # a NUL or newline cannot be in a JSON path the store builds
            raise SchemaError(f"field name {name[:60]!r} must be at most 256 printable characters")
        fields[name.strip()] = parse_value(value)
    return fields


def parse_time(text: str | None, what: str) -> datetime | None:
    """An ISO 8601 time (a time without zone is UTC); ``None`` for an empty one.

    Raises:
        SchemaError: it does not parse.
    """
    if text is None or text == "":
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise SchemaError(f"{what} must be an ISO 8601 time such as 2024-05-01T12:00:00Z, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
