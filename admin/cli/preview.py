"""``hbdns notify preview`` and ``hbdns notify test``: what a customer would be sent, and a real test.

``preview ACCOUNT SET`` renders a template set's sample event (``hbdns/notices/templates/<set>/
sample.json``, or the override directory's) for the account, placed at the present, with the same
code the notifier sends with: the whole e-mail as it goes to the relay (headers, MIME parts,
encodings), the SMS text with its length and segments, the webhook's JSON. Nothing is written.

``test ACCOUNT`` writes a ``test`` event to the stream (and the account's log), which the running
notifiers send like any other, on every channel the account has a contact for and does not mute:
idempotency, retries, holds, quiet hours for SMS, dead letters and logs as usual. It then follows
each message until it is sent or ``--wait`` seconds passed, and exits 0 only when all were sent
(3 otherwise: failed, still queued, or no notifier running).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from admin.cli.output import Refused, emit, table
from hbdns import event_streams, keys, notify_queue
from hbdns.model import check_lang
from hbdns.notices import TEST_EVENT, sms, webhook
from hbdns.notices.catalog import SAMPLE, TemplateProblem
from hbdns.notices.context import samples
from hbdns.notices.mail import Sender, compose
from hbdns.notices.render import Renderer
from hbdns.store import Store

EMAIL, SMS, WEBHOOK = "email", "sms", "webhook"
EXIT_NOT_SENT = 3
FINAL = ("sent", "dead", "moot")  # where a message stays
PLACEHOLDER = {EMAIL: "customer@example.invalid", SMS: "+4915100000000", WEBHOOK: "https://example.invalid/hook"}


def _renderer(store: Store) -> Renderer:
    try:
        return Renderer.from_settings(store.settings)
    except TemplateProblem as exc:
        raise Refused(f"templates: {exc}") from None


def preview(store: Store, args: argparse.Namespace) -> int:
    renderer, account = _renderer(store), store.resolve(args.account)
    catalog = renderer.catalog
    if args.event not in catalog.sets():
        raise Refused(f"no template set {args.event!r} (known: {', '.join(catalog.sets())})")
    sample = catalog.file(f"{args.event}/{SAMPLE}")
    assert sample is not None
    now_ms = int(time.time() * 1000)
    variants = samples(sample.read_text(encoding="utf-8"), account.fqdn, now_ms, f"{now_ms}-0")
    if not 1 <= args.variant <= len(variants):
        raise Refused(f"{args.event} has {len(variants)} sample variants (--variant 1..{len(variants)})")
    event = variants[args.variant - 1]
    zone = store.get_zone(account.zone)
    lang = check_lang(args.lang) if args.lang else renderer.lang(account, zone.lang if zone else "")
    texts = renderer.texts(event, account, lang, merged=args.event.endswith("_merged"))
    data: dict[str, Any] = {}
    shown: list[str] = []
    for channel in [args.channel] if args.channel else [EMAIL, SMS, WEBHOOK]:
        contacts = {EMAIL: account.emails, SMS: account.phones, WEBHOOK: (account.webhook,) if account.webhook else ()}
        to = (contacts[channel] or (PLACEHOLDER[channel],))[0]
        key = notify_queue.message_key(event.id, channel, to)
        if channel == EMAIL:
            mail = compose(
                Sender.from_settings(store.settings),
                recipient=to,
                subject=texts.subject,
                text=texts.text,
                html=texts.html,
                key=key,
                lang=lang,
                event_type=event.type,
                fqdn=account.fqdn,
            )
            raw = mail.as_bytes().decode("ascii", errors="replace").replace("\r\n", "\n")
            data[EMAIL] = {"to": to, "subject": texts.subject, "text": texts.text, "html": texts.html, "raw": raw}
            shown.append(f"=== e-mail to {to}\n{raw}")
        elif channel == SMS:
            fitted = sms.fit(texts.short, store.settings.sms_max_segments)
            size = fitted.size
            cut = f"; cut from {sms.measure(texts.short).describe()}" if fitted.cut else ""
            data[SMS] = {"to": to, "text": fitted.text, "encoding": size.encoding, "units": size.units,
                         "segments": size.segments, "cut": fitted.cut}  # fmt: skip
            shown.append(f"=== SMS to {to}\n{fitted.text}\n--- {size.describe()}{cut}\n")
        else:
            body = webhook.body(event, account, subject=texts.subject, text=texts.short, lang=lang,
                                merged=args.event.endswith("_merged"))  # fmt: skip
            data[WEBHOOK] = {"to": to, "body": json.loads(body), "raw": body}
            shown.append(f"=== webhook POST to {to}\n{body}\n")
    emit(args, {"set": texts.set, "lang": lang, **data}, "\n".join(shown).rstrip("\n"))
    return 0


def test(store: Store, args: argparse.Namespace) -> int:
    account = store.resolve(args.account)
    prefs = account.prefs
    contacts = [(EMAIL, a, prefs.email) for a in account.emails] + [(SMS, p, prefs.sms) for p in account.phones]
    if account.webhook:
        contacts.append((WEBHOOK, account.webhook, prefs.webhook))
    targets = [(channel, to) for channel, to, level in contacts if level != "none"]
    muted = sorted({channel for channel, _, level in contacts if level == "none"})
    if not targets:
        why = f" (muted: {', '.join(muted)})" if muted else ""
        raise Refused(f"{account.fqdn} has no contact to test{why}")
    entry_id = store.liveness.record(account.id, account.zone, account.fqdn, TEST_EVENT, {"by": "cli"},
                                     bump_serial=False)  # fmt: skip
    event_id = event_streams.event_id(keys.shard_of(account.id), entry_id)  # as the notifier names it
    by_key = {notify_queue.message_key(event_id, channel, to): (channel, to) for channel, to in targets}
    deadline = time.monotonic() + args.wait
    states = notify_queue.delivery(store.r, list(by_key))
    while args.wait > 0 and time.monotonic() < deadline and any(s not in FINAL for s, _ in states.values()):
        time.sleep(0.2)
        states = notify_queue.delivery(store.r, list(by_key))
    rows = [
        {"channel": ch, "recipient": to, "state": states[k][0], "detail": states[k][1][:80]}
        for k, (ch, to) in by_key.items()
    ]
    text = f"test event {event_id} for {account.fqdn}\n" + table(rows, ["channel", "recipient", "state", "detail"])
    if muted:
        text += f"\nnot tested (muted by the account's preferences): {', '.join(muted)}"
    if args.wait > 0 and all(s == "waiting" for s, _ in states.values()):
        text += f"\nno notifier took the event within {args.wait:g} s: is hbdns-notifier running?"
    emit(args, {"event_id": event_id, "messages": rows, "muted": muted}, text)
    return 0 if all(s == "sent" for s, _ in states.values()) else EXIT_NOT_SENT


def register(notify: Any, common: argparse.ArgumentParser) -> None:
    """``notify preview`` and ``notify test``, added to the ``notify`` subcommands."""
    p = notify.add_parser("preview", parents=[common], help="print exactly what an event would send")
    p.add_argument("account", help="account id or name")
    p.add_argument("event", help="template set: neutralized, recovered, recovered_first, recovered_merged, "
                   "ip_changed, test, ... (one per directory of the templates)")  # fmt: skip
    p.add_argument("--channel", choices=(EMAIL, SMS, WEBHOOK), help="only this channel (default: all three)")
    p.add_argument("--lang", help="this language instead of the account's (de, en)")
    p.add_argument("--variant", type=int, default=1, help="which of the set's sample events (default 1)")
    p.set_defaults(func=preview)
    p = notify.add_parser("test", parents=[common], help="send a test message on every channel of an account")
    p.add_argument("account", help="account id or name")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to follow the messages (0: don't)")
    p.set_defaults(func=test)
