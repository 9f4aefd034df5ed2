"""Bad input and attacks against the real application: each refused with a clear 4xx and a JSON error code, the
model not invoked, nothing written, and the server still healthy afterwards (see ``conftest.World.attack``).

Groups: malformed and ambiguous JSON; wrong content types (pickles among them: never unpickled); shapes and
datatypes of the Open Inference Protocol; oversized and chunked bodies and row limits; unicode and log
injection; path traversal in every path parameter of every route; numbers past what the stores hold in every
integer parameter; client-supplied URLs; hostile model versions; SQL metacharacters in every audit search field;
forged, malformed, expired and revoked tokens. A real ``corral serve`` checks what only a socket can send
(``test_real_server.py``).
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import pickle
import re
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from attack_world import COLUMNS, MAX_BODY, MAX_ROWS, ROW, SECRET, World, v2_body
from crafted import PICKLE_SPEC, Sentinel, pickle_archive, store_version

from corral.api.auth import walk_routes
from corral.cli.serve import JsonFormatter
from corral.testing.auth import bearer

PREDICT = "/v1/deployments/api/predict"
INVOCATIONS = "/v1/deployments/api/invocations"
INFER = "/v2/models/api/infer"


def _v1(*rows: str) -> bytes:
    """A /predict body whose rows are given as raw JSON text (to hold what json.dumps cannot write)."""
    return ('{"instances": [' + ", ".join(rows) + "]}").encode()


def _row(radius: str) -> str:
    return '{"mean radius": ' + radius + ', "mean texture": 19.3, "mean smoothness": 0.1}'


def _v2(radius: str, datatype: str = "FP64") -> bytes:
    rest = [{"name": c, "shape": [1], "datatype": "FP64", "data": [ROW[c]]} for c in COLUMNS[1:]]
    first = '{"name": "mean radius", "shape": [1], "datatype": "' + datatype + '", "data": [' + radius + "]}"
    return ('{"inputs": [' + first + ", " + ", ".join(json.dumps(t) for t in rest) + "]}").encode()


DEEP = b"[" * 100_000 + b"]" * 100_000  # over the 64 KiB limit: cut off by size before any parsing
NESTED = b'{"instances": ' + b"[" * 40 + b"]" * 40 + b"}"  # small, but 41 levels deep: over the depth limit
HUGE_INT = "9" * 5000  # past Python's 4300-digit int conversion limit
BIG_INT = "9" * 400  # past a float's range

# -- malformed and ambiguous JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "body", "code", "fragment"),
    [
        (PREDICT, _v1(_row("1.0").replace('"mean texture": 19.3', '"mean radius": 2.0')), "invalid_json", "twice"),
        (PREDICT, _v1(_row("NaN")), "invalid_json", "NaN and Infinity are not JSON"),
        (PREDICT, _v1(_row("Infinity")), "invalid_json", "NaN and Infinity are not JSON"),
        (PREDICT, _v1(_row("-Infinity")), "invalid_json", "NaN and Infinity are not JSON"),
        (PREDICT, _v1(_row('"NaN"')), "schema_error", "expects numbers"),
        (PREDICT, _v1(_row("1e309")), "invalid_json", "too large for a 64-bit float"),
        (PREDICT, _v1(_row(HUGE_INT)), "invalid_json", "out of range"),
        (PREDICT, _v1(_row(BIG_INT)), "invalid_json", "beyond a 64-bit float's range"),
        (PREDICT, NESTED, "invalid_json", "deeper than 32 levels"),
        (PREDICT, _v1(_row("1.0"))[:-5], "invalid_json", "not valid JSON"),
        (
            PREDICT,
            _v1(_row("1.0")).replace(b"19.3", b'"\xff\xfe"'),
            "invalid_json",
            "UTF-8",
        ),
        (PREDICT, b"\xef\xbb\xbf" + _v1(_row("1.0")), "invalid_json", "byte-order mark"),
        (PREDICT, _v1(_row('"\\ud800"')), "invalid_json", "lone surrogate"),
        (PREDICT, b"", "invalid_json", "empty"),
        (PREDICT, b"   \n", "invalid_json", "empty"),
        (PREDICT, b"[" + _row("1.0").encode() + b"]", "schema_error", "expected a JSON object"),
        (PREDICT, b'"instances"', "schema_error", "expected a JSON object"),
        (INVOCATIONS, b'{"instances": [], "instances": [' + _row("1.0").encode() + b"]}", "invalid_json", "twice"),
        (INVOCATIONS, _v1(_row("NaN")), "invalid_json", "NaN"),
        (
            INFER,
            b'{"inputs": [], "inputs": ' + json.dumps(v2_body()["inputs"]).encode() + b"}",
            "invalid_json",
            "twice",
        ),
        (INFER, _v2(HUGE_INT), "invalid_json", "out of range"),
        (INFER, _v2("1e309"), "schema_error", "infinite value"),
        (INFER, _v2("NaN"), "schema_error", "missing a value"),  # tritonclient's NaN reads, then is refused
        (INFER, b'{"inputs": ' + b"[" * 40 + b"]" * 40 + b"}", "invalid_json", "deeper than 32 levels"),
        (INFER, _v2('"NaN"'), "schema_error", "FP64 data must be numbers"),
        (INFER, b"\xff" + json.dumps(v2_body()).encode(), "invalid_json", "not UTF-8"),
        ("/v1/deployments", b'{"name": "x", "model": "cancer", "name": "y"}', "invalid_json", "twice"),
        ("/v1/feedback", b"[" * 40 + b"]" * 40, "invalid_json", "deeper than 32 levels"),
        ("/v1/feedback", b'{"prediction_id": "x", "label": NaN}', "invalid_json", "NaN"),
    ],
    ids=[
        "v1-duplicate-key",
        "v1-NaN",
        "v1-Infinity",
        "v1--Infinity",
        "v1-NaN-string",
        "v1-1e309",
        "v1-5000-digit-int",
        "v1-400-digit-int",
        "v1-nested-41-deep",
        "v1-truncated",
        "v1-not-utf8",
        "v1-bom",
        "v1-lone-surrogate",
        "v1-empty",
        "v1-blank",
        "v1-top-level-array",
        "v1-top-level-string",
        "mlflow-duplicate-key",
        "mlflow-NaN",
        "v2-duplicate-key",
        "v2-5000-digit-int",
        "v2-1e309",
        "v2-NaN-where-training-had-none",
        "v2-nested-41-deep",
        "v2-NaN-string",
        "v2-not-utf8",
        "create-deployment-duplicate-key",
        "feedback-nested",
        "feedback-NaN",
    ],
)
def test_malformed_json_is_refused(world: World, url: str, body: bytes, code: str, fragment: str) -> None:
    error = world.attack("POST", url, content=body, code=code)
    assert fragment in error["error"]


@pytest.mark.parametrize("url", [PREDICT, INFER, "/v1/deployments", "/v1/feedback"])
def test_a_body_nested_a_hundred_thousand_deep_never_reaches_a_parser(world: World, url: str) -> None:
    error = world.attack("POST", url, content=DEEP, code="limit_exceeded")
    assert f"over the limit of {MAX_BODY} bytes" in error["error"]


def test_deep_nesting_within_the_size_limit_stops_at_the_depth_limit(world: World) -> None:
    deep = b"[" * 30_000 + b"]" * 30_000  # 60 KB: under the size limit, so the parser sees it
    error = world.attack("POST", PREDICT, content=deep, code="invalid_json")
    assert "deeper than 32 levels" in error["error"]


# -- content types ----------------------------------------------------------------------------------------------

PICKLE_TYPES = ["application/python-pickle", "application/x-python-serialize", "application/x-pickle"]


@pytest.mark.parametrize(
    ("url", "content_type"),
    [
        *[(PREDICT, t) for t in PICKLE_TYPES],
        (PREDICT, "application/octet-stream"),
        (INVOCATIONS, "application/octet-stream"),
        ("/invocations", "application/x-python-serialize"),
        *[(INFER, t) for t in PICKLE_TYPES],
        ("/v1/feedback", "application/python-pickle"),
        ("/v1/deployments", "application/octet-stream"),
    ],
)
def test_pickle_bodies_are_refused_and_never_unpickled(
    world: World, tmp_path: Path, url: str, content_type: str
) -> None:
    sentinel = tmp_path / "unpickled"
    payload = pickle.dumps(Sentinel(sentinel), protocol=5)  # unpickling it would create the file
    error = world.attack("POST", url, content=payload, headers={**world.admin, "Content-Type": content_type})
    assert error["code"] == "unsupported_media_type"
    assert "never unpickled" in error["error"]
    assert not sentinel.exists()


@pytest.mark.parametrize(
    ("url", "headers", "fragment"),
    [
        (PREDICT, {"Content-Type": "text/plain"}, "'text/plain' is not accepted"),
        (PREDICT, {"Content-Type": "application/x-www-form-urlencoded"}, "curl: -H 'Content-Type: application/json'"),
        (PREDICT, {"Content-Type": "multipart/form-data; boundary=x"}, "'multipart/form-data' is not accepted"),
        (PREDICT, {"Content-Type": "text/csv"}, "'text/csv' is not accepted"),
        (PREDICT, {"Content-Type": "application/json; charset=latin-1"}, "JSON bodies are UTF-8"),
        (PREDICT, {"Content-Type": "application/xml"}, "'application/xml' is not accepted"),
        (PREDICT, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, "Content-Encoding 'gzip'"),
        (INFER, {"Content-Type": "application/json", "Content-Encoding": "br"}, "Content-Encoding 'br'"),
        (INFER, {"Content-Type": "application/yaml"}, "'application/yaml' is not accepted"),
        ("/v1/deployments", {"Content-Type": "text/plain"}, "'text/plain' is not accepted"),
    ],
)
def test_wrong_content_types_are_415(world: World, url: str, headers: dict[str, str], fragment: str) -> None:
    body = json.dumps(v2_body() if url == INFER else {"instances": [ROW]}).encode()
    error = world.attack("POST", url, content=body, headers={**world.admin, **headers}, code="unsupported_media_type")
    assert fragment in error["error"]


@pytest.mark.parametrize(
    ("url", "headers", "body"),
    [
        (PREDICT, {"Content-Type": "application/json"}, {"instances": [ROW]}),
        (PREDICT, {"Content-Type": "application/json; charset=UTF-8"}, {"instances": [ROW]}),
        (PREDICT, {}, {"instances": [ROW]}),  # no Content-Type: read as JSON
        (INFER, {}, v2_body()),
        (INFER, {"Content-Type": "application/octet-stream"}, v2_body()),  # aiohttp's default (tritonclient.aio)
    ],
)
def test_json_content_types_are_accepted(world: World, url: str, headers: dict[str, str], body: Any) -> None:
    response = world.client.post(url, content=json.dumps(body).encode(), headers={**world.admin, **headers})
    assert response.status_code == 200, response.text


# -- shapes and datatypes (Open Inference Protocol) ---------------------------------------------------------------


def _inputs(**change: Any) -> dict[str, Any]:
    body = v2_body()
    body["inputs"][0].update(change)
    return body


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (_inputs(shape=[3]), "shape [3] holds 3 elements but the data has 1"),
        (_inputs(shape=[-1]), "shape"),
        (_inputs(datatype="FP128"), "unknown datatype 'FP128'"),
        (_inputs(data=["abc"]), "FP64 data must be numbers, got 'abc'"),
        (_inputs(data=[True]), "FP64 data must be numbers"),
        (_inputs(data=[[1.0, 2.0], [3.0]], shape=[3]), "ragged"),
        (_inputs(datatype="BYTES", data=["abc"]), "expects numbers"),
        (_inputs(datatype="INT64", data=[2**64]), "out of range"),
        (_inputs(data=None), "data"),
        ({"inputs": v2_body()["inputs"][1:]}, "missing inputs: mean radius"),
        ({"inputs": [*v2_body()["inputs"], {"name": "z", "shape": [1], "datatype": "FP64", "data": [1.0]}]}, "z"),
        ({"inputs": [*v2_body()["inputs"], v2_body()["inputs"][0]]}, "duplicate input names"),
        ({"inputs": v2_body(rows=2)["inputs"][:1] + v2_body()["inputs"][1:]}, "must all have the same length"),
        (_inputs(parameters={"shared_memory_region": "x"}), "shared-memory extension is not supported"),
        (_inputs(parameters={"binary_data_size": 8}, data=None), "Inference-Header-Content-Length"),
        (v2_body(outputs=[{"name": "secrets"}]), "unknown output"),
        ({"inputs": "all of them"}, "inputs"),
        (v2_body(id=7), "id"),
    ],
    ids=[
        "shape-data-mismatch",
        "negative-shape",
        "unknown-datatype",
        "string-in-fp64",
        "bool-in-fp64",
        "ragged",
        "bytes-where-numbers",
        "int64-overflow",
        "no-data",
        "missing-input",
        "extra-input",
        "duplicate-input",
        "rows-differ",
        "shared-memory",
        "binary-without-header",
        "unknown-output",
        "inputs-not-a-list",
        "id-not-a-string",
    ],
)
def test_v2_shapes_and_datatypes(world: World, body: dict[str, Any], fragment: str) -> None:
    error = world.attack("POST", INFER, json=body, code="schema_error")
    assert fragment in error["error"]


@pytest.mark.parametrize(
    ("header_length", "tail", "fragment"),
    [
        ("99999", b"", "is 99999 but the body has only"),
        ("-5", b"", "non-negative integer"),
        ("1e3", b"", "non-negative integer"),
        (None, b"\x00" * 8, "binary_data_size"),
    ],
)
def test_v2_binary_extension_lies(world: World, header_length: str | None, tail: bytes, fragment: str) -> None:
    header = _inputs(parameters={"binary_data_size": 16}, data=None)  # says 16 bytes follow
    text = json.dumps(header).encode()
    length = header_length if header_length is not None else str(len(text))
    headers = {**world.admin, "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": length}
    error = world.attack("POST", INFER, content=text + tail, headers=headers, code="schema_error")
    assert fragment in error["error"]


# -- sizes and rows -----------------------------------------------------------------------------------------------


def _chunks(total: int, size: int = 4096) -> Any:
    sent = 0
    while sent < total:
        yield b" " * min(size, total - sent)
        sent += size


@pytest.mark.parametrize("url", [PREDICT, INFER, "/v1/deployments", "/v1/feedback", "/ui/login"])
def test_a_chunked_body_over_the_limit_is_cut_off_while_read(world: World, url: str) -> None:
    error = world.attack("POST", url, content=_chunks(MAX_BODY * 4), code="limit_exceeded")  # no Content-Length
    assert f"over the limit of {MAX_BODY} bytes" in error["error"]


def test_a_declared_length_over_the_limit_is_refused_before_reading(world: World) -> None:
    error = world.attack("POST", PREDICT, content=b"{" + b" " * MAX_BODY + b"}", code="limit_exceeded")
    assert f"{MAX_BODY + 2} bytes or more" in error["error"]


def test_a_content_length_that_lies_low_does_not_lift_the_limit(world: World) -> None:
    body = b" " * (MAX_BODY * 2)
    response = world.unchanged(lambda: world.raw("POST", PREDICT.encode(), headers={"Content-Length": "10"}, body=body))
    # the raw call sends the real length too; the first Content-Length (10) is what the middleware reads first
    world.assert_refusal(response.status, response.body, "limit_exceeded")
    world.assert_healthy()


def test_a_gzip_bomb_is_stopped_at_the_limit(world: World) -> None:
    bomb = gzip.compress(b" " * (MAX_BODY * 50) + json.dumps(v2_body()).encode())  # ~3 MB inflated, ~3 KB sent
    headers = {**world.admin, "Content-Encoding": "gzip"}
    error = world.attack("POST", INFER, content=bomb, headers=headers, code="limit_exceeded")
    assert "decompressed body is over the limit" in error["error"]


@pytest.mark.parametrize("url", [PREDICT, INVOCATIONS, INFER])
def test_rows_over_max_rows(world: World, url: str) -> None:
    body = v2_body(rows=MAX_ROWS + 1) if url == INFER else {"instances": [ROW] * (MAX_ROWS + 1)}
    error = world.attack("POST", url, json=body, code="limit_exceeded")
    assert f"limit of {MAX_ROWS} rows" in error["error"]


# -- unicode and log injection --------------------------------------------------------------------------------------

INJECTIONS = [
    'evil\n{"method": "GET", "status": 200, "forged": true}',
    "evil\r\nX-Forged: 1",
    "\x1b[2J\x1b[31mred",
    'quote" "status": 200',
    "null\x00byte",
    "\u202eright-to-left",
    "emoji-\U0001f600",
    "\ud800",
]


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    records = [r for r in caplog.records if r.name == "corral.access"]
    formatter = JsonFormatter()
    lines = []
    for record in records:
        message = record.getMessage()
        assert "\n" not in message and "\r" not in message and "\x1b" not in message
        formatted = formatter.format(record)
        assert "\n" not in formatted and "\x1b" not in formatted
        lines.append(json.loads(formatted))
    return lines


@pytest.mark.parametrize("name", INJECTIONS)
def test_injection_in_a_deployment_name_stays_in_its_log_field(
    world: World, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    quoted = quote(name, safe="", errors="surrogatepass")
    with caplog.at_level(logging.INFO, logger="corral.access"):
        error = world.attack("POST", f"/v1/deployments/{quoted}/predict", json={"instances": [ROW]})
    assert error["code"] in ("not_found", "invalid_name")
    assert "\x1b" not in error["error"] and "\n" not in error["error"]  # names are quoted escaped (repr)
    lines = _access_lines(caplog)
    assert f"/v1/deployments/{unquote(quoted)}/predict" in [line["path"] for line in lines]


@pytest.mark.parametrize(
    ("request_id", "accepted"),
    [
        ("01a2b3c4-request", True),
        ('quote" "status": 200', True),
        ('evil\n{"status": 200}', False),
        ("\x1b[2J\x1b[31mred", False),
        ("tab\there", False),
        ("caf\xe9", False),
        ("x" * 300, False),
    ],
    ids=["plain", "quotes", "newline", "ansi", "tab", "latin-1", "long"],
)
def test_request_ids_must_be_printable_ascii_and_are_logged_escaped(
    world: World, caplog: pytest.LogCaptureFixture, request_id: str, accepted: bool
) -> None:
    body = json.dumps({"instances": [ROW]}).encode()
    with caplog.at_level(logging.INFO, logger="corral.access"):
        response = world.raw("POST", PREDICT.encode(), headers={"X-Request-Id": request_id}, body=body)
    if accepted:
        assert response.status == 200, response.body
    else:
        error = world.assert_refusal(response.status, response.body, "schema_error")
        assert "X-Request-Id" in error["error"]
    logged = [line.get("request_id") for line in _access_lines(caplog)]
    assert (request_id if len(request_id) <= 200 else request_id[:200] + "...") in logged
    world.assert_healthy()


@pytest.mark.parametrize("request_id", ["a\nb", "\x1b[31m", "x" * 300])
def test_a_v2_request_id_must_be_short_and_printable(world: World, request_id: str) -> None:
    error = world.attack("POST", INFER, json=v2_body(id=request_id), code="schema_error")
    assert "the request's id" in error["error"]


def test_unicode_in_a_string_feature_does_not_break_the_log(world: World) -> None:
    body = _v1(_row("1.0").replace("19.3", '"\\u001b[31m\\n\\u0000"'))
    error = world.attack("POST", PREDICT, content=body, code="schema_error")
    assert "expects numbers" in error["error"]


# -- path traversal in every path parameter -------------------------------------------------------------------------

TRAVERSALS = [
    "..",
    "../",
    "../../../../etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "..%2F",
    "%2e%2e%2f",
    "%2e%2e/%2e%2e/sentinel.txt",
    "%252e%252e%252f",
    "..%252f..%252fsentinel.txt",
    "//proc/self/root",
    "%2fproc%2fself%2froot",
    "..\\..\\sentinel.txt",
    "..%5c..%5csentinel.txt",
    "%23",
    "%3F",
    "a%3Fb=1",
    ";",
    "a;b",
    "%00",
    "a%00b",
    "%c0%ae%c0%ae%2f",
    "sentinel.txt",
]
BENIGN = {
    "name": "api",
    "model": "cancer",
    "version": "1",
    "alias": "champion",
    "rule": "feature-drift",
    "prediction_id": "01a00000-0000-7000-8000-000000000000",
    "alert_id": "ghost",
    "run_id": "ghost",
    "token": "ghost",
    "path": "corral.css",
}
_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def _operations(world: World) -> list[tuple[str, str, str]]:
    """(method, template, parameter) for every path parameter of every route: the OpenAPI document's, and the
    routes it leaves out (the dashboard, static files)."""
    found: set[tuple[str, str, str]] = set()
    for template, item in world.client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method in item:
            for parameter in _PARAM.findall(template):
                found.add((method.upper(), template, parameter))
    for route, template in walk_routes(world.client.app.router.routes):  # type: ignore[attr-defined]
        for method in sorted((getattr(route, "methods", None) or {"GET"}) - {"HEAD"}):
            for parameter in _PARAM.findall(template):
                found.add((method, template, parameter))
    return sorted(found)


BODIES = {  # valid bodies, so that a route gets as far as the name it is given
    "/v1/models/{name}/aliases/{alias}": {"version": 1},
    "/v1/deployments/{name}/alert-rules/{rule}": {"metric": "drifted_share", "op": ">=", "threshold": 0.5},
    "/v1/deployments/{name}/members": {"members": []},
    "/v1/deployments/{name}": {"description": "renamed?"},
    "/v1/deployments/{name}/predict": {"instances": [ROW]},
    "/v2/models/{name}/infer": v2_body(),
    "/v2/models/{name}/versions/{version}/infer": v2_body(),
}


def test_traversal_in_every_path_parameter(world: World) -> None:
    operations = _operations(world)
    templates = {template for _, template, _ in operations}
    assert {"/v1/models/{name}/versions/{version}/report", "/ui/static/{path}", "/v2/models/{name}/infer"} <= templates
    assert len(operations) >= 40
    before, calls = world.footprint(), world.executions()
    for method, template, parameter in operations:
        body = json.dumps(BODIES.get(template, {})).encode() if method in ("POST", "PUT", "PATCH") else b""
        for payload in TRAVERSALS:
            target = _PARAM.sub(
                lambda m, p=parameter, v=payload: v if m.group(1) == p else BENIGN[m.group(1)], template
            )
            response = world.raw(method, target.encode(), body=body)
            where = f"{method} {target}: {response.status} {response.body[:200]!r}"
            if template.startswith("/ui") and response.status == 303:  # a form's answer: back to a dashboard page
                assert response.headers["location"].startswith("/ui"), where
                continue
            assert 400 <= response.status < 500, where
            assert SECRET.encode() not in response.body, f"{where} served the sentinel file"
            assert b"root:x:0:0" not in response.body, f"{where} served /etc/passwd"
            if not template.startswith("/ui"):  # the dashboard answers with pages
                world.assert_refusal(response.status, response.body, echoed=(unquote(payload),))
    assert world.executions() == calls, "a model was invoked"
    assert world.footprint() == before, "a request wrote something"
    world.assert_healthy()


# -- numbers past what the stores hold -------------------------------------------------------------------------------

HUGE = str(10**30)


def _integer_parameters(world: World) -> list[tuple[str, str, str, str]]:
    """(method, template, where, name) of every integer parameter in the OpenAPI document: path and query."""
    found = []
    for template, item in world.client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                types = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
                if "integer" in types:
                    found.append((method.upper(), template, parameter["in"], parameter["name"]))
    return found


def test_numbers_past_the_stores_range_in_every_integer_parameter(world: World) -> None:
    parameters = _integer_parameters(world)
    names = {(template, name) for _, template, _, name in parameters}
    assert ("/v1/audit/predictions", "version") in names and ("/v1/audit/predictions", "after") in names
    before, calls = world.footprint(), world.executions()
    for method, template, where, name in parameters:
        for value in (HUGE, "-" + HUGE, "1e3", "0x10", "²", "1.5"):
            path = _PARAM.sub(
                lambda m, n=name, v=value, w=where: v if w == "path" and m.group(1) == n else BENIGN[m.group(1)],
                template,
            )
            response = world.client.request(
                method,
                path,
                params={name: value} if where == "query" else {},
                headers={**world.admin, **({name: value.encode()} if where == "header" else {})},
                json=BODIES.get(template) if method in ("POST", "PUT", "PATCH") else None,
            )
            status = response.status_code
            assert status < 500, f"{method} {path} {where} {name}={value}: {status} {response.text[:200]}"
            if value != HUGE:  # not an integer at all, or negative past any range: refused
                assert status >= 400, f"{method} {path} {where} {name}={value}: {status}"
            if status >= 400:
                world.assert_refusal(status, response.content, echoed=(value,))
    assert world.executions() == calls, "a model was invoked"
    assert world.footprint() == before, "a request wrote something"
    world.assert_healthy()


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("PUT", "/v1/models/cancer/aliases/champion", {"version": 10**30}),
        ("PUT", "/v1/models/cancer/aliases/champion", {"version": 2**31}),
        ("PUT", "/v1/deployments/api/members", {"members": [{"model": "cancer", "version": 10**30, "role": "shadow"}]}),
        (
            "PUT",
            "/v1/deployments/api/alert-rules/r1",
            {"metric": "drifted_share", "op": ">", "threshold": 1, "window": 10**30},
        ),
        ("PATCH", "/v1/deployments/api", {"batching": {"max_batch_size": 10**30}}),
        ("POST", "/v1/feedback", {"prediction_id": "x", "label": 10**30}),
        ("POST", "/v1/tokens", {"name": "big", "role": "viewer", "expires_in": "9" * 30 + "d"}),
    ],
    ids=["alias-1e30", "alias-2^31", "member", "rule-window", "batching", "feedback", "token"],
)
def test_numbers_past_the_stores_range_in_bodies(world: World, method: str, url: str, body: dict[str, Any]) -> None:
    world.attack(method, url, json=body)


# -- client-supplied URLs -----------------------------------------------------------------------------------------

URLS = ["file:///etc/passwd", "http://169.254.169.254/latest/meta-data/", "gopher://127.0.0.1:6379/_INFO", "//evil/x"]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Any outgoing connection attempt is recorded and fails."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("the attack suite allows no outgoing connections")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.parametrize("url", URLS)
def test_urls_where_names_are_expected_are_refused_and_never_fetched(
    world: World, no_network: list[Any], url: str
) -> None:
    rule = {"metric": "drifted_share", "op": ">=", "threshold": 0.5, "channels": [url]}
    error = world.attack("PUT", "/v1/deployments/api/alert-rules/exfiltrate", json=rule, code="invalid_alert_rule")
    assert "unknown channels" in error["error"]
    world.attack("POST", "/v1/deployments", json={"name": "fetcher", "model": url}, code={"invalid_name", "not_found"})
    world.attack("PUT", "/v1/deployments/api/monitoring/config", json={"detectors": {"numerical": [url]}})
    assert no_network == []


# -- hostile model versions -----------------------------------------------------------------------------------------


def test_a_pickle_version_is_never_loaded_by_the_server(world: World, tmp_path: Path) -> None:
    sentinel = tmp_path / "unpickled"
    store_version(world.services.registry, pickle_archive(Sentinel(sentinel)), name="crafted", runtime=PICKLE_SPEC)
    store_version(world.services.registry, pickle_archive(Sentinel(sentinel), file="model.skops"), name="liar")
    for name in ("crafted", "liar"):
        world.services.registry.promote(name, 1)
        created = world.client.post("/v1/deployments", json={"name": name, "model": name}, headers=world.admin)
        assert created.status_code == 201, created.text
    for name in ("crafted", "liar"):
        ready = world.client.get(f"/v2/models/{name}/ready", headers=world.admin)
        assert ready.status_code == 503
        body = {"instances": [{"x": 1.0}]}
        response = world.unchanged(
            lambda n=name, b=body: world.client.post(f"/v1/deployments/{n}/predict", json=b, headers=world.admin)
        )
        assert response.status_code == 503 and response.json()["code"] == "unavailable"
        world.assert_discreet(response.json()["error"])
        assert re.search(r"\(error [0-9a-f-]{36}\)$", response.json()["error"]), response.json()
    assert not sentinel.exists()
    for name in ("crafted", "liar"):
        assert world.client.delete(f"/v1/deployments/{name}", headers=world.admin).status_code == 204
    world.assert_healthy()


# -- SQL metacharacters in every audit search field ------------------------------------------------------------------

SQL = ["' OR 1=1 --", '"; DROP TABLE predictions; --', "%", "_", "\\", "'; DELETE FROM predictions; --", "\x00"]


MARKED = {**ROW, "mean radius": 17.77}  # rows only this group sends: a search for them is exact


@pytest.fixture(scope="module")
def recorded(world: World) -> set[str]:
    response = world.client.post(PREDICT, json={"instances": [MARKED, MARKED]}, headers=world.admin)
    assert response.status_code == 200
    return set(response.json()["prediction_ids"])


def _marked(world: World) -> set[str]:
    found = world.client.get("/v1/audit/predictions", params={"field": "mean radius=17.77"}, headers=world.admin)
    assert found.status_code == 200
    return {r["prediction_id"] for r in found.json()["records"]}


@pytest.mark.parametrize("payload", SQL)
@pytest.mark.parametrize(
    "field",
    ["deployment", "model", "version", "since", "until", "output", "field-name", "field-value", "after", "limit"],
)
def test_sql_metacharacters_in_every_audit_search_field(
    world: World, recorded: set[str], field: str, payload: str
) -> None:
    if field == "field-name":
        params = {"field": f"{payload}=17.77"}
    elif field == "field-value":
        params = {"field": f"mean radius={payload}"}
    else:
        params = {field: payload}
    response = world.unchanged(lambda: world.client.get("/v1/audit/predictions", params=params, headers=world.admin))
    if response.status_code == 200:
        records = response.json()["records"]
        assert records == [], f"{params} matched {len(records)} records"  # no recorded value is any of these
    else:
        world.assert_refusal(response.status_code, response.content, "schema_error", echoed=(payload,))
    assert _marked(world) == recorded  # the table is intact, and a search still finds exactly what it should
    html = world.unchanged(lambda: world.client.get("/ui/audit", params=params, headers=world.admin))
    assert html.status_code in (200, 400), html.text[:300]


def test_exact_values_match_exactly_and_nothing_is_a_wildcard(world: World, recorded: set[str]) -> None:
    assert _marked(world) == recorded
    for pattern in ("ap_", "a%", "%", "_pi"):
        found = world.client.get("/v1/audit/predictions", params={"deployment": pattern}, headers=world.admin)
        assert found.status_code == 200 and found.json()["records"] == []
    for value in ("17.7_", "17.7%", "1%"):
        found = world.client.get("/v1/audit/predictions", params={"field": f"mean radius={value}"}, headers=world.admin)
        assert found.json()["records"] == []
    assert world.client.get("/v1/audit/verify", headers=world.admin).json()["ok"] is True


# -- tokens ---------------------------------------------------------------------------------------------------------

FORGED = "corral_" + "A" * 43


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthenticated"),
        (bearer(FORGED), "invalid_token"),
        ({"Authorization": ("Bearer corral_" + "A" * 42 + "é").encode()}, "invalid_token"),
        (bearer("not-a-corral-token"), "invalid_token"),
        (bearer("corral_" + "A" * 10_000), "invalid_token"),
        (bearer(""), "unauthenticated"),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "unauthenticated"),
        ({"Authorization": "Bearer"}, "unauthenticated"),
        ({"Cookie": "corral_token=" + FORGED}, "unauthenticated"),  # a cookie never acts on an API write
    ],
    ids=["none", "forged", "non-ascii", "garbage", "huge", "empty", "basic", "scheme-only", "cookie-on-write"],
)
def test_forged_and_malformed_tokens_are_401(world: World, headers: dict[str, str], code: str) -> None:
    error = world.attack("POST", PREDICT, json={"instances": [ROW]}, headers=headers, code=code)
    assert FORGED not in error["error"]


def test_expired_and_revoked_tokens_are_401(world: World) -> None:
    expiring = world.services.tokens.create("attack-expiring", "predictor", expires_in=timedelta(milliseconds=300))
    revoked = world.services.tokens.create("attack-revoked", "predictor")
    for issued in (expiring, revoked):
        ok = world.client.post(PREDICT, json={"instances": [ROW]}, headers=bearer(issued.secret))
        assert ok.status_code == 200  # both worked (and are now remembered by the server)
    world.services.tokens.revoke("attack-revoked")
    time.sleep(0.4)
    world.attack("POST", PREDICT, json={"instances": [ROW]}, headers=bearer(expiring.secret), code="token_expired")
    world.attack("POST", PREDICT, json={"instances": [ROW]}, headers=bearer(revoked.secret), code="token_revoked")
    world.attack("GET", "/v1/audit/verify", headers=bearer(revoked.secret), code="token_revoked")


# -- error bodies ---------------------------------------------------------------------------------------------------


def test_unexpected_failures_say_little_and_log_the_rest(world: World, caplog: pytest.LogCaptureFixture) -> None:
    server = world.client.app.state.server  # type: ignore[attr-defined]
    original = server.predict

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"boom at {world.home}/corral.db: (sqlite3.OperationalError) no such table [SQL: SELECT 1]")

    server.predict = broken
    try:
        with caplog.at_level(logging.ERROR, logger="corral.api"):
            response = world.client.post(PREDICT, json={"instances": [ROW]}, headers=world.admin)
    finally:
        server.predict = original
    assert response.status_code == 500
    body = response.json()
    assert body["code"] == "internal" and set(body) == {"error", "code"}
    world.assert_discreet(body["error"])
    error_id = re.search(r"\(error ([0-9a-f-]{36})\)$", body["error"])
    assert error_id is not None, body
    logged = [r for r in caplog.records if error_id.group(1) in r.getMessage()]
    assert logged and "no such table" in logged[0].getMessage() and logged[0].exc_info is not None
    world.assert_healthy()


def test_the_audit_store_down_is_a_503_without_driver_text(world: World) -> None:
    from corral.errors import StoreError

    store = world.services.database.audit
    original = store.search

    def failing(**_: Any) -> Any:
        raise StoreError(f"database error: (psycopg.OperationalError) connection to {world.home} refused [SQL: SELECT]")

    store.search = failing  # type: ignore[method-assign]
    try:
        response = world.client.get("/v1/audit/predictions", headers=world.admin)
    finally:
        store.search = original  # type: ignore[method-assign]
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    body = response.json()
    assert body["code"] == "unavailable" and body["error"].startswith("the database or artifact store is unavailable")
    world.assert_discreet(body["error"])


def test_a_large_raw_body_is_counted_not_trusted(world: World) -> None:
    """The middleware counts what it reads: a body sent in pieces smaller than the limit each, over it together."""
    stream = io.BytesIO(b" " * (MAX_BODY + 1))
    error = world.attack("POST", PREDICT, content=iter(lambda: stream.read(1000), b""), code="limit_exceeded")
    assert "over the limit" in error["error"]
