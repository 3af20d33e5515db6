"""The beat script's EVALSHA for a batch, encoded by hand from parts encoded once.

Per batch the bytes are assembled from per-account, per-zone and per-shard parts kept from earlier
batches (only the addresses, counter and the beat's shard table row vary per beat), byte for byte
what redis-py would send for :meth:`hbdns.liveness.Liveness.beat_argv`'s layout
(``tests/unit/test_listener_redis.py`` pins it). Shared by the writer on one connection
(:mod:`heartbeat_listener.redis_io`) and the one on Redis Cluster
(:mod:`heartbeat_listener.cluster_io`), which passes the beats of one shard per call.
"""

from __future__ import annotations

from collections.abc import Sequence

from hbdns import keys, scripts
from hbdns.liveness import (
    BEAT_ARGS_PER_BEAT,
    BEAT_KEYS_PER_BEAT,
    BEAT_KEYS_PER_SHARD,
    BeatRequest,
    Liveness,
    beat_keys,
    beat_shard_keys,
)
from hbdns.resp import bulk


class BeatEncoder:
    """Encodes beat batches from one ``source`` for ``liveness``'s settings (skew, caps)."""

    def __init__(self, liveness: Liveness, source: str = "beat") -> None:
        self.script = scripts.BEAT
        # the batch's fixed args (with the source), its shard table and zones, then per beat:
        #   KEYS acct alive4 alive6 alive_legacy log / ARGV id ip4 ip6 counter ttl offline fp fams age row
        shared_keys, shared_args = liveness.beat_argv([], source)
        assert not shared_keys and shared_args[-2:] == ["0", "0"], "beat_argv's fixed part: args, then the counts"
        self._shared_args = b"".join(bulk(a.encode()) for a in shared_args[:-2])
        self._nshared = len(shared_args)
        self._shard_rows = [b"".join(bulk(k.encode()) for k in beat_shard_keys(s)) for s in keys.all_shards()]
        self._row_args = [bulk(b"%d" % r) for r in range(keys.SHARDS + 1)]  # a beat's row in the table
        # per account, encoded once: (fp, its KEYS, its id ARG, its fp ARG, its shard)
        self._accounts: dict[int, tuple[str, bytes, bytes, bytes, int]] = {}
        self._zones: dict[str, bytes] = {}  # zone -> its name ARG
        self._bulks: dict[str, bytes] = {"": b"$0\r\n\r\n"}  # addresses repeat: encode once
        self._ttls: dict[int, bytes] = {}

    def _account_parts(self, req: BeatRequest) -> tuple[str, bytes, bytes, bytes, int]:
        if len(self._accounts) >= 2_000_000:
            self._accounts.clear()
        i = req.account_id
        parts = (
            req.fp,
            b"".join(bulk(k.encode()) for k in beat_keys(i)),
            bulk(b"%d" % i),
            bulk(req.fp.encode()),
            keys.shard_of(i),
        )
        self._accounts[i] = parts
        return parts

    def _zone_arg(self, zone: str) -> bytes:
        if len(self._zones) >= 100_000:
            self._zones.clear()
        arg = self._zones[zone] = bulk(zone.encode())
        return arg

    def _ttl(self, expiry_ms: int) -> bytes:
        b = self._ttls[expiry_ms] = bulk(b"%d" % int(expiry_ms))
        return b

    def _bulk(self, value: str) -> bytes:
        b = self._bulks.get(value)
        if b is None:
            if len(self._bulks) >= 1_000_000:
                self._bulks = {"": b"$0\r\n\r\n"}
            b = self._bulks[value] = bulk(value.encode())
        return b

    def encode(self, reqs: Sequence[BeatRequest], ages: Sequence[int] | None = None) -> bytes:
        """The EVALSHA command for a batch, byte for byte what redis-py would send. ``ages``: per
        beat, ms since it was received (held beats applied late), as in ``Liveness.beat_argv``.
        The batch may span shards (a standalone Redis); on Redis Cluster the caller passes the beats
        of one shard."""
        keyparts: list[bytes] = []
        argparts: list[bytes] = []
        zones: dict[str, bytes] = {}
        rows: dict[int, bytes] = {}  # shard -> the beats' row ARG, shards in order of appearance
        accounts, parts_of, bulk_of, ttls = self._accounts, self._account_parts, self._bulk, self._ttls
        known_zones, zone_arg, row_args = self._zones, self._zone_arg, self._row_args
        on, off = b"$1\r\n1\r\n", b"$1\r\n0\r\n"
        empty = b"$0\r\n\r\n"
        for i, req in enumerate(reqs):
            parts = accounts.get(req.account_id)
            if parts is None or parts[0] != req.fp:
                parts = parts_of(req)
            if req.zone not in zones:
                zones[req.zone] = known_zones.get(req.zone) or zone_arg(req.zone)
            row = rows.get(parts[4])
            if row is None:
                row = rows[parts[4]] = row_args[len(rows) + 1]
            keyparts.append(parts[1])
            counter = b"$0\r\n\r\n" if req.counter is None else bulk(b"%d" % req.counter)
            argparts.append(
                b"".join(
                    (
                        parts[2],
                        bulk_of(req.ipv4),
                        bulk_of(req.ipv6),
                        counter,
                        ttls.get(req.expiry_ms) or self._ttl(req.expiry_ms),
                        on if req.offline else off,
                        parts[3],
                        bulk_of(req.fams),
                        empty if ages is None or ages[i] <= 0 else bulk(b"%d" % ages[i]),
                        row,
                    )
                )
            )
        nkeys = BEAT_KEYS_PER_SHARD * len(rows) + BEAT_KEYS_PER_BEAT * len(reqs)
        nargs = self._nshared + len(zones) + BEAT_ARGS_PER_BEAT * len(reqs)
        shard_rows = self._shard_rows
        return b"".join(
            [
                b"*%d\r\n" % (3 + nkeys + nargs),
                self.script.head,
                bulk(b"%d" % nkeys),
                *(shard_rows[s] for s in rows),
                *keyparts,
                self._shared_args,
                bulk(b"%d" % len(rows)),
                bulk(b"%d" % len(zones)),
                *zones.values(),
                *argparts,
            ]
        )
