"""corral.api.errors: one code per error class, and 5xx messages that give away nothing but an error id."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from corral import errors
from corral.api.errors import CODES, code_for, leaks_internals, public_message, scrub, status_for
from corral.api.params import request_id

HOME = "/srv/corral-prod/.corral"


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("cannot open /home/alice/.corral/artifacts/ab/cd.tar: denied", "cannot open <path>: denied"),
        ("bad file '/tmp/pytest-1/x.skops'", "bad file '<path>'"),
        ("under /var/lib/corral and /etc/passwd", "under <path> and <path>"),
        (f"{HOME}/corral.db is locked", "<path> is locked"),
        ("read file:///data/models/m.onnx", "read <path>"),
        ("C:\\Users\\bob\\corral\\model.pkl missing", "<path> missing"),
        (f"{sys.prefix}/lib/python3.11/site-packages/sklearn/base.py", "<path>"),
        (f"{tempfile.gettempdir()}/corral-serve-x/stderr.log", "<path>"),
        (f"{os.getcwd()}/src/corral/app.py:12", "<path>:12"),
        (f"{Path.home()}/notes", "<path>"),
    ],
)
def test_scrub_replaces_filesystem_paths(message: str, expected: str) -> None:
    assert scrub(message, extra_roots=[HOME]) == expected


@pytest.mark.parametrize(
    "message",
    [
        "use /v1/deployments/NAME/invocations",
        "no route '/v2/models/x/infer'",
        "POST /v1/models/{name}/aliases/{alias}",
        "input 'mean radius': shape [3] holds 3 elements",
        "deployment 'api' has no member cancer/3",
        "window must be one of [3600, 86400] seconds",
        "http://example.com/homepage and https://host/tmp/x",  # URLs on other hosts are not this machine's paths
    ],
)
def test_scrub_leaves_api_paths_and_plain_messages_alone(message: str) -> None:
    assert scrub(message) == message


@pytest.mark.parametrize(
    ("message", "leaks"),
    [
        ("(sqlite3.OperationalError) no such table: predictions", True),
        ("[SQL: SELECT predictions.seq FROM predictions WHERE ...]", True),
        ("psycopg.errors.UniqueViolation: duplicate key", True),
        ("(sqlalchemy.exc.IntegrityError) ...", True),
        ('Traceback (most recent call last):\n  File "/x.py", line 3, in f', True),
        ("database is locked", True),
        ("JSON path error near '\"a'", True),
        ("delete from the deployment its shadow", False),
        ("select a version to promote", False),
        ("no deployment named 'api'", False),
    ],
)
def test_leaks_internals_spots_sql_drivers_and_tracebacks(message: str, leaks: bool) -> None:
    assert leaks_internals(message) is leaks


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            errors.StoreError(f"database error: (sqlite3.OperationalError) unable to open {HOME}/corral.db"),
            "the database",
        ),
        (
            errors.NotReadyError(f"deployment 'x' is not ready: cannot read {HOME}/artifacts/ab"),
            "deployment 'x' is not ready",
        ),
        (errors.ModelTimeoutError("deployment 'x': the model took longer than 30 s"), "deployment 'x': the model took"),
        (errors.NotReadyError("(psycopg.OperationalError) connection refused"), "the deployment is not ready"),
        (
            errors.WorkerCrashedError(
                "moody-api: its worker exited with code 1 while answering; it restarts in 0.5 s: Traceback (most "
                'recent call last): | File "/srv/m/model.py", line 3, in predict | RuntimeError: boom'
            ),
            "moody-api: its worker exited with code 1 while answering; it restarts in 0.5 s (error",
        ),
        (RuntimeError(f"boom in {HOME}"), "internal error"),
        (KeyError("SELECT * FROM tokens"), "internal error"),
    ],
)
def test_public_messages_end_with_the_error_id_and_hold_nothing_internal(error: Exception, expected: str) -> None:
    message = public_message(error, "01a2b3c4-0000-7000-8000-000000000000", extra_roots=[HOME])
    assert message.startswith(expected) and message.endswith("(error 01a2b3c4-0000-7000-8000-000000000000)")
    assert HOME not in message and not leaks_internals(message)


def test_every_error_class_has_a_status_and_a_known_code() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        try:
            error = cls("x")
        except TypeError:  # ArtifactIntegrityError needs its hashes
            error = cls("x", expected="a", actual="b")
        assert code_for(error) in CODES
        assert 400 <= status_for(error) < 600
    assert (status_for(errors.InvalidJSONError("x")), code_for(errors.InvalidJSONError("x"))) == (400, "invalid_json")
    assert code_for(errors.AuthenticationError("x", code="token_expired")) == "token_expired"
    assert (status_for(errors.StoreError("x")), code_for(errors.StoreError("x"))) == (503, "unavailable")


@pytest.mark.parametrize(
    ("value", "header", "accepted"),
    [
        ("01a2b3c4-0000-7000-8000-000000000000", True, True),
        ('a "quoted" id', True, True),
        ("a\nb", True, False),
        ("\x1b[31m", True, False),
        ("café", True, False),
        ("café", False, True),
        ("a\nb", False, False),
        ("\ud800", False, False),
        ("x" * 257, False, False),
    ],
)
def test_request_ids_are_short_and_printable(value: str, header: bool, accepted: bool) -> None:
    if accepted:
        assert request_id(value, header=header) == value
    else:
        with pytest.raises(errors.SchemaError):
            request_id(value, header=header)
