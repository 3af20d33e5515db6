"""The listener's pure step logic (heartbeat_listener.protocol), with an in-memory lookup and writer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from hbdns_client import wire

from hbdns.liveness import OK, REKEY, BeatRequest, BeatResult
from heartbeat_listener.protocol import (
    RESULTS,
    AccountCache,
    AccountInfo,
    Authenticated,
    Candidate,
    Screened,
    SourceLimiter,
    StaleReplies,
    StoreUnavailable,
    authenticate_all,
    conclude,
    process_batch,
    source_ip,
)

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
ACCOUNTS: dict[int, AccountInfo | str] = {7: AccountInfo(KEY, 15000, "dyn.test"), 9: "bad_account"}
NOW_MS = 1_700_000_000_000


@dataclass
class FakeWriter:
    """Records the requests; answers like the beat script would for a fresh account."""

    statuses: dict[int, str] = field(default_factory=dict)  # account id -> status to answer
    changed: bool = False
    requests: list[BeatRequest] = field(default_factory=list)
    fail: bool = False

    def beats(self, reqs: Sequence[BeatRequest]) -> list[BeatResult]:
        if self.fail:
            raise StoreUnavailable("connection refused")
        self.requests.extend(reqs)
        out = []
        for r in reqs:
            status = self.statuses.get(r.account_id, "offline" if r.offline else "ok")
            out.append(BeatResult(status, self.changed, "", "", ("h.dyn.test", "alias.dyn.test")))
        return out


def lookup(ids: Sequence[int]) -> Mapping[int, AccountInfo | str]:
    return {i: ACCOUNTS[i] for i in ids if i in ACCOUNTS}


def beat(account_id: int = 7, counter: int = NOW_MS, flags: int = wire.FLAG_REPLY, key: bytes = KEY) -> bytes:
    return wire.encode_beat(account_id, counter, key, flags)


V4 = ("203.0.113.7", 40000)
V6 = ("2001:db8::7", 40000, 0, 0)


def test_accepted_beat_becomes_a_request_and_a_reply_with_the_seen_address() -> None:
    writer = FakeWriter()
    data = beat()
    d = process_batch([(data, V4)], lookup, writer)
    assert d.counts == {"accepted": 1}
    assert writer.requests == [
        BeatRequest(account_id=7, zone="dyn.test", expiry_ms=15000, ipv4="203.0.113.7", counter=NOW_MS)
    ]
    [(reply, addr)] = d.replies
    assert addr == V4 and len(reply) <= len(data)
    assert wire.parse_reply(reply, data, KEY) == wire.Reply(wire.STATUS_OK, "203.0.113.7")
    assert d.purge == () and not d.redis_error


@pytest.mark.parametrize(
    ("addr", "ipv4", "ipv6"),
    [
        (V6, "", "2001:db8::7"),
        (("::ffff:198.51.100.4", 1, 0, 0), "198.51.100.4", ""),  # IPv4-mapped counts as IPv4
        (("fe80::1%eth0", 1, 0, 2), "", "fe80::1"),
    ],
)
def test_address_family_decides_a_or_aaaa(addr: tuple[object, ...], ipv4: str, ipv6: str) -> None:
    writer = FakeWriter()
    process_batch([(beat(), addr)], lookup, writer)
    assert (writer.requests[0].ipv4, writer.requests[0].ipv6) == (ipv4, ipv6)


def test_offline_flag_and_reply_status() -> None:
    writer = FakeWriter(changed=True)
    data = beat(flags=wire.FLAG_OFFLINE | wire.FLAG_REPLY)
    d = process_batch([(data, V6)], lookup, writer)
    # every field by name: the hot loop builds requests from a tuple in field order
    assert writer.requests == [
        BeatRequest(
            account_id=7,
            zone="dyn.test",
            expiry_ms=15000,
            ipv4="",
            ipv6="2001:db8::7",
            counter=NOW_MS,
            offline=True,
            source="beat",
            fp="",
        )
    ]
    assert d.counts == {"offline": 1}
    assert wire.parse_reply(d.replies[0][0], data, KEY).status == wire.STATUS_OFFLINE_OK
    assert d.purge == ("h.dyn.test", "alias.dyn.test")
    assert [c.account_id for c in d.changes] == [7]


def test_no_reply_without_the_reply_flag() -> None:
    d = process_batch([(beat(flags=0), V4)], lookup, FakeWriter())
    assert d.counts == {"accepted": 1} and d.replies == ()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "short"),
        (b"x" * 23, "short"),
        (beat() + b"\x00", "long"),
        (b"\x02" + beat()[1:], "version"),
        (beat()[:1] + b"\x10" + beat()[2:], "flags"),
        (beat(account_id=8), "unknown_account"),
        (beat(account_id=9), "bad_account"),
        (beat(key=OTHER), "bad_mac"),
        (beat()[:-1] + bytes([beat()[-1] ^ 1]), "bad_mac"),
    ],
)
def test_bad_input_is_counted_never_written_never_answered(data: bytes, reason: str) -> None:
    writer = FakeWriter()
    d = process_batch([(data, V4)], lookup, writer)
    assert d.counts == {reason: 1}
    assert writer.requests == [] and d.replies == () and d.purge == ()
    assert d.rejects[0][:2] == (reason, "203.0.113.7")
    assert reason in RESULTS


@pytest.mark.parametrize(
    ("status", "reason", "reply_status"),
    [("replay", "replay", None), ("stale", "stale", wire.STATUS_CLOCK_SKEW), ("gone", "unknown_account", None)],
)
def test_script_verdicts(status: str, reason: str, reply_status: int | None) -> None:
    """Replays get no reply (a captured packet must not make us talk); stale but authentic beats learn why."""
    data = beat()
    d = process_batch([(data, V4)], lookup, FakeWriter(statuses={7: status}))
    assert d.counts == {reason: 1}
    if reply_status is None:
        assert d.replies == ()
    else:
        assert wire.parse_reply(d.replies[0][0], data, KEY).status == reply_status


@pytest.mark.parametrize("addr", [V4, V6])
def test_clock_skew_answer_carries_the_listeners_clock_and_window(addr: tuple[object, ...]) -> None:
    data = beat(counter=NOW_MS + 3_600_000)
    d = process_batch([(data, addr)], lookup, FakeWriter(statuses={7: "stale"}), now_ms=NOW_MS, window_ms=300_000)
    [(reply, to)] = d.replies
    assert to == addr and len(reply) == 20 <= len(data)  # no address in it: the same size for both families
    assert wire.parse_reply(reply, data, KEY) == wire.Reply(wire.STATUS_CLOCK_SKEW, server_ms=NOW_MS, window_ms=300_000)


def test_a_stale_beat_is_answered_once_however_often_and_from_wherever_it_is_replayed() -> None:
    """Issue 14: a captured stale beat must not be answered every time it is replayed (a reflector)."""
    stale = StaleReplies()
    writer = FakeWriter(statuses={7: "stale"})
    ahead, behind = beat(counter=NOW_MS + 3_600_000), beat(counter=NOW_MS - 3_600_000)
    sources = [V4, ("198.51.100.9", 1), V6, ("2001:db8::99", 2, 0, 0)]

    def replies(data: bytes, addr: tuple[object, ...], now_ms: int = NOW_MS) -> int:
        d = process_batch([(data, addr)], lookup, writer, now_ms=now_ms, stale=stale)
        assert d.counts == {"stale": 1}  # still counted every time
        return len(d.replies)

    assert [replies(ahead, a) for a in sources * 3] == [1] + [0] * 11
    assert [replies(behind, a) for a in sources * 3] == [1] + [0] * 11  # behind the clock: its own first
    # the honest client's next stale beats have higher counters: each is answered, once
    later = beat(counter=NOW_MS + 3_600_005)
    assert [replies(later, V4), replies(later, V6)] == [1, 0]
    # an old captured packet stays unanswered as the listener's clock moves on
    assert replies(ahead, V4, now_ms=NOW_MS + 60_000) == 0
    assert len(stale) == 1


def test_stale_reply_memory_is_per_account_and_bounded() -> None:
    stale = StaleReplies(max_accounts=3)
    assert all(stale.first(i, NOW_MS + 10**7, NOW_MS) for i in range(3))
    assert not stale.first(2, NOW_MS + 10**7, NOW_MS)
    assert stale.first(3, NOW_MS + 10**7, NOW_MS) and len(stale) == 1  # full: started afresh


def test_a_mixed_batch_keeps_order_and_counts_each() -> None:
    writer = FakeWriter()
    batch = [(beat(counter=NOW_MS + i), V4) for i in range(3)] + [(b"junk", V4), (beat(account_id=8), V6)]
    d = process_batch(batch, lookup, writer)
    assert [r.counter for r in writer.requests] == [NOW_MS, NOW_MS + 1, NOW_MS + 2]
    assert d.counts == {"accepted": 3, "short": 1, "unknown_account": 1}
    assert len(d.replies) == 3


def test_redis_failure_drops_the_batch_as_redis_down() -> None:
    def broken(ids: Sequence[int]) -> Mapping[int, AccountInfo | str]:
        raise StoreUnavailable("connection refused")

    d = process_batch([(beat(), V4), (b"x", V4)], broken, FakeWriter())
    assert d.counts == {"redis_down": 1, "short": 1} and d.redis_error
    d = process_batch([(beat(), V4)], lookup, FakeWriter(fail=True))
    assert d.counts == {"redis_down": 1} and d.redis_error and d.replies == ()


def test_rate_limit_per_source_does_not_starve_others() -> None:
    limiter = SourceLimiter(rate=10, burst=5)
    writer = FakeWriter()
    flood = [(beat(counter=NOW_MS + i), ("198.51.100.1", 1)) for i in range(20)]
    d = process_batch([*flood, (beat(), ("198.51.100.2", 1))], lookup, writer, limiter, now=100.0)
    assert d.counts == {"accepted": 6, "rate_limited": 15}
    assert writer.requests[-1].ipv4 == "198.51.100.2"
    # tokens come back at `rate` per second
    d = process_batch(flood[:5], lookup, writer, limiter, now=100.2)
    assert d.counts == {"accepted": 2, "rate_limited": 3}


def test_limiter_table_is_bounded() -> None:
    limiter = SourceLimiter(rate=1, burst=2, max_sources=100)
    for i in range(1000):
        assert limiter.allow(f"10.0.{i // 256}.{i % 256}", now=float(i))
    assert len(limiter) <= 100
    limiter.prune(now=1e9)
    assert len(limiter) == 0


def test_source_ip() -> None:
    assert source_ip(("192.0.2.1", 5)) == ("192.0.2.1", False)
    assert source_ip(("::1", 5, 0, 0)) == ("::1", True)
    assert source_ip(("::ffff:192.0.2.1", 5, 0, 0)) == ("192.0.2.1", False)


# --- the account cache ------------------------------------------------------------------------------

FP_OLD, FP_NEW = "0123456789abcdef", "fedcba9876543210"


@dataclass
class CountingLookup:
    """A lookup over a mutable table that records every call (each is one Redis round trip)."""

    table: dict[int, AccountInfo | str]
    calls: list[tuple[int, ...]] = field(default_factory=list)

    def __call__(self, ids: Sequence[int]) -> Mapping[int, AccountInfo | str]:
        self.calls.append(tuple(ids))
        return {i: self.table[i] for i in ids if i in self.table}


def cached_setup() -> tuple[CountingLookup, AccountCache, FakeWriter]:
    """Account 7 with KEY and a fingerprint, already in the cache after one accepted beat."""
    lookups = CountingLookup({7: AccountInfo(KEY, 15000, "dyn.test", FP_OLD)})
    cache, writer = AccountCache(), FakeWriter()
    d = process_batch([(beat(), V4)], lookups, writer, cache=cache)
    assert d.counts == {"accepted": 1} and lookups.calls == [(7,)]
    assert cache.get(7) == AccountInfo(KEY, 15000, "dyn.test", FP_OLD)
    return lookups, cache, writer


def test_cached_account_is_not_looked_up_again() -> None:
    lookups, cache, writer = cached_setup()
    batch = [(beat(counter=NOW_MS + i), V4) for i in range(1, 4)]
    d = process_batch(batch, lookups, writer, cache=cache)
    assert d.counts == {"accepted": 3} and len(d.replies) == 3
    assert lookups.calls == [(7,)]  # only the first batch's
    # every request carries the fingerprint it was authenticated with, for the script to compare
    assert [r.fp for r in writer.requests] == [FP_OLD] * 4


def test_new_key_is_accepted_after_one_fresh_lookup_and_replaces_the_cached_one() -> None:
    lookups, cache, writer = cached_setup()
    lookups.table[7] = AccountInfo(OTHER, 15000, "dyn.test", FP_NEW)  # rotated in Redis
    data = beat(counter=NOW_MS + 1, key=OTHER)
    d = process_batch([(data, V4)], lookups, writer, cache=cache)
    assert d.counts == {"accepted": 1}
    assert lookups.calls == [(7,), (7,)]
    assert writer.requests[-1].fp == FP_NEW
    assert wire.parse_reply(d.replies[0][0], data, OTHER) == wire.Reply(wire.STATUS_OK, "203.0.113.7")
    assert cache.get(7) == AccountInfo(OTHER, 15000, "dyn.test", FP_NEW)
    # and from now on from the cache
    assert process_batch([(beat(counter=NOW_MS + 2, key=OTHER), V4)], lookups, writer, cache=cache).counts == {
        "accepted": 1
    }
    assert len(lookups.calls) == 2


def test_wrong_key_for_a_cached_account_is_bad_mac_after_exactly_one_lookup() -> None:
    lookups, cache, writer = cached_setup()
    wrong = bytes(32)
    d = process_batch([(beat(counter=NOW_MS + 1, key=wrong), V4)], lookups, writer, cache=cache)
    assert d.counts == {"bad_mac": 1}
    assert d.rejects == (("bad_mac", "203.0.113.7", 7),)
    assert lookups.calls == [(7,), (7,)]
    assert len(writer.requests) == 1 and d.replies == () and d.requeue == ()
    assert cache.get(7) == AccountInfo(KEY, 15000, "dyn.test", FP_OLD)


def test_a_batch_mixing_cached_and_uncached_accounts_looks_up_only_the_uncached() -> None:
    lookups, cache, writer = cached_setup()
    lookups.table[8] = AccountInfo(OTHER, 45000, "dyn.test", FP_NEW)
    batch = [(beat(counter=NOW_MS + 1), V4), (beat(8, key=OTHER), V6), (beat(5), V4)]
    d = process_batch(batch, lookups, writer, cache=cache)
    assert d.counts == {"accepted": 2, "unknown_account": 1}
    assert lookups.calls == [(7,), (8, 5)]
    assert [(r.account_id, r.expiry_ms, r.fp) for r in writer.requests[1:]] == [(7, 15000, FP_OLD), (8, 45000, FP_NEW)]
    assert cache.get(8) is not None and cache.get(5) is None


def test_rekey_for_a_cached_beat_evicts_and_requeues_it() -> None:
    lookups, cache, writer = cached_setup()
    writer.statuses[7] = "rekey"
    data = beat(counter=NOW_MS + 1)
    d = process_batch([(data, V4)], lookups, writer, cache=cache)
    assert lookups.calls == [(7,)]  # authenticated from the cache
    assert d.evict == (7,)
    assert len(d.requeue) == 1
    requeued = d.requeue[0]
    assert (requeued.beat.account_id, requeued.beat.counter, requeued.addr, requeued.ip) == (
        7,
        NOW_MS + 1,
        V4,
        "203.0.113.7",
    )
    assert d.counts == {} and d.replies == () and d.rejects == ()  # decided on the next pass
    assert cache.get(7) is None  # process_batch applied the eviction

    # the next pass (as the listener runs it): fresh lookup; still 'rekey' now counts, no more requeue
    screened = Screened(candidates=d.requeue)
    auth = authenticate_all(screened, cache, lookups)
    assert lookups.calls == [(7,), (7,)] and auth.cached == (False,)
    again = conclude(auth, writer.beats(auth.requests), now_ms=NOW_MS)
    assert again.counts == {"key_changed": 1} and again.requeue == ()
    assert again.rejects == (("key_changed", "203.0.113.7", 7),)


def test_rekey_for_a_freshly_looked_up_beat_counts_key_changed_and_is_not_requeued() -> None:
    lookups = CountingLookup({7: AccountInfo(KEY, 15000, "dyn.test", FP_OLD)})
    cache = AccountCache()
    d = process_batch([(beat(), V4)], lookups, FakeWriter(statuses={7: "rekey"}), cache=cache)
    assert d.counts == {"key_changed": 1}
    assert d.requeue == () and d.evict == (7,) and d.replies == ()
    assert cache.get(7) is None


def test_conclude_requeues_only_the_cache_authenticated_rekeys() -> None:
    beats = [wire.parse_beat(beat(account_id=i, counter=NOW_MS + i)) for i in (7, 8, 9)]
    cands = tuple(Candidate(beat=b, addr=V4, ip="203.0.113.7", v6=False) for b in beats)
    reqs = tuple(
        BeatRequest(account_id=b.account_id, zone="dyn.test", expiry_ms=15000, ipv4="203.0.113.7", counter=b.counter)
        for b in beats
    )
    auth = Authenticated(candidates=cands, requests=reqs, keys=(KEY,) * 3, cached=(True, False, True))
    d = conclude(auth, [REKEY, REKEY, OK], now_ms=NOW_MS)
    assert d.requeue == (cands[0],)
    assert d.evict == (7, 8)
    assert d.counts == {"key_changed": 1, "accepted": 1}


def test_account_without_fingerprint_is_not_cached() -> None:
    lookups = CountingLookup({7: AccountInfo(KEY, 15000, "dyn.test")})
    cache, writer = AccountCache(), FakeWriter()
    for i in range(3):
        assert process_batch([(beat(counter=NOW_MS + i), V4)], lookups, writer, cache=cache).counts == {"accepted": 1}
    assert len(cache) == 0 and lookups.calls == [(7,)] * 3
    assert [r.fp for r in writer.requests] == [""] * 3  # not checked by the script either


def test_cache_update_drops_entries_that_became_unusable() -> None:
    cache = AccountCache()
    cache.update({7: AccountInfo(KEY, 15000, "dyn.test", FP_OLD), 8: AccountInfo(KEY, 15000, "dyn.test", FP_OLD)})
    assert len(cache) == 2
    cache.update({7: "bad_account", 8: AccountInfo(KEY, 15000, "dyn.test")})
    assert len(cache) == 0


def test_account_info_repr_never_shows_the_key() -> None:
    info = AccountInfo(KEY, 15000, "dyn.test", FP_OLD)
    text = repr(info) + str(info) + repr([info]) + repr({7: info})
    assert KEY.hex() not in text and repr(KEY) not in text and KEY.hex()[:8] not in text
    assert "dyn.test" in repr(info)
