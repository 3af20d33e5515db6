"""English and German for the status page, chosen from the browser's Accept-Language.

English is the source text and the key; :data:`DE` translates it. A plain table rather than
gettext catalogs: two languages and ~90 strings need no compile step, and a test checks that every
string the templates and views use has its German (``tests/unit/test_status_pages.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

LANGUAGES = ("en", "de")

DE: dict[str, str] = {
    "A new key stops the old one at once: your client needs the new configuration file right away.": (
        "Ein neuer Schlüssel ersetzt den alten sofort: Ihr Client braucht gleich die neue Konfigurationsdatei."
    ),
    "Account name": "Kontoname",
    "Address changes": "Adresswechsel",
    "Anyone with this address sees whether your name is live:": "Wer diese Adresse kennt, sieht, ob Ihr Name live ist:",
    "Availability": "Verfügbarkeit",
    "Back to the status page": "Zurück zur Statusseite",
    "Back": "Zurück",
    "Began": "Beginn",
    "Cause": "Ursache",
    "Download the client configuration": "Client-Konfiguration herunterladen",
    "Duration": "Dauer",
    "Ended": "Ende",
    "From": "Von",
    "Heartbeat key": "Heartbeat-Schlüssel",
    "Held for": "Gehalten",
    "IPv4": "IPv4",
    "IPv6": "IPv6",
    "Last beat": "Letztes Lebenszeichen",
    "Log in with a link or token from your provider": "Mit Link oder Token Ihres Anbieters anmelden",
    "Log in with your account name and its update password.": "Melden Sie sich mit Kontoname und Update-Passwort an.",
    "Log in": "Anmelden",
    "Log out": "Abmelden",
    "Make a new key": "Neuen Schlüssel erzeugen",
    "New heartbeat key": "Neuer Heartbeat-Schlüssel",
    "No address changes recorded.": "Keine Adresswechsel aufgezeichnet.",
    "No outages recorded.": "Keine Ausfälle aufgezeichnet.",
    "Notifications": "Benachrichtigungen",
    "Off. When on, an image at a secret address shows whether your name is live, e.g. for a website.": (
        "Aus. Eingeschaltet zeigt ein Bild unter einer geheimen Adresse, ob Ihr Name live ist, etwa für eine Website."
    ),
    "Other names": "Weitere Namen",
    "Outages": "Ausfälle",
    "Plan": "Tarif",
    "Quiet hours (no SMS)": "Ruhezeit (keine SMS)",
    "SMS only after an outage of (seconds)": "SMS erst nach einem Ausfall von (Sekunden)",
    "Save": "Speichern",
    "Status badge": "Status-Badge",
    "Status": "Status",
    "The old key no longer works. This page shows the new one only now: save the configuration file and install "
    "it on your client.": (
        "Der alte Schlüssel gilt nicht mehr. Diese Seite zeigt den neuen nur jetzt: Speichern Sie die "
        "Konfigurationsdatei und spielen Sie sie auf Ihrem Client ein."
    ),
    "Time zone": "Zeitzone",
    "To": "Nach",
    "Token": "Token",
    "Turn the badge off": "Badge ausschalten",
    "Turn the badge on": "Badge einschalten",
    "Update password": "Update-Passwort",
    "When": "Wann",
    "Where we tell you about outages:": "Wohin wir Ausfälle melden:",
    "Your dynamic DNS status": "Ihr Dynamic-DNS-Status",
    "from": "von",
    "live": "live",
    "neutral": "neutral",
    "no data": "keine Daten",
    "now": "jetzt",
    "partly neutral": "teilweise neutral",
    "to": "bis",
    # views and pages
    "LIVE": "LIVE",
    "NEUTRAL": "NEUTRAL",
    "since {time} ({duration})": "seit {time} ({duration})",
    "never": "nie",
    "{time} ({duration} ago)": "{time} (vor {duration})",
    "not yet": "noch nicht",
    "none": "keine",
    "still neutral": "dauert an",
    "beats stopped": "Lebenszeichen blieben aus",
    "client went offline": "Client meldete sich ab",
    "current": "aktuell",
    "Last 7 days": "Letzte 7 Tage",
    "Last 30 days": "Letzte 30 Tage",
    "{percent} live": "{percent} live",
    "{start}: {percent} live": "{start}: {percent} live",
    "{start}: no data": "{start}: keine Daten",
    "E-mail": "E-Mail",
    "SMS": "SMS",
    "Webhook": "Webhook",
    "nothing": "nichts",
    "outages": "Ausfälle",
    "outages and address changes": "Ausfälle und Adresswechsel",
    "no contacts": "keine Kontakte",
    "Live: your name answers with your current address.": "Live: Ihr Name antwortet mit Ihrer aktuellen Adresse.",
    "Neutral: no heartbeat arrived in time, so your name answers a neutral address and mail waits at the backup MX.": (
        "Neutral: Es kam kein Lebenszeichen rechtzeitig, daher antwortet Ihr Name mit einer neutralen Adresse "
        "und E-Mail wartet beim Backup-MX."
    ),
    "{plan}, every {interval}": "{plan}, alle {interval}",
    "Quiet hours: {window} ({tz}).": "Ruhezeit: {window} ({tz}).",
    "No quiet hours: SMS go out at any time.": "Keine Ruhezeit: SMS gehen jederzeit raus.",
    "Saved.": "Gespeichert.",
    "Not saved: please check the marked fields.": "Nicht gespeichert: Bitte prüfen Sie die markierten Felder.",
    "quiet hours need a start and an end, e.g. 22:00 and 07:00": (
        "Die Ruhezeit braucht Beginn und Ende, z. B. 22:00 und 07:00"
    ),
    "quiet hours must look like 22:00-07:00": "Die Ruhezeit muss wie 22:00-07:00 aussehen",
    "unknown time zone": "Unbekannte Zeitzone",
    "a whole number of seconds, 0 or more": "eine ganze Zahl von Sekunden, 0 oder mehr",
    "not a valid choice": "keine gültige Auswahl",
    "Badge on.": "Badge eingeschaltet.",
    "Badge off: its address no longer works.": "Badge ausgeschaltet: Seine Adresse gilt nicht mehr.",
    "Wrong account name or password.": "Kontoname oder Passwort falsch.",
    "This login link or token is not valid.": "Dieser Anmeldelink oder Token ist ungültig.",
    "Too many failed logins. Try again in {seconds} seconds.": (
        "Zu viele fehlgeschlagene Anmeldungen. Versuchen Sie es in {seconds} Sekunden wieder."
    ),
    "The form expired. Please try again.": "Das Formular ist abgelaufen. Bitte versuchen Sie es noch einmal.",
    "Please log in again.": "Bitte melden Sie sich erneut an.",
    "Not found": "Nicht gefunden",
    "This page does not exist.": "Diese Seite gibt es nicht.",
    "Try again later": "Bitte später noch einmal",
    "The service is busy or unavailable right now.": "Der Dienst ist gerade ausgelastet oder nicht erreichbar.",
}

# Durations: (seconds, English unit, German unit)
_UNITS = ((86400, "d", "T"), (3600, "h", "Std."), (60, "min", "Min."), (1, "s", "s"))


def choose(accept: object) -> str:
    """The best of :data:`LANGUAGES` for an Accept-Language header (werkzeug's parsed form)."""
    best = getattr(accept, "best_match", lambda _l, default=None: default)(LANGUAGES, default="en")
    return str(best or "en")


def translator(lang: str) -> Callable[[str], str]:
    table = DE if lang == "de" else {}

    def gettext(text: str) -> str:
        return table.get(text, text)

    return gettext


def duration(ms: int, lang: str) -> str:
    """'45 s', '5 min 3 s', '2 h 5 min', '3 d 4 h' (German units for ``de``): two units at most."""
    s = max(0, int(ms) // 1000)
    parts: list[str] = []
    for size, en, de in _UNITS:
        if s >= size or (size == 1 and not parts):
            n, s = divmod(s, size)
            parts.append(f"{n} {de if lang == 'de' else en}")
        if len(parts) == 2:
            break
        if parts and size != 1 and not s:
            break
    return " ".join(parts)


def when(ms: int, tz: str, lang: str) -> str:
    """A point in time in the account's time zone: '2026-12-03 14:05:09 CET' ('03.12.2026 ...' in de)."""
    try:
        zone = ZoneInfo(tz or "UTC")
    except Exception:
        zone = ZoneInfo("UTC")
    local = datetime.fromtimestamp(ms / 1000, UTC).astimezone(zone)
    return local.strftime("%d.%m.%Y %H:%M:%S %Z" if lang == "de" else "%Y-%m-%d %H:%M:%S %Z")


NONE = "\u2013"  # an en dash for "no value"


def percent(share: float | None, lang: str) -> str:
    if share is None:
        return NONE
    text = f"{share * 100:.2f} %" if share < 1 else "100 %"
    return text.replace(".", ",") if lang == "de" else text
