"""The token service: make, list, revoke and check API tokens, and keep the record of denied attempts.

A token's secret is ``corral_`` followed by ``secrets.token_urlsafe(32)`` (256 random bits). It is returned
once, by :meth:`Tokens.create`, and never stored: the store keeps its SHA-256, and a presented token is
checked by hashing it, looking the hash up, and comparing the stored hash with ``hmac.compare_digest``.
A secret with 256 bits of entropy needs no slow hash: nobody can guess one, so a stolen table of hashes
gives nothing back.

Checked tokens are remembered for ``cache_seconds`` (5 s by default), so the request path asks the store
at most once per token in that time; a revocation takes effect at once in the process that revokes and
within ``cache_seconds`` in every other server.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from corral.core.refs import validate_name
from corral.errors import AuthenticationError, ConfigurationError, PermissionDeniedError, TokenNotFoundError
from corral.security.entities import ACTIVE, EXPIRED, REVOKED, Denial, IssuedToken, Role, Token
from corral.security.permissions import Permission, allows, roles_with
from corral.security.ports import TokenStore

PREFIX = "corral_"
"""Every corral token starts with this, so a leaked one is recognisable (secret scanners, logs)."""
SECRET_BYTES = 32
_SECRET = re.compile(r"corral_[A-Za-z0-9_-]{43}")
_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CACHE_LIMIT = 10_000


def new_secret() -> str:
    """A fresh token: ``corral_`` and 43 URL-safe characters (256 random bits)."""
    return PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """The SHA-256 of a token, as 64 hex digits: what the store keeps."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``3600s``, ``2w`` (or combinations like ``1d12h``) as a duration.

    Raises:
        ConfigurationError: the text is not a positive duration in those units.
    """
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ConfigurationError(f"not a duration: {text!r}; write it like 30d, 12h, 90m, 3600s or 2w")
    seconds = sum(int(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ConfigurationError(f"a token's lifetime must be positive, got {text!r}")
    if seconds > 100 * 366 * 86400:  # timedelta overflows past 999999999 days; no token needs a century
        raise ConfigurationError(f"a token's lifetime must be at most 100 years, got {text[:40]!r}")
    return timedelta(seconds=seconds)


class Tokens:
    """API tokens over a :class:`~corral.security.ports.TokenStore`.

    Args:
        store: where tokens (hashes) and denials are kept.
        actor: who is recorded as making or revoking tokens unless a call says otherwise.
        cache_seconds: how long a checked token is trusted before the store is asked again.
        clock: the current time (UTC); tests pass their own.
    """

    def __init__(
        self,
        store: TokenStore,
        *,
        actor: str,
        cache_seconds: float = 5.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.actor = actor
        self.cache_seconds = cache_seconds
        self._clock = clock or (lambda: datetime.now(UTC))
        self._cache: dict[str, tuple[float, Token]] = {}
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._clock()

    # making, listing, revoking

    def create(
        self,
        name: str,
        role: Role | str,
        *,
        expires_in: timedelta | None = None,
        created_by: str | None = None,
    ) -> IssuedToken:
        """Make a token; its secret is in the result and nowhere else.

        Raises:
            InvalidNameError: ``name`` breaks the naming rules (those of model names).
            ConfigurationError: an unknown role, or a lifetime that is not positive.
            AlreadyExistsError: a token that is not revoked has this name.
        """
        validate_name(name, what="token name")
        role = Role.parse(role)
        if expires_in is not None and expires_in <= timedelta(0):
            raise ConfigurationError(f"a token's lifetime must be positive, got {expires_in}")
        now = self.now()
        secret = new_secret()
        token = Token(
            id=secrets.token_hex(6),
            name=name,
            role=role,
            hash=hash_secret(secret),
            created_by=created_by or self.actor,
            created_at=now,
            expires_at=now + expires_in if expires_in is not None else None,
        )
        return IssuedToken(self.store.add_token(token), secret)

    def all(self, *, include_revoked: bool = True) -> list[Token]:
        """Every token, oldest first (without the revoked ones when ``include_revoked`` is false)."""
        tokens = self.store.list_tokens()
        return tokens if include_revoked else [t for t in tokens if t.revoked_at is None]

    def find(self, name_or_id: str) -> Token:
        """The token with this id, else the one with this name that is not revoked (else the newest revoked one).

        Raises:
            TokenNotFoundError: none has this id or name.
        """
        tokens = self.store.list_tokens()
        for token in tokens:
            if token.id == name_or_id:
                return token
        named = [t for t in tokens if t.name == name_or_id]
        if not named:
            raise TokenNotFoundError(f"no token has the name or id {name_or_id!r}; `corral tokens list` shows them")
        live = [t for t in named if t.revoked_at is None]
        return live[0] if live else named[-1]

    def revoke(self, name_or_id: str, *, by: str | None = None) -> Token:
        """Revoke a token by id or name; it is refused from now on (by other servers within ``cache_seconds``).

        Raises:
            TokenNotFoundError: none has this id or name.
        """
        token = self.find(name_or_id)
        revoked = self.store.revoke_token(token.id, at=self.now(), by=by or self.actor)
        with self._lock:
            self._cache.pop(token.hash, None)
        return revoked

    def has_admin(self) -> bool:
        """Whether an admin token is usable now (neither expired nor revoked)."""
        now = self.now()
        return any(t.role is Role.ADMIN and t.state(now) == ACTIVE for t in self.store.list_tokens())

    def name_free(self, name: str) -> bool:
        """Whether a new token may take ``name`` (no token that is not revoked has it)."""
        return all(t.name != name or t.revoked_at is not None for t in self.store.list_tokens())

    # checking

    def authenticate(self, secret: str | None) -> Token:
        """The token ``secret`` is, if it may be used now.

        Raises:
            AuthenticationError: no secret, one that is not a corral token or unknown (``invalid_token``),
                an expired one (``token_expired``) or a revoked one (``token_revoked``).
        """
        if not secret:
            raise AuthenticationError(
                "authentication required: send the header 'Authorization: Bearer <token>' "
                "(an administrator makes tokens with `corral tokens create NAME --role ROLE`)",
                code="unauthenticated",
            )
        if not _SECRET.fullmatch(secret):
            raise AuthenticationError(
                f"invalid token: corral tokens are {PREFIX!r} followed by 43 characters", code="invalid_token"
            )
        digest = hash_secret(secret)
        token = self._lookup(digest)
        # the lookup went by the hash; this compares the whole of it in constant time all the same
        if token is None or not hmac.compare_digest(token.hash, digest):
            raise AuthenticationError("invalid token: no such token was issued here", code="invalid_token")
        state = token.state(self.now())
        if state == REVOKED:
            raise AuthenticationError(f"token {token.name!r} was revoked", code="token_revoked")
        if state == EXPIRED:
            assert token.expires_at is not None
            raise AuthenticationError(
                f"token {token.name!r} expired at {token.expires_at.isoformat()}", code="token_expired"
            )
        return token

    def needs_store(self, secret: str | None) -> bool:
        """Whether checking ``secret`` would ask the store (a well-formed token not remembered), so that a caller
        on an event loop can check it in a thread and check the others in place."""
        if not secret or not _SECRET.fullmatch(secret):
            return False
        with self._lock:
            cached = self._cache.get(hash_secret(secret))
        return cached is None or time.monotonic() - cached[0] >= self.cache_seconds

    def _lookup(self, digest: str) -> Token | None:
        moment = time.monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and moment - cached[0] < self.cache_seconds:
            return cached[1]
        token = self.store.find_token(digest)
        if token is not None:
            with self._lock:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[digest] = (moment, token)
        return token

    def authorize(self, token: Token, permission: Permission, *, action: str = "do this") -> None:
        """Raise unless ``token``'s role holds ``permission``.

        Raises:
            PermissionDeniedError: naming the permission and the roles that hold it.
        """
        if allows(token.role, permission):
            return
        roles = tuple(r.value for r in roles_with(permission))
        raise PermissionDeniedError(
            f"token {token.name!r} has the role {token.role.value}, which may not {action}: "
            f"that needs the {permission.value} permission, held by the role{'s' if len(roles) > 1 else ''} "
            f"{', '.join(roles)}",
            permission=permission.value,
            roles=roles,
        )

    # denials

    def record_denial(self, denial: Denial) -> None:
        """Keep a refused request for the administrator."""
        self.store.add_denial(denial)

    def denials(self, *, since: datetime | None = None, limit: int = 100) -> list[Denial]:
        """Refused requests, newest first."""
        if limit < 1:
            raise ConfigurationError(f"limit must be 1 or more, got {limit}")
        return self.store.denials(since=since, limit=limit)


__all__ = ["PREFIX", "Tokens", "hash_secret", "new_secret", "parse_duration"]
