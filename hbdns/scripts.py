"""One home for Redis scripting: the Lua in ``hbdns/lua/``, loaded and called the same way by every service.

Each script is a :class:`Script` (name, source, SHA1) read from ``hbdns/lua/<name>.lua``; scripts
declared with ``lib=True`` get ``lib.lua`` (Redis' clock in ms, event emit, serial bump) in front,
so those helpers are written once. Every key a script touches is passed in KEYS, built by
:mod:`hbdns.keys`; ``tests/integration/test_scripts.py`` runs each script on a real redis-server
with a check that fails on any other key.

Two ways to call, one NOSCRIPT policy (the script cache is empty after a Redis restart, a
``SCRIPT FLUSH`` or a failover to a replica: load the script and send the call again):

- redis-py: ``script(client, keys, args)``. On a client: EVALSHA, and on NOSCRIPT a SCRIPT LOAD and
  the EVALSHA again. On a pipeline: the script is registered with it, so redis-py checks and loads
  it before the pipeline runs (a NOSCRIPT inside MULTI/EXEC would let the rest of the transaction
  apply without it).
- Raw RESP on :class:`hbdns.resp.BatchConnection` (the listener's beats, the backend's lookups):
  :meth:`Script.command` is the whole EVALSHA, :attr:`Script.head` its first two bulk strings for
  encoders that assemble the bytes themselves, :meth:`Script.call` one round trip with NOSCRIPT
  recovery, :meth:`Script.rerun` the recovery for callers that had several calls in flight.

Why EVALSHA of ``.lua`` files and not a Redis 7 function library (``FUNCTION LOAD``, which persists
and replicates and so has no NOSCRIPT):

- Versions side by side: a rolling upgrade runs old and new listeners and backends against one
  Redis. A script is named by the hash of its text, so each version runs its own; a library is one
  name per Redis that ``FUNCTION LOAD REPLACE`` swaps under every client at once, so old processes
  would call new code with their old KEYS/ARGV layout, unless every function name carried a version
  and someone removed old libraries.
- Functions are data: they are saved in RDB/AOF, so a restored backup brings back the library it
  was saved with, and migrations (``hbdns migrate``) would have to manage them. The script cache
  holds nothing that outlives the code that loaded it.
- Cluster (issue 16): functions must be loaded on every primary, including ones added later, so
  recovery code is needed there too; EVALSHA with NOSCRIPT recovery works per node as it is.
- fakeredis 2.40 runs both, and the hot paths encode EVALSHA and FCALL alike: no difference there.

The cost of the choice is the NOSCRIPT handling above, a few lines tested on both paths.

To add a script: put ``<name>.lua`` here with its KEYS/ARGV layout in a comment, add
``NAME = load("<name>", lib=...)`` below and to :data:`ALL`, and give it a scenario in
``tests/integration/test_scripts.py`` (the test refuses a script without one).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from redis.client import Pipeline
from redis.commands.core import Script as _RedisPyScript

from hbdns.resp import BatchConnection, bulk, encode_command

Arg = str | bytes | int | float


def _read(name: str) -> str:
    return (resources.files("hbdns") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def is_noscript(reply: Any) -> bool:
    """Whether a raw reply (a value from :class:`~hbdns.resp.BatchConnection`) is NOSCRIPT."""
    return isinstance(reply, redis.exceptions.NoScriptError)


class Script:
    """A Lua script and its SHA1, callable through redis-py or as raw RESP."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        data = source.encode()
        self.sha = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        self.head = bulk(b"EVALSHA") + bulk(self.sha.encode())
        self.load_command = encode_command("SCRIPT", "LOAD", data)
        # redis-py's own script object carries its pipeline protocol (``pipeline.scripts``); the
        # client is passed on every call, so it is registered with none
        self._redis_py = _RedisPyScript(None, data)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Script({self.name!r}, sha={self.sha[:12]})"

    # --- redis-py ---------------------------------------------------------------------------------

    def __call__(self, client: redis.Redis | Pipeline, keys: Sequence[str] = (), args: Sequence[Arg] = ()) -> Any:
        """Run on a client (the reply) or queue on a pipeline (the pipeline)."""
        return self._redis_py(keys=list(keys), args=list(args), client=client)

    # --- raw RESP ---------------------------------------------------------------------------------

    def command(self, keys: Sequence[str | bytes], args: Sequence[str | bytes]) -> bytes:
        """The EVALSHA command, byte for byte what redis-py would send."""
        return encode_command("EVALSHA", self.sha, str(len(keys)), *keys, *args)

    def call(self, conn: BatchConnection, payload: bytes) -> Any:
        """Send one EVALSHA ``payload`` and return its reply (error replies as values). On NOSCRIPT:
        SCRIPT LOAD and the same payload again, in one round trip, once."""
        _idle(conn)
        reply = conn.roundtrip(payload, 1)[0]
        if is_noscript(reply):
            reply = conn.roundtrip(self.load_command + payload, 2)[1]
        return reply

    def rerun(self, conn: BatchConnection, payloads: Sequence[bytes]) -> list[Any]:
        """SCRIPT LOAD, then ``payloads`` again in order, in one round trip: the recovery for a caller
        that got NOSCRIPT for calls it had in flight (their replies must all have been read)."""
        _idle(conn)
        return conn.roundtrip(self.load_command + b"".join(payloads), 1 + len(payloads))[1:]


def _idle(conn: BatchConnection) -> None:
    if conn.inflight:
        raise RuntimeError(f"{conn.inflight} replies still in flight: read them first")


def load(name: str, *, lib: bool = False) -> Script:
    """The script in ``hbdns/lua/<name>.lua``, with ``lib.lua`` in front when ``lib``."""
    source = _read(name)
    if lib:
        source = _read("lib") + "\n" + source
    return Script(name, source)


# --- the scripts ---------------------------------------------------------------------------------

BEAT = load("beat", lib=True)  # a batch of beats/updates (hbdns.liveness, the UDP listener)
DUE = load("due", lib=True)  # due deadlines (the sweeper)
NEUTRALIZE = load("neutralize", lib=True)  # one due account -> neutralized
RECORD = load("record", lib=True)  # admin transitions (created, removed)
EVENTS_TRIM = load("events_trim")  # ack-aware trim of the events stream, hard cap counted (hbdns.event_trim)
MASS_MARK = load("mass_mark")  # a mass outage's start or hold end, once (sweeper.mass_watch)
LOOKUP = load("lookup")  # the DNS backend's account lookup (read-only)
GCRA = load("gcra", lib=True)  # one rate-limit bucket (the update API)
ACME_SET = load("acme_set", lib=True)  # one ACME DNS-01 value (hbdns.acme, the update API)
ACME_TXT = load("acme_txt", lib=True)  # the live ACME DNS-01 values (the DNS backend, read-only)
MIGRATE_ALIVE = load("migrate_alive", lib=True)  # hbdns migrate: alive_per_family, one account
MIGRATE_LIVE_COUNT = load("migrate_live_count")  # hbdns migrate: live_count, every account at once
MIGRATE_SHARDED = load("migrate_sharded")  # hbdns migrate: sharded, one account / chunk of events / shard
CLAIM_DUE = load("claim_due", lib=True)  # due members of a schedule zset, leased (the second flush)
DONE_DUE = load("done_due")  # a claimed schedule member done, unless it was rescheduled meanwhile
INGEST_MARK = load("ingest_mark", lib=True)  # a listener can store beats now (heartbeat_listener.ingest)
NAME_CLAIM = load("name_claim")  # an account's names in the global index, all or nothing (hbdns.provision_names)
NAME_RELEASE = load("name_release")  # names out of the global index, only while still the account's

# the notifier's: on its own clock (ARGV), so none needs lib.lua
NOTIFY_MARKER = load("notify_marker")  # a message's sent marker (notifier.leases.Markers)
NOTIFY_HOLD = load("notify_hold")  # a failing receiver's hold and probes (notifier.leases.Holds)
NOTIFY_OUTAGE = load("notify_outage")  # offline/recovery of one outage: moot, plain, merged (notifier.outage)
NOTIFY_CLAIM = load("notify_claim")  # due queued notifications, leased to an owner (notifier.queue)
NOTIFY_PUT = load("notify_put")  # a notification (re)queued by its owner
NOTIFY_FINISH = load("notify_finish")  # a queued notification removed or dead-lettered by its owner
NOTIFY_TAKEOVER = load("notify_takeover")  # dead owners' claimed notifications due at once
NOTIFY_SMS_CLAIM = load("notify_sms_claim")  # due deferred SMS jobs, leased (notifier.sms)

ALL: tuple[Script, ...] = (
    BEAT,
    DUE,
    NEUTRALIZE,
    RECORD,
    EVENTS_TRIM,
    MASS_MARK,
    LOOKUP,
    GCRA,
    ACME_SET,
    ACME_TXT,
    MIGRATE_ALIVE,
    MIGRATE_LIVE_COUNT,
    MIGRATE_SHARDED,
    CLAIM_DUE,
    DONE_DUE,
    INGEST_MARK,
    NAME_CLAIM,
    NAME_RELEASE,
    NOTIFY_MARKER,
    NOTIFY_HOLD,
    NOTIFY_OUTAGE,
    NOTIFY_CLAIM,
    NOTIFY_PUT,
    NOTIFY_FINISH,
    NOTIFY_TAKEOVER,
    NOTIFY_SMS_CLAIM,
)
