"""Notification channels against real receivers: a local HTTP server and a local SMTP server."""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from corral.alerts.channels import (
    Channel,
    EmailChannel,
    LogChannel,
    Notification,
    SlackChannel,
    WebhookChannel,
    backoff,
    channel_from_url,
)
from corral.errors import AlertError, DeliveryError

OPENED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def notification(**changes: Any) -> Notification:
    base = Notification(
        alert_id="a-123",
        state="firing",
        deployment="fraud",
        rule="drift:age",
        metric="psi",
        severity="critical",
        value=0.31,
        threshold=0.2,
        window_start=datetime(2024, 5, 1, 11, 0, tzinfo=UTC),
        message="Feature age drifted: PSI 0.31 is above 0.2.",
        opened_at=OPENED,
        link="https://corral.example.com/deployments/fraud",
    )
    return replace(base, **changes)


def free_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- a real HTTP receiver


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the test server answers next, and what it got."""

    port: int
    received: list[Received] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)  # e.g. ["500", "500"], then 200; "hang", "drip", "302"
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


class Handler(BaseHTTPRequestHandler):
    server: ReceiverServer

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        action = receiver.plan.pop(0) if receiver.plan else "200"
        if action == "hang":
            receiver.release.wait(10)
            self.close_connection = True
        elif action == "drip":  # one header byte at a time: no single read waits long
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while not receiver.release.wait(0.1):
                self.wfile.write(b"a")
                self.wfile.flush()
            self.close_connection = True
        else:
            self.answer(int(action))

    def answer(self, status: int) -> None:
        text = b"ok" if status < 300 else b"upstream says no"
        self.send_response(status)
        if status == 302:
            self.send_header("Location", f"http://127.0.0.1:{self.server.receiver.port}/elsewhere")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ReceiverServer(ThreadingHTTPServer):
    receiver: Receiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (the timeout tests) leaves a broken pipe behind


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ReceiverServer(("127.0.0.1", 0), Handler)
    server.receiver = Receiver(port=server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.receiver
    finally:
        server.receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


# --------------------------------------------------------------------------- the notification


def test_notification_document_and_subject() -> None:
    n = notification()
    doc = n.to_dict()
    assert doc["kind"] == "corral.alert"
    assert doc["version"] == 1
    assert doc["dedupe_key"] == "a-123:firing"
    assert doc["opened_at"] == "2024-05-01T12:00:00+00:00"
    assert doc["resolved_at"] is None
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc
    assert n.subject() == "[corral] FIRING critical: fraud drift:age = 0.31 (threshold 0.2)"

    resolved = notification(state="resolved", value=0.12, resolved_at=datetime(2024, 5, 1, 13, 0))
    assert resolved.subject() == "[corral] RESOLVED critical: fraud drift:age = 0.12 (threshold 0.2)"
    assert resolved.to_dict()["resolved_at"] == "2024-05-01T13:00:00+00:00"  # naive times are UTC
    assert resolved.to_dict()["dedupe_key"] == "a-123:resolved"


def test_notification_without_a_value_or_with_nan_stays_json() -> None:
    assert "= n/a" in notification(value=None).subject()
    assert notification(value=float("nan")).to_dict()["value"] is None
    assert "\n" not in notification(deployment="fr\naud").subject()


def test_notification_rejects_unknown_state_and_severity() -> None:
    with pytest.raises(AlertError, match="state"):
        notification(state="open")
    with pytest.raises(AlertError, match="severity"):
        notification(severity="fatal")


# --------------------------------------------------------------------------- webhooks


def test_webhook_delivers_the_document_with_an_idempotency_key(receiver: Receiver) -> None:
    channel = WebhookChannel("ops", receiver.url, headers={"Authorization": "Bearer tok3n"})
    assert isinstance(channel, Channel)
    channel.send(notification())

    [got] = receiver.received
    assert got.path == "/hook"
    assert got.headers["idempotency-key"] == "a-123:firing"
    assert got.headers["user-agent"] == "corral"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["authorization"] == "Bearer tok3n"
    body = got.json()
    assert body == notification().to_dict()
    assert body["deployment"] == "fraud"
    assert body["value"] == 0.31
    assert "tok3n" not in repr(channel)


def test_webhook_500_is_retryable_then_recovers(receiver: Receiver) -> None:
    receiver.plan = ["500", "503"]
    channel = WebhookChannel("ops", receiver.url)
    for status in ("500", "503"):
        with pytest.raises(DeliveryError) as failed:
            channel.send(notification())
        assert failed.value.retryable
        assert status in str(failed.value)
        assert "'ops'" in str(failed.value)
        assert receiver.url in str(failed.value)
        assert "upstream says no" in str(failed.value)
    channel.send(notification())  # the receiver is back
    assert len(receiver.received) == 3
    assert {r.headers["idempotency-key"] for r in receiver.received} == {"a-123:firing"}


def test_webhook_keeps_its_own_headers_and_short_header_values_do_not_mangle_messages(receiver: Receiver) -> None:
    receiver.plan = ["500"]
    channel = WebhookChannel("ops", receiver.url, headers={"X-Api-Version": "5", "idempotency-key": "mine"})
    with pytest.raises(DeliveryError, match="answered 500"):
        channel.send(notification())
    assert receiver.received[0].headers["idempotency-key"] == "a-123:firing"
    assert receiver.received[0].headers["x-api-version"] == "5"


@pytest.mark.parametrize(("status", "retryable"), [("429", True), ("400", False), ("404", False), ("302", False)])
def test_webhook_status_classification(receiver: Receiver, status: str, retryable: bool) -> None:
    receiver.plan = [status]
    with pytest.raises(DeliveryError, match=status) as failed:
        WebhookChannel("ops", receiver.url).send(notification())
    assert failed.value.retryable is retryable
    assert len(receiver.received) == 1  # redirects are not followed


def test_webhook_hanging_receiver_times_out(receiver: Receiver) -> None:
    receiver.plan = ["hang"]
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="timed out") as failed:
        WebhookChannel("ops", receiver.url, timeout=0.5).send(notification())
    assert failed.value.retryable
    assert time.monotonic() - started < 5  # a sanity guard only


def test_webhook_send_is_bounded_overall_by_its_timeout(receiver: Receiver) -> None:
    receiver.plan = ["drip"]  # every single read is quick; only the overall deadline stops this
    started = time.monotonic()
    with pytest.raises(DeliveryError, match=r"timed out after 0\.5 s") as failed:
        WebhookChannel("ops", receiver.url, timeout=0.5).send(notification())
    assert failed.value.retryable
    assert time.monotonic() - started < 5


def test_webhook_connection_refused_is_retryable() -> None:
    with pytest.raises(DeliveryError) as failed:
        WebhookChannel("ops", f"http://127.0.0.1:{free_port()}/hook", timeout=2).send(notification())
    assert failed.value.retryable
    assert "ConnectError" in str(failed.value)


def test_webhook_credentials_become_basic_auth_and_stay_secret(receiver: Receiver) -> None:
    url = f"http://bob:s3cret@127.0.0.1:{receiver.port}/hook?token=qu3ry"
    channel = WebhookChannel("ops", url)
    channel.send(notification())
    assert receiver.received[0].headers["authorization"].startswith("Basic ")
    receiver.plan = ["400"]
    with pytest.raises(DeliveryError) as failed:
        channel.send(notification())
    for shown in (str(failed.value), repr(channel), str(channel), channel.url):
        assert "s3cret" not in shown
        assert "qu3ry" not in shown
        assert "bob" not in shown
    assert f"127.0.0.1:{receiver.port}/hook" in str(failed.value)


# --------------------------------------------------------------------------- Slack


def test_slack_body_shape(receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{receiver.port}/services/T000/B000/XXXXSECRET"
    channel = channel_from_url("team", f"slack+{url}")
    assert isinstance(channel, SlackChannel)
    channel.send(notification())

    [got] = receiver.received
    assert got.path == "/services/T000/B000/XXXXSECRET"
    assert got.headers["idempotency-key"] == "a-123:firing"
    body = got.json()
    assert body["text"] == notification().subject()
    kinds = [block["type"] for block in body["blocks"]]
    assert kinds[0] == "header"
    assert "section" in kinds
    texts = json.dumps(body["blocks"])
    assert "Feature age drifted" in texts
    assert "*Deployment*\\nfraud" in texts
    assert "https://corral.example.com/deployments/fraud" in texts
    assert "XXXXSECRET" not in repr(channel)
    assert "B000" not in repr(channel)
    assert channel.url == f"http://127.0.0.1:{receiver.port}/services/***"


def test_slack_errors_hide_the_token(receiver: Receiver) -> None:
    receiver.plan = ["403"]
    channel = SlackChannel("team", f"http://127.0.0.1:{receiver.port}/services/T000/B000/XXXXSECRET")
    with pytest.raises(DeliveryError, match="403") as failed:
        channel.send(notification())
    assert not failed.value.retryable
    assert "XXXXSECRET" not in str(failed.value)


# --------------------------------------------------------------------------- e-mail


class Collector:
    """An aiosmtpd handler that keeps what it gets and can refuse recipients."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.envelopes: list[Envelope] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted"


def authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: LoginPassword
) -> AuthResult:
    ok = auth_data.login == b"bob" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


@pytest.fixture
def smtp_server() -> Iterator[tuple[Collector, int]]:
    collector = Collector()
    port = free_port()
    controller = Controller(
        collector, hostname="127.0.0.1", port=port, authenticator=authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        yield collector, port
    finally:
        controller.stop()


def parsed(envelope: Envelope) -> Message:
    content = envelope.content
    assert isinstance(content, bytes)
    return message_from_bytes(content)


def test_email_delivers_subject_sender_recipients_and_fields(smtp_server: tuple[Collector, int]) -> None:
    collector, port = smtp_server
    channel = EmailChannel(
        "mail", "127.0.0.1", port, sender="corral@example.com", recipients=["a@example.com", "b@example.com"]
    )
    channel.send(notification())

    [envelope] = collector.envelopes
    assert envelope.mail_from == "corral@example.com"
    assert envelope.rcpt_tos == ["a@example.com", "b@example.com"]
    message = parsed(envelope)
    assert message["Subject"] == notification().subject()
    assert message["From"] == "corral@example.com"
    assert message["To"] == "a@example.com, b@example.com"
    assert message["Message-ID"] == "<a-123-firing@corral>"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    assert "Feature age drifted" in text
    for line in ("Deployment:", "fraud", "Threshold:", "0.2", "Opened at:", "2024-05-01T12:00:00+00:00", "a-123"):
        assert line in text


def test_email_login_through_a_url(smtp_server: tuple[Collector, int]) -> None:
    collector, port = smtp_server
    channel = channel_from_url("mail", f"smtp://bob:s3cret@127.0.0.1:{port}?from=corral@example.com&to=a@example.com")
    channel.send(notification(state="resolved"))
    assert len(collector.envelopes) == 1
    assert "s3cret" not in repr(channel)


def test_email_failed_login_is_not_retryable(smtp_server: tuple[Collector, int]) -> None:
    _, port = smtp_server
    channel = EmailChannel(
        "mail",
        "127.0.0.1",
        port,
        sender="c@example.com",
        recipients=["a@example.com"],
        username="bob",
        password="wr0ng",
    )
    with pytest.raises(DeliveryError, match="535") as failed:
        channel.send(notification())
    assert not failed.value.retryable
    assert "wr0ng" not in str(failed.value)


def test_email_refused_recipient_is_not_retryable(smtp_server: tuple[Collector, int]) -> None:
    collector, port = smtp_server
    collector.refuse = True
    channel = EmailChannel("mail", "127.0.0.1", port, sender="c@example.com", recipients=["nobody@example.com"])
    with pytest.raises(DeliveryError, match="550") as failed:
        channel.send(notification())
    assert not failed.value.retryable
    assert "nobody@example.com" in str(failed.value)
    assert collector.envelopes == []


def test_email_closed_port_is_retryable() -> None:
    channel = EmailChannel(
        "mail", "127.0.0.1", free_port(), sender="c@example.com", recipients=["a@example.com"], timeout=2
    )
    with pytest.raises(DeliveryError) as failed:
        channel.send(notification())
    assert failed.value.retryable
    assert "'mail'" in str(failed.value)


# --------------------------------------------------------------------------- the log


def test_log_channel_logs_one_structured_line(caplog: pytest.LogCaptureFixture) -> None:
    channel = LogChannel()
    with caplog.at_level(logging.INFO, logger="corral.alerts"):
        channel.send(notification())
        channel.send(notification(state="resolved", resolved_at=OPENED))
    firing, resolved = caplog.records
    assert firing.levelno == logging.WARNING
    assert resolved.levelno == logging.INFO
    line = firing.getMessage()
    assert line.startswith("alert firing ")
    assert "\n" not in line
    assert "deployment=fraud" in line
    assert "rule=drift:age" in line
    assert "value=0.31" in line
    assert 'message="Feature age drifted: PSI 0.31 is above 0.2."' in line
    assert firing.alert["dedupe_key"] == "a-123:firing"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- from URLs


def test_channel_from_url_builds_each_kind() -> None:
    web = channel_from_url("ops", "https://hooks.example.com/corral", timeout=2.5)
    assert isinstance(web, WebhookChannel)
    assert (web.name, web.kind, web.timeout) == ("ops", "webhook", 2.5)

    slack = channel_from_url("team", "slack+https://hooks.slack.com/services/T1/B2/abc")
    assert isinstance(slack, SlackChannel)
    assert slack.kind == "slack"
    assert repr(slack) == "SlackChannel(name='team', url='https://hooks.slack.com/services/***', timeout=5.0)"

    mail = channel_from_url("mail", "smtp://u:p%40ss@mail.example.com:2525?from=a@b.c&to=x@y.z,z@w.v&starttls=true")
    assert isinstance(mail, EmailChannel)
    assert (mail.host, mail.port, mail.sender, mail.recipients) == (
        "mail.example.com",
        2525,
        "a@b.c",
        ("x@y.z", "z@w.v"),
    )
    assert (mail.username, mail.starttls, mail.ssl) == ("u", True, False)
    assert "p@ss" not in repr(mail)

    secure = channel_from_url("mail", "smtps://mail.example.com?from=a@b.c&to=x@y.z")
    assert isinstance(secure, EmailChannel)
    assert (secure.port, secure.ssl, secure.starttls) == (465, True, False)
    assert channel_from_url("m", "smtp://mail.example.com?from=a@b.c&to=x@y.z").port == 25  # type: ignore[attr-defined]

    for text in ("log", "log:"):
        log = channel_from_url("audit", text)
        assert isinstance(log, LogChannel)
        assert (log.name, log.kind, log.logger) == ("audit", "log", "corral.alerts")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/x", "unsupported ftp://"),
        ("hooks.example.com/x", "without a scheme"),
        ("https:///path-only", "no host"),
        ("https://example.com:99999/x", "bad port"),
        ("https://example.com:abc/x", "bad port"),
        ("slack+https:///services/T/B/X", "no host"),
        ("smtp://u:hunter2@:25?from=a@b.c&to=x@y.z", "no host"),
        ("smtp://u:hunter2@mail.example.com?to=x@y.z", "sender"),
        ("smtp://u:hunter2@mail.example.com?from=a@b.c", "recipients"),
        ("smtp://u:hunter2@mail.example.com?from=a@b.c&to=", "recipients"),
        ("smtp://u:hunter2@mail.example.com:7x?from=a@b.c&to=x@y.z", "bad port"),
        ("smtp://u:hunter2@mail.example.com:0?from=a@b.c&to=x@y.z", "bad port"),
        ("smtp://u:hunter2@mail.example.com?from=a@b.c&to=x@y.z&starttls=maybe", "starttls"),
        ("smtp://u:hunter2@mail.example.com?form=a@b.c&to=x@y.z", "unknown option"),
        ("smtp://u:hunter2@mail.example.com?from=not-an-address&to=x@y.z", "not an e-mail address"),
        ("smtp://u:hun/ter2@mail.example.com?from=a@b.c&to=x@y.z", "path"),
        ("smtps://u:hunter2@mail.example.com?from=a@b.c&to=x@y.z&starttls=true", "not both"),
    ],
)
def test_channel_from_url_rejects_bad_urls(url: str, problem: str) -> None:
    with pytest.raises(AlertError, match=problem) as failed:
        channel_from_url("broken", url)
    assert "'broken'" in str(failed.value)
    assert "hunter2" not in str(failed.value)
    assert "ter2" not in str(failed.value)


# --------------------------------------------------------------------------- backoff


def test_backoff_grows_doubles_and_caps() -> None:
    delays = [backoff(n, jitter=0) for n in range(1, 12)]
    assert delays[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert delays[-1] == 600.0
    assert delays == sorted(delays)
    assert backoff(10_000, jitter=0) == 600.0
    assert backoff(3, base=1.0, cap=5.0, jitter=0) == 4.0


def test_backoff_jitter_stays_within_its_fraction() -> None:
    rng = random.Random(7)
    samples = [backoff(4, jitter=0.1, rng=rng) for _ in range(500)]
    assert all(14.4 <= s <= 17.6 for s in samples)
    assert len(set(samples)) > 1
    assert min(samples) < 15.5 < max(samples)
    capped = [backoff(50, jitter=0.2, rng=rng) for _ in range(200)]
    assert all(480.0 <= s <= 720.0 for s in capped)
    assert [backoff(2, rng=random.Random(1)) for _ in range(2)] == [backoff(2, rng=random.Random(1))] * 2


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff(0)
