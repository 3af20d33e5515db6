"""What the neutral host says, as bytes: the SMTP greeting and the HTTP page. Pure, no sockets.

The neutral address is where a neutralized account's A/AAAA records point. Whatever reaches it is
meant for a customer who is offline, so it must turn senders and visitors away at once and say why:
an SMTP sender gets ``421`` in its greeting and tries the next MX (the backup MX) in milliseconds,
a browser gets a short page in German and English. Nothing on the page comes from elsewhere
(no fonts, scripts or images), and the Content-Security-Policy forbids it.
"""

from __future__ import annotations

import html
from typing import NamedTuple

from hbdns import validate

MAX_HEAD = 8192  # request line plus headers; more is refused (431)
LANGUAGES = ("de", "en")


def greeting(name: str) -> bytes:
    """The one line the SMTP side sends before it closes: a temporary failure, so mail is kept."""
    host = validate.hostname(name)
    return f"421 4.4.2 {host} is offline; mail is queued by its backup MX\r\n".encode("ascii")


def choose_languages(accept_language: str | None) -> tuple[str, ...]:
    """German, English, or both (German first) when the header prefers neither or is missing.

    Only the primary subtag counts (``de-AT`` is German); ``*`` and unknown languages don't pick
    one; a tie shows both.
    """
    best: dict[str, float] = {}
    for item in (accept_language or "").split(",")[:32]:
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if 0.0 < q <= 1.0:
            best[primary] = max(best.get(primary, 0.0), q)
    if not best:
        return LANGUAGES
    top = max(best.values())
    chosen = tuple(lang for lang in LANGUAGES if best.get(lang) == top)
    return chosen


_TEXT = {
    "de": (
        "Dieser Server ist nicht erreichbar",
        "{host} ist zurzeit offline: seine Internetverbindung ist unterbrochen.",
        "E-Mails an diesen Server werden vom Backup-MX des Providers angenommen und zugestellt, "
        "sobald er wieder online ist. Bitte versuchen Sie es später noch einmal.",
    ),
    "en": (
        "This host is offline",
        "{host} is offline at the moment: its Internet connection is down.",
        "Mail for this host is accepted by its provider's backup MX and delivered as soon as it is "
        "back online. Please try again later.",
    ),
}
_UNNAMED = {"de": "Dieser Server", "en": "This host"}

_STYLE = (
    "body{font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}"
    "h1{font-size:1.4em}section+section{border-top:1px solid #ccc;margin-top:2em}"
)


def page(languages: tuple[str, ...], host: str | None) -> bytes:
    """The neutral page. ``host`` is shown only when it is a valid hostname (it comes from the
    request's Host header, so anything else is dropped rather than echoed)."""
    shown: str | None = None
    if host:
        try:
            shown = validate.hostname(host.rsplit(":", 1)[0] if host.count(":") == 1 else host)
        except validate.ValidationError:
            shown = None
    sections = []
    for lang in languages:
        title, line, mail = _TEXT[lang]
        who = html.escape(shown) if shown else _UNNAMED[lang]
        sections.append(f'<section lang="{lang}"><h1>{title}</h1><p>{line.format(host=who)}</p><p>{mail}</p></section>')
    doc = (
        f'<!DOCTYPE html><html lang="{languages[0]}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{_TEXT[languages[0]][0]}</title>'
        f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    return doc.encode("utf-8")


class Request(NamedTuple):
    method: str
    target: str
    headers: dict[str, str]  # lowercase names; the last of repeated headers wins


class BadRequest(ValueError):
    """A request head that cannot be answered with the page; ``status`` is what to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def parse_head(head: bytes) -> Request:
    """Parse an HTTP/1.x request line and headers (``head`` ends with the blank line)."""
    if len(head) > MAX_HEAD:
        raise BadRequest(431, "request head too large")
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequest(400, "undecodable head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise BadRequest(400, "bad request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(400, "bad header line")
        headers[name.lower()] = value.strip()
    return Request(parts[0].upper(), parts[1], headers)


_STATUS = {400: "Bad Request", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}
_SECURITY = (
    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
    "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
)


def response(req: Request) -> bytes:
    """The whole HTTP response for any method, path and Host: 503 (the site is temporarily away,
    so caches and search engines keep the real one) with the page; HEAD gets the headers only."""
    languages = choose_languages(req.headers.get("accept-language"))
    body = page(languages, req.headers.get("host"))
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Content-Language: {', '.join(languages)}\r\n"
        "Vary: Accept-Language\r\nCache-Control: no-store\r\nRetry-After: 300\r\n"
        f"{_SECURITY}Connection: close\r\n\r\n"
    ).encode("ascii")
    return head if req.method == "HEAD" else head + body


def error_response(status: int) -> bytes:
    reason = _STATUS.get(status, "Bad Request")
    body = f"{status} {reason}\n".encode("ascii")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n{_SECURITY}Connection: close\r\n\r\n"
    ).encode("ascii") + body
