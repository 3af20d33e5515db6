"""The operator's templates end to end: a German account through the real SMTP server, decoded as
its mail client would; the same Message-ID when a message is sent again; a broken override stopping
the notifier process at start-up; ``hbdns notify preview`` and ``hbdns notify test``; and accounts and
zones stored before the language existed."""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis

from admin.cli.main import main as cli
from hbdns import config, keys
from hbdns.model import NotifyPrefs, Zone
from hbdns.notices.render import Renderer
from hbdns.store import Store
from notifier.counters import Counters
from notifier.events import Event
from notifier.langs import ZoneLangs
from notifier.main import Notifier
from notifier.messages import Composer, Message
from notifier.transports import SmsTransport
from sweeper.main import SweeperService
from tests.support.servers import free_port, wait_for
from tests.support.services import LONG, PHONE, ROOT, ZONE, add_account, beat, env_for, events, settled
from tests.support.sinks import HttpSink, SmtpSink

Sweepers = Callable[..., SweeperService]


def content(part: object) -> str:
    return str(part.get_content()).replace("\r\n", "\n")  # type: ignore[attr-defined]


def german_zone(store: Store) -> None:
    store.add_zone(Zone(ZONE, ("ns1.example.test",), "hostmaster.example.test", "192.0.2.1", lang="de"))


def test_a_german_account_gets_german_mail_with_umlauts_intact(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink, notifiers: Callable[..., Notifier], sweepers: Sweepers
) -> None:
    env = env_for(redis_url, smtp, HBDNS_SMTP_FROM="Beispiel Hosting <noc@example.net>",
                  HBDNS_STATUS_PUBLIC_URL="https://status.example.net", HBDNS_EMAIL_HTML="true")  # fmt: skip
    settings = config.load(env)
    store = Store(real_redis, settings)
    german_zone(store)  # the zone's language: the account sets none
    acct = add_account(store, "heim", emails=["kunde@example.org"], mx=True, prefs=NotifyPrefs(tz="Europe/Berlin"))
    other = add_account(store, "home", emails=["customer@example.org"], prefs=NotifyPrefs(lang="en"))
    sweepers(settings)
    notifiers(settings)
    beat(store, acct)
    beat(store, other)

    [mail] = wait_for(lambda: smtp.mails_for("kunde@example.org"), 15, what="the outage e-mail")
    msg = email.message_from_bytes(mail.raw, policy=email.policy.default)  # as the recipient's client reads it
    assert isinstance(msg, EmailMessage)
    assert msg["Subject"] == "heim.example.test ist offline" and msg["Content-Language"] == "de"
    assert msg["From"] == "Beispiel Hosting <noc@example.net>" and mail.sender == "noc@example.net"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Message-ID"].endswith("@example.net>")
    assert msg["List-Unsubscribe"] == "<https://status.example.net/account#prefs>"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = content(msg.get_body(("plain",))), content(msg.get_body(("html",)))
    assert "Es kam kein Lebenszeichen und kein Update rechtzeitig an" in text
    assert "Benachrichtigungen für heim.example.test" in text and "Ändern können Sie sie" in text
    assert " MESZ offline." in text or " MEZ offline." in text  # the account's zone, German abbreviation
    assert "E-Mails an Sie warten" in text and "Backup-Mailserver" in html and "für" in html
    assert mail.raw.isascii()  # 7-bit on the wire (quoted-printable, RFC 2047): no 8BITMIME needed

    [english] = wait_for(lambda: smtp.mails_for("customer@example.org"), 15, what="the English one")
    assert english.subject == "home.example.test is offline"
    beat(store, acct, LONG)
    wait_for(lambda: len(smtp.mails_for("kunde@example.org")) == 2, 15, what="the recovery")
    back = smtp.mails_for("kunde@example.org")[1]
    assert back.subject.startswith("heim.example.test ist nach ") and back.subject.endswith(" wieder online")
    assert "Der Ausfall dauerte " in back.text


def test_a_message_sent_again_keeps_its_message_id(
    real_redis: redis.Redis, redis_url: str, smtp: SmtpSink, notifiers: Callable[..., Notifier], sweepers: Sweepers
) -> None:
    settings = config.load(env_for(redis_url, smtp, HBDNS_SMTP_TIMEOUT="1"))
    store = Store(real_redis, settings)
    acct = add_account(store, "twice", emails=["ops@example.org"])
    smtp.hold_replies = 1  # the relay takes the first copy but its "250" never arrives: a timeout, so a retry
    sweepers(settings)
    notifiers(settings)
    beat(store, acct)
    first, second = wait_for(lambda: len(smtp.mails_for("ops@example.org")) == 2 and smtp.mails_for("ops@example.org"),
                             20, what="the message and its redelivery")  # fmt: skip
    wait_for(lambda: settled(real_redis), 10, what="settled")
    assert first.header("Message-ID") == second.header("Message-ID") != ""  # the client keeps one of them
    assert first.header("X-Hbdns-Delivery") == second.header("X-Hbdns-Delivery")
    assert (first.subject, first.text) == (second.subject, second.text)
    assert len(smtp.mails_for("ops@example.org")) == 2


@pytest.mark.parametrize(
    ("file", "text", "line", "reason"),
    [
        ("neutralized/de/body.txt", "Guten Tag,\n{% if mx %}\n{{ name }\n{% endif %}\n", 3, "unexpected '}'"),
        ("recovered/en/subject.txt", "{{ name }} back after {{ duration }}\n{{ outage_length }}\n", 2,
         "unknown name 'outage_length'"),
        ("ip_changed/de/sms.txt", "{{ operator.name }}: {{ at.weekday }}\n", 1, "UndefinedError"),
    ],
)  # fmt: skip
def test_a_broken_override_stops_the_notifier_process_at_start(
    tmp_path: Path, file: str, text: str, line: int, reason: str
) -> None:
    path = tmp_path / "templates" / file
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HBDNS_")}
    env.update(HBDNS_TEMPLATES_DIR=str(tmp_path / "templates"), HBDNS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    done = subprocess.run(
        [sys.executable, "-m", "notifier.main"], env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert f"hbdns-notifier: {path}:{line}: " in done.stderr and reason in done.stderr, done.stderr


def run(r: redis.Redis, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli(list(argv), redis_client=r)
    out, err = capsys.readouterr()
    return code, out, err


def test_preview_prints_exactly_what_would_be_sent(
    real_redis: redis.Redis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HBDNS_OPERATOR_NAME", "Beispiel Hosting")
    assert run(real_redis, capsys, "zone", "add", ZONE, "--lang", "de")[0] == 0
    assert run(real_redis, capsys, "account", "add", f"heim.{ZONE}", "--plan", "heartbeat-c", "--tz",
               "Europe/Berlin", "--email", "kunde@example.org", "--phone", PHONE)[0] == 0  # fmt: skip
    code, out, _ = run(real_redis, capsys, "notify", "preview", f"heim.{ZONE}", "recovered_merged")
    assert code == 0
    raw_mail, rest = out.split("=== e-mail to kunde@example.org\n")[1].split(f"\n=== SMS to {PHONE}\n")
    msg = email.message_from_string(raw_mail, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["Subject"] == f"heim.{ZONE} war 4 Min. 38 s offline" and msg["Auto-Submitted"] == "auto-generated"
    assert "Den Beginn des Ausfalls konnten wir Ihnen nicht rechtzeitig melden" in content(msg.get_body(("plain",)))
    sms_text, rest = rest.split("\n=== webhook POST to https://example.invalid/hook\n")
    text, size = sms_text.rstrip("\n").split("\n--- ")
    assert text.startswith(f"Beispiel Hosting: heim.{ZONE} war OFFLINE von ")
    assert size == f"GSM-7, {len(text)} of 160 septets, 1 segment"
    assert json.loads(rest)["merged"] is True and json.loads(rest)["lang"] == "de"

    code, out, _ = run(real_redis, capsys, "--json", "notify", "preview", f"heim.{ZONE}", "neutralized",
                       "--channel", "sms", "--lang", "en")  # fmt: skip
    data = json.loads(out)
    assert code == 0 and set(data) == {"set", "lang", "sms"} and data["lang"] == "en"
    assert data["sms"]["text"].startswith(f"Beispiel Hosting: heim.{ZONE} OFFLINE since ")
    assert (data["sms"]["encoding"], data["sms"]["segments"], data["sms"]["cut"]) == ("GSM-7", 1, False)
    assert len(events(real_redis)) == 1  # the account's "created": a preview writes nothing

    code, _, err = run(real_redis, capsys, "notify", "preview", f"heim.{ZONE}", "offline")
    assert code == 2 and "no template set 'offline' (known: " in err
    code, _, err = run(real_redis, capsys, "notify", "preview", f"heim.{ZONE}", "neutralized", "--lang", "fr")
    assert code == 2 and "language 'fr' must be one of de, en" in err


def test_preview_uses_the_override_and_refuses_a_broken_one(
    real_redis: redis.Redis, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "neutralized" / "en").mkdir(parents=True)
    sms = tmp_path / "neutralized" / "en" / "sms.txt"
    sms.write_text("{{ name }} is down [since {{ at.hm }}] \u2013 call us\n", encoding="utf-8")
    monkeypatch.setenv("HBDNS_TEMPLATES_DIR", str(tmp_path))
    assert run(real_redis, capsys, "zone", "add", ZONE)[0] == 0
    assert run(real_redis, capsys, "account", "add", f"h.{ZONE}", "--plan", "heartbeat-c")[0] == 0
    code, out, _ = run(real_redis, capsys, "notify", "preview", f"h.{ZONE}", "neutralized", "--channel", "sms")
    assert code == 0 and "is down [since " in out and "--- UCS-2, " in out  # the dash is not GSM-7
    sms.write_text("{{ name }} is down {% if %}\n", encoding="utf-8")
    code, _, err = run(real_redis, capsys, "notify", "preview", f"h.{ZONE}", "neutralized")
    assert code == 2 and f"hbdns: templates: {sms}:1: " in err


def test_notify_test_sends_on_every_channel_through_the_notifier(
    real_redis: redis.Redis,
    redis_url: str,
    smtp: SmtpSink,
    http: HttpSink,
    notifiers: Callable[..., Notifier],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = env_for(redis_url, smtp, sms=http)
    settings = config.load(env)
    store = Store(real_redis, settings)
    german_zone(store)
    acct = add_account(store, "probe", emails=["kunde@example.org"], phones=[PHONE], webhook=http.url + "/hook",
                       prefs=NotifyPrefs(webhook="none"))  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = run(real_redis, capsys, "notify", "test", acct.fqdn, "--wait", "5")  # no notifier yet
    assert code == 3 and "is hbdns-notifier running?" in out and "webhook" in out, err

    notifier = notifiers(settings)
    code, out, err = run(real_redis, capsys, "--json", "notify", "test", acct.fqdn, "--wait", "20")
    data = json.loads(out)
    assert code == 0, out + err
    assert [(m["channel"], m["state"]) for m in data["messages"]] == [("email", "sent"), ("sms", "sent")]
    assert data["muted"] == ["webhook"]
    mails = smtp.mails_for("kunde@example.org")
    assert [m.subject for m in mails] == [f"Testnachricht für {acct.fqdn}"] * 2  # the first test's, then this one's
    assert mails[0].header("Message-ID") != mails[1].header("Message-ID")  # two tests: two messages
    assert [r.json()["text"] for r in http.ok("/sms")] == [f"hbdns: Testnachricht für {acct.fqdn}. "
                                                           "Unsere SMS an diese Nummer kommen an."] * 2  # fmt: skip
    assert http.ok("/hook") == []
    counts = notifier.counters.snapshot()  # both tests' SMS went through this notifier's gateway transport
    assert (counts["sms_sent_total"], counts["sms_segments_total"], counts["sms_sent_segments_1"]) == (2, 2, 2)
    log = store.account_log(acct.id, 5)
    assert [e["type"] for e in log[:2]] == ["test", "test"]
    wait_for(lambda: settled(real_redis), 10, what="settled")


def test_the_gateway_transport_counts_segments(http: HttpSink, redis_url: str) -> None:
    counters = Counters()
    transport = SmsTransport(config.load(env_for(redis_url, sms=http)), counters)
    for text in ("kurz", "ü" * 161, "\u201cquoted\u201d " * 10):  # 1 GSM-7, 2 GSM-7 (153 + 8), 2 UCS-2 (67 + 33)
        transport.notify(Message("sms", PHONE, "s", text, 1, "h.example.test", "test", "1-0"))
    assert [r.json()["text"] for r in http.ok("/sms")][1] == "ü" * 161
    assert counters.snapshot() == {
        "sms_segments_total": 5, "sms_sent_segments_1": 1, "sms_sent_segments_2": 2, "sms_sent_total": 3,
    }  # fmt: skip


def test_data_from_before_the_language_reads_as_the_default(real_redis: redis.Redis, redis_url: str) -> None:
    """No migration: an account whose prefs and a zone whose hash have no ``lang`` read as unset, and so
    take the zone's and then the setting's language."""
    settings = config.load(env_for(redis_url))
    store = Store(real_redis, settings)
    store.add_zone(Zone(ZONE, ("ns1.example.test",), "hostmaster.example.test", "192.0.2.1"))
    acct = add_account(store, "old", emails=["a@example.org"])
    old_prefs = {"email": "outages", "sms": "outages", "webhook": "all", "sms_min_outage": 60,
                 "quiet_hours": "", "tz": "Europe/Berlin"}  # fmt: skip
    real_redis.hset(keys.account(acct.id), "prefs", json.dumps(old_prefs))
    real_redis.hdel(keys.zone(ZONE), "lang")
    loaded = store.get_account(acct.id)
    zone = store.get_zone(ZONE)
    assert loaded is not None and zone is not None and loaded.prefs.lang == "" and zone.lang == ""
    event = Event("1-0", "neutralized", acct.id, acct.fqdn, 1_714_564_803_000, {"reason": "missed"})
    german = Renderer.from_settings(config.load({"HBDNS_NOTIFY_LANG": "de"}))
    assert Composer(german, zone_lang=ZoneLangs(real_redis)).immediate(event, loaded)[0].lang == "de"
    assert (
        Composer(Renderer.from_settings(settings), zone_lang=ZoneLangs(real_redis)).immediate(event, loaded)[0].lang
        == "en"
    )
    assert cli(["zone", "set", ZONE, "--lang", "de"], redis_client=real_redis) == 0
    assert (
        Composer(Renderer.from_settings(settings), zone_lang=ZoneLangs(real_redis)).immediate(event, loaded)[0].lang
        == "de"
    )
    assert cli(["account", "set", acct.fqdn, "--lang", "en"], redis_client=real_redis) == 0
    changed = store.get_account(acct.id)
    assert changed is not None and changed.prefs.lang == "en" and changed.prefs.tz == "Europe/Berlin"
