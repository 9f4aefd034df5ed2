"""A SQL query's result as a data frame, for pipelines whose training data lives in a database."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from corral.errors import DataFileError


def read_query(url: str, query: str) -> pd.DataFrame:
    """Run ``query`` on the database at ``url`` (any SQLAlchemy URL) and return the rows.

    Raises:
        DataFileError: the URL or the query does not work (the message names which, without the password).
    """
    try:
        engine = sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise DataFileError(f"cannot open the training data database: {exc}") from None
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text(query), conn)
    except sa.exc.SQLAlchemyError as exc:
        shown = engine.url.render_as_string(hide_password=True)
        raise DataFileError(f"the training data query failed on {shown}: {exc.__class__.__name__}: {exc}") from None
    finally:
        engine.dispose()
