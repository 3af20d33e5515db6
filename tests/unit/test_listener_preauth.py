"""Pre-authentication limits and the listener's per-account memory (heartbeat_listener.preauth, .recent,
and authenticate with its checks): junk costs its own microseconds, never a customer's beats."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pytest
from hbdns_client import wire

from heartbeat_listener.protocol import (
    RESULTS,
    AccountCache,
    AccountInfo,
    Checks,
    IdCeiling,
    NegativeCache,
    PreAuth,
    RecentBeats,
    SourceLimiter,
    StoreUnavailable,
    process_batch,
)
from tests.unit.test_listener_protocol import FakeWriter

KEY, OTHER = bytes(range(32)), bytes(range(1, 33))
NOW_MS = 1_700_000_000_000
CUSTOMER = ("198.51.100.7", 40000)


@dataclass
class Table:
    """A lookup over a mutable table that records each call (one Redis round trip each)."""

    table: dict[int, AccountInfo | str] = field(default_factory=dict)
    calls: list[tuple[int, ...]] = field(default_factory=list)

    def __call__(self, ids: Sequence[int]) -> Mapping[int, AccountInfo | str]:
        self.calls.append(tuple(ids))
        return {i: self.table[i] for i in ids if i in self.table}

    @property
    def ids_looked_up(self) -> int:
        return sum(len(c) for c in self.calls)


def info(key: bytes = KEY, fp: str = "fp-1") -> AccountInfo:
    return AccountInfo(key, 15000, "dyn.test", fp)


def beat(account_id: int = 7, counter: int = NOW_MS, key: bytes = KEY, flags: int = wire.FLAG_REPLY) -> bytes:
    return wire.encode_beat(account_id, counter, key, flags)


def forged(account_id: int, counter: int, rng: random.Random) -> bytes:
    return beat(account_id, counter, bytes(32))[:14] + rng.randbytes(10)


@dataclass
class Listener:
    """The pure stages with everything a listener process keeps between batches."""

    lookup: Table
    preauth: PreAuth
    recent: RecentBeats = field(default_factory=lambda: RecentBeats(2, 20))
    limiter: SourceLimiter = field(default_factory=lambda: SourceLimiter(200, 1000))
    cache: AccountCache = field(default_factory=AccountCache)
    writer: FakeWriter = field(default_factory=FakeWriter)

    def batch(self, datagrams: Sequence[tuple[bytes, tuple[object, ...]]], now: float, now_ms: int = NOW_MS):  # type: ignore[no-untyped-def]
        return process_batch(
            datagrams,
            self.lookup,
            self.writer,
            self.limiter,
            now,
            self.cache,
            now_ms=now_ms,
            recent=self.recent,
            preauth=self.preauth,
        )


def listener(ceiling: int | None = 100, **kw: float) -> Listener:
    opts = {"lookup_rate": 50.0, "lookup_burst": 100, "unknown_ttl": 2.0, **kw}
    pre = PreAuth(
        lookup_rate=opts["lookup_rate"],
        lookup_burst=int(opts["lookup_burst"]),
        unknown_ttl=opts["unknown_ttl"],
        ceiling=IdCeiling(lambda: ceiling) if ceiling is not None else None,
    )
    return Listener(lookup=Table({7: info()}), preauth=pre)


# --- the parts ----------------------------------------------------------------------------------------


def test_negative_cache_forgets_after_its_ttl_and_stays_bounded() -> None:
    neg = NegativeCache(ttl=2.0, max_entries=3)
    neg.put(5, "unknown_account", now=10.0)
    assert neg.get(5, 11.9) == "unknown_account"
    assert neg.get(5, 12.0) == "" and len(neg) == 0  # a new account under that id is seen from now on
    for i in range(10):
        neg.put(i, "bad_account", now=20.0)
    assert len(neg) == 3 and neg.get(9, 20.0) == "bad_account" and neg.get(0, 20.0) == ""  # oldest went first
    neg.put(100, "unknown_account", now=30.0)  # the expired ones are dropped as new ones come
    assert len(neg) == 1


def test_id_ceiling_reads_again_for_a_new_account_but_not_for_every_junk_id() -> None:
    seq = {"value": 10}
    reads: list[int] = []

    def read() -> int:
        reads.append(seq["value"])
        return seq["value"]

    ceiling = IdCeiling(read, rate=2.0, burst=3)
    assert ceiling.admits(10, now=0.0) and reads == [10]
    assert ceiling.admits(3, now=0.0) and len(reads) == 1  # below: no read
    seq["value"] = 11  # an account was created
    assert ceiling.admits(11, now=0.0) and len(reads) == 2  # seen at once
    # a flood of ids above: reads at most burst, then rate per second
    assert not any(ceiling.admits(10**9 + i, now=0.0) for i in range(1000))
    assert len(reads) == 3
    assert sum(ceiling.admits(10**9 + i, now=t / 100) for t in range(1000) for i in range(10)) == 0
    assert len(reads) <= 3 + 2 * 10 + 1
    seq["value"] = 12
    assert ceiling.admits(12, now=30.0)  # a new account under a flood: seen within 1 / rate s


def test_id_ceiling_keeps_its_value_when_redis_fails_and_filters_nothing_without_a_sequence() -> None:
    def broken() -> int:
        raise StoreUnavailable("connection refused")

    ceiling = IdCeiling(broken)
    assert ceiling.admits(10**9, now=0.0)  # never read: nothing is filtered
    ceiling.value = 5
    assert not ceiling.admits(6, now=0.0) and ceiling.value == 5
    assert IdCeiling(lambda: None).admits(10**9, now=0.0)


def test_a_lower_sequence_means_redis_was_reset_and_clears_the_negative_cache() -> None:
    seq = {"value": 50}
    pre = PreAuth(lookup_rate=1, lookup_burst=10, unknown_ttl=60, ceiling=IdCeiling(lambda: seq["value"]))
    assert pre.miss(40, now=0.0) == ""
    pre.found(40, "unknown_account", now=0.0)
    assert pre.miss(40, now=1.0) == "unknown_account"
    seq["value"] = 3
    assert pre.miss(60, now=1.0) == "unknown_account"  # above: read again, lower than before
    assert len(pre.negative) == 0


def test_preauth_order_negative_cache_then_ceiling_then_global_budget() -> None:
    pre = PreAuth(lookup_rate=1, lookup_burst=2, unknown_ttl=5, ceiling=IdCeiling(lambda: 100))
    pre.found(9, "bad_account", now=0.0)
    assert pre.miss(9, 0.0) == "bad_account"
    assert pre.miss(101, 0.0) == "unknown_account"
    assert [pre.miss(i, 0.0) for i in (1, 2, 3)] == ["", "", "preauth_budget"]
    assert pre.miss(3, 1.0) == ""  # the budget refills at its rate
    assert pre.stats == {
        "lookups": 3,
        "negative_hits": 1,
        "above_ceiling": 1,
        "over_budget": 1,
        "refreshes": 0,
        "refreshes_refused": 0,
    }
    assert "preauth_budget" in RESULTS and "account_rate_limited" in RESULTS


def test_recent_beats_know_replays_copies_and_stale_copies_without_redis() -> None:
    rb = RecentBeats(rate=1000, burst=1000)
    w = 300_000

    def admit(counter: int, now_ms: int = NOW_MS) -> str:
        return rb.admit(7, counter, "fp", 0.0, now_ms, w)

    assert admit(NOW_MS) == ""
    assert admit(NOW_MS) == "replay"  # a copy while its verdict is on its way
    rb.judged(7, NOW_MS, "ok", NOW_MS)
    assert admit(NOW_MS) == "replay" and admit(NOW_MS - 5) == "replay"  # at or below the floor
    assert admit(NOW_MS + 1) == ""
    rb.judged(7, NOW_MS + 1, "replay", NOW_MS)  # another process had it: the floor learns too
    assert admit(NOW_MS + 1) == "replay"
    ahead = NOW_MS + 3_600_000
    assert admit(ahead) == ""
    rb.judged(7, ahead, "stale", NOW_MS)
    assert admit(ahead) == "stale"
    assert admit(NOW_MS + 2) == ""  # the honest client follows the server's clock: below it, fine
    # an hour later the clock has caught up with the captured copy: still refused, as the copy it is
    assert admit(ahead, now_ms=ahead - 1000) == "replay"
    assert rb.stats == {"replays": 4, "copies": 1, "stale": 1, "rate_limited": 0}


def test_recent_beats_stale_behind_stays_stale() -> None:
    rb = RecentBeats(rate=1000, burst=1000)
    behind = NOW_MS - 3_600_000
    assert rb.admit(7, behind, "fp", 0.0, NOW_MS, 300_000) == ""
    rb.judged(7, behind, "stale", NOW_MS)
    assert rb.admit(7, behind, "fp", 0.0, NOW_MS + 10**6, 300_000) == "stale"
    assert rb.admit(7, behind - 1, "fp", 0.0, NOW_MS, 300_000) == "stale"
    assert rb.admit(7, NOW_MS, "fp", 0.0, NOW_MS, 300_000) == ""


def test_account_bucket_is_charged_only_by_beats_worth_storing() -> None:
    rb = RecentBeats(rate=1, burst=3)
    assert rb.admit(7, NOW_MS, "fp", 0.0, NOW_MS, 300_000) == ""
    rb.judged(7, NOW_MS, "ok", NOW_MS)
    # a replayer of the captured beat: a thousand copies, not one token
    assert {rb.admit(7, NOW_MS, "fp", 0.1, NOW_MS, 300_000) for _ in range(1000)} == {"replay"}
    assert [rb.admit(7, NOW_MS + i, "fp", 0.2, NOW_MS, 300_000) for i in (1, 2, 3)] == ["", "", "account_rate_limited"]
    assert rb.admit(7, NOW_MS + 4, "fp", 1.3, NOW_MS, 300_000) == ""  # refilled at `rate`


def test_recent_memory_belongs_to_the_fingerprint() -> None:
    rb = RecentBeats(rate=1, burst=1)
    assert rb.admit(7, NOW_MS, "fp-1", 0.0, NOW_MS, 300_000) == ""
    rb.judged(7, NOW_MS, "ok", NOW_MS)
    # a new account under the same id (or a new key): nothing of the old one applies
    assert rb.admit(7, NOW_MS - 10, "fp-2", 0.0, NOW_MS, 300_000) == ""


def test_refreshes_are_charged_only_when_the_account_had_not_changed() -> None:
    rb = RecentBeats(rate=1, burst=1)
    for _ in range(10):  # key rotations (or new accounts under the id): always looked up
        assert rb.may_refresh(7, now=0.0)
        rb.refreshed(7, changed=True)
    assert [rb.may_refresh(7, 0.0) and (rb.refreshed(7, changed=False) or True) for _ in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert rb.may_refresh(7, now=1.0)


def test_recent_memory_is_bounded() -> None:
    rb = RecentBeats(rate=1, burst=1, max_accounts=10)
    for i in range(100):
        rb.admit(i, NOW_MS, "fp", 0.0, NOW_MS, 300_000)
    assert len(rb) <= 10


# --- the stages with every check on -----------------------------------------------------------------


def test_customer_beat_in_a_batch_of_junk_from_its_own_address_is_accepted() -> None:
    lst = listener()
    assert lst.batch([(beat(), CUSTOMER)], now=0.0).counts == {"accepted": 1}
    rng = random.Random(1)
    captured = beat()
    junk = []
    for i in range(2000):
        junk += [
            (b"x", CUSTOMER),
            (b"\x02" + rng.randbytes(23), CUSTOMER),
            (forged(7, NOW_MS + i, rng), CUSTOMER),
            (forged(rng.randrange(10**6, 2**32), NOW_MS, rng), CUSTOMER),
            (captured, CUSTOMER),
        ]
    fresh = beat(counter=NOW_MS + 5000)
    d = lst.batch([*junk[:5000], (fresh, CUSTOMER), *junk[5000:]], now=1.0)
    assert d.counts == {
        "accepted": 1,
        "short": 2000,
        "version": 2000,
        "bad_mac": 2000,
        "unknown_account": 2000,
        "replay": 2000,
    }
    assert wire.parse_reply(d.replies[0][0], fresh, KEY).status == wire.STATUS_OK and len(d.replies) == 1
    assert [r.counter for r in lst.writer.requests] == [NOW_MS, NOW_MS + 5000]  # no junk reached the script
    assert lst.lookup.calls == [(7,), (7,)]  # one re-read for the forged MACs, none for the unknown ids
    assert len(lst.recent) == 1 and len(lst.limiter) == 1


def test_forged_macs_cost_at_most_one_lookup_a_second_and_a_rotated_key_is_still_seen() -> None:
    lst = listener()
    lst.batch([(beat(), CUSTOMER)], now=0.0)
    rng = random.Random(2)
    for step in range(100):  # 10 s of forgeries in batches of 50
        lst.batch([(forged(7, NOW_MS + step * 50 + i, rng), CUSTOMER) for i in range(50)], now=step / 10)
    assert 2 <= len(lst.lookup.calls) - 1 <= 3 + 10
    lst.lookup.table[7] = info(OTHER, fp="fp-2")  # the key is rotated during the flood
    seen_at = None
    for step in range(100, 130):
        batch = [(forged(7, NOW_MS + step * 50 + i, rng), CUSTOMER) for i in range(50)]
        d = lst.batch([*batch, (beat(counter=NOW_MS + 10**5 + step, key=OTHER), CUSTOMER)], now=step / 10)
        if d.counts.get("accepted"):
            seen_at = step / 10
            break
    assert seen_at is not None and seen_at - 10.0 <= 1.0


def test_global_budget_caps_lookups_of_ids_the_ceiling_cannot_rule_out() -> None:
    lst = listener(ceiling=None, lookup_rate=100, lookup_burst=200)
    lst.recent = RecentBeats(rate=100, burst=100)  # the customer beats with every batch here
    assert lst.batch([(beat(), CUSTOMER)], now=0.0).counts == {"accepted": 1}  # cached from now on
    calls = lst.lookup.ids_looked_up
    rng = random.Random(3)
    for step in range(50):  # 5 s of 2000 distinct unknown ids per batch, the customer's beat last
        junk = [(forged(rng.randrange(2**32), NOW_MS, rng), CUSTOMER) for _ in range(2000)]
        d = lst.batch([*junk, (beat(counter=NOW_MS + 1 + step), CUSTOMER)], now=step / 10)
        assert d.counts["accepted"] == 1  # the budget was spent before it: a cached account needs none
        assert set(d.counts) == {"accepted", "unknown_account", "preauth_budget"}
    assert lst.lookup.ids_looked_up - calls <= 200 + 100 * 5
    assert lst.preauth.stats["over_budget"] > 50 * 2000 * 0.9


def test_unknown_id_below_the_ceiling_is_looked_up_once_per_ttl() -> None:
    lst = listener(ceiling=100)
    for step in range(40):  # 4 s
        d = lst.batch([(beat(account_id=42), CUSTOMER)] * 20, now=step / 10)
        assert d.counts == {"unknown_account": 20}
    assert lst.lookup.calls == [(42,), (42,)]  # t=0 and after the 2 s ttl
    lst.lookup.table[42] = info(OTHER, fp="fp-42")  # created after its id was cached as unknown
    accepted_at = next(
        t / 10
        for t in range(40, 80)
        if lst.batch([(beat(42, NOW_MS + t, OTHER), CUSTOMER)], now=t / 10).counts.get("accepted")
    )
    assert accepted_at - 4.0 <= 2.0  # within the ttl


def test_per_source_limit_is_charged_by_authenticated_beats_only() -> None:
    lst = listener()
    lst.limiter = SourceLimiter(rate=0.01, burst=3)
    lst.lookup.table.update({i: info(fp=f"fp-{i}") for i in range(1, 6)})
    rng = random.Random(4)
    junk = [(b"x", CUSTOMER)] * 500 + [(forged(7, NOW_MS + i, rng), CUSTOMER) for i in range(500)]
    d = lst.batch([*junk, *((beat(i), CUSTOMER) for i in range(1, 6))], now=0.0)
    assert d.counts["accepted"] == 3 and d.counts["rate_limited"] == 2


@pytest.mark.parametrize("status", ["noscript", "gone"])
def test_copies_of_a_beat_the_script_did_not_store_are_not_sent_again_while_in_doubt(status: str) -> None:
    lst = listener()
    lst.writer.statuses[7] = status
    d = lst.batch([(beat(), CUSTOMER), (beat(), CUSTOMER)], now=0.0)
    assert len(lst.writer.requests) == 1 and d.counts["replay"] == 1


def test_checks_default_to_off() -> None:
    assert Checks().preauth is None and Checks().recent is None and Checks().limiter is None


def test_stale_beat_is_answered_once_and_its_copies_never_reach_the_script() -> None:
    lst = listener()
    lst.batch([(beat(), CUSTOMER)], now=0.0)
    lst.writer.statuses[7] = "stale"
    ahead = beat(counter=NOW_MS + 3_600_000)
    answers = [
        len(lst.batch([(ahead, src)], now=1.0 + i).replies) for i, src in enumerate([CUSTOMER] * 3 + [("::1", 5, 0, 0)])
    ]
    assert answers == [1, 0, 0, 0]
    assert [r.counter for r in lst.writer.requests] == [NOW_MS, NOW_MS + 3_600_000]  # copies decided here
    assert lst.recent.stats["stale"] == 3
