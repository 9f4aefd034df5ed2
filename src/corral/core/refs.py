"""Names and references: ``fraud``, ``fraud/3``, ``fraud@champion``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from corral.errors import InvalidNameError, InvalidReferenceError

MAX_NAME_LENGTH = 128
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]*")


def validate_name(name: object, *, what: str = "model name") -> str:
    """Return ``name`` if it is a valid model name, else raise :class:`InvalidNameError`.

    A name is 1 to 128 characters of letters, digits, ``-``, ``_`` and ``.``,
    starting with a letter or digit, so it can never be a path (``..``, ``/``)
    or collide with reference syntax (``@``, ``/``).
    """
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidNameError(f"{what} must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"{what} is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}")
    if not _NAME.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"invalid {what} {name!r}: use letters, digits, '-', '_' and '.', "
            "start with a letter or digit, and no '..' (names are never paths)"
        )
    return name


def validate_alias(alias: object) -> str:
    """Return ``alias`` if valid: lowercase letters, digits, ``-``/``_``, starting with a letter."""
    if not isinstance(alias, str) or not alias:
        raise InvalidNameError("alias must be a non-empty string")
    if len(alias) > 64 or not _ALIAS.fullmatch(alias):
        raise InvalidNameError(
            f"invalid alias {alias!r}: use up to 64 lowercase letters, digits, '-' and '_', starting with a letter"
        )
    if alias == "latest":
        raise InvalidNameError("alias 'latest' is reserved: it always means the newest version")
    return alias


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A pointer to one model version: by number, by alias, or ``latest``.

    Exactly one of ``version`` and ``alias`` is set, except for ``latest``
    which is spelled ``name@latest`` and stored as ``alias="latest"``.
    """

    name: str
    version: int | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.name)
        if (self.version is None) == (self.alias is None):
            raise InvalidReferenceError(f"reference to {self.name!r} needs exactly one of a version or an alias")
        if self.version is not None and self.version < 1:
            raise InvalidReferenceError(f"version must be 1 or more, got {self.version}")

    @classmethod
    def parse(cls, text: str | ModelRef) -> ModelRef:
        """Parse ``name/3``, ``name@alias`` or ``name@latest``.

        Raises:
            InvalidReferenceError: when the text is not one of those forms.
        """
        if isinstance(text, ModelRef):
            return text
        if not isinstance(text, str) or not text:
            raise InvalidReferenceError("a model reference must be a non-empty string")
        if "@" in text:
            name, _, alias = text.partition("@")
            if alias != "latest":
                try:
                    validate_alias(alias)
                except InvalidNameError as exc:
                    raise InvalidReferenceError(f"bad reference {text!r}: {exc}") from None
            return cls(_name(name, text), alias=alias)
        if "/" in text:
            name, _, number = text.partition("/")
            if not number.isdigit():
                raise InvalidReferenceError(f"bad reference {text!r}: after '/' comes a version number, e.g. {name}/3")
            return cls(_name(name, text), version=int(number))
        raise InvalidReferenceError(
            f"bad reference {text!r}: write name/VERSION (fraud/3) or name@ALIAS (fraud@champion)"
        )

    def __str__(self) -> str:
        return f"{self.name}/{self.version}" if self.version is not None else f"{self.name}@{self.alias}"


def _name(name: str, text: str) -> str:
    try:
        return validate_name(name)
    except InvalidNameError as exc:
        raise InvalidReferenceError(f"bad reference {text!r}: {exc}") from None
