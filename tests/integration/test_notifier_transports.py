"""Each transport against a real local receiver: aiosmtpd (plain, STARTTLS + auth) and an HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from hbdns import config
from notifier.channel import TransportError
from notifier.messages import Message
from notifier.smtp import EmailTransport
from notifier.transports import SmsTransport, WebhookTransport, build_transports, retry_after
from tests.support.servers import free_port
from tests.support.sinks import HttpSink, SmtpSink

MSG = Message(
    channel="email",
    recipient="ops@example.org",
    subject="hbdns: h.example.test is offline",
    text='text with "quotes" & ampersands',
    account=7,
    fqdn="h.example.test",
    event_type="neutralized",
    event_id="1-0",
)


def smtp_settings(sink: SmtpSink, **env: str) -> config.Settings:
    return config.load(
        {"HBDNS_SMTP_HOST": "127.0.0.1", "HBDNS_SMTP_PORT": str(sink.port), "HBDNS_SMTP_TIMEOUT": "5", **env}
    )


def test_email_plain_reuses_one_connection(smtp: SmtpSink) -> None:
    t = EmailTransport(smtp_settings(smtp, HBDNS_SMTP_FROM="noc@example.net"))
    t.notify(MSG)
    t.notify(Message(**{**MSG.__dict__, "event_id": "2-0"}))
    t.close()
    [a, b] = smtp.mails
    assert a.rcpts == ["ops@example.org"] and a.sender == "noc@example.net"
    assert a.subject == MSG.subject and MSG.text in a.text
    assert a.header("X-Hbdns-Delivery") == MSG.key and a.header("X-Hbdns-Account") == "h.example.test"
    assert a.header("Message-ID") != b.header("Message-ID")


def test_email_starttls_with_login(tmp_path: Path) -> None:
    sink = SmtpSink(tls_dir=tmp_path, auth=("relay", "s3cret")).start()
    try:
        env = {"HBDNS_SMTP_SECURITY": "starttls", "HBDNS_SMTP_CA_FILE": str(sink.cert_file), "HBDNS_SMTP_USER": "relay"}
        EmailTransport(smtp_settings(sink, HBDNS_SMTP_PASSWORD="s3cret", **env)).notify(MSG)
        assert sink.count() == 1
        # our configuration, not the message: held and retried (and logged as an error), never dead-lettered
        with pytest.raises(TransportError) as err:
            EmailTransport(smtp_settings(sink, HBDNS_SMTP_PASSWORD="wrong", **env)).notify(MSG)
        assert err.value.config and err.value.destination and not err.value.permanent and "535" in err.value.reason
        with pytest.raises(TransportError) as err:  # the server requires STARTTLS
            EmailTransport(smtp_settings(sink, HBDNS_SMTP_CA_FILE=str(sink.cert_file))).notify(MSG)
        assert err.value.config and not err.value.permanent
        with pytest.raises(TransportError) as err:  # a certificate we do not trust: a TLS error
            EmailTransport(smtp_settings(sink, **{**env, "HBDNS_SMTP_CA_FILE": ""})).notify(MSG)
        assert err.value.config and not err.value.permanent and "tls" in err.value.reason
    finally:
        sink.stop()


def test_email_rejected_recipient_is_permanent_busy_server_transient(smtp: SmtpSink) -> None:
    smtp.reject["nobody@example.org"] = "550 no such user"
    t = EmailTransport(smtp_settings(smtp))
    with pytest.raises(TransportError) as err:
        t.notify(Message(**{**MSG.__dict__, "recipient": "nobody@example.org"}))
    assert err.value.permanent and not err.value.destination and "550" in err.value.reason
    smtp.replies.append("451 try again later")  # DATA refused for now (greylisting, a full disk)
    with pytest.raises(TransportError) as err:
        t.notify(MSG)
    assert not err.value.permanent and not err.value.destination
    smtp.replies.append("554 5.6.0 message content rejected")
    with pytest.raises(TransportError) as err:
        t.notify(MSG)
    assert err.value.permanent and not err.value.destination
    smtp.replies.append("421 4.3.2 shutting down")  # the server as a whole
    with pytest.raises(TransportError) as err:
        t.notify(MSG)
    assert err.value.destination and not err.value.permanent
    t.notify(MSG)  # a new connection after the 421, the same one after the other refusals
    assert smtp.count() == 1


def test_email_server_down_is_transient_for_the_whole_destination() -> None:
    settings = config.load({"HBDNS_SMTP_HOST": "127.0.0.1", "HBDNS_SMTP_PORT": str(free_port())})
    with pytest.raises(TransportError) as err:
        EmailTransport(settings).notify(MSG)
    assert not err.value.permanent and err.value.destination and not err.value.config


def test_sms_json_body_with_basic_auth(http: HttpSink) -> None:
    settings = config.load(
        {
            "HBDNS_SMS_URL": http.url + "/send",
            "HBDNS_SMS_BODY": '{"recipient": "{to}", "message": "{text}", "flash": false, "route": ["x-{to}"]}',
            "HBDNS_SMS_AUTH": "basic",
            "HBDNS_SMS_USER": "acct",
            "HBDNS_SMS_PASSWORD": "pw",
        }
    )
    sms = Message(**{**MSG.__dict__, "channel": "sms", "recipient": "+491701234567"})
    SmsTransport(settings).notify(sms)
    [req] = http.log()
    assert (req.method, req.path) == ("POST", "/send")
    assert req.headers["content-type"] == "application/json"
    assert req.json() == {
        "recipient": "+491701234567",
        "message": MSG.text,
        "flash": False,
        "route": ["x-+491701234567"],
    }
    assert req.basic_auth == ("acct", "pw")


@pytest.mark.parametrize(
    ("method", "body"),
    [("POST", "to={to}&msg={text}&from=hbdns"), ("GET", '{"to": "{to}", "msg": "{text}", "from": "hbdns"}')],
)
def test_sms_form_or_query_with_bearer(http: HttpSink, method: str, body: str) -> None:
    settings = config.load(
        {
            "HBDNS_SMS_URL": http.url + "/api",
            "HBDNS_SMS_METHOD": method,
            "HBDNS_SMS_FORMAT": "form",
            "HBDNS_SMS_BODY": body,
            "HBDNS_SMS_AUTH": "bearer",
            "HBDNS_SMS_TOKEN": "tok123",
        }
    )
    SmsTransport(settings).notify(Message(**{**MSG.__dict__, "channel": "sms", "recipient": "+491701234567"}))
    [req] = http.log()
    fields = parse_qs(req.body.decode() if method == "POST" else urlsplit(req.path).query)
    assert fields == {"to": ["+491701234567"], "msg": [MSG.text], "from": ["hbdns"]}
    assert req.method == method and req.headers["authorization"] == "Bearer tok123"


# (status, permanent, destination, config) from our SMS gateway, then from a customer's webhook
SMS_CLASSES = [
    (400, True, False, False),  # this message refused (a bad number)
    (404, True, False, False),
    (422, True, False, False),
    (401, False, True, True),  # our credentials: hold the gateway, alarm the operator
    (403, False, True, True),
    (301, False, True, True),  # our URL moved
    (408, False, True, False),
    (429, False, True, False),
    (500, False, True, False),
    (503, False, True, False),
]
HOOK_CLASSES = [(400, True, False, False), (401, True, False, False), (410, True, False, False),
                (301, True, False, False), (429, False, True, False), (502, False, True, False)]  # fmt: skip


@pytest.mark.parametrize(("status", "permanent", "destination", "ours"), SMS_CLASSES)
def test_sms_gateway_status_classes(
    http: HttpSink, status: int, permanent: bool, destination: bool, ours: bool
) -> None:
    http.default = status
    with pytest.raises(TransportError) as err:
        SmsTransport(config.load({"HBDNS_SMS_URL": http.url})).notify(Message(**{**MSG.__dict__, "channel": "sms"}))
    e = err.value
    assert (e.permanent, e.destination, e.config) == (permanent, destination, ours) and str(status) in e.reason


@pytest.mark.parametrize(("status", "permanent", "destination", "ours"), HOOK_CLASSES)
def test_webhook_status_classes(http: HttpSink, status: int, permanent: bool, destination: bool, ours: bool) -> None:
    http.default = status
    msg = Message(**{**MSG.__dict__, "channel": "webhook", "recipient": http.url + "/hook", "body": "{}"})
    with pytest.raises(TransportError) as err:
        WebhookTransport(config.load({})).notify(msg)
    e = err.value
    assert (e.permanent, e.destination, e.config) == (permanent, destination, ours) and str(status) in e.reason


def test_retry_after_is_read_in_seconds_or_as_a_date() -> None:
    assert retry_after("120") == 120.0
    assert retry_after("Wed, 01 May 2024 12:02:00 GMT", now=1_714_564_800.0) == 120.0
    assert retry_after("") == 0.0 and retry_after("soon") == 0.0 and retry_after(None) == 0.0


def test_http_receiver_down_or_timing_out_is_transient_for_its_origin() -> None:
    down = f"http://127.0.0.1:{free_port()}/hook?key=s3cr3t"
    msg = Message(**{**MSG.__dict__, "channel": "webhook", "recipient": down, "body": "{}"})
    t = WebhookTransport(config.load({}))
    with pytest.raises(TransportError) as err:
        t.notify(msg)
    assert err.value.destination and not err.value.permanent
    assert "s3cr3t" not in err.value.reason and "/hook" not in err.value.reason  # kept in the hold, logged
    assert t.destination(msg) == "webhook:http://127.0.0.1:" + down.split(":")[2].split("/")[0]
    assert t.destination(Message(**{**msg.__dict__, "recipient": "https://u:p@Hooks.Example.org/a?b"})) == (
        "webhook:https://hooks.example.org"
    )


def test_webhook_signed_post(http: HttpSink) -> None:
    body = json.dumps({"event": "neutralized", "n": 1})
    msg = Message(**{**MSG.__dict__, "channel": "webhook", "recipient": http.url + "/hook?x=1", "body": body})
    WebhookTransport(config.load({"HBDNS_WEBHOOK_SECRET": "whsec"})).notify(msg)
    [req] = http.log()
    assert req.path == "/hook?x=1" and req.body == body.encode()
    expected = "sha256=" + hmac.new(b"whsec", body.encode(), hashlib.sha256).hexdigest()
    assert req.headers["x-hbdns-signature"] == expected
    assert req.headers["x-hbdns-delivery"] == msg.key and req.headers["x-hbdns-event"] == "neutralized"


def test_unconfigured_channels_log() -> None:
    t = build_transports(config.load({}))
    assert type(t["email"]).__name__ == "LogTransport" and type(t["sms"]).__name__ == "LogTransport"
    t["email"].notify(MSG)  # does not raise


def test_bad_json_sms_template_fails_early() -> None:
    with pytest.raises(ValueError, match="HBDNS_SMS_BODY"):
        SmsTransport(config.load({"HBDNS_SMS_URL": "http://127.0.0.1:9", "HBDNS_SMS_BODY": "to={to}"}))
