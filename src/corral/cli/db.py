"""``corral db ...``: the database schema."""

from __future__ import annotations

import typer

from corral.cli.output import console
from corral.settings import Settings

app = typer.Typer(help="The database schema (created and upgraded by Alembic migrations).", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Bring the database schema to the newest revision."""
    from corral.storage.sql.engine import create_engine, current_revision, head_revision
    from corral.storage.sql.engine import upgrade as run_upgrade

    url = Settings().resolved_database_url()
    engine = create_engine(url)
    before = current_revision(engine)
    run_upgrade(engine)
    console.print(f"{engine.url.render_as_string(hide_password=True)}: {before or 'empty'} → {head_revision()}")


@app.command()
def current() -> None:
    """Show the schema revision of the database and of this corral."""
    from corral.storage.sql.engine import create_engine, current_revision, head_revision

    engine = create_engine(Settings().resolved_database_url())
    console.print(f"database: {current_revision(engine) or 'empty'}; this corral: {head_revision()}")
