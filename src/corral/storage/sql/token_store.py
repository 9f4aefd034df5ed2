"""API tokens and denied attempts on SQLAlchemy Core (SQLite and PostgreSQL).

A token's row holds the SHA-256 of its secret (unique, so a lookup is one index probe), never the secret.
Names are unique among tokens that are not revoked: the row carries its name in ``active_name`` (unique)
until it is revoked, when ``active_name`` becomes NULL, so of two processes making tokens with one name one
insert wins and the other hits the constraint.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from corral.errors import AlreadyExistsError, TokenNotFoundError
from corral.security.entities import Denial, Role, Token
from corral.security.ports import TokenStore
from corral.storage.sql.base import SqlStore, maybe_utc
from corral.storage.sql.registry_store import _utc
from corral.storage.sql.tables import api_tokens, auth_denials

_t, _d = api_tokens, auth_denials


class SqlTokenStore(SqlStore):
    """Token store sharing the registry's engine (migrated by the registry store)."""

    label = "token store"

    def add_token(self, token: Token) -> Token:
        row = {
            "id": token.id,
            "name": token.name,
            "role": token.role.value,
            "hash": token.hash,
            "created_by": token.created_by,
            "created_at": _utc(token.created_at),
            "expires_at": maybe_utc(token.expires_at),
            "revoked_at": maybe_utc(token.revoked_at),
            "revoked_by": token.revoked_by,
            "active_name": token.name if token.revoked_at is None else None,
        }
        try:
            self._write(lambda conn: conn.execute(_t.insert().values(**row)), integrity=False)
        except sa.exc.IntegrityError as exc:
            raise AlreadyExistsError(
                f"a token named {token.name!r} exists; revoke it first or pick another name"
            ) from exc
        return self.get_token(token.id)

    def get_token(self, token_id: str) -> Token:
        rows = self._read(sa.select(_t).where(_t.c.id == token_id))
        if not rows:
            raise TokenNotFoundError(f"no token has the id {token_id!r}")
        return _token(rows[0])

    def find_token(self, token_hash: str) -> Token | None:
        rows = self._read(sa.select(_t).where(_t.c.hash == token_hash))
        return _token(rows[0]) if rows else None

    def list_tokens(self) -> list[Token]:
        return [_token(row) for row in self._read(sa.select(_t).order_by(_t.c.created_at, _t.c.id))]

    def revoke_token(self, token_id: str, *, at: datetime, by: str) -> Token:
        def revoke(conn: sa.Connection) -> None:
            found = conn.execute(sa.select(_t.c.revoked_at).where(_t.c.id == token_id)).one_or_none()
            if found is None:
                raise TokenNotFoundError(f"no token has the id {token_id!r}")
            if found.revoked_at is None:
                changed = {"revoked_at": _utc(at), "revoked_by": by, "active_name": None}
                conn.execute(_t.update().where(_t.c.id == token_id, _t.c.revoked_at.is_(None)).values(**changed))

        self._write(revoke)
        return self.get_token(token_id)

    def add_denial(self, denial: Denial) -> None:
        row: dict[str, Any] = {
            "at": _utc(denial.at),
            "method": denial.method[:16],
            "route": denial.route[:512],
            "path": denial.path,
            "status": denial.status,
            "reason": denial.reason,
            "client": denial.client[:256] if denial.client else None,
            "token_id": denial.token_id,
            "token_name": denial.token_name,
        }
        self._write(lambda conn: conn.execute(_d.insert().values(**row)))

    def denials(self, *, since: datetime | None = None, limit: int = 100) -> list[Denial]:
        query = sa.select(_d).order_by(_d.c.at.desc(), _d.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(_d.c.at >= _utc(since))
        return [
            Denial(
                id=row.id,
                at=_utc(row.at),
                method=row.method,
                route=row.route,
                path=row.path,
                status=row.status,
                reason=row.reason,
                client=row.client,
                token_id=row.token_id,
                token_name=row.token_name,
            )
            for row in self._read(query)
        ]


def _token(row: Any) -> Token:
    return Token(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        hash=row.hash,
        created_by=row.created_by,
        created_at=_utc(row.created_at),
        expires_at=maybe_utc(row.expires_at),
        revoked_at=maybe_utc(row.revoked_at),
        revoked_by=row.revoked_by,
    )


_: type[TokenStore] = SqlTokenStore
