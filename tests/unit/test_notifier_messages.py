"""The notification rules, and the messages :class:`Composer` makes of an event (the texts
themselves are the templates', tested in test_notices_*.py)."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hbdns import config
from hbdns.model import Account, NotifyPrefs
from hbdns.notices.render import Renderer
from notifier.counters import Counters
from notifier.events import Event
from notifier.messages import EMAIL, SMS, WEBHOOK, Composer, Message, quiet_until, sms_due, wants

RENDERER = Renderer.from_settings(config.load({"HBDNS_EMAIL_HTML": "true"}))  # HTML is off by default
COMPOSER = Composer(RENDERER)


def immediate_messages(event: Event, account: Account) -> list[Message]:
    return COMPOSER.immediate(event, account)


def sms_messages(event: Event, account: Account, phones: list[str]) -> list[Message]:
    return COMPOSER.sms(event, account, phones)


AT = 1_714_564_800_000  # 2024-05-01T12:00:00Z


def account(**kw: object) -> Account:
    base: dict[str, object] = dict(
        id=7,
        fqdn="host.example.test",
        zone="example.test",
        plan="heartbeat-c",
        hb_key=b"k" * 32,
        emails=("ops@example.org", "boss@example.org"),
        phones=("+491701234567",),
        webhook="http://127.0.0.1:9/hook",
        prefs=NotifyPrefs(tz="Europe/Berlin"),
    )
    base.update(kw)
    return Account(**base)  # type: ignore[arg-type]


def ev(kind: str, **data: str) -> Event:
    return Event("1714564800000-0", kind, 7, "host.example.test", AT, data)


NEUT = ev("neutralized", reason="missed", swept_at=str(AT + 40))
REC = ev("recovered", neutral_since=str(AT - 303_000), duration_ms="303000", source="beat", first="0")
FIRST = ev("recovered", neutral_since="0", duration_ms="0", source="beat", first="1")
IPC = ev("ip_changed", family="4", old="198.51.100.1", new="198.51.100.2", source="update")


@pytest.mark.parametrize(
    ("level", "event", "expected"),
    [
        ("none", NEUT, False),
        ("outages", NEUT, True),
        ("outages", REC, True),
        ("outages", FIRST, False),
        ("outages", IPC, False),
        ("all", FIRST, True),
        ("all", IPC, True),
        ("all", ev("created", plan="x"), False),
        ("all", ev("removed"), False),
    ],
)
def test_levels(level: str, event: Event, expected: bool) -> None:
    assert wants(level, event) is expected


def test_texts_name_account_local_time_and_reason() -> None:
    msgs = immediate_messages(NEUT, account())
    assert [m.channel for m in msgs] == [EMAIL, EMAIL, WEBHOOK]
    mail = msgs[0]
    assert mail.subject == "host.example.test is offline" and mail.lang == "en" and "<html" in mail.html
    assert "since 2024-05-01 14:00:00 CEST" in mail.text  # the account's time zone, with its abbreviation
    assert "No heartbeat or update arrived in time (plan heartbeat-c)" in mail.text
    offline = immediate_messages(ev("neutralized", reason="offline", source="beat"), account())[0]
    assert "Your client reported that it was going offline" in offline.text


def test_recovery_text_has_outage_length() -> None:
    mail = immediate_messages(REC, account())[0]
    assert mail.subject == "host.example.test is back online after 5 min 3 s"
    assert "The outage lasted 5 min 3 s: it was offline since 2024-05-01 13:54:57 CEST" in mail.text
    [sms] = sms_messages(REC, account(), ["+491701234567"])
    assert sms.text == "hbdns: host.example.test back ONLINE at 14:00 CEST after 5 min 3 s."


def test_first_beat_says_online_not_recovered() -> None:
    acct = account(prefs=NotifyPrefs(email="all", webhook="all"))
    mail = immediate_messages(FIRST, acct)[0]
    assert mail.subject.endswith("is online") and "back" not in mail.text
    assert sms_due(FIRST, acct) is None  # never an SMS for it


def test_the_account_language_then_the_zone_then_the_setting() -> None:
    de = Composer(RENDERER, zone_lang=lambda zone: "de")
    assert de.immediate(NEUT, account())[0].subject == "host.example.test ist offline"
    assert de.immediate(NEUT, account(prefs=NotifyPrefs(lang="en")))[0].lang == "en"
    assert COMPOSER.immediate(NEUT, account(prefs=NotifyPrefs(lang="de")))[0].lang == "de"
    german = Composer(Renderer.from_settings(config.load({"HBDNS_NOTIFY_LANG": "de", "HBDNS_EMAIL_HTML": "true"})))
    [sms] = german.sms(REC, account(), ["+491701234567"])
    assert sms.lang == "de" and "wieder ONLINE" in sms.text and "5 Min. 3 s" in sms.text


def test_webhook_body_is_stable_json_with_the_short_text() -> None:
    hook = immediate_messages(REC, account())[2]
    assert hook.body == immediate_messages(REC, account())[2].body
    data = json.loads(hook.body)
    assert (
        data["event"] == "recovered" and data["outage_ms"] == 303000 and data["account"]["fqdn"] == "host.example.test"
    )
    assert data["at"] == "2024-05-01T12:00:00Z" and data["lang"] == "en" and data["text"] == hook.text
    assert data["subject"] == "host.example.test is back online after 5 min 3 s"
    ipc = json.loads(immediate_messages(IPC, account(prefs=NotifyPrefs(webhook="all")))[-1].body)
    assert (ipc["old"], ipc["new"], ipc["family"]) == ("198.51.100.1", "198.51.100.2", "4")


def test_a_test_event_goes_on_every_channel_not_muted_and_its_sms_at_once() -> None:
    test = ev("test", by="cli")
    msgs = immediate_messages(test, account())
    assert [m.channel for m in msgs] == [EMAIL, EMAIL, WEBHOOK, SMS]
    assert msgs[0].subject == "Test message for host.example.test" and msgs[0].role == ""
    assert sms_due(test, account()) is None  # not through the deferred SMS step
    muted = immediate_messages(test, account(prefs=NotifyPrefs(sms="none", webhook="none")))
    assert [m.channel for m in muted] == [EMAIL, EMAIL]


def test_a_long_sms_is_cut_to_the_allowed_segments_and_counted() -> None:
    counters = Counters()
    composer = Composer(RENDERER, sms_segments=1, counters=counters)
    long_name = ".".join(["a" * 60, "b" * 60, "example.test"])
    ipc = Event(IPC.id, IPC.type, 7, long_name, AT, IPC.data)
    [sms] = composer.sms(ipc, account(fqdn=long_name), ["+491701234567"])
    assert len(sms.text) <= 160 and sms.text.endswith("...") and counters.get("sms_cut_total") == 1
    [two] = Composer(RENDERER, sms_segments=2).sms(ipc, account(fqdn=long_name), ["+491701234567"])
    assert not two.text.endswith("...") and 160 < len(two.text) <= 306


def test_idempotency_key_per_event_channel_recipient() -> None:
    msgs = immediate_messages(NEUT, account())
    assert len({m.key for m in msgs}) == 3
    assert all(m.key.startswith(NEUT.id + ":") for m in msgs)
    again = immediate_messages(NEUT, account())
    assert [m.key for m in again] == [m.key for m in msgs]
    assert Message.from_json(msgs[2].to_json()) == msgs[2]


def test_both_messages_of_an_outage_carry_its_start_and_the_recovery_its_merged_form() -> None:
    [sms] = sms_messages(NEUT, account(), ["+491701234567"])
    assert sms.channel == SMS and sms.outage_ms == AT and sms.role == "offline" and sms.marks == ()
    assert Message.from_json(sms.to_json()) == sms
    [rec_sms] = sms_messages(REC, account(), ["+491701234567"])
    assert rec_sms.outage_ms == AT - 303_000 and rec_sms.role == "recovery"
    merged = rec_sms.as_merged()
    assert merged.key == rec_sms.key  # one message either way: one idempotency key
    assert "was OFFLINE from 13:54 to 14:00 CEST (5 min 3 s)" in merged.text and merged.merged == ()
    email, _, hook = immediate_messages(REC, account())
    m = email.as_merged()
    assert m.subject == "host.example.test was offline for 5 min 3 s" and "was offline for" in m.html
    assert "was offline from 2024-05-01 13:54:57 CEST to 2024-05-01 14:00:00 CEST" in m.text
    body = json.loads(hook.as_merged().body)
    assert body["merged"] is True and body["event"] == "recovered" and body["outage_ms"] == 303_000
    assert "merged" not in json.loads(hook.body)
    assert Message.from_json(hook.to_json()) == hook
    # first "online", IP changes: not outage messages, nothing to merge
    assert all(
        x.role == "" and x.merged == () for x in immediate_messages(FIRST, account(prefs=NotifyPrefs(email="all")))
    )
    assert all(x.role == "" for x in immediate_messages(IPC, account(prefs=NotifyPrefs(email="all"))))


def test_a_message_queued_by_an_older_version_still_reads() -> None:
    old = {"account": 7, "body": "", "channel": "email", "event_id": "1-0", "event_type": "recovered",
           "fqdn": "h.example.test", "marks": [], "recipient": "a@example.org", "subject": "s",
           "text": "t"}  # fmt: skip
    m = Message.from_json(old)
    assert m.outage_ms == 0 and m.role == "" and m.as_merged() == m and m.html == "" and m.lang == ""
    assert Message.from_json({**old, "added_by_a_newer_version": 1}) == m
    # a recovery queued before the HTML part: its merged form has three texts
    older = Message.from_json({**old, "outage_ms": 5, "merged": ["was offline", "t2", ""]})
    assert (older.as_merged().subject, older.as_merged().html) == ("was offline", "")


def test_sms_due_min_outage() -> None:
    acct = account(prefs=NotifyPrefs(sms_min_outage=90))
    assert sms_due(NEUT, acct) == AT / 1000 + 90
    assert sms_due(REC, acct) == AT / 1000
    assert sms_due(IPC, acct) is None  # level outages
    assert sms_due(NEUT, account(phones=())) is None
    assert sms_due(NEUT, account(prefs=NotifyPrefs(sms="none"))) is None


def _ts(text: str, tz: str = "Europe/Berlin") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


@pytest.mark.parametrize(
    ("local", "window", "end"),
    [
        ("2024-05-01T23:00", "22:00-07:00", "2024-05-02T07:00"),
        ("2024-05-02T03:30", "22:00-07:00", "2024-05-02T07:00"),
        ("2024-05-01T22:00", "22:00-07:00", "2024-05-02T07:00"),
        ("2024-05-02T07:00", "22:00-07:00", None),
        ("2024-05-01T21:59", "22:00-07:00", None),
        ("2024-05-01T12:00", "22:00-07:00", None),
        ("2024-05-01T13:00", "12:30-14:00", "2024-05-01T14:00"),
        ("2024-05-01T14:00", "12:30-14:00", None),
        ("2024-03-31T01:30", "22:00-07:00", "2024-03-31T07:00"),  # the night clocks go forward
        ("2024-05-01T23:00", "", None),
    ],
)
def test_quiet_hours(local: str, window: str, end: str | None) -> None:
    got = quiet_until(_ts(local), window, "Europe/Berlin")
    assert got == (_ts(end) if end else None)


def test_quiet_hours_use_the_account_time_zone() -> None:
    now = _ts("2024-05-01T23:00", "UTC")  # 01:00 in Berlin, 19:00 in New York
    assert quiet_until(now, "00:00-06:00", "Europe/Berlin") == _ts("2024-05-02T06:00")
    assert quiet_until(now, "00:00-06:00", "America/New_York") is None


def test_event_round_trip() -> None:
    assert Event.from_json(REC.to_json()) == REC
    fields = {"type": "neutralized", "account": "7", "fqdn": "h.example.test", "at": "123", "reason": "missed"}
    e = Event.from_fields("5-0", fields)
    assert (e.type, e.account, e.at_ms, e.get("reason")) == ("neutralized", 7, 123, "missed")


def test_one_family_lost_and_back_is_told_by_e_mail_and_webhook_not_sms() -> None:
    a = account(mx=True)
    lost = Event("5-0", "family_lost", 7, "host.example.test", AT, {"family": "4", "reason": "missed"})
    back = Event("6-0", "family_back", 7, "host.example.test", AT + 65_000, {"family": "4", "duration_ms": "65000"})
    for event in (lost, back):
        assert wants("outages", event) and not wants("none", event)
        assert sms_due(event, a) is None  # an SMS is for the account being offline
    mails = [m for m in immediate_messages(lost, a) if m.channel == EMAIL]
    assert len(mails) == 2
    assert mails[0].subject == "host.example.test lost IPv4"
    assert "host.example.test has been unreachable over IPv4 since" in mails[0].text
    assert "stays online over its other address" in mails[0].text.replace("\n", " ")
    [hook] = [m for m in immediate_messages(lost, a) if m.channel == WEBHOOK]
    assert json.loads(hook.body)["families"] == [4] and json.loads(hook.body)["event"] == "family_lost"
    [mail, _] = [m for m in immediate_messages(back, a) if m.channel == EMAIL]
    assert mail.subject == "host.example.test is back on IPv4 after 1 min 5 s"


def test_neutralized_and_recovered_say_which_family() -> None:
    a = account()
    gone = Event("5-0", "neutralized", 7, "host.example.test", AT, {"family": "4,6", "reason": "missed"})
    [mail, *_] = immediate_messages(gone, a)
    assert "(over IPv4 and IPv6: no address family left)" in mail.text
    back = Event("6-0", "recovered", 7, "host.example.test", AT, {"family": "6", "duration_ms": "1000"})
    [mail, *_] = immediate_messages(back, a)
    assert "back online since" in mail.text and "(over IPv6)." in mail.text
