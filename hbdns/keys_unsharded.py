"""The key schema before sharding (issue 16), spelled once more for ``hbdns migrate`` only.

Nothing but the migration that moves a database to the sharded schema (and the tests that write a
database the way the code before it did) may use these: every service reads and writes the schema
of :mod:`hbdns.keys`. Account keys carried the tag ``{a:<id>}``; the deadlines, the event stream,
the live count, the ingest marks and the trim counts were single global keys, and each zone's SOA
serial lived in its hash alone.
"""

from __future__ import annotations

from hbdns.keys import PREFIX


def account(account_id: int) -> str:
    return f"{PREFIX}:acct:{{a:{account_id}}}"


def alive(account_id: int, family: int) -> str:
    return f"{PREFIX}:alive{family}:{{a:{account_id}}}"


def alive_legacy(account_id: int) -> str:
    return f"{PREFIX}:alive:{{a:{account_id}}}"


def account_log(account_id: int) -> str:
    return f"{PREFIX}:log:{{a:{account_id}}}"


def sms_outage(account_id: int) -> str:
    return f"{PREFIX}:sms:outage:{{a:{account_id}}}"


def notify_outage(account_id: int) -> str:
    return f"{PREFIX}:notify:outage:{{a:{account_id}}}"


def acme_credentials(account_id: int) -> str:
    return f"{PREFIX}:acme:creds:{{a:{account_id}}}"


def deadlines() -> str:
    return f"{PREFIX}:deadlines"


def events() -> str:
    return f"{PREFIX}:events"


def events_trim() -> str:
    return f"{PREFIX}:events:trim"


def stats() -> str:
    return f"{PREFIX}:stats"


def ingest() -> str:
    return f"{PREFIX}:ingest"


def mass_events() -> str:
    return f"{PREFIX}:mass:events"
