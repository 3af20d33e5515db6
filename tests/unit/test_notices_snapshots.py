"""Every template set x language x channel of the shipped defaults, rendered for every sample event
and compared with the files in tests/snapshots/notices/ (what a customer gets, reviewable in a diff).

A change to a default template fails here until the snapshots are written anew on purpose:
``.venv/bin/python -m pytest tests/unit/test_notices_snapshots.py --update-snapshots``. A missing
snapshot fails too (never written silently).
"""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from hbdns import config, notify_queue
from hbdns.notices import sms, webhook
from hbdns.notices.catalog import PACKAGE_DIR
from hbdns.notices.context import sample_account, samples
from hbdns.notices.mail import Sender, compose
from hbdns.notices.render import Renderer

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots" / "notices"
SETTINGS = config.load(
    {
        "HBDNS_OPERATOR_NAME": "Beispiel Hosting",
        "HBDNS_SMTP_FROM": "Beispiel Hosting <noc@example.net>",
        "HBDNS_OPERATOR_SUPPORT_URL": "https://example.net/hilfe",
        "HBDNS_OPERATOR_SIGNATURE": "Beispiel Hosting GmbH\\nHauptstraße 1, 12345 Berlin",
        "HBDNS_STATUS_PUBLIC_URL": "https://status.example.net",
        "HBDNS_EMAIL_HTML": "true",  # off by default; on here so the HTML templates are pinned too
    }
)
RENDERER = Renderer.from_settings(SETTINGS)
DATE = datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
SETS = sorted(p.name for p in PACKAGE_DIR.iterdir() if (p / "sample.json").exists())
CHANNELS = ("email", "sms", "webhook")


def _decoded(raw: bytes) -> str:
    """Each part as the recipient's mail client shows it (the email parser, default policy)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    lines = [f"Subject (decoded): {msg['Subject']}", f"From (decoded): {msg['From']}"]
    for part in msg.walk():
        if not part.is_multipart():
            lines += [f"--- {part.get_content_type()} (decoded)", part.get_content().replace("\r\n", "\n").rstrip("\n")]
    return "\n".join(lines)


def render(set_: str, lang: str, channel: str) -> str:
    account = sample_account(
        emails=("kunde@example.org",), phones=("+491701234567",), webhook="https://h.example.org/x"
    )
    sample = (PACKAGE_DIR / set_ / "sample.json").read_text(encoding="utf-8")
    out = []
    for n, event in enumerate(samples(sample, account.fqdn), 1):
        texts = RENDERER.texts(event, account, lang, merged=set_.endswith("_merged"))
        assert texts.set == set_
        out.append(f"=== sample {n}: {json.dumps(dict(event.data), sort_keys=True)}")
        if channel == "email":
            key = notify_queue.message_key(event.id, "email", account.emails[0])
            mail = compose(
                Sender.from_settings(SETTINGS), recipient=account.emails[0], subject=texts.subject, text=texts.text,
                html=texts.html, key=key, lang=lang, event_type=event.type, fqdn=account.fqdn, date=DATE,
            )  # fmt: skip
            raw = mail.as_bytes()
            assert raw.isascii()  # 7-bit clean: no relay needs 8BITMIME
            out += [raw.decode("ascii").replace("\r\n", "\n").rstrip("\n"), _decoded(raw)]
        elif channel == "sms":
            fitted = sms.fit(texts.short, 1)
            assert not fitted.cut and fitted.size.segments == 1  # the defaults fit one segment
            out += [fitted.text, f"--- {fitted.size.describe()}"]
        else:
            out.append(webhook.body(event, account, subject=texts.subject, text=texts.short, lang=lang,
                                    merged=set_.endswith("_merged")))  # fmt: skip
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("lang", ["de", "en"])
@pytest.mark.parametrize("set_", SETS)
def test_default_templates_match_their_snapshot(set_: str, lang: str, channel: str, update_snapshots: bool) -> None:
    got = render(set_, lang, channel)
    path = SNAPSHOTS / f"{set_}.{lang}.{channel}.txt"
    if update_snapshots:
        path.write_text(got, encoding="utf-8")
        return
    assert path.exists(), f"no snapshot {path.name}: run pytest {__file__} --update-snapshots and review it"
    assert got == path.read_text(encoding="utf-8"), f"{path.name} differs (--update-snapshots after review)"


def test_no_stale_snapshots() -> None:
    expected = {f"{s}.{lang}.{c}.txt" for s in SETS for lang in ("de", "en") for c in CHANNELS}
    assert {p.name for p in SNAPSHOTS.glob("*.txt")} == expected
