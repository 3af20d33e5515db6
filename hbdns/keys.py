"""The Redis key schema: the only place that spells a key name.

Sharded (issue 16), so that every script call touches one Redis Cluster slot and the same code runs
on a standalone Redis, where shards are just keys:

- Accounts are spread over :data:`SHARDS` fixed shards, ``shard_of(id) = id % SHARDS``. Every key of
  an account, and every key a transition of it writes (its shard's deadlines, event stream, live
  count, ingest marks, zone serial counters, name confirm index), carries the shard's hash tag
  ``{s:<shard>}``: one slot per shard. Scripts get a shard table in KEYS and never mix shards on
  Cluster; on a standalone Redis a batch may span shards (one call, fewer round trips).
- Keys of one zone share ``{z:<apex>}``; the notification queue ``{notify}``.
- Global keys (zone list, account set, the name *discovery* index, id sequence, tokens, ...) are
  single keys used with single-key commands, or in a script alone.
- The ``unsharded_*`` functions spell the schema before sharding, for ``hbdns migrate`` only
  (hbdns/migrations/). ``tests/unit/test_keys.py`` pins every string.

Name lookups go in two steps: the global index :func:`names` says which account (hence shard) holds
a name; the lookup script then confirms it in that shard's :func:`shard_names` in the same atomic
read as the account's data, so a name moved or removed meanwhile is never answered from a stale id.
"""

from __future__ import annotations

import re

PREFIX = "hbdns"

SHARDS = 16
"""How many shards accounts are spread over. Fixed: changing it moves accounts between shards,
which is a data migration (every account key is named by its shard)."""


def shard_of(account_id: int) -> int:
    """The shard an account's keys live in."""
    return account_id % SHARDS


def all_shards() -> range:
    """Every shard number, for loops over the per-shard keys (sweeper, notifier, metrics)."""
    return range(SHARDS)


def shard_tag(shard: int) -> str:
    """``{s:<shard>}``: the hash tag of one shard's keys (one Redis Cluster slot)."""
    if not 0 <= shard < SHARDS:
        raise ValueError(f"no shard {shard!r}")
    return f"{{s:{shard}}}"


def _acct(kind: str, account_id: int) -> str:
    return f"{PREFIX}:{kind}:{shard_tag(shard_of(account_id))}:{account_id}"


# --- global ---------------------------------------------------------------------------------------


def zones() -> str:
    """SET of zone apexes (lowercase, no trailing dot)."""
    return f"{PREFIX}:zones"


def names() -> str:
    """HASH fqdn -> account id, for every name (primary and aliases) of every account, and
    ``*.<fqdn>`` -> id for an account whose wildcard is on (no account name can start with ``*``):
    the discovery index. The lookup confirms a hit in the account's :func:`shard_names`."""
    return f"{PREFIX}:names"


def accounts() -> str:
    """SET of all account ids."""
    return f"{PREFIX}:accounts"


def stats(shard: int) -> str:
    """HASH of counts kept where the transitions happen, read by the metrics (no SCAN), summed over
    shards: ``live``, the shard's accounts whose recorded state is live (the scripts add or take one
    as a state crosses ``live``, removing a live account takes one; absent until ``hbdns migrate``
    counted it, and then left alone by the scripts)."""
    return f"{PREFIX}:stats:{shard_tag(shard)}"


def shard_names(shard: int) -> str:
    """HASH fqdn -> account id for the names (as in :func:`names`) of the shard's accounts: the
    lookup script's confirmation, read atomically with the account."""
    return f"{PREFIX}:names:{shard_tag(shard)}"


def serials(shard: int) -> str:
    """HASH zone apex -> how many changes of the zone's answers the shard's transitions made. A
    zone's SOA serial is its hash's ``serial`` plus these counts over all shards (mod 2**32)."""
    return f"{PREFIX}:serials:{shard_tag(shard)}"


def account_seq() -> str:
    """Counter that hands out account ids (INCR)."""
    return f"{PREFIX}:seq:account"


def deadlines(shard: int) -> str:
    """ZSET of liveness deadlines (Unix ms, Redis clock) of the shard's accounts, one member per
    account and address family (:func:`deadline_member`); the sweeper's work list."""
    return f"{PREFIX}:deadlines:{shard_tag(shard)}"


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


def ingest(shard: int) -> str:
    """HASH of ingest health, one copy per shard (the scripts that read it touch one shard),
    written by the heartbeat listeners with Redis' clock (Unix ms): ``mark`` (the last time a
    listener could store beats), ``gap_ms`` (a longer silence is an ingest outage) and ``gaps``
    (JSON ``[[from, to], ...]``, the recent outages, oldest first). The sweeper holds back deadlines
    whose window overlaps one (hbdns/lua/lib.lua ``ingest_hold``)."""
    return f"{PREFIX}:ingest:{shard_tag(shard)}"


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


def events(shard: int) -> str:
    """STREAM of the state transitions (neutralized, recovered, ip_changed, created, removed) of the
    shard's accounts; mass-outage events go to shard :data:`MASS_SHARD`'s."""
    return f"{PREFIX}:events:{shard_tag(shard)}"


MASS_SHARD = 0
"""The shard whose stream carries mass-outage events (they belong to no account)."""


def events_trim(shard: int) -> str:
    """HASH of what trimming the shard's ``events`` stream removed (hbdns/event_trim.py): ``removed`` (entries
    every group had acknowledged), ``capped`` (removed at the hard cap), ``unread`` (of those, entries
    some group had not acknowledged) and ``unread:<group>``, ``last_cap_ms``, ``last_unread_ms``."""
    return f"{PREFIX}:events:trim:{shard_tag(shard)}"


def mass_events() -> str:
    """HASH scope (``system``, ``zone:<apex>``) -> JSON of its latest mass outage (hbdns/mass.py);
    in :data:`MASS_SHARD`'s slot, written with that shard's stream."""
    return f"{PREFIX}:mass:events:{shard_tag(MASS_SHARD)}"


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
    return _acct("acme:creds", account_id)


# --- per account ----------------------------------------------------------------------------------


def account(account_id: int) -> str:
    """HASH account config plus state (ipv4, ipv6, state, since, last_beat, counter)."""
    return _acct("acct", account_id)


FAMILIES = (4, 6)


def alive(account_id: int, family: int = 4) -> str:
    """STRING with a TTL: exists exactly while the account's address of ``family`` (4: A, 6: AAAA)
    is live, refreshed by beats over that family and updates naming it. Expiry neutralizes it."""
    if family not in FAMILIES:
        raise ValueError(f"no address family {family!r}")
    return _acct(f"alive{family}", account_id)


def alive_legacy(account_id: int) -> str:
    """The one ``alive`` key per account of versions before per-family liveness, read by the
    scripts as "both families live". ``hbdns migrate`` turns it into family keys before sharding, so
    in the sharded schema it only exists when a migration copied one still running out."""
    return _acct("alive", account_id)


def account_log(account_id: int) -> str:
    """LIST of the account's transitions, newest first, capped (``hbdns account log``)."""
    return _acct("log", account_id)


def sms_outage(account_id: int) -> str:
    """HASH phone -> start (ms) of the outage whose SMS reached that phone (gates the recovery SMS)."""
    return _acct("sms:outage", account_id)


def notify_outage(account_id: int) -> str:
    """HASH thread (``<channel>:<recipient digest>``) -> ``<outage start ms> <state> [owner]``: how far
    the outage's "offline" message got, so the recovery can merge with it (notifier/outage.py)."""
    return _acct("notify:outage", account_id)


_ALIVE_RE = re.compile(r"^" + re.escape(PREFIX) + r":alive([46]?):\{s:\d+\}:(\d+)$")


def parse_alive(key: str | bytes) -> tuple[int, int] | None:
    """(account id, family) of an ``alive`` key (for keyspace ``expired`` events; family 0 for the
    legacy key), else None."""
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    m = _ALIVE_RE.match(key)
    if not m or shard_tag(shard_of(int(m.group(2)))) not in key:
        return None
    return int(m.group(2)), int(m.group(1) or 0)


_ACCOUNT_KEY_RE = re.compile(r":\{s:(\d+)\}:(\d+)$")


def parse_account_key(key: str | bytes) -> int | None:
    """The account id of a per-account key (``...:{s:<shard>}:<id>``, every key above), else None:
    the backend's answer cache drops an account's answers when Redis reports any of its keys
    changed (pdns_backend/tracking.py)."""
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    if not key.startswith(PREFIX + ":"):
        return None
    m = _ACCOUNT_KEY_RE.search(key)
    if not m or int(m.group(2)) % SHARDS != int(m.group(1)):
        return None
    return int(m.group(2))


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


# --- hbdns migrate, step sharded (hbdns/migrations/sharded.py) -----------------------------------


def migrate_events_map() -> str:
    """HASH old event id -> its copy's id in a shard stream (``-``: trimmed before it was copied):
    what the step ``sharded`` has copied of the unsharded stream, so that a run interrupted halfway
    copies each entry once. Removed with the old stream when the step completes."""
    return f"{PREFIX}:migrate:sharded:events"
