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
    credential was revoked meanwhile, -2 when the name is no longer that account's.

    The credential (a global key), the name's owner (the account's shard) and the challenge key
    (its own slot) are three Redis Cluster slots, so no one script can check and write (see
    hbdns/lua/acme_set.lua). The right to write is checked before the write and again after it;
    when it went meanwhile, the value written is taken out again. A name leaving an account stops
    being confirmed before its challenge key is deleted (:mod:`hbdns.store_accounts`), so a write
    racing the removal is either seen by the second check or deleted with the key."""
    check_value(value)
    refused = _refused(r, cred_key, name, account_id, digest)
    if refused:
        return refused
    n = int(scripts.ACME_SET(r, [keys.acme_txt(name)], [value, str(ttl_ms), str(MAX_VALUES)]))
    refused = _refused(r, cred_key, name, account_id, digest)
    if refused:
        r.zrem(keys.acme_txt(name), value)
        return refused
    return n


def _refused(r: Any, cred_key: str, name: str, account_id: int, digest: str) -> int:
    """0 while the credential is still the one verified (-1 if not) and ``name`` still confirmed as
    the account's in its shard (-2 if not); one pipelined round trip."""
    pipe = r.pipeline(transaction=False)
    pipe.hmget(cred_key, "sha256", "account", "name")
    pipe.hget(keys.shard_names(keys.shard_of(account_id)), name)
    cred, owner = pipe.execute()
    if [_s(x) for x in cred] != [digest, str(account_id), name]:
        return -1
    return 0 if _s(owner) == str(account_id) else -2


def _s(v: Any) -> str | None:
    return v.decode() if isinstance(v, bytes) else None if v is None else str(v)


def remove_value(r: Any, name: str, value: str) -> bool:
    """Remove one value (lego's httpreq cleanup); True when it was there."""
    return bool(r.zrem(keys.acme_txt(name), value))


def values(r: Any, names: Sequence[str]) -> list[list[str]]:
    """The values not yet expired at each name's challenge, one script call for all of them."""
    if not names:
        return []
    reply = scripts.ACME_TXT(r, [keys.acme_txt(n) for n in names])
    return [[v.decode() if isinstance(v, bytes) else str(v) for v in row] for row in reply]


def challenge_keys(names: Sequence[str]) -> list[str]:
    """The challenge keys of ``names`` (each its own slot: delete them one command each)."""
    return [keys.acme_txt(n) for n in names]
