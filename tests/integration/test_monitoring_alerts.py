"""Monitoring, alerts and feedback end to end, against a real ``corral serve``.

One server (SQLite under a temporary ``CORRAL_HOME``, loops sped up to fractions of a second) serves a
logistic regression trained on scikit-learn's breast-cancer data. Its alert channels are real receivers in
this process: a local HTTP server that fails the first webhook sends with 500, and an aiosmtpd SMTP server.

- Drifted traffic breaches a rule set over HTTP: the alert fires once, the webhook gets it after retries
  (one Idempotency-Key for every attempt) and exactly once with a 2xx, the e-mail once; the alert is listed,
  acknowledged and shown by the monitoring endpoint; raising the threshold resolves it, notified once.
- Labels sent for recorded predictions give realized accuracy in the monitoring snapshot; a request refused
  for a string in a numerical feature is counted as that feature's type violation.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from server_process import ServerProcess, corral_env, open_services, server_process
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

pytestmark = pytest.mark.slow

DEPLOYMENT = "cancer-watch"
MODEL = "cancer"
FEATURES = ["mean radius", "mean texture", "mean smoothness", "worst radius", "worst concavity", "worst symmetry"]
SHIFTED = FEATURES[:3]  # moved by 6 standard deviations in the drifted traffic: half the features drift
RULE = "drifted-half"
WAIT_SECONDS = 30.0
T = TypeVar("T")


def window_length(margin: float = 300.0) -> int:
    """A window length (about an hour) whose current window has ``margin`` seconds left.

    Windows start at multiples of their length since the epoch; a window ending while this module runs would
    split its traffic, so the server keeps only a window that will not end before the tests do.
    """
    now = time.time()
    return next(n for n in range(3600, 3700) if n - now % n >= margin)


# --------------------------------------------------------------------------- a real webhook receiver


@dataclass
class Hit:
    at: float
    headers: dict[str, str]
    body: dict[str, Any]
    answered: int


@dataclass
class Receiver:
    port: int
    plan: list[int] = field(default_factory=list)  # statuses to answer first, then 200
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def of(self, state: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.body.get("state") == state]


class Handler(BaseHTTPRequestHandler):
    server: ReceiverServer

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        with receiver.lock:
            status = receiver.plan.pop(0) if receiver.plan else 200
            receiver.hits.append(Hit(time.time(), {k.lower(): v for k, v in self.headers.items()}, body, status))
        text = b"ok" if status < 300 else b"receiver is down"
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ReceiverServer(ThreadingHTTPServer):
    receiver: Receiver


class Mailbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted"

    def messages(self) -> list[EmailMessage]:
        return [
            message_from_bytes(e.content, _class=EmailMessage, policy=policy.default)
            for e in list(self.envelopes)
            if isinstance(e.content, bytes)
        ]

    def subjects(self) -> list[str]:
        # a subject longer than a header line is folded onto the next line whole: unfolded, it starts with a space
        return [str(m["Subject"]).strip() for m in self.messages()]


# --------------------------------------------------------------------------- the server


@dataclass
class Watch:
    server: ServerProcess
    http: httpx.Client
    receiver: Receiver
    mailbox: Mailbox
    model: Pipeline
    data: pd.DataFrame
    window: int

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float = WAIT_SECONDS) -> T:
        """Poll ``check`` until it gives something truthy; fail naming ``what``, with the server's log tail."""
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout:g} s; server log:\n{self.server.log[-3000:]}")
            time.sleep(0.1)

    def predict(self, rows: pd.DataFrame | list[dict[str, Any]]) -> httpx.Response:
        instances = rows.to_dict(orient="records") if isinstance(rows, pd.DataFrame) else rows
        return self.http.post(f"/v1/deployments/{DEPLOYMENT}/predict", json={"instances": instances})

    def monitoring(self) -> dict[str, Any]:
        response = self.http.get(f"/v1/deployments/{DEPLOYMENT}/monitoring", params={"window": self.window})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def alert(self, alert_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/alerts/{alert_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def put_rule(self, threshold: float) -> dict[str, Any]:
        rule = {
            "metric": "drifted_share",
            "op": ">",
            "threshold": threshold,
            "window": self.window,
            # PSI on the profile's 20 bins flags about a third of this data set's own features as drifted in a
            # 100-row sample of it: the rule judges only windows as large as the drifted request (569 rows)
            "min_samples": 400,
            "severity": "critical",
            "cooldown_seconds": 0,
        }
        response = self.http.put(f"/v1/deployments/{DEPLOYMENT}/alert-rules/{RULE}", json=rule)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    server = ReceiverServer(("127.0.0.1", 0), Handler)
    server.receiver = Receiver(port=server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    with socket.socket() as sock:  # a free port: the controller connects to its own port to check it is up
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def home(cancer: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Pipeline]:
    home = tmp_path_factory.mktemp("monitoring") / "home"
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(cancer[FEATURES], cancer["target"])
    services = open_services(corral_env(home))
    try:
        services.registry.log_model(
            model, name=MODEL, training_data=cancer[[*FEATURES, "target"]], target="target", code_commit="0" * 40
        )
        services.registry.promote(MODEL, 1)
        services.deployments.create(DEPLOYMENT, model=MODEL)
    finally:
        services.close()
    return home, model


@pytest.fixture(scope="module")
def watch(
    home: tuple[Path, Pipeline], cancer: pd.DataFrame, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> Iterator[Watch]:
    box, smtp_port = mailbox
    window = window_length()
    channels = {
        "ops": receiver.url,
        "mail": f"smtp://127.0.0.1:{smtp_port}?from=corral@example.com&to=oncall@example.com",
    }
    env = corral_env(
        home[0],
        CORRAL_MONITORING__WINDOWS=json.dumps([window]),
        CORRAL_MONITORING__FLUSH_SECONDS="0.5",
        CORRAL_MONITORING__PROCESS_SECONDS="0.2",
        CORRAL_ALERTS__EVALUATE_SECONDS="1",
        CORRAL_ALERTS__DISPATCH_SECONDS="0.5",
        CORRAL_ALERTS__CHANNELS=json.dumps(channels),
        CORRAL_ALERTS__LINK="https://corral.example.com/deployments/{deployment}",
    )
    with (
        server_process(env) as server,
        httpx.Client(base_url=server.base_url, headers=server.headers, timeout=30) as http,
    ):
        # Only this module's rule may notify: switch the default rules off (over the API) before any traffic.
        defaults = http.get(f"/v1/deployments/{DEPLOYMENT}/alert-rules").raise_for_status().json()
        assert {r["name"] for r in defaults} >= {"feature-drift", "prediction-drift", "data-quality"}
        for rule in defaults:
            # the default rules judge the default hour; this server keeps only ``window`` (3600 s to 3700 s, so
            # that no window ends while the module runs), and a rule must name a window the server keeps
            body = {k: v for k, v in rule.items() if k not in ("deployment", "name")} | {"enabled": False}
            body["window"] = window
            http.put(f"/v1/deployments/{DEPLOYMENT}/alert-rules/{rule['name']}", json=body).raise_for_status()
        rules = http.get(f"/v1/deployments/{DEPLOYMENT}/alert-rules").raise_for_status().json()
        assert len(rules) == len(defaults) and not any(r["enabled"] for r in rules)
        yield Watch(server, http, receiver, box, home[1], cancer[[*FEATURES, "target"]], window)
        assert not server.errors(), server.errors()


# --------------------------------------------------------------------------- the tests


def test_drift_alert_fires_once_through_retries_and_resolves_once(watch: Watch) -> None:
    receiver, mailbox, http = watch.receiver, watch.mailbox, watch.http
    assert http.get("/v1/alerts", params={"state": "firing", "deployment": DEPLOYMENT}).json() == []
    receiver.plan = [500, 500]  # the webhook's first two sends fail (retryable), the third gets 200

    rule = watch.put_rule(threshold=0.2)
    assert (rule["name"], rule["metric"], rule["threshold"], rule["enabled"]) == (RULE, "drifted_share", 0.2, True)

    drifted = watch.data[FEATURES].copy()
    for name in SHIFTED:
        drifted[name] += 6 * watch.data[name].std()
    response = watch.predict(drifted)
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == len(drifted)

    # -- firing: the webhook gets it after two failures, the e-mail once -------------------------------------------
    watch.wait_for("2xx-answered firing webhook", lambda: [h for h in receiver.of("firing") if h.answered == 200])
    watch.wait_for("firing e-mail", lambda: mailbox.envelopes)
    firing = receiver.of("firing")
    assert [h.answered for h in firing] == [500, 500, 200], firing
    alert_id = firing[0].body["alert_id"]
    assert {h.headers["idempotency-key"] for h in firing} == {f"{alert_id}:firing"}
    assert all(h.body == firing[0].body for h in firing)  # every retry sends the same document
    note = firing[0].body
    assert (note["kind"], note["dedupe_key"], note["deployment"], note["rule"]) == (
        "corral.alert",
        f"{alert_id}:firing",
        DEPLOYMENT,
        RULE,
    )
    assert (note["metric"], note["severity"], note["threshold"]) == ("drifted_share", "critical", 0.2)
    assert note["value"] == pytest.approx(len(SHIFTED) / len(FEATURES))
    assert all(name in note["message"] for name in SHIFTED), note["message"]
    assert note["link"] == f"https://corral.example.com/deployments/{DEPLOYMENT}"
    first_retry, second_retry = firing[1].at - firing[0].at, firing[2].at - firing[1].at
    assert first_retry >= 1.7 and second_retry >= 3.5, (first_retry, second_retry)  # backoff 2 s, 4 s (+-10%)

    [mail] = mailbox.messages()
    [subject] = mailbox.subjects()
    assert subject.startswith("[corral] FIRING critical:") and f" {DEPLOYMENT} {RULE} " in subject, subject
    assert mail["From"] == "corral@example.com" and mail["To"] == "oncall@example.com"
    assert mail["Message-ID"] == f"<{alert_id}-firing@corral>"
    assert mailbox.envelopes[0].rcpt_tos == ["oncall@example.com"]

    # -- the alert over the API --------------------------------------------------------------------------------------
    [listed] = http.get("/v1/alerts", params={"state": "firing", "deployment": DEPLOYMENT}).json()
    assert (listed["id"], listed["rule"], listed["state"], listed["severity"]) == (alert_id, RULE, "firing", "critical")
    assert listed["acked_by"] is None

    def delivered(state: str) -> dict[str, tuple[str, int]] | None:
        deliveries = [d for d in watch.alert(alert_id)["deliveries"] if d["state"] == state]
        done = {d["channel"]: (d["status"], d["attempts"]) for d in deliveries}
        return done if len(done) == 2 and all(s == "delivered" for s, _ in done.values()) else None

    # the receiver answers before the dispatcher records the outcome: wait for the record too
    assert watch.wait_for("firing deliveries recorded", lambda: delivered("firing")) == {
        "ops": ("delivered", 3),
        "mail": ("delivered", 1),
    }

    acked = http.post(f"/v1/alerts/{alert_id}/ack", json={"by": "oncall@example.com"})
    assert acked.status_code == 200, acked.text
    assert acked.json()["acked_by"] == "oncall@example.com" and acked.json()["acked_at"] is not None
    assert acked.json()["state"] == "firing"  # acknowledging does not resolve
    assert watch.alert(alert_id)["acked_by"] == "oncall@example.com"

    snapshot = watch.monitoring()
    assert set(snapshot["drifted_features"]) == set(SHIFTED), snapshot["drifted_features"]
    by_name = {f["name"]: f for f in snapshot["features"]}
    assert all(by_name[name]["drift"]["drifted"] for name in SHIFTED)
    assert [(a["id"], a["acked_by"]) for a in snapshot["alerts"]] == [(alert_id, "oncall@example.com")]

    # -- resolved: the rule no longer holds once its threshold is above what the window shows ------------------------
    watch.put_rule(threshold=0.9)
    watch.wait_for("resolved webhook", lambda: receiver.of("resolved"))
    watch.wait_for("resolved e-mail", lambda: len(mailbox.envelopes) >= 2)
    watch.wait_for("resolved deliveries recorded", lambda: delivered("resolved"))
    time.sleep(3.0)  # three more evaluations, six more dispatches: nothing else may be sent
    [resolved] = receiver.of("resolved")
    assert resolved.answered == 200 and resolved.headers["idempotency-key"] == f"{alert_id}:resolved"
    assert resolved.body["alert_id"] == alert_id and resolved.body["resolved_at"] is not None
    assert len(receiver.of("firing")) == 3 and len(receiver.hits) == 4
    assert [subject.split()[1] for subject in mailbox.subjects()] == ["FIRING", "RESOLVED"]
    assert delivered("resolved") == {"ops": ("delivered", 1), "mail": ("delivered", 1)}

    after = watch.alert(alert_id)
    assert after["state"] == "resolved" and after["resolved_at"] is not None
    assert after["acked_by"] == "oncall@example.com"
    assert http.get("/v1/alerts", params={"state": "firing", "deployment": DEPLOYMENT}).json() == []
    assert watch.monitoring()["alerts"] == []


def test_feedback_gives_realized_accuracy_and_type_violations_are_counted(watch: Watch) -> None:
    http = watch.http
    rows = watch.data.iloc[::7].reset_index(drop=True)  # 82 rows spread over the data set
    response = watch.predict(rows[FEATURES])
    assert response.status_code == 200, response.text
    answer = response.json()
    ids, predictions = answer["prediction_ids"], answer["predictions"]
    assert len(ids) == len(set(ids)) == len(rows)
    assert predictions == watch.model.predict(rows[FEATURES]).tolist()

    # -- the prediction log has what was sent and answered -----------------------------------------------------------
    for i in (0, len(rows) - 1):
        recorded = http.get(f"/v1/predictions/{ids[i]}")
        assert recorded.status_code == 200, recorded.text
        record = recorded.json()
        assert (record["prediction_id"], record["deployment"], record["model"], record["version"]) == (
            ids[i],
            DEPLOYMENT,
            MODEL,
            1,
        )
        assert record["inputs"] == pytest.approx(rows.loc[i, FEATURES].to_dict())
        assert record["output"] == predictions[i]
        assert record["probabilities"] == pytest.approx(answer["probabilities"][i])

    # -- labels -----------------------------------------------------------------------------------------------------
    items = [{"prediction_id": pid, "label": int(label)} for pid, label in zip(ids, rows["target"], strict=True)]
    stored = http.post("/v1/feedback", json={"items": items})
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"recorded": len(rows), "unchanged": 0}
    assert http.post("/v1/feedback", json=items).json() == {"recorded": 0, "unchanged": len(rows)}  # a retry

    unknown = http.post("/v1/feedback", json={"prediction_id": "no-such-prediction-42", "label": 1})
    assert unknown.status_code == 404, unknown.text
    assert "no-such-prediction-42" in unknown.json()["error"]

    # -- a string where a number belongs: refused, and counted against that feature ---------------------------------
    bad = {**rows.loc[0, FEATURES].to_dict(), "mean texture": "twenty"}
    refused = watch.predict([bad])
    assert refused.status_code == 400, refused.text
    assert "mean texture" in refused.json()["error"]

    def settled() -> dict[str, Any] | None:
        snapshot = watch.monitoring()
        performance = snapshot.get("performance") or {}
        invalid = {f["name"]: f["quality"]["invalid"] for f in snapshot["features"]}
        return snapshot if performance.get("labelled") and invalid.get("mean texture") else None

    snapshot = watch.wait_for("labelled rows and the type violation in the monitoring snapshot", settled)
    performance = snapshot["performance"]
    assert performance["labelled"] == len(rows)
    expected = accuracy_score(rows["target"], watch.model.predict(rows[FEATURES]))
    assert performance["realized"]["accuracy"]["value"] == pytest.approx(expected)
    quality = {f["name"]: f["quality"] for f in snapshot["features"]}
    assert quality["mean texture"]["invalid"] == 1
    assert all(quality[name]["invalid"] == 0 for name in FEATURES if name != "mean texture")
