"""ACME DNS-01 challenge records: ``_acme-challenge.<name>`` TXT values, set by the customer's ACME
client, answered by the DNS backend, gone by themselves.

A name here is one of an account's names (its FQDN or an alias); its challenge records live at
``_acme-challenge.<name>``. Each value is kept in a sorted set (:func:`hbdns.keys.acme_txt`) scored
by its expiry on Redis' clock: the newest :data:`MAX_VALUES` are kept, as acme-dns does (a
certificate for ``name`` and ``*.name`` needs two at once), each for ``HBDNS_ACME_VALUE_TTL``, and
the key's own expiry follows its newest value, so nothing is left behind when a client never cleans
up (acme-dns clients never do). The backend reads only the values not yet expired
(``hbdns/lua/acme_txt.lua``), so an expired value stops answering at once.

Who may set them is :mod:`hbdns.acme_credentials`; the HTTP side is ``update_api/acme``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from hbdns import keys, scripts, validate

LABEL = "_acme-challenge"
PREFIX = LABEL + "."
MAX_VALUES = 2  # acme-dns keeps the two most recent: name + *.name in one order
TXT_TTL = 10  # DNS TTL of the TXT answers: a retry with new values is seen within seconds
_VALUE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of a SHA-256 digest, unpadded (RFC 8555 8.4)


class Refused(ValueError):
    """A value or name that is refused; ``str()`` says why."""


def check_value(value: Any) -> str:
    """A DNS-01 value: the 43-character base64url SHA-256 digest RFC 8555 section 8.4 specifies."""
    if not isinstance(value, str) or not _VALUE.match(value):
        raise Refused("a DNS-01 value is 43 characters of base64url (A-Z, a-z, 0-9, -, _)")
    return value


def challenge_name(name: str) -> str:
    return PREFIX + name


def name_of(challenge: str) -> str | None:
    """``_acme-challenge.home.dyn.example.net`` -> ``home.dyn.example.net``, else None. Any case,
    with or without the trailing dot."""
    low = challenge.lower().rstrip(".")
    if not low.startswith(PREFIX):
        return None
    try:
        return validate.hostname(low[len(PREFIX) :])
    except validate.ValidationError:
        return None


def set_value(r: Any, *, cred_key: str, name: str, account_id: int, digest: str, value: str, ttl_ms: int) -> int:
    """Add ``value`` (or refresh it) at ``name``'s challenge: how many values it has now; -1 when the
    credential was revoked meanwhile, -2 when the name is no longer that account's. One atomic
    script, so a value is never written for a name that changed hands."""
    return int(
        scripts.ACME_SET(
            r,
            [keys.names(), cred_key, keys.acme_txt(name)],
            [name, str(account_id), digest, check_value(value), str(ttl_ms), str(MAX_VALUES)],
        )
    )


def remove_value(r: Any, name: str, value: str) -> bool:
    """Remove one value (lego's httpreq cleanup); True when it was there."""
    return bool(r.zrem(keys.acme_txt(name), value))


def values(r: Any, names: Sequence[str]) -> list[list[str]]:
    """The values not yet expired at each name's challenge, one script call for all of them."""
    if not names:
        return []
    reply = scripts.ACME_TXT(r, [keys.acme_txt(n) for n in names])
    return [[v.decode() if isinstance(v, bytes) else str(v) for v in row] for row in reply]


def queue_forget(pipe: Any, names: Sequence[str]) -> None:
    """Queue the removal of every challenge value of ``names`` (names leaving an account)."""
    if names:
        pipe.delete(*(keys.acme_txt(n) for n in names))
