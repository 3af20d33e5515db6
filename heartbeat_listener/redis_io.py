"""The listener's two Redis round trips per batch, encoded by hand.

redis-py spends ~15 us of Python per pipelined command building and parsing it; at 50k beats/s that
alone would use a core. Here a batch is one ``bytes`` built from templates (only the id, zone,
addresses and counter vary per beat) and sent with one write on a plain redis-py connection (which
still does AUTH/SELECT/TLS from the URL); replies are read with the connection's parser (hiredis when
installed). ``tests/unit/test_listener_redis.py`` pins the templates to what
:meth:`hbdns.liveness.Liveness.beat_argv` and redis-py would send, so the layout has one owner.

Any connection error or timeout becomes :class:`~heartbeat_listener.protocol.StoreUnavailable`; the
connection is dropped and made again on the next call (the shell backs off in between).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis

from hbdns import keys
from hbdns.liveness import BeatRequest, BeatResult, Liveness
from hbdns.plans import Plan
from heartbeat_listener.protocol import AccountInfo, StoreUnavailable

_PROBE = 987654321  # an id whose digits can't be confused with the rest of a key


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


def encode_command(*args: str | bytes) -> bytes:
    """RESP array of bulk strings (what redis-py's packer produces)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(bulk(a.encode() if isinstance(a, str) else a))
    return b"".join(parts)


def _split_key(key_of_probe: str) -> tuple[bytes, bytes]:
    """A per-account key as (prefix, suffix) around the id."""
    before, sep, after = key_of_probe.partition(str(_PROBE))
    if not sep:
        raise ValueError(f"account id not found in key {key_of_probe!r}")
    return before.encode(), after.encode()


class BatchConnection:
    """One Redis connection used as a raw pipeline: send many commands, read as many replies."""

    def __init__(self, client: redis.Redis) -> None:
        pool = client.connection_pool
        self._factory = lambda: pool.connection_class(**pool.connection_kwargs)
        self._conn: Any = None

    def _connection(self) -> Any:
        if self._conn is None:
            conn = self._factory()
            conn.connect()
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.disconnect()
            except Exception:
                pass
            self._conn = None

    def roundtrip(self, payload: bytes, count: int) -> list[Any]:
        """Send ``payload`` (``count`` commands) and read ``count`` replies; error replies are returned
        as ``redis.ResponseError`` values, not raised (one bad command must not hide the others)."""
        try:
            conn = self._connection()
            conn.send_packed_command([payload], check_health=False)
            out: list[Any] = []
            read = conn.read_response
            for _ in range(count):
                try:
                    out.append(read())
                except redis.ResponseError as exc:
                    out.append(exc)
            return out
        except (redis.RedisError, OSError, ValueError) as exc:
            self.close()
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None


class RedisAccounts:
    """The lookup stage: HMGET hb_key/plan/zone for the distinct ids of a batch, one round trip."""

    FIELDS = ("hb_key", "plan", "zone")

    def __init__(self, conn: BatchConnection, plans: Mapping[str, Plan]) -> None:
        self.conn = conn
        self.expiry = {name: p.expiry_ms for name, p in plans.items()}
        pre, post = _split_key(keys.account(_PROBE))
        tail = b"".join(bulk(f.encode()) for f in self.FIELDS)
        self._fmt = b"*5\r\n" + bulk(b"HMGET") + b"$%d\r\n" + pre + b"%d" + post + b"\r\n" + tail
        self._fixed = len(pre) + len(post)
        self._hex: dict[str, bytes] = {}  # hex -> bytes, small cache: keys repeat every beat

    def encode(self, ids: Sequence[int]) -> bytes:
        fmt, fixed = self._fmt, self._fixed
        return b"".join(fmt % (fixed + len(str(i)), i) for i in ids)

    def __call__(self, ids: Sequence[int]) -> dict[int, AccountInfo | str]:
        replies = self.conn.roundtrip(self.encode(ids), len(ids))
        out: dict[int, AccountInfo | str] = {}
        hexcache = self._hex
        for account_id, reply in zip(ids, replies, strict=True):
            if isinstance(reply, redis.ResponseError):  # e.g. WRONGTYPE: not an account hash
                out[account_id] = "bad_account"
                continue
            if not isinstance(reply, list) or len(reply) != 3:
                raise StoreUnavailable(f"HMGET answered {reply!r}")
            hb_hex, plan, zone = reply
            if hb_hex is None:
                continue  # unknown account
            if isinstance(hb_hex, bytes):
                hb_hex, plan, zone = hb_hex.decode(), (plan or b"").decode(), (zone or b"").decode()
            key = hexcache.get(hb_hex)
            if key is None:
                try:
                    key = bytes.fromhex(hb_hex)
                except ValueError:
                    out[account_id] = "bad_account"
                    continue
                if len(hexcache) > 500_000:
                    hexcache.clear()
                hexcache[hb_hex] = key
            expiry = self.expiry.get(plan or "")
            if expiry is None or not zone or not key:
                out[account_id] = "bad_account"
                continue
            out[account_id] = AccountInfo(key, expiry, zone)
        return out


class RedisBeats:
    """The write stage: EVALSHA of the shared beat script for every request, one round trip.

    Each script is still its own atomic step (replay check + state change). A NOSCRIPT reply (Redis
    restarted or SCRIPT FLUSH) means that script did not run: the script is loaded and those beats
    are sent again, which is safe for the same reason.
    """

    def __init__(self, conn: BatchConnection, liveness: Liveness, source: str = "beat") -> None:
        self.conn = conn
        self.liveness = liveness
        sha = liveness.beat_sha.encode()
        acct = _split_key(keys.account(_PROBE))
        alive = _split_key(keys.alive(_PROBE))
        log = _split_key(keys.account_log(_PROBE))
        head = b"*19\r\n" + bulk(b"EVALSHA") + bulk(sha) + bulk(b"6")

        def keyfmt(parts: tuple[bytes, bytes]) -> bytes:
            return b"$%d\r\n" + parts[0] + b"%b" + parts[1] + b"\r\n"

        tail = (
            bulk(str(liveness.max_skew_ms).encode())
            + bulk(source.encode())
            + bulk(str(liveness.events_maxlen).encode())
            + bulk(str(liveness.log_size).encode())
        )
        # per beat: acct key, alive key, [deadlines, events], log key, zone key, id, ip4, ip6, counter, ttl, offline
        self._fmt = (
            head
            + keyfmt(acct)
            + keyfmt(alive)
            + bulk(keys.deadlines().encode())
            + bulk(keys.events().encode())
            + keyfmt(log)
            + b"%b"  # zone key, pre-encoded per zone
            + b"$%d\r\n%b\r\n"  # id
            + b"%b%b%b%b"  # ipv4, ipv6, counter, ttl (bulks)
            + b"$1\r\n%b\r\n"  # offline
            + tail
        )
        self._lens = (len(acct[0]) + len(acct[1]), len(alive[0]) + len(alive[1]), len(log[0]) + len(log[1]))
        self._zones: dict[str, bytes] = {}
        self._ttls: dict[int, bytes] = {}

    def encode_one(self, req: BeatRequest) -> bytes:
        zone = self._zones.get(req.zone)
        if zone is None:
            zone = self._zones[req.zone] = bulk(keys.zone(req.zone).encode())
        ttl = self._ttls.get(req.expiry_ms)
        if ttl is None:
            ttl = self._ttls[req.expiry_ms] = bulk(b"%d" % int(req.expiry_ms))
        idb = b"%d" % req.account_id
        n = len(idb)
        la, lv, ll = self._lens
        counter = b"$0\r\n\r\n" if req.counter is None else bulk(b"%d" % req.counter)
        return self._fmt % (
            la + n,
            idb,
            lv + n,
            idb,
            ll + n,
            idb,
            zone,
            n,
            idb,
            bulk(req.ipv4.encode()),
            bulk(req.ipv6.encode()),
            counter,
            ttl,
            b"1" if req.offline else b"0",
        )

    def encode(self, reqs: Sequence[BeatRequest]) -> bytes:
        return b"".join([self.encode_one(r) for r in reqs])

    def beats(self, reqs: Sequence[BeatRequest]) -> list[BeatResult]:
        if not reqs:
            return []
        replies = self.conn.roundtrip(self.encode(reqs), len(reqs))
        missing = [i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
        if missing:
            self.conn.roundtrip(encode_command("SCRIPT", "LOAD", self.liveness.beat_script), 1)
            again = self.conn.roundtrip(self.encode([reqs[i] for i in missing]), len(missing))
            for i, r in zip(missing, again, strict=True):
                replies[i] = r
        out = []
        parse = self.liveness.beat_result
        for r in replies:
            if isinstance(r, redis.ResponseError):  # the script failed for this beat only
                out.append(BeatResult("error", False, "", "", ()))
                continue
            if not isinstance(r, list) or len(r) != 6:
                raise StoreUnavailable(f"beat script answered {r!r}")
            out.append(parse(r))
        return out
