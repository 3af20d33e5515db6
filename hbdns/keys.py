"""The Redis key schema: the only place that spells a key name.

Keys of one account share the hash tag ``{a:<id>}`` and keys of one zone share ``{z:<apex>}``.
Global indexes (zone list, name index, deadlines, event stream) are single keys.
``tests/unit/test_keys.py`` pins every string.

Redis Cluster is not supported yet. What holds now: every key a Lua script touches is built here
and passed to it in KEYS (:mod:`hbdns.scripts`; ``tests/integration/test_scripts.py`` checks each
script on a real server), and the keys of one account, or of one zone, hash to one slot. What does
not: one script call still touches keys of several slots (the beat script a batch of accounts, their
zones, the global deadline set and event stream; the backend's lookup the global name index and the
accounts it names), which Cluster refuses (CROSSSLOT). So hbdns runs on one Redis primary, with
replicas. The sharding issue (#16) changes that: the global keys split into shards by hash tag,
each script call touches one slot (callers group their batches by slot), and the tags above may
change with it; that is a schema change, shipped with its migration.
"""

from __future__ import annotations

import re
from collections.abc import Callable

PREFIX = "hbdns"

# --- global ---------------------------------------------------------------------------------------


def zones() -> str:
    """SET of zone apexes (lowercase, no trailing dot)."""
    return f"{PREFIX}:zones"


def names() -> str:
    """HASH fqdn -> account id, for every name (primary and aliases) of every account, and
    ``*.<fqdn>`` -> id for an account whose wildcard is on (no account name can start with ``*``)."""
    return f"{PREFIX}:names"


def accounts() -> str:
    """SET of all account ids."""
    return f"{PREFIX}:accounts"


def stats() -> str:
    """HASH of counts kept where the transitions happen, read by the metrics (no SCAN): ``live``, the
    accounts whose recorded state is live (the scripts add or take one as a state crosses ``live``,
    removing a live account takes one; absent until ``hbdns migrate`` counted it, and then left
    alone by the scripts)."""
    return f"{PREFIX}:stats"


def account_seq() -> str:
    """Counter that hands out account ids (INCR)."""
    return f"{PREFIX}:seq:account"


def deadlines() -> str:
    """ZSET of liveness deadlines (Unix ms, Redis clock), one member per account and address family
    (:func:`deadline_member`); the sweeper's work list."""
    return f"{PREFIX}:deadlines"


def deadline_member(account_id: int, family: int) -> str:
    """``<id>:4`` / ``<id>:6``: the deadline of one family. ``family`` 0 is the plain ``<id>`` that
    versions before per-family liveness wrote (read as both families until ``hbdns migrate``)."""
    return f"{account_id}:{family}" if family else str(account_id)


def parse_deadline_member(member: str | bytes) -> tuple[int, int]:
    """(account id, family) of a deadline member; family 0 for a plain (legacy) one. ValueError
    for anything else."""
    if isinstance(member, bytes):
        member = member.decode("utf-8", "replace")
    head, sep, fam = member.partition(":")
    if not head.isdigit() or (sep and fam not in ("4", "6")):
        raise ValueError(f"not a deadline member: {member!r}")
    return int(head), int(fam) if sep else 0


def ingest() -> str:
    """HASH of ingest health, written by the heartbeat listeners with Redis' clock (Unix ms):
    ``mark`` (the last time a listener could store beats), ``gap_ms`` (a longer silence is an ingest
    outage) and ``gaps`` (JSON ``[[from, to], ...]``, the recent outages, oldest first). The sweeper
    holds back deadlines whose window overlaps one (hbdns/lua/lib.lua ``ingest_hold``)."""
    return f"{PREFIX}:ingest"


def flush_due() -> str:
    """ZSET account id -> when the account's backup MX queues are to be flushed once more (Unix ms):
    the second flush after a recovery, for senders behind caching resolvers (notifier/flush.py)."""
    return f"{PREFIX}:flush:due"


def flush_counts() -> str:
    """HASH ``<target> <outcome>`` -> how many flush requests ended so (all processes)."""
    return f"{PREFIX}:flush:counts"


def migrations() -> str:
    """HASH step name -> JSON of its last run (``hbdns migrate --status``)."""
    return f"{PREFIX}:migrations"


def events() -> str:
    """STREAM of state transitions (neutralized, recovered, ip_changed, created, removed)."""
    return f"{PREFIX}:events"


def events_trim() -> str:
    """HASH of what trimming the ``events`` stream removed (hbdns/event_trim.py): ``removed`` (entries
    every group had acknowledged), ``capped`` (removed at the hard cap), ``unread`` (of those, entries
    some group had not acknowledged) and ``unread:<group>``, ``last_cap_ms``, ``last_unread_ms``."""
    return f"{PREFIX}:events:trim"


def mass_events() -> str:
    """HASH scope (``system``, ``zone:<apex>``) -> JSON of its latest mass outage (hbdns/mass.py)."""
    return f"{PREFIX}:mass:events"


def mass_silent(scope: str) -> str:
    """ZSET account id -> when the sweeper found it silent (Unix ms): the mass-outage window of ``scope``."""
    return f"{PREFIX}:mass:silent:{scope}"


def mass_census() -> str:
    """HASH scope -> live heartbeat accounts at the last census, and ``@at`` -> its time (Unix ms)."""
    return f"{PREFIX}:mass:census"


def mass_held() -> str:
    """ZSET event JSON -> hold end (Unix s): outage events whose messages a mass outage holds."""
    return f"{PREFIX}:mass:held"


def dead_letters() -> str:
    """LIST of notifications that failed permanently, newest first (JSON)."""
    return f"{PREFIX}:deadletter"


def sent(idempotency_key: str) -> str:
    """Marker that a notification with this idempotency key was handed to its transport."""
    return f"{PREFIX}:sent:{idempotency_key}"


def pending_sms() -> str:
    """ZSET of deferred SMS (quiet hours, minimum outage length): JSON job -> due time (Unix s)."""
    return f"{PREFIX}:sms:deferred"


def notify_retry() -> str:
    """ZSET of notifications waiting for another attempt: JSON job -> due time (Unix s)."""
    return f"{PREFIX}:notify:retry"


# The notification queue (issue 14): every key shares the hash tag ``{notify}``, so the scripts that
# move a job between them touch one Redis Cluster slot. ``notify_retry`` and ``dead_letters`` above
# are the layout before it, read only by ``hbdns migrate`` (hbdns/migrations/).


def notify_queue() -> str:
    """ZSET job id -> when it is due (Unix s): retries, messages held for a failing channel."""
    return f"{PREFIX}:{{notify}}:queue"


def notify_jobs() -> str:
    """HASH job id -> job JSON (the message, attempts, first failure, last error)."""
    return f"{PREFIX}:{{notify}}:jobs"


def notify_queued_since() -> str:
    """ZSET job id -> when it entered the queue (Unix s): the oldest age ``hbdns status`` shows."""
    return f"{PREFIX}:{{notify}}:since"


def notify_inflight() -> str:
    """HASH job id -> owner token of the notifier attempting it (taken over when that owner dies)."""
    return f"{PREFIX}:{{notify}}:inflight"


def notify_holds() -> str:
    """HASH destination (``email``, ``sms``, ``webhook:<origin>``) -> JSON hold while it fails."""
    return f"{PREFIX}:{{notify}}:holds"


def notify_dead() -> str:
    """HASH dead-letter id -> JSON: a message that failed for good, with what is needed to retry it."""
    return f"{PREFIX}:{{notify}}:dead"


def notify_dead_index() -> str:
    """ZSET dead-letter id -> when it was dead-lettered (Unix s), for newest-first listings and the cap."""
    return f"{PREFIX}:{{notify}}:dead:index"


def notify_dead_dropped() -> str:
    """Counter of dead letters dropped at the cap (oldest first), so a loss is never silent."""
    return f"{PREFIX}:{{notify}}:dead:dropped"


def notify_owners() -> str:
    """ZSET owner token (``<consumer>/<incarnation>``) -> liveness deadline (Unix s) of each notifier."""
    return f"{PREFIX}:{{notify}}:owners"


def ratelimit(scope: str, subject: str) -> str:
    """Counter for a rate limit (e.g. failed dyndns2 logins per source address)."""
    return f"{PREFIX}:rl:{scope}:{subject}"


def api_tokens() -> str:
    """SET of the ids of the admin API's tokens (``hbdns token list``)."""
    return f"{PREFIX}:tokens"


def api_token(token_id: str) -> str:
    """HASH of one API token: scope, label, created, expires and the SHA-256 of its secret (never the
    secret itself)."""
    return f"{PREFIX}:token:{token_id}"


def status_session(digest: str) -> str:
    """HASH of one status page session (with a TTL), under the SHA-256 of its cookie value."""
    return f"{PREFIX}:session:{digest}"


def badges() -> str:
    """HASH badge id -> account id: the public status badges customers turned on. The account's own
    hash holds its badge id in the field ``badge`` (absent: off)."""
    return f"{PREFIX}:badges"


# --- per zone -------------------------------------------------------------------------------------


def zone(apex: str) -> str:
    """HASH zone config (SOA fields, NS, neutral IPs, backup MX, static records) and ``serial``."""
    return f"{PREFIX}:zone:{{z:{apex}}}"


def zone_accounts(apex: str) -> str:
    """SET of the ids of the accounts in a zone (for AXFR and listings)."""
    return f"{PREFIX}:zone:{{z:{apex}}}:accounts"


def zone_ents(apex: str) -> str:
    """HASH name -> how many account names lie below it, for every name strictly between an
    account's name and the zone apex (the empty non-terminals, :mod:`hbdns.ents`). Counts that
    fall to 0 stay as "0"; the field ``#rev`` grows with every change."""
    return f"{PREFIX}:zone:{{z:{apex}}}:ents"


# --- ACME DNS-01 (hbdns.acme) ---------------------------------------------------------------------


def acme_txt(name: str) -> str:
    """ZSET of the DNS-01 values at ``_acme-challenge.<name>`` (name: an account's name or alias)
    -> expiry (Unix ms, Redis clock); the key expires with its last value."""
    return f"{PREFIX}:acme:txt:{{n:{name}}}"


def acme_credential(cred_id: str) -> str:
    """HASH of one ACME credential: the name it may set challenges for, the account id, and the
    SHA-256 of its key (never the key itself)."""
    return f"{PREFIX}:acme:cred:{cred_id}"


def acme_credentials(account_id: int) -> str:
    """HASH name -> credential id: the account's current ACME credential per name."""
    return f"{PREFIX}:acme:creds:{{a:{account_id}}}"


# --- per account ----------------------------------------------------------------------------------


def account(account_id: int) -> str:
    """HASH account config plus state (ipv4, ipv6, state, since, last_beat, counter)."""
    return f"{PREFIX}:acct:{{a:{account_id}}}"


FAMILIES = (4, 6)


def alive(account_id: int, family: int = 4) -> str:
    """STRING with a TTL: exists exactly while the account's address of ``family`` (4: A, 6: AAAA)
    is live, refreshed by beats over that family and updates naming it. Expiry neutralizes it."""
    if family not in FAMILIES:
        raise ValueError(f"no address family {family!r}")
    return f"{PREFIX}:alive{family}:{{a:{account_id}}}"


def alive_legacy(account_id: int) -> str:
    """The one ``alive`` key per account of versions before per-family liveness. Still read (as
    "both families live") while old writers run; ``hbdns migrate`` copies its TTL onto the family
    keys, and it then expires on its own."""
    return f"{PREFIX}:alive:{{a:{account_id}}}"


def account_log(account_id: int) -> str:
    """LIST of the account's transitions, newest first, capped (``hbdns account log``)."""
    return f"{PREFIX}:log:{{a:{account_id}}}"


def sms_outage(account_id: int) -> str:
    """HASH phone -> start (ms) of the outage whose SMS reached that phone (gates the recovery SMS)."""
    return f"{PREFIX}:sms:outage:{{a:{account_id}}}"


def notify_outage(account_id: int) -> str:
    """HASH thread (``<channel>:<recipient digest>``) -> ``<outage start ms> <state> [owner]``: how far
    the outage's "offline" message got, so the recovery can merge with it (notifier/outage.py)."""
    return f"{PREFIX}:notify:outage:{{a:{account_id}}}"


_ALIVE_RE = re.compile(r"^" + re.escape(PREFIX) + r":alive([46]?):\{a:(\d+)\}$")


def parse_alive(key: str | bytes) -> tuple[int, int] | None:
    """(account id, family) of an ``alive`` key (for keyspace ``expired`` events; family 0 for the
    legacy key), else None."""
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    m = _ALIVE_RE.match(key)
    return (int(m.group(2)), int(m.group(1) or 0)) if m else None


_ACCOUNT_TAG_RE = re.compile(r"\{a:(\d+)\}")


def parse_account_tag(key: str | bytes) -> int | None:
    """The account id in a per-account key's hash tag (``{a:<id>}``, every key above), else None:
    the backend's answer cache drops an account's answers when Redis reports any of its keys
    changed (pdns_backend/tracking.py)."""
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    if not key.startswith(PREFIX + ":"):
        return None
    m = _ACCOUNT_TAG_RE.search(key)
    return int(m.group(1)) if m else None


def lookup_prefixes() -> tuple[str, ...]:
    """Prefixes of every key the DNS backend's lookup script reads (the name index, account hashes,
    alive keys): the backend's answer cache has Redis report writes to them (``CLIENT TRACKING ...
    BCAST PREFIX``). None is a prefix of another (Redis refuses overlapping prefixes)."""
    return (names(), f"{PREFIX}:acct:", f"{PREFIX}:alive")


def backend_probe(nonce: str) -> str:
    """Pub/sub CHANNEL one backend process's invalidation connection listens on, so that each of its
    reading connections can check, by a PUBLISH that must reach exactly one subscriber, that it
    tracks keys on the same server (pdns_backend/tracking.py). Nothing is stored."""
    return f"{PREFIX}:backend:probe:{nonce}"


# --- for hand-encoded commands -----------------------------------------------------------------

_ID_SENTINEL = 987654321987  # an account id that occurs in no key's fixed text


def template(make: Callable[[int], str]) -> tuple[str, str]:
    """A per-account key's text before and after the id, for encoders that format many keys of one
    kind at once (the listener's HMGET batch) without a second spelling of the schema."""
    key = make(_ID_SENTINEL)
    prefix, found, suffix = key.partition(str(_ID_SENTINEL))
    if not found:
        raise RuntimeError(f"not a per-account key: {key!r}")
    return prefix, suffix
