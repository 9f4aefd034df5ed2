"""SQLAlchemy stores for SQLite and PostgreSQL, with Alembic migrations."""
