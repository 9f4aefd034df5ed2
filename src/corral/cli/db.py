"""``corral db ...``: the database schema."""

from __future__ import annotations

import typer

from corral.app import database_revisions, upgrade_database
from corral.cli.output import console
from corral.settings import Settings

app = typer.Typer(help="The database schema (created and upgraded by Alembic migrations).", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Bring the database schema to the newest revision."""
    before, after = upgrade_database(Settings())
    console.print(f"schema: {before or 'empty'} → {after}")


@app.command()
def current() -> None:
    """Show the schema revision of the database and of this corral."""
    found, head = database_revisions(Settings())
    console.print(f"database: {found or 'empty'}; this corral: {head}")
