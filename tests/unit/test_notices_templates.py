"""The templates: languages, times and durations, what a template may use, and the start-up check
that refuses a broken override with its file and line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hbdns import config
from hbdns.model import NotifyPrefs
from hbdns.notices.catalog import PACKAGE_DIR, Catalog, TemplateProblem
from hbdns.notices.context import NAMES, Operator, SampleEvent, build, sample_account
from hbdns.notices.locale import When, duration
from hbdns.notices.render import Renderer

AT = 1_714_564_803_000  # 2024-05-01T12:00:03Z


def renderer(tmp: Path | None = None, **env: str) -> Renderer:
    if tmp is not None:
        env["HBDNS_TEMPLATES_DIR"] = str(tmp)
    env.setdefault("HBDNS_EMAIL_HTML", "true")  # off by default; these tests check the HTML too
    return Renderer.from_settings(config.load(env))


def override(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


NEUT = SampleEvent("1-0", "neutralized", "home.dyn.example.net", AT, {"reason": "missed"})


@pytest.mark.parametrize(
    ("ms", "en", "de"),
    [
        (0, "0 s", "0 s"),
        (45_999, "45 s", "45 s"),
        (60_000, "1 min", "1 Min."),
        (278_000, "4 min 38 s", "4 Min. 38 s"),
        (3_600_000, "1 h", "1 Std."),
        (7_500_000, "2 h 5 min", "2 Std. 5 Min."),
        (7_205_000, "2 h", "2 Std."),  # the seconds of a 2-hour outage are not news
        (86_400_000, "1 d", "1 Tag"),
        (93_784_000, "1 d 2 h", "1 Tag 2 Std."),
        (3 * 86_400_000, "3 d", "3 Tage"),
    ],
)
def test_durations_the_way_each_language_writes_them(ms: int, en: str, de: str) -> None:
    assert (duration(ms, "en"), duration(ms, "de")) == (en, de)


def test_times_in_the_account_zone_with_its_abbreviation() -> None:
    summer, winter = When(AT, "Europe/Berlin", "de"), When(AT - 150 * 86_400_000, "Europe/Berlin", "de")
    assert (str(summer), summer.hm, summer.zone) == ("01.05.2024, 14:00:03 MESZ", "14:00", "MESZ")
    assert winter.zone == "MEZ" and When(AT, "Europe/Berlin", "en").text == "2024-05-01 14:00:03 CEST"
    assert When(AT, "America/New_York", "en").text == "2024-05-01 08:00:03 EDT"
    assert When(AT, "UTC", "de").text == "01.05.2024, 12:00:03 UTC" and summer.utc == "2024-05-01T12:00:03Z"
    assert When(AT, "Nowhere/Atlantis", "en").zone == "UTC"  # only old data could hold one: read as UTC


def test_language_account_then_zone_then_setting() -> None:
    r = renderer(HBDNS_NOTIFY_LANG="de")
    assert r.lang(sample_account()) == "de"
    assert r.lang(sample_account(), zone_lang="en") == "en"
    assert r.lang(sample_account(prefs=NotifyPrefs(lang="en")), zone_lang="de") == "en"
    assert renderer().lang(sample_account()) == "en"


def test_every_set_in_both_languages_and_german_is_german() -> None:
    r = renderer()
    assert set(r.catalog.sets()) >= {"neutralized", "recovered", "recovered_first", "recovered_merged"}
    de = r.texts(NEUT, sample_account(), "de")
    assert de.subject == "home.dyn.example.net ist offline" and "Lebenszeichen" in de.text and de.lang == "de"
    assert "E-Mails an Sie warten" in de.text  # the account has MX
    assert "E-Mails an Sie warten" not in r.texts(NEUT, sample_account(mx=False), "de").text
    assert de.short == "hbdns: home.dyn.example.net OFFLINE seit 14:00 MESZ."
    assert '<html lang="de">' in de.html and "Backup-Mailserver" in de.html


def test_operator_settings_reach_the_texts_and_a_signature_keeps_its_separator() -> None:
    r = renderer(
        HBDNS_OPERATOR_NAME="Beispiel Hosting",
        HBDNS_OPERATOR_SUPPORT_URL="https://example.net/hilfe",
        HBDNS_OPERATOR_SIGNATURE="Beispiel Hosting GmbH\\nHauptstraße 1, 12345 Berlin",
        HBDNS_STATUS_PUBLIC_URL="https://status.example.net",
    )
    t = r.texts(NEUT, sample_account(), "de")
    assert t.short.startswith("Beispiel Hosting: ")
    assert "\n-- \nBeispiel Hosting GmbH\nHauptstraße 1, 12345 Berlin\n" in t.text
    assert "https://status.example.net/account#prefs" in t.text and "https://example.net/hilfe" in t.html
    assert "Statusseite" not in renderer().texts(NEUT, sample_account(), "de").text  # no status page: no link


def test_html_is_escaped_text_is_not(tmp_path: Path) -> None:
    r = renderer(HBDNS_OPERATOR_NAME='<b>"Bad" & Co</b>')
    t = r.texts(NEUT, sample_account(), "en")
    assert "&lt;b&gt;&#34;Bad&#34; &amp; Co&lt;/b&gt;" in t.html and "<b>" not in t.html
    assert t.short.startswith('<b>"Bad" & Co</b>: ') and '<b>"Bad" & Co</b>' in t.text


def test_the_context_is_an_allowlist_without_secrets() -> None:
    account = sample_account(hb_key=b"\x42" * 32, pw_hash="scrypt$secret-hash", emails=("a@example.org",))
    ops = Operator.from_settings(config.load({"HBDNS_SMTP_PASSWORD": "smtp-secret", "HBDNS_SMS_TOKEN": "tok"}))
    ctx = build(NEUT, account, ops, "en")
    assert set(ctx) == set(NAMES)
    dump = repr(ctx)
    for secret in ("42" * 32, "secret-hash", "smtp-secret", "tok", "a@example.org"):
        assert secret not in dump


def test_templates_run_sandboxed(tmp_path: Path) -> None:
    override(tmp_path, "neutralized/en/subject.txt", "{{ name.__class__.__mro__ }}\n")
    with pytest.raises(TemplateProblem, match=r"neutralized/en/subject.txt:1: SecurityError"):
        renderer(tmp_path)


def test_an_override_replaces_one_file_and_the_rest_stays(tmp_path: Path) -> None:
    override(tmp_path, "neutralized/de/subject.txt", "Störung: {{ name }} seit {{ at.hm }} {{ at.zone }}\n")
    r = renderer(tmp_path)
    assert r.warnings == []
    t = r.texts(NEUT, sample_account(), "de")
    assert t.subject == "Störung: home.dyn.example.net seit 14:00 MESZ" and "Lebenszeichen" in t.text
    assert r.texts(NEUT, sample_account(), "en").subject == "home.dyn.example.net is offline"


@pytest.mark.parametrize(
    ("name", "text", "line", "reason"),
    [
        ("neutralized/de/body.txt", "Hallo\n{{ name }\n", 2, "unexpected '}'"),
        ("neutralized/de/body.txt", "Hallo\n{% if mx %}\nja\n", 3, "Unexpected end of template"),
        ("recovered/en/sms.txt", "x\ny\n{{ durration }}\n", 3, "unknown name 'durration'"),
        (
            "recovered/en/body.txt",
            "{% if mx %}{{ nme }}{% endif %}\n",
            1,
            "unknown name 'nme'",
        ),  # in a branch no sample takes
        ("neutralized/en/subject.txt", "{{ subject }}\n", 1, "unknown name 'subject'"),  # only bodies have it
        ("ip_changed/en/body.txt", "a\n{{ at.minute }}\n", 2, "UndefinedError"),
        ("ip_changed/en/body.txt", "{{ event.no_such_field }}\n", 1, "UndefinedError"),
        ("layout/mail.html", "<p>\n{{ 1 // 0 }}\n", 2, "ZeroDivisionError"),
        ("neutralized/de/sms.txt", "\xff\n", 0, "not UTF-8"),
    ],
)
def test_a_broken_override_is_refused_at_start_with_file_and_line(
    tmp_path: Path, name: str, text: str, line: int, reason: str
) -> None:
    path = override(tmp_path, name, text)
    if text == "\xff\n":
        path.write_bytes(b"\xff\n")
    with pytest.raises(TemplateProblem) as err:
        renderer(tmp_path)
    where = f"{path}:{line}" if line else str(path)
    assert str(err.value).startswith(f"{where}: ") and reason in str(err.value)


def test_a_new_set_needs_every_part_and_a_sample(tmp_path: Path) -> None:
    override(tmp_path, "lost_family/sample.json", '{"type": "lost_family", "variants": [{"fields": {"family": "6"}}]}')
    for lang in ("de", "en"):
        override(tmp_path, f"lost_family/{lang}/subject.txt", "{{ name }} lost {{ families | join(', ') }}\n")
        override(tmp_path, f"lost_family/{lang}/body.txt", "{{ subject }}.\n")
    with pytest.raises(TemplateProblem, match=r"lost_family/de/sms\.txt: missing"):
        renderer(tmp_path)
    for lang in ("de", "en"):
        override(tmp_path, f"lost_family/{lang}/sms.txt", "{{ operator.name }}: {{ subject }}\n")
    r = renderer(tmp_path)
    event = SampleEvent("2-0", "lost_family", "home.dyn.example.net", AT, {"family": "6"})
    assert r.texts(event, sample_account(), "en").short == "hbdns: home.dyn.example.net lost IPv6"
    override(tmp_path, "lost_family/sample.json", "[1]")
    with pytest.raises(TemplateProblem, match=r"lost_family/sample.json: unreadable sample"):
        renderer(tmp_path)


def test_an_unknown_event_type_takes_the_other_set() -> None:
    r = renderer()
    event = SampleEvent("3-0", "carrier_notice", "home.dyn.example.net", AT, {})
    assert r.texts(event, sample_account(), "en").subject == "home.dyn.example.net: carrier_notice"
    assert r.catalog.pick("recovered", first=True) == "recovered_first"
    assert r.catalog.pick("recovered", merged=True) == "recovered_merged"


def test_warnings_for_long_sms_and_files_that_replace_nothing(tmp_path: Path) -> None:
    override(tmp_path, "neutralized/en/sms.txt", "{{ operator.name }}: {{ name }} " + "offline " * 30 + "\n")
    override(tmp_path, "neutralized/en/subjekt.txt", "typo\n")
    override(tmp_path, "neutralized/fr/subject.txt", "{{ name }} est hors ligne\n")
    r = renderer(tmp_path)
    text = "\n".join(r.warnings)
    assert re.search(r"neutralized/en/sms.txt: the sample needs 2 SMS segments \(GSM-7, 2\d\d of 306", text)
    assert "neutralized/en/subjekt.txt: not used" in text and "neutralized/fr/subject.txt: not used" in text
    assert len(r.warnings) == 3


def test_an_override_that_fails_on_real_data_falls_back_to_the_default(tmp_path: Path) -> None:
    override(tmp_path, "neutralized/en/subject.txt", "{{ name }} down: {{ event.reason | upper }}\n")
    r = renderer(tmp_path)  # the samples have a reason
    t = r.texts(SampleEvent("4-0", "neutralized", "home.dyn.example.net", AT, {}), sample_account(), "en")
    assert t.subject == "home.dyn.example.net is offline"  # the package's subject, not a lost message


def test_not_a_directory() -> None:
    with pytest.raises(TemplateProblem, match="HBDNS_TEMPLATES_DIR is not a directory"):
        Catalog("/nonexistent/templates")


def test_the_package_ships_every_part_of_every_set() -> None:
    for set_dir in (p for p in PACKAGE_DIR.iterdir() if (p / "sample.json").exists()):
        for lang in ("de", "en"):
            assert {"subject.txt", "body.txt", "sms.txt"} <= {f.name for f in (set_dir / lang).iterdir()}, set_dir
