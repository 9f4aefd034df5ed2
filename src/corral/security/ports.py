"""What the security room needs from storage: tokens (hashes only) and the record of denied attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from corral.security.entities import Denial, Token


class TokenStore(Protocol):
    """Persistence of API tokens and denials. Every method is one atomic operation."""

    def add_token(self, token: Token) -> Token:
        """Store a new token.

        Raises:
            AlreadyExistsError: a token that is not revoked has the same name (or the id is taken).
        """
        ...

    def get_token(self, token_id: str) -> Token:
        """Raises TokenNotFoundError."""
        ...

    def find_token(self, token_hash: str) -> Token | None:
        """The token whose secret hashes to ``token_hash`` (revoked and expired ones too), or ``None``."""
        ...

    def list_tokens(self) -> list[Token]:
        """Every token, revoked ones too, oldest first."""
        ...

    def revoke_token(self, token_id: str, *, at: datetime, by: str) -> Token:
        """Mark a token revoked (its name becomes free again); revoking a revoked token changes nothing.

        Raises:
            TokenNotFoundError: no token has this id.
        """
        ...

    def add_denial(self, denial: Denial) -> None:
        """Record a refused request."""
        ...

    def denials(self, *, since: datetime | None = None, limit: int = 100) -> list[Denial]:
        """Refused requests, newest first (at or after ``since``)."""
        ...

    def close(self) -> None: ...
