from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.core.refs import ModelRef, validate_alias, validate_name
from corral.errors import InvalidNameError, InvalidReferenceError


@pytest.mark.parametrize("name", ["fraud", "fraud-gbm", "credit_v2", "a", "m.1", "X" * 128, "9lives"])
def test_valid_names_pass(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "must not be empty"),
        ("../x", "never paths"),
        ("a/b", "never paths"),
        ("a..b", "never paths"),
        (".hidden", "start with a letter or digit"),
        ("x" * 300, "300 characters long; the limit is 128"),
        ("with space", "invalid model name"),
        ("fraud@champion", "invalid model name"),
        ("naïve", "invalid model name"),
    ],
)
def test_invalid_names_are_refused_with_the_reason(name: str, fragment: str) -> None:
    with pytest.raises(InvalidNameError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        validate_name(name)


def test_non_string_name_is_refused() -> None:
    with pytest.raises(InvalidNameError, match="must be a string, got int"):
        validate_name(3)


@pytest.mark.parametrize("alias", ["Champion", "1st", "", "a b", "x" * 65])
def test_invalid_aliases(alias: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_alias(alias)


def test_latest_is_reserved() -> None:
    with pytest.raises(InvalidNameError, match="reserved"):
        validate_alias("latest")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fraud/3", ModelRef("fraud", version=3)),
        ("fraud@champion", ModelRef("fraud", alias="champion")),
        ("fraud@latest", ModelRef("fraud", alias="latest")),
    ],
)
def test_parse(text: str, expected: ModelRef) -> None:
    assert ModelRef.parse(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("fraud", "write name/VERSION"),
        ("fraud/x", "version number"),
        ("fraud/", "version number"),
        ("fraud/0", "1 or more"),
        ("../etc@champion", "bad reference"),
        ("fraud@Champion", "bad reference"),
        ("", "non-empty"),
    ],
)
def test_bad_references(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError, match=fragment):
        ModelRef.parse(text)


def test_ref_needs_exactly_one_of_version_and_alias() -> None:
    with pytest.raises(InvalidReferenceError, match="exactly one"):
        ModelRef("fraud", version=1, alias="champion")
    with pytest.raises(InvalidReferenceError, match="exactly one"):
        ModelRef("fraud")


@given(
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,40}", fullmatch=True),
    version=st.integers(min_value=1, max_value=10**9),
)
def test_version_refs_round_trip(name: str, version: int) -> None:
    ref = ModelRef(name, version=version)
    assert ModelRef.parse(str(ref)) == ref
