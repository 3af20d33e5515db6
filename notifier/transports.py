"""The HTTP channels (the provider's SMS gateway, the customers' webhooks) and the set of transports a
notifier runs with; the e-mail channel is :mod:`notifier.smtp`, what a channel is :mod:`notifier.channel`."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from hbdns.config import Settings
from hbdns.notices import sms as sms_length
from notifier.channel import LogTransport, Transport, TransportError
from notifier.counters import Counters
from notifier.messages import EMAIL, SMS, WEBHOOK, Message
from notifier.smtp import EmailTransport

SIGNATURE_HEADER = "X-Hbdns-Signature"


def retry_after(value: str | None, now: float | None = None) -> float:
    """Seconds from an HTTP ``Retry-After`` value (delta seconds or an HTTP date); 0 when absent or unreadable."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0
    return max(0.0, when - (time.time() if now is None else now))


def _http_error(resp: requests.Response, what: str, *, ours: bool) -> TransportError | None:
    """``ours``: the provider's own gateway (a 401/403/407 or a redirect is our configuration, not the
    message); otherwise the customer's receiver, whose 4xx and redirects are permanent for the message."""
    code = resp.status_code
    if 200 <= code < 300:
        return None
    if 300 <= code < 400:
        reason = f"{what} answered HTTP {code} to {resp.headers.get('Location', '?')} (redirects are not followed)"
        return TransportError(reason, config=ours, permanent=not ours)
    reason = f"{what} answered HTTP {code}: {resp.text[:200]!r}"
    if code >= 500 or code in (408, 425, 429):
        return TransportError(reason, destination=True, retry_after=retry_after(resp.headers.get("Retry-After")))
    if ours and code in (401, 403, 407):
        return TransportError(reason, config=True)
    return TransportError(reason, permanent=True)


def _no_url(exc: Exception) -> str:
    """An error's text without the URL path and query requests puts in it (a GET gateway's query holds
    the phone number and the text, maybe a key): the reason is logged and kept in the hold."""
    return _URL_IN_ERROR.sub(r"\1<url>", str(exc))


_URL_IN_ERROR = re.compile(r"(url: )\S+")


class _HttpTransport(Transport):
    ours = True  # the provider's own receiver (see _http_error)

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._local = threading.local()

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def _request(self, what: str, method: str, url: str, **kw: Any) -> None:
        try:
            resp = self._session().request(method, url, timeout=self.timeout, allow_redirects=False, **kw)
        except requests.exceptions.SSLError as exc:
            raise TransportError(f"{what} tls: {_no_url(exc)}", destination=True, config=self.ours) from None
        except requests.RequestException as exc:  # connection refused, timeout, DNS, a broken reply
            raise TransportError(f"{what}: {type(exc).__name__}: {_no_url(exc)}", destination=True) from None
        err = _http_error(resp, what, ours=self.ours)
        if err is not None:
            raise err


def _fill(value: Any, to: str, text: str) -> Any:
    """Put ``to`` and ``text`` into every string of a parsed template (so JSON escaping stays right)."""
    if isinstance(value, str):
        return value.replace("{to}", to).replace("{text}", text)
    if isinstance(value, dict):
        return {k: _fill(v, to, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, to, text) for v in value]
    return value


class SmsTransport(_HttpTransport):
    """An HTTP SMS gateway: URL, method, JSON or form body from a template with {to} and {text}.

    The template is a JSON object (or, for form bodies, ``a={to}&b={text}``); placeholders are filled
    in after parsing, so a text with quotes or ampersands cannot break the body. GET sends the fields
    as query parameters. Each accepted SMS is counted with its segments (``counters``, see
    :mod:`notifier.counters`).
    """

    channel = SMS

    def __init__(self, settings: Settings, counters: Counters | None = None) -> None:
        super().__init__(settings.http_timeout)
        self.counters = counters if counters is not None else Counters()
        self.url = settings.sms_url
        self.method = settings.sms_method.upper()
        self.format = settings.sms_format
        template = settings.sms_body.strip()
        try:
            parsed: Any = json.loads(template)
            if not isinstance(parsed, dict):
                raise ValueError
        except ValueError:
            if self.format == "json":
                raise ValueError("HBDNS_SMS_BODY must be a JSON object for HBDNS_SMS_FORMAT=json") from None
            parsed = dict(parse_qsl(template, keep_blank_values=True))
        self.template: dict[str, Any] = parsed
        self.auth: tuple[str, str] | None = None
        self.headers: dict[str, str] = {}
        if settings.sms_auth == "basic":
            self.auth = (settings.sms_user, settings.sms_password)
        elif settings.sms_auth == "bearer":
            self.headers["Authorization"] = f"Bearer {settings.sms_token}"

    def notify(self, message: Message) -> None:
        fields = _fill(self.template, message.recipient, message.text)
        kw: dict[str, Any] = {"headers": self.headers, "auth": self.auth}
        if self.method == "GET":
            kw["params"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        elif self.format == "json":
            kw["json"] = fields
        else:
            kw["data"] = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        self._request("sms gateway", self.method, self.url, **kw)
        segments = sms_length.measure(message.text).segments
        self.counters.inc("sms_sent_total")
        self.counters.inc("sms_segments_total", segments)
        self.counters.inc(f"sms_sent_segments_{segments}")


def sign(secret: str, body: bytes) -> str:
    """The ``X-Hbdns-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookTransport(_HttpTransport):
    """POST the event as JSON to the account's URL, signed with HBDNS_WEBHOOK_SECRET when set."""

    channel = WEBHOOK
    ours = False

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.http_timeout)
        self._secret = settings.webhook_secret

    def destination(self, message: Message) -> str:
        parts = urlsplit(message.recipient)
        return f"{WEBHOOK}:{parts.scheme}://{parts.netloc.rpartition('@')[2].lower()}"

    def notify(self, message: Message) -> None:
        body = message.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "hbdns-notifier",
            "X-Hbdns-Event": message.event_type,
            "X-Hbdns-Delivery": message.key,  # stable across retries: receivers can drop duplicates
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        self._request("webhook", "POST", message.recipient, data=body, headers=headers)


def build_transports(settings: Settings, counters: Counters | None = None) -> dict[str, Transport]:
    """Real transports where configured, the log elsewhere (``make run`` needs no SMTP or gateway)."""
    out: dict[str, Transport] = {
        EMAIL: EmailTransport(settings) if settings.smtp_host else LogTransport(EMAIL),
        SMS: SmsTransport(settings, counters) if settings.sms_url else LogTransport(SMS),
        WEBHOOK: WebhookTransport(settings),
    }
    return out
