"""An event and its account -> the texts of every channel, in the account's language.

One :class:`Renderer` per process, built from the settings at start-up (:meth:`Renderer.from_settings`
loads the templates and checks them: a broken override stops the service there, naming the file
and line). A message is never lost to a template: a failing override falls back to the package's
default (:meth:`Catalog.render`), and a failing default to a one-line text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hbdns.config import Settings
from hbdns.model import Account
from hbdns.notices import catalog as cat
from hbdns.notices.catalog import Catalog
from hbdns.notices.context import EventLike, Operator, build
from hbdns.notices.locale import LANGUAGES, When

log = logging.getLogger("hbdns.notices")


@dataclass(frozen=True)
class Texts:
    """What the templates of one set made of one event for one account."""

    set: str
    lang: str
    subject: str
    text: str  # the e-mail's plain text
    html: str  # the e-mail's HTML ("" without a body.html, or with HBDNS_EMAIL_HTML off)
    short: str  # the SMS text (uncut) and the webhook's "text"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _lines(text: str) -> str:
    """A body as it goes out: no trailing blanks (but the signature separator's "-- "), one final newline."""
    lines = (line if line == "-- " else line.rstrip() for line in text.strip("\n").splitlines())
    return "\n".join(lines) + "\n"


class Renderer:
    def __init__(self, catalog: Catalog, operator: Operator, *, default_lang: str = "en", html: bool = True) -> None:
        self.catalog = catalog
        self.operator = operator
        self.default_lang = default_lang
        self.html = html
        self.warnings: list[str] = []  # what the start-up check only warns about

    @classmethod
    def from_settings(cls, settings: Settings) -> Renderer:
        """The templates the settings name, checked (raises :class:`~hbdns.notices.catalog.TemplateProblem`);
        what the check only warns about is in :attr:`warnings`."""
        from hbdns.notices.check import check

        renderer = cls(
            Catalog(settings.templates_dir),
            Operator.from_settings(settings),
            default_lang=settings.notify_lang,
            html=settings.email_html,
        )
        renderer.warnings = check(renderer, settings.sms_max_segments)
        return renderer

    def lang(self, account: Account, zone_lang: str = "") -> str:
        """The account's language, else its zone's, else the setting's (data from before a field
        existed reads as unset)."""
        for lang in (account.prefs.lang, zone_lang, self.default_lang):
            if lang in LANGUAGES:
                return lang
        return "en"

    def texts(self, event: EventLike, account: Account, lang: str, *, merged: bool = False) -> Texts:
        name = self.catalog.pick(event.type, first=event.first, merged=merged)
        ctx = build(event, account, self.operator, lang)
        try:
            return self.render_set(name, lang, ctx)
        except Exception:
            log.exception("templates failed, sending a plain text", extra={"set": name, "lang": lang})
            line = f"{ctx['name']}: {event.type} {When(event.at_ms, account.prefs.tz, lang)}"
            return Texts(set=name, lang=lang, subject=line, text=line + "\n", html="", short=line)

    def render_set(self, name: str, lang: str, ctx: dict[str, object], *, strict: bool = False) -> Texts:
        """The texts of set ``name`` (``strict``: a failing override raises instead of falling back)."""

        def part(file: str) -> str:
            return self.catalog.render(f"{name}/{lang}/{file}", ctx, strict=strict)

        subject = _one_line(part(cat.SUBJECT))
        ctx = {**ctx, "subject": subject}
        html = ""
        if self.html and self.catalog.file(f"{name}/{lang}/{cat.HTML}") is not None:
            html = _lines(part(cat.HTML))
        return Texts(
            set=name,
            lang=lang,
            subject=subject,
            text=_lines(part(cat.BODY)),
            html=html,
            short=part(cat.SMS).strip(),
        )
