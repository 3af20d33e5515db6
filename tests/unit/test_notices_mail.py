"""The e-mail as composed: headers, a Message-ID that a resend keeps, encodings a client decodes."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage

import pytest

from hbdns import config
from hbdns.notices import mail as notices_mail
from hbdns.notices.mail import Sender, compose, message_id

SENDER = Sender.from_settings(
    config.load({"HBDNS_SMTP_FROM": "noc@example.net", "HBDNS_OPERATOR_NAME": "Beispiel Hosting",
                 "HBDNS_STATUS_PUBLIC_URL": "https://status.example.net"})
)  # fmt: skip
KEY = "1714564803000-0:email:46340ec2949308dd"


def parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def content(part: object) -> str:
    """A part's text as a client shows it (the wire's CRLF as newlines)."""
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


def mail(**kw: object) -> bytes:
    args: dict[str, object] = dict(recipient="kunde@example.org", subject="Prüfung für home", text="Grüße\n", key=KEY)
    args.update(kw)
    return compose(SENDER, **args).as_bytes()  # type: ignore[arg-type]


def test_headers() -> None:
    raw = mail(lang="de", event_type="neutralized", fqdn="home.dyn.example.net")
    assert raw.isascii() and b"\r\n" in raw  # 7-bit clean, CRLF
    msg = parsed(raw)
    assert msg["From"] == "Beispiel Hosting <noc@example.net>" and msg["To"] == "kunde@example.org"
    assert msg["Subject"] == "Prüfung für home" and b"Subject: =?utf-8?q?Pr=C3=BCfung_f=C3=BCr?= home" in raw
    assert msg["Auto-Submitted"] == "auto-generated" and msg["X-Auto-Response-Suppress"] == "All"
    assert msg["List-Unsubscribe"] == "<https://status.example.net/account#prefs>"
    assert "List-Unsubscribe-Post" not in msg  # no one-click endpoint (RFC 8058) on the status page
    assert msg["Content-Language"] == "de" and msg["X-Hbdns-Delivery"] == KEY
    assert msg["X-Hbdns-Event"] == "neutralized" and msg["X-Hbdns-Account"] == "home.dyn.example.net"
    assert msg["Message-ID"] == message_id(KEY, "example.net") and msg["Message-ID"].endswith("@example.net>")
    assert msg.get_content_type() == "text/plain" and content(msg) == "Grüße\n"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"


def test_the_same_message_keeps_its_id_a_new_date_and_an_other_message_another_id() -> None:
    a = parsed(mail(date=datetime(2024, 5, 1, 12, tzinfo=UTC)))
    b = parsed(mail(date=datetime(2024, 5, 1, 13, tzinfo=UTC)))
    assert a["Message-ID"] == b["Message-ID"] and a["Date"] != b["Date"]
    assert a["Date"] == "Wed, 01 May 2024 12:00:00 +0000"
    assert parsed(mail(key=KEY.replace("0-0", "1-0")))["Message-ID"] != a["Message-ID"]


def test_html_makes_it_multipart_alternative() -> None:
    msg = parsed(mail(html="<p>Grüße</p>\n"))
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert content(html) == "<p>Grüße</p>\n" and content(msg.get_body(("plain",))) == "Grüße\n"
    assert msg.get_boundary() == parsed(mail(html="<p>x</p>\n")).get_boundary()  # from the key: a resend is the same


def test_ascii_is_7bit_a_name_in_from_is_kept_and_no_status_page_no_unsubscribe() -> None:
    sender = Sender.from_settings(config.load({"HBDNS_SMTP_FROM": "Störungsdienst <noc@example.net>"}))
    assert (sender.name, sender.address, sender.unsubscribe) == ("Störungsdienst", "noc@example.net", "")
    msg = parsed(compose(sender, recipient="a@example.org", subject="ok", text="plain\n", key=KEY).as_bytes())
    assert msg["Content-Transfer-Encoding"] == "7bit" and "List-Unsubscribe" not in msg
    assert str(msg["From"]) == "Störungsdienst <noc@example.net>"


def test_a_subject_cannot_inject_headers() -> None:
    msg = parsed(mail(subject="hi\r\nBcc: victim@example.org\nX: y"))
    assert "Bcc" not in msg and msg["Subject"] == "hi Bcc: victim@example.org X: y"


@pytest.mark.parametrize(
    "subject",
    ["home.dyn.example.net is offline", "Prüfung für home", "x" * 30 + " long " * 20, "Störung " * 15],
)
@pytest.mark.parametrize("html", ["", "<p>Grüße</p>\n"])
def test_the_faster_policy_writes_the_bytes_the_standard_one_does(
    monkeypatch: pytest.MonkeyPatch, subject: str, html: str
) -> None:
    def build() -> bytes:
        return mail(subject=subject, html=html, lang="de", date=datetime(2024, 5, 1, 12, tzinfo=UTC))

    ours = build()
    monkeypatch.setattr(notices_mail, "POLICY", email.policy.SMTP)
    monkeypatch.setattr(notices_mail, "_from", lambda name, address: Address(display_name=name, addr_spec=address))
    assert build() == ours
