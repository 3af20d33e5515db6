"""The notification rules and texts, as pure functions."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hbdns.model import Account, NotifyPrefs
from notifier.events import Event
from notifier.messages import (
    EMAIL,
    SMS,
    WEBHOOK,
    Message,
    fmt_duration,
    fmt_time,
    immediate_messages,
    quiet_until,
    sms_due,
    sms_messages,
    wants,
    webhook_body,
)

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


def test_texts_name_account_time_in_utc_and_local_and_reason() -> None:
    msgs = immediate_messages(NEUT, account())
    assert [m.channel for m in msgs] == [EMAIL, EMAIL, WEBHOOK]
    mail = msgs[0]
    assert "host.example.test" in mail.subject and "offline" in mail.subject
    assert "2024-05-01T12:00:00Z" in mail.text and "14:00:00 CEST" in mail.text and "Europe/Berlin" in mail.text
    assert "no heartbeat" in mail.text and "heartbeat-c" in mail.text
    offline = immediate_messages(ev("neutralized", reason="offline", source="beat"), account())[0]
    assert "going offline" in offline.text


def test_recovery_text_has_outage_length() -> None:
    mail = immediate_messages(REC, account())[0]
    assert "back online" in mail.subject and "5 min 3 s" in mail.subject
    assert "The outage lasted 5 min 3 s" in mail.text and "2024-05-01T11:54:57Z" in mail.text
    [sms] = sms_messages(REC, account(), ["+491701234567"])
    assert "after an outage of 5 min 3 s" in sms.text


def test_first_beat_says_online_not_recovered() -> None:
    acct = account(prefs=NotifyPrefs(email="all", webhook="all"))
    mail = immediate_messages(FIRST, acct)[0]
    assert mail.subject.endswith("is online") and "back" not in mail.text
    assert sms_due(FIRST, acct) is None  # never an SMS for it


def test_webhook_body_is_stable_json() -> None:
    body = webhook_body(REC, account(), "t")
    assert body == webhook_body(REC, account(), "t")
    data = json.loads(body)
    assert (
        data["event"] == "recovered" and data["outage_ms"] == 303000 and data["account"]["fqdn"] == "host.example.test"
    )
    assert data["at"] == "2024-05-01T12:00:00Z"
    ipc = json.loads(webhook_body(IPC, account(), "t"))
    assert (ipc["old"], ipc["new"], ipc["family"]) == ("198.51.100.1", "198.51.100.2", "4")


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
    assert "was OFFLINE from 2024-05-01T11:54:57Z" in merged.text and "to 2024-05-01T12:00:00Z" in merged.text
    assert "(5 min 3 s)" in merged.text and merged.merged == ()
    email, _, hook = immediate_messages(REC, account())
    m = email.as_merged()
    assert m.subject == "hbdns: host.example.test was offline for 5 min 3 s"
    assert "was offline from 2024-05-01T11:54:57Z (13:54:57 CEST, Europe/Berlin)" in m.text
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
    assert m.outage_ms == 0 and m.role == "" and m.as_merged() == m
    assert Message.from_json({**old, "added_by_a_newer_version": 1}) == m


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


def test_durations_and_times() -> None:
    assert [fmt_duration(ms) for ms in (0, 59_999, 60_000, 303_000, 3_600_000, 7_500_000, 90_000_000)] == [
        "0 s",
        "59 s",
        "1 min",
        "5 min 3 s",
        "1 h",
        "2 h 5 min",
        "1 d 1 h",
    ]
    assert fmt_time(AT, "UTC") == "2024-05-01T12:00:00Z"
    assert (
        fmt_time(AT + 11 * 3_600_000, "Europe/Berlin")
        == "2024-05-01T23:00:00Z (2024-05-02 01:00:00 CEST, Europe/Berlin)"
    )


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
    assert mails[0].subject == "hbdns: host.example.test lost IPv4 (neutralized)"
    assert "The IPv4 address of host.example.test was neutralized" in mails[0].text
    assert "stays live over its other address family" in mails[0].text
    [hook] = [m for m in immediate_messages(lost, a) if m.channel == WEBHOOK]
    assert json.loads(hook.body)["families"] == [4] and json.loads(hook.body)["event"] == "family_lost"
    [mail, _] = [m for m in immediate_messages(back, a) if m.channel == EMAIL]
    assert mail.subject == "hbdns: host.example.test is back on IPv4 after 1 min 5 s"


def test_neutralized_and_recovered_say_which_family() -> None:
    a = account()
    gone = Event("5-0", "neutralized", 7, "host.example.test", AT, {"family": "4,6", "reason": "missed"})
    [mail, *_] = immediate_messages(gone, a)
    assert "(IPv4 and IPv6 gone, no address family left)" in mail.text
    back = Event("6-0", "recovered", 7, "host.example.test", AT, {"family": "6", "duration_ms": "1000"})
    [mail, *_] = immediate_messages(back, a)
    assert "(beat, over IPv6)" in mail.text
