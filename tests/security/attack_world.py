"""One real corral application for the attack suite, and what each attack is judged by (the ``world`` fixture).

:class:`World` is the application over services on SQLite in a temporary ``CORRAL_HOME``, with authentication
on and one deployment (``api``, a logistic regression on three breast-cancer columns) loaded. An attack is
sent with :meth:`World.attack`, which asserts what every refusal must show:

- a 4xx (never a 5xx) with the JSON body ``{"error": message, "code": CODE}``, ``CODE`` one of
  :data:`corral.api.errors.CODES`, and no file path, SQL or traceback in the message;
- the model was not invoked (the server's count of model calls did not move);
- nothing was written (:meth:`World.footprint`: the prediction log, models, versions and aliases, deployments,
  alert rules and alerts, pipeline runs, tokens);
- the server is still healthy afterwards: ready, and a good prediction still works.

The World is shared by the whole session (building it trains and registers a model); every check compares
before and after, so attacks do not depend on each other's order.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from corral.api.errors import CODES, leaks_internals
from corral.app import Services
from corral.settings import AlertSettings, PipelineSettings, ServingSettings, Settings

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2 in its TestClient; httpx, our dependency, works
    from starlette.exceptions import StarletteDeprecationWarning

    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

_TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_TESTS / "unit" / "registry"))  # crafted.py: hostile model versions
sys.path.insert(0, str(_TESTS / "integration"))  # server_process.py: a real corral serve

COLUMNS = ["mean radius", "mean texture", "mean smoothness"]
ROW = {"mean radius": 14.1, "mean texture": 19.3, "mean smoothness": 0.1}
MAX_BODY = 64 * 1024
MAX_ROWS = 50
SECRET = "corral-attack-suite-sentinel-7f3a9c"  # the content of a file next to the store no response may show


def v2_body(rows: int = 1, **override: Any) -> dict[str, Any]:
    """A good Open Inference Protocol request: one FP64 input per column."""
    inputs = [{"name": c, "shape": [rows], "datatype": "FP64", "data": [ROW[c]] * rows} for c in COLUMNS]
    return {"inputs": inputs, **override}


@dataclass
class Raw:
    """A response to a request sent straight to the ASGI application (:meth:`World.raw`)."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class World:
    services: Services
    client: TestClient
    home: Path
    sentinel: Path
    admin: dict[str, str]
    checked: list[str] = field(default_factory=list)

    # -- what an attack is judged by ----------------------------------------------------------------------------

    def executions(self) -> float:
        """Model calls so far (every deployment, every version), from the server's own Prometheus counter."""
        metrics = self.client.app.state.metrics  # type: ignore[attr-defined]
        total = 0.0
        for family in metrics.registry.collect():
            if family.name == "corral_inference_exec_count":
                total += sum(s.value for s in family.samples if s.name.endswith("_total"))
        return total

    def footprint(self) -> dict[str, Any]:
        """Everything a request could write, as comparable values."""
        s = self.services
        models = s.registry.list_models()
        return {
            "audit": s.database.audit.count(),
            "models": sorted((m.name, tuple(sorted(m.aliases.items()))) for m in models),
            "versions": sorted((v.name, v.version, v.status) for m in models for v in s.registry.list_versions(m.name)),
            "history": sorted(len(s.registry.alias_history(m.name)) for m in models),
            "deployments": sorted(json.dumps(d.to_dict(), sort_keys=True, default=str) for d in s.deployments.list()),
            "rules": [json.dumps([r.to_dict() for r in s.alerts.rules(d.name)]) for d in s.deployments.list()],
            "alerts": [a.id for a in s.alerts.list_alerts(limit=1000)],
            "runs": [r.id for r in s.pipelines.store.list_runs(limit=1000)],
            "tokens": sorted((t.id, t.revoked_at is not None) for t in s.tokens.all()),
        }

    def assert_healthy(self) -> None:
        ready = self.client.get("/v2/health/ready")
        assert ready.status_code == 200, ready.text
        before = self.executions()
        good = self.client.post("/v1/deployments/api/predict", json={"instances": [ROW]}, headers=self.admin)
        assert good.status_code == 200, good.text
        assert len(good.json()["prediction_ids"]) == 1
        assert self.executions() == before + 1

    def assert_refusal(
        self, status: int, body: bytes, code: str | set[str] | None = None, *, echoed: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """A 4xx with the error body; ``echoed`` are what the client sent, which a message may quote back."""
        assert 400 <= status < 500, f"expected a 4xx, got {status}: {body[:300]!r}"
        error = json.loads(body)
        assert set(error) == {"error", "code"}, error
        assert isinstance(error["error"], str) and error["error"]
        assert error["code"] in CODES, error
        if code is not None:
            assert error["code"] in ({code} if isinstance(code, str) else code), error
        message = error["error"]
        for text in echoed:
            message = message.replace(repr(text), "").replace(text, "")
        self.assert_discreet(message)
        return error

    def assert_discreet(self, text: str) -> None:
        """No server path, SQL, traceback or the sentinel file's content."""
        assert SECRET not in text
        assert str(self.home) not in text and "site-packages" not in text
        assert not leaks_internals(text), text

    def attack(
        self,
        method: str,
        url: str,
        *,
        code: str | set[str] | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Send one hostile request (with the admin's token unless ``headers`` says otherwise) and assert the
        refusal: a 4xx with a JSON code, the model not invoked, nothing written, the server healthy after."""
        before, calls = self.footprint(), self.executions()
        response = self.client.request(method, url, headers=self.admin if headers is None else headers, **kwargs)
        error = self.assert_refusal(response.status_code, response.content, code)
        assert self.executions() == calls, "the model was invoked"
        assert self.footprint() == before, "the request wrote something"
        self.assert_healthy()
        self.checked.append(f"{method} {url}")
        return error

    def unchanged(self, action: Callable[[], Any]) -> Any:
        """Run ``action``, asserting the model was not invoked and nothing was written; return its result."""
        before, calls = self.footprint(), self.executions()
        result = action()
        assert self.executions() == calls, "the model was invoked"
        assert self.footprint() == before, "the request wrote something"
        return result

    # -- raw requests -------------------------------------------------------------------------------------------

    def raw(
        self,
        method: str,
        raw_path: bytes,
        *,
        query: bytes = b"",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Raw:
        """Call the application as uvicorn would for this exact request line: ``raw_path`` is not normalized
        (``../`` stays), and the decoded path is what uvicorn makes of it (percent-decoding, bad UTF-8 replaced)."""
        sent = {**self.admin, **(headers or {})}
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(raw_path.decode("ascii")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1")]
            + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in sent.items()]
            + ([(b"content-length", str(len(body)).encode())] if body else []),
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        messages: list[dict[str, Any]] = []

        async def call() -> None:
            delivered = False

            async def receive() -> dict[str, Any]:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                messages.append(message)

            await self.client.app(scope, receive, send)

        assert self.client.portal is not None
        self.client.portal.call(call)
        start = next(m for m in messages if m["type"] == "http.response.start")
        headers_out = {k.decode("latin-1"): v.decode("latin-1") for k, v in start.get("headers", [])}
        content = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        return Raw(start["status"], headers_out, content)


def settings_for(home: Path) -> Settings:
    return Settings(
        home=home,
        user="attack-suite",
        serving=ServingSettings(max_body_bytes=MAX_BODY, max_rows=MAX_ROWS, access_log=True, refresh_seconds=60),
        alerts=AlertSettings(enabled=False),
        pipelines=PipelineSettings(worker=False),
    )
