"""``corral tokens ...``: API tokens (made, listed, revoked; the admin token rotated) and denied attempts.

Like every other command, these act on the database directly: whoever can run them on the server's machine
with its settings already holds the keys, so they need no token themselves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape

from corral.cli.context import services
from corral.cli.output import console, emit_json, errors, table
from corral.errors import ConfigurationError
from corral.registry.environment import current_user
from corral.security.bootstrap import rotate_admin_token
from corral.security.entities import Role
from corral.security.service import parse_duration

app = typer.Typer(
    help="API tokens: who may call the server and the dashboard, with which role; and the refused attempts.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]
ROLES = ", ".join(r.value for r in Role)


def _actor() -> str:
    return services().settings.user or current_user()


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="The token's name (unique among tokens not revoked).")],
    role: Annotated[str, typer.Option("--role", "-r", help=f"One of {ROLES}.", show_default=False)],
    expires: Annotated[
        str | None, typer.Option("--expires", help="Lifetime: 30d, 12h, 90m, 2w; none: never expires.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a token and print it; it is shown this once (only its hash is kept)."""
    lifetime = parse_duration(expires) if expires else None
    issued = services().tokens.create(name, role, expires_in=lifetime, created_by=_actor())
    token = issued.token
    if as_json:
        emit_json({**token.to_dict(services().tokens.now()), "token": issued.secret})
        return
    until = f", expires {token.expires_at:%Y-%m-%d %H:%M UTC}" if token.expires_at else ""
    errors.print(f"made token {escape(token.name)} (id {token.id}, role {token.role.value}{until}); shown once:")
    print(issued.secret)


@app.command("list")
def list_tokens(
    active: Annotated[bool, typer.Option("--active", help="Leave out revoked tokens.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Every token: name, role, who made it and when, expiry and state (never the token itself)."""
    tokens = services().tokens
    now = tokens.now()
    found = tokens.all(include_revoked=not active)
    if as_json:
        emit_json([t.to_dict(now) for t in found])
        return
    if not found:
        console.print("No tokens.")
        return
    table(
        "Tokens",
        ["id", "name", "role", "state", "created by", "created", "expires", "revoked"],
        [
            (
                t.id,
                escape(t.name),
                t.role.value,
                t.state(now),
                escape(t.created_by),
                t.created_at,
                t.expires_at,
                t.revoked_at,
            )
            for t in found
        ],
    )


@app.command()
def revoke(
    token: Annotated[str, typer.Argument(help="The token's name or id.")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token: refused from now on (by other servers within CORRAL_AUTH__CACHE_SECONDS)."""
    tokens = services().tokens
    revoked = tokens.revoke(token, by=_actor())
    if as_json:
        emit_json(revoked.to_dict(tokens.now()))
        return
    console.print(f"revoked token {escape(revoked.name)} (id {revoked.id}, role {revoked.role.value})")


@app.command("rotate-admin")
def rotate_admin(as_json: JsonOpt = False) -> None:
    """Replace the admin token: revoke the one named admin, make a new one and write it to the admin token file
    (mode 0600), where the CLI, the SDK and scripts on this machine find it."""
    svc = services()
    path = svc.settings.resolved_token_file()
    issued = rotate_admin_token(svc.tokens, path, by=_actor())
    if as_json:
        emit_json({**issued.token.to_dict(svc.tokens.now()), "file": str(path)})
        return
    console.print(f"made a new admin token (id {issued.token.id}) and wrote it to {path}; the old one is revoked")


@app.command()
def denials(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Most to show.")] = 50,
    since: Annotated[
        str | None, typer.Option("--since", help="Only from this time on (ISO 8601, UTC).", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Refused requests on management routes (publish, deploy, audit, admin), newest first."""
    start = None
    if since:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            raise ConfigurationError(
                f"--since must be an ISO 8601 time like 2026-11-01T00:00:00, got {since!r}"
            ) from None
    found = services().tokens.denials(since=start, limit=limit)
    if as_json:
        emit_json([d.to_dict() for d in found])
        return
    if not found:
        console.print("No refused requests.")
        return
    table(
        "Refused requests",
        ["when", "status", "method", "route", "token", "client", "reason"],
        [
            (
                d.at,
                d.status,
                d.method,
                escape(d.path),
                escape(d.token_name) if d.token_name else None,
                d.client,
                escape(d.reason),
            )
            for d in found
        ],
    )
