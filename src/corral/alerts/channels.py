"""Notification channels: how one alert state change reaches a webhook, Slack, a mailbox or the log.

A :class:`Notification` is the whole message: an alert that started firing or
resolved, with the numbers that made it so. It is frozen, turns itself into a
versioned JSON document (:meth:`Notification.to_dict`) and into a one-line
subject (:meth:`Notification.subject`), and carries a ``dedupe_key``
(``"<alert_id>:<state>"``) that stays the same however often it is sent.

A :class:`Channel` is one small protocol: ``name``, ``kind`` and
``send(notification)``. ``send`` makes one attempt and either returns (delivered)
or raises :class:`~corral.errors.DeliveryError` whose ``retryable`` says whether
trying again later may help. Channels keep no state and never retry or sleep:
the dispatcher owns a durable outbox, decides when to try again (with
:func:`backoff`) and records the history. Because a retry after a lost answer
may deliver twice, HTTP channels send the ``dedupe_key`` as an
``Idempotency-Key`` header and e-mails carry it as their ``Message-ID``.

What counts as retryable, everywhere: timeouts, refused or dropped connections,
HTTP 408/429/5xx and SMTP 4xx replies. Not retryable: other HTTP answers
(4xx, and 3xx, since redirects are not followed) and SMTP 5xx replies such as a
refused recipient or failed login; those need someone to fix the configuration.

Secrets stay out of every ``repr``, ``str`` and error message: URLs are shown
without user info or query values, Slack webhook URLs only up to their first path
part (the rest is the token), header values never. :func:`channel_from_url`
builds a channel from one URL, the form channels take in settings.

One HTTP send takes about ``timeout`` at most, whatever the peer does: httpx
limits each connect, read and write to it, and a watchdog timer shuts the
connection's socket down when the whole send's time is up, so a slow connect
followed by a slow answer, or a peer trickling one byte at a time, cannot add up.
SMTP uses :mod:`smtplib`'s timeout, which bounds each operation.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import math
import random
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol, runtime_checkable
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import httpx

from corral.errors import AlertError, DeliveryError

STATES = ("firing", "resolved")
SEVERITIES = ("info", "warning", "critical")
KIND = "corral.alert"
VERSION = 1
USER_AGENT = "corral"
HTTP_TIMEOUT = 5.0  # seconds, one webhook or Slack send in all
SMTP_TIMEOUT = 10.0  # seconds, each SMTP operation
_ERROR_BODY_BYTES = 2048  # how much of a failed HTTP answer goes into the error message
_MASK = "***"
_MIN_SECRET = 4  # shorter "secrets" are not scrubbed from messages: they would mangle every number

# --------------------------------------------------------------------------- the message


@dataclass(frozen=True, slots=True)
class Notification:
    """One alert state change, ready to send.

    Times without a time zone are taken as UTC. ``value`` is ``None`` when the
    metric had no value (no data in the window).
    """

    alert_id: str
    state: str
    deployment: str
    rule: str
    metric: str
    severity: str
    value: float | None
    threshold: float
    window_start: datetime | None
    message: str
    opened_at: datetime
    resolved_at: datetime | None = None
    link: str | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise AlertError(f"notification state {self.state!r} is not one of {', '.join(STATES)}")
        if self.severity not in SEVERITIES:
            raise AlertError(f"notification severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if not self.alert_id:
            raise AlertError("a notification needs an alert_id")

    @property
    def dedupe_key(self) -> str:
        """The same for every send of this state change: ``"<alert_id>:<state>"``."""
        return f"{self.alert_id}:{self.state}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able document (ISO-8601 times; ``None`` for a missing or non-finite number)."""
        return {
            "kind": KIND,
            "version": VERSION,
            "dedupe_key": self.dedupe_key,
            "alert_id": self.alert_id,
            "state": self.state,
            "deployment": self.deployment,
            "rule": self.rule,
            "metric": self.metric,
            "severity": self.severity,
            "value": _finite(self.value),
            "threshold": _finite(self.threshold),
            "window_start": _iso(self.window_start),
            "message": self.message,
            "opened_at": _iso(self.opened_at),
            "resolved_at": _iso(self.resolved_at),
            "link": self.link,
        }

    def subject(self) -> str:
        """One line, e.g. ``[corral] FIRING critical: fraud drift:age = 0.31 (threshold 0.2)``."""
        text = (
            f"[corral] {self.state.upper()} {self.severity}: {self.deployment} {self.rule} "
            f"= {_number(self.value)} (threshold {_number(self.threshold)})"
        )
        return _one_line(text)

    def fields(self) -> list[tuple[str, str]]:
        """``(label, text)`` pairs for human-readable bodies (e-mail, Slack); empty fields left out."""
        pairs = [
            ("Deployment", self.deployment),
            ("Rule", self.rule),
            ("Metric", self.metric),
            ("Severity", self.severity),
            ("Value", _number(self.value)),
            ("Threshold", _number(self.threshold)),
            ("Window start", _iso(self.window_start) or ""),
            ("Opened at", _iso(self.opened_at) or ""),
            ("Resolved at", _iso(self.resolved_at) or ""),
            ("Alert id", self.alert_id),
            ("Link", self.link or ""),
        ]
        return [(label, text) for label, text in pairs if text]


def _finite(number: float | None) -> float | None:
    return float(number) if number is not None and math.isfinite(number) else None


def _number(number: float | None) -> str:
    return "n/a" if number is None else format(number, ".4g")


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- the protocol


@runtime_checkable
class Channel(Protocol):
    """Where notifications go. ``send`` makes one attempt; it raises :class:`DeliveryError` on failure."""

    name: str
    kind: str

    def send(self, notification: Notification) -> None:
        """Deliver ``notification`` once, or raise :class:`DeliveryError` (``retryable`` or not)."""
        ...


# --------------------------------------------------------------------------- redaction


def _host_port(parts: SplitResult) -> str:
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{host}:{port}" if port else host


def redact_url(url: str) -> str:
    """``url`` without user info, with query and fragment values masked: safe to log."""
    parts = urlsplit(url)
    path = f"/{_MASK}" if "@" in parts.path else parts.path  # a "/" in an unquoted password ends the netloc early
    query = f"?{_MASK}" if parts.query else ""
    return f"{parts.scheme}://{_host_port(parts)}{path}{query}"


def redact_slack_url(url: str) -> str:
    """A Slack webhook URL up to its first path part (``/services``); the rest is the token."""
    parts = urlsplit(url)
    first = parts.path.strip("/").split("/")[0] if parts.path.strip("/") else ""
    shown = f"{parts.scheme}://{_host_port(parts)}"
    return f"{shown}/{first}/{_MASK}" if first else shown


def _url_secrets(url: str) -> list[str]:
    """The pieces of ``url`` that must not appear in messages."""
    parts = urlsplit(url)
    secrets = [url, parts.query, parts.fragment]
    if parts.password:
        secrets += [parts.password, unquote(parts.password)]
    return [s for s in secrets if s]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (of at least 4 characters, longest first) masked."""
    for secret in sorted((s for s in set(secrets) if len(s) >= _MIN_SECRET), key=len, reverse=True):
        text = text.replace(secret, _MASK)
    return text


# --------------------------------------------------------------------------- HTTP channels


def _retryable_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


class _HttpChannel:
    """POSTs a JSON body built by :meth:`_body`; shared by the webhook and Slack channels."""

    kind = "http"

    def __init__(self, name: str, url: str, *, timeout: float, headers: Mapping[str, str] | None) -> None:
        if timeout <= 0:
            raise AlertError(f"{self.kind} channel {name!r}: timeout must be positive, not {timeout}")
        _check_http_url(name, self.kind, url)
        self.name = name
        self.timeout = float(timeout)
        self._url = url
        own = {"content-type", "user-agent", "idempotency-key"}
        self._headers = {k: v for k, v in (headers or {}).items() if k.lower() not in own}
        self._secrets = [*_url_secrets(url), *self._headers.values()]

    @property
    def url(self) -> str:
        """The URL with its secrets masked (the real one is never shown)."""
        return redact_url(self._url)

    def __repr__(self) -> str:
        extra = f", headers={sorted(self._headers)}" if self._headers else ""
        return f"{type(self).__name__}(name={self.name!r}, url={self.url!r}, timeout={self.timeout}{extra})"

    __str__ = __repr__

    def _body(self, notification: Notification) -> dict[str, Any]:
        raise NotImplementedError

    def send(self, notification: Notification) -> None:
        """POST the notification once; raises :class:`DeliveryError` unless the answer is 2xx."""
        content = json.dumps(self._body(notification), allow_nan=False, separators=(",", ":")).encode()
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": notification.dedupe_key,
        }
        watchdog = _Watchdog(self.timeout)
        try:
            with watchdog:
                status, reason, text = self._post(content, headers, watchdog)
        except httpx.HTTPError as exc:  # refused or reset connections, DNS, TLS, protocol errors, timeouts
            if watchdog.fired or isinstance(exc, httpx.TimeoutException):
                raise self._error(f"timed out after {self.timeout:g} s", retryable=True) from None
            raise self._error(f"failed: {type(exc).__name__}: {exc}", retryable=True) from None
        if not 200 <= status < 300:
            detail = f": {_one_line(text)}" if text.strip() else ""
            raise self._error(f"answered {status} {reason}{detail}", retryable=_retryable_status(status))

    def _post(self, content: bytes, headers: Mapping[str, str], watchdog: _Watchdog) -> tuple[int, str, str]:
        """One POST: ``(status, reason, the start of the body unless 2xx)``."""
        with httpx.Client(timeout=httpx.Timeout(self.timeout), follow_redirects=False) as client:
            request = client.build_request("POST", self._url, content=content, headers=headers)
            request.extensions["trace"] = watchdog.trace
            response = client.send(request, stream=True)
            try:
                text = "" if response.is_success else _read_some(response)
                return response.status_code, response.reason_phrase, text
            finally:
                response.close()

    def _error(self, what: str, *, retryable: bool) -> DeliveryError:
        what = _scrub(what, self._secrets)  # the peer's words may echo the URL or a header
        return DeliveryError(f"{self.kind} channel {self.name!r}: POST {self.url} {what}", retryable=retryable)


class _Watchdog:
    """Ends a send when its time is up by shutting its socket down, which wakes a blocked read or write.

    httpx bounds each read or write, not their sum; this bounds the sum. It learns
    the socket from httpcore's ``trace`` request extension (the TCP connection, then
    the TLS one), and is armed by ``with``.
    """

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._done = False
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """The httpcore trace hook: remember the newest connection's socket."""
        if not event.endswith((".connect_tcp.complete", ".start_tls.complete")):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock if isinstance(sock, socket.socket) else self._socket
            if self.fired:
                self._shutdown()

    def _fire(self) -> None:
        with self._lock:
            if not self._done:
                self.fired = True
                self._shutdown()

    def _shutdown(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):  # already closed: nothing left to stop
                socket.socket.shutdown(self._socket, socket.SHUT_RDWR)  # the plain call, also for a TLS socket


def _read_some(response: httpx.Response) -> str:
    """Up to ``_ERROR_BODY_BYTES`` of the body, for the error message."""
    chunks = bytearray()
    try:
        for chunk in response.iter_raw():
            chunks += chunk
            if len(chunks) >= _ERROR_BODY_BYTES:
                break
    except httpx.HTTPError:
        pass  # the status is what matters; a broken body only shortens the message
    return chunks[:_ERROR_BODY_BYTES].decode("utf-8", errors="replace")


def _check_http_url(name: str, kind: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise AlertError(f"{kind} channel {name!r}: the URL must start with http:// or https://")
    if not parts.hostname:
        raise AlertError(f"{kind} channel {name!r}: the URL has no host")
    _port(name, kind, parts)


class WebhookChannel(_HttpChannel):
    """POSTs :meth:`Notification.to_dict` as JSON to any URL; user info in the URL becomes basic auth."""

    kind = "webhook"

    def __init__(
        self, name: str, url: str, *, timeout: float = HTTP_TIMEOUT, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(name, url, timeout=timeout, headers=headers)

    def _body(self, notification: Notification) -> dict[str, Any]:
        return notification.to_dict()


class SlackChannel(_HttpChannel):
    """Posts to a Slack incoming webhook: the subject as ``text`` (for notifications) and readable blocks."""

    kind = "slack"

    def __init__(self, name: str, url: str, *, timeout: float = HTTP_TIMEOUT) -> None:
        super().__init__(name, url, timeout=timeout, headers=None)
        path = urlsplit(url).path
        self._secrets += [path, *path.strip("/").split("/")[1:]]  # the whole token and each of its parts

    @property
    def url(self) -> str:
        """Scheme, host and first path part only: the rest of a Slack webhook URL is its token."""
        return redact_slack_url(self._url)

    def _body(self, notification: Notification) -> dict[str, Any]:
        return slack_body(notification)


def slack_body(notification: Notification) -> dict[str, Any]:
    """The Slack incoming-webhook payload: ``text`` plus header, message, fields and link blocks."""
    subject = notification.subject()
    fields = [
        {"type": "mrkdwn", "text": f"*{label}*\n{_slack_escape(text)}"}
        for label, text in notification.fields()
        if label not in ("Link", "Alert id")
    ][:10]  # Slack allows at most 10 fields in a section
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": subject.removeprefix("[corral] ")[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(notification.message) or " "}},
        {"type": "section", "fields": fields},
    ]
    context = f"alert `{_slack_escape(notification.alert_id)}`"
    if notification.link:
        context += f" · <{notification.link}|open in corral>"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context}]})
    return {"text": subject, "blocks": blocks}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --------------------------------------------------------------------------- e-mail


class EmailChannel:
    """Sends a plain-text e-mail through SMTP (optionally over SSL or with STARTTLS, optionally logged in)."""

    kind = "email"

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        *,
        sender: str,
        recipients: Sequence[str],
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        ssl: bool = False,
        timeout: float = SMTP_TIMEOUT,
    ) -> None:
        if not host:
            raise AlertError(f"email channel {name!r}: no SMTP host")
        if not 0 < port < 65536:
            raise AlertError(f"email channel {name!r}: port {port} is not between 1 and 65535")
        if starttls and ssl:
            raise AlertError(f"email channel {name!r}: use either ssl (smtps) or starttls, not both")
        if timeout <= 0:
            raise AlertError(f"email channel {name!r}: timeout must be positive, not {timeout}")
        if isinstance(recipients, str):
            recipients = [recipients]
        if not recipients:
            raise AlertError(f"email channel {name!r}: no recipients")
        for address in [sender, *recipients]:
            _check_address(name, address)
        self.name = name
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = tuple(recipients)
        self.username = username
        self._password = password
        self.starttls = starttls
        self.ssl = ssl
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        scheme = "smtps" if self.ssl else "smtp"
        return (
            f"EmailChannel(name={self.name!r}, server='{scheme}://{self.host}:{self.port}', sender={self.sender!r}, "
            f"recipients={list(self.recipients)!r}, starttls={self.starttls}, login={self.username is not None})"
        )

    __str__ = __repr__

    def build_message(self, notification: Notification) -> EmailMessage:
        """The e-mail: the subject line, a plain-text body listing every field, a stable Message-ID."""
        message = EmailMessage()
        message["Subject"] = notification.subject()
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Date"] = email.utils.format_datetime(datetime.now(UTC))
        message["Message-ID"] = f"<{_msgid_part(notification.dedupe_key)}@corral>"
        message["X-Corral-Dedupe-Key"] = _one_line(notification.dedupe_key)
        message.set_content(email_body(notification))
        return message

    def send(self, notification: Notification) -> None:
        """Send the e-mail once; raises :class:`DeliveryError` if the server refuses it or cannot be reached."""
        message = self.build_message(notification)
        try:
            refused = self._deliver(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise self._error(f"refused every recipient: {_refusals(exc.recipients)}", retryable=False) from None
        except smtplib.SMTPResponseException as exc:
            code = exc.smtp_code
            text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            raise self._error(f"answered {code} {_one_line(text)}", retryable=not 500 <= code < 600) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise self._error(f"does not support what this channel needs: {exc}", retryable=False) from None
        except ssl.SSLCertVerificationError as exc:
            raise self._error(f"TLS certificate not trusted: {exc}", retryable=False) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out, disconnected
            raise self._error(f"failed: {type(exc).__name__}: {exc}", retryable=True) from None
        if refused:  # delivered to some: retrying would send it twice to the others
            raise self._error(f"refused some recipients: {_refusals(refused)}", retryable=False)

    def _deliver(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        context = ssl.create_default_context()
        smtp = (
            smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            if self.ssl
            else smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        )
        with smtp:
            if self.starttls:
                smtp.starttls(context=context)
            if self.username is not None:
                smtp.login(self.username, self._password or "")
            return smtp.send_message(message, from_addr=self.sender, to_addrs=list(self.recipients))

    def _error(self, what: str, *, retryable: bool) -> DeliveryError:
        scheme = "smtps" if self.ssl else "smtp"
        if self._password:
            what = _scrub(what, [self._password])
        return DeliveryError(
            f"email channel {self.name!r}: {scheme}://{self.host}:{self.port} {what}", retryable=retryable
        )


def email_body(notification: Notification) -> str:
    """The plain-text body: the message, then one aligned line per field."""
    n = notification
    head = f"Alert {n.deployment} {n.rule} is {n.state.upper()} ({n.severity})."
    pairs = notification.fields()
    width = max(len(label) for label, _ in pairs) + 2
    lines = [f"{label + ':':<{width}}{text}" for label, text in pairs]
    return "\n".join([head, notification.message, "", *lines, ""])


def _refusals(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{address} ({code} {_one_line(text.decode(errors='replace'))})" for address, (code, text) in refused.items()
    )


def _msgid_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", text) or "alert"


def _check_address(name: str, address: str) -> None:
    if "@" not in address or any(c.isspace() or c in ",;<>" for c in address):
        raise AlertError(f"email channel {name!r}: {address!r} is not an e-mail address")


# --------------------------------------------------------------------------- the log


class LogChannel:
    """Logs one structured line (WARNING when firing, INFO when resolved); the record carries ``alert``."""

    kind = "log"

    def __init__(self, name: str = "log", logger: str = "corral.alerts") -> None:
        self.name = name
        self.logger = logger
        self._log = logging.getLogger(logger)

    def __repr__(self) -> str:
        return f"LogChannel(name={self.name!r}, logger={self.logger!r})"

    def send(self, notification: Notification) -> None:
        """Log the notification; never raises."""
        level = logging.WARNING if notification.state == "firing" else logging.INFO
        try:
            self._log.log(level, "%s", log_line(notification), extra={"alert": notification.to_dict()})
        except Exception:  # a broken log filter must not turn into a delivery failure
            return


def log_line(notification: Notification) -> str:
    """``alert firing deployment=fraud rule=drift:age ... message="..."``: one logfmt line."""
    data = notification.to_dict()
    keys = ("deployment", "rule", "metric", "severity", "value", "threshold", "alert_id", "window_start", "link")
    pairs = [f"{key}={_logfmt(data[key])}" for key in keys if data[key] is not None]
    return f"alert {notification.state} " + " ".join([*pairs, f"message={_logfmt(notification.message)}"])


def _logfmt(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c in '"=\\' for c in text) else text


# --------------------------------------------------------------------------- from a URL


def channel_from_url(name: str, url: str, *, timeout: float | None = None) -> Channel:
    """Build a channel from one URL.

    ``https://…`` / ``http://…``: a webhook; ``slack+https://hooks.slack.com/…``: Slack;
    ``smtp://user:pass@host:port?from=a@b&to=x@y,z@w&starttls=true`` or ``smtps://…``: e-mail;
    ``log`` or ``log:`` (``log:<logger name>``): the log. Raises :class:`AlertError` naming
    the channel and the problem; passwords never appear in it.
    """
    text = url.strip()
    if text == "log" or (text.startswith("log:") and "//" not in text):
        return LogChannel(name, logger=text.removeprefix("log").removeprefix(":") or "corral.alerts")
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    if scheme in ("http", "https"):
        return WebhookChannel(name, text, timeout=HTTP_TIMEOUT if timeout is None else timeout)
    if scheme in ("slack+http", "slack+https"):
        return SlackChannel(name, text[len("slack+") :], timeout=HTTP_TIMEOUT if timeout is None else timeout)
    if scheme in ("smtp", "smtps"):
        return _email_from_url(name, text, timeout)
    shown = f"{scheme}:// URL" if scheme else "URL without a scheme"
    raise AlertError(
        f"channel {name!r}: unsupported {shown}; use http(s)://, slack+https://, smtp://, smtps:// or log:"
    )


def _email_from_url(name: str, url: str, timeout: float | None) -> EmailChannel:
    parts = urlsplit(url)
    kind = "email"
    if not parts.hostname:
        raise AlertError(f"{kind} channel {name!r}: the {parts.scheme}:// URL has no host")
    if parts.path not in ("", "/"):
        raise AlertError(
            f"{kind} channel {name!r}: unexpected path in the {parts.scheme}:// URL "
            "(a '/' in a password must be written %2F)"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"from", "to", "starttls"})
    if unknown:
        raise AlertError(f"{kind} channel {name!r}: unknown option(s) {', '.join(unknown)}; use from, to, starttls")
    sender = ",".join(query.get("from", [])).strip()
    recipients = [a.strip() for value in query.get("to", []) for a in value.split(",") if a.strip()]
    if not sender:
        raise AlertError(f"{kind} channel {name!r}: the URL needs a sender (?from=alerts@example.com)")
    if not recipients:
        raise AlertError(f"{kind} channel {name!r}: the URL needs recipients (&to=a@example.com,b@example.com)")
    secure = parts.scheme.lower() == "smtps"
    starttls = _flag(name, query.get("starttls", ["false"])[-1])
    port = _port(name, kind, parts) or (465 if secure else 587 if starttls else 25)
    return EmailChannel(
        name,
        parts.hostname,
        port,
        sender=sender,
        recipients=recipients,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        starttls=starttls,
        ssl=secure,
        timeout=SMTP_TIMEOUT if timeout is None else timeout,
    )


def _port(name: str, kind: str, parts: SplitResult) -> int | None:
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise AlertError(f"{kind} channel {name!r}: bad port in the URL (a number from 1 to 65535)")
    return port


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    raise AlertError(f"email channel {name!r}: starttls={value!r} is not true or false")


# --------------------------------------------------------------------------- retry timing

_RNG = random.Random()


def backoff(
    attempt: int, *, base: float = 2.0, cap: float = 600.0, jitter: float = 0.1, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based).

    ``min(cap, base * 2**(attempt-1))``, moved by up to ``±jitter`` of itself at
    random so that many failed notifications do not retry in step.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, not {attempt}")
    if base <= 0 or cap <= 0 or not 0 <= jitter < 1:
        raise ValueError("backoff needs base > 0, cap > 0 and 0 <= jitter < 1")
    delay = min(cap, base * 2.0 ** min(attempt - 1, 1000))
    return delay * (1 + (rng or _RNG).uniform(-jitter, jitter))


__all__ = [
    "Channel",
    "EmailChannel",
    "LogChannel",
    "Notification",
    "SlackChannel",
    "WebhookChannel",
    "backoff",
    "channel_from_url",
    "email_body",
    "log_line",
    "redact_slack_url",
    "redact_url",
    "slack_body",
]
