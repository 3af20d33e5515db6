"""The answer cache's bookkeeping (pure logic): bounded, and Redis' reports drop exactly what they
touch. How the reports come (client tracking) is tested on a real server:
tests/integration/test_answer_cache.py."""

from __future__ import annotations

import math

import pytest

from hbdns import keys
from pdns_backend.accounts import account_keys
from pdns_backend.answer_cache import AnswerCache, Entry


def entry(account: int = -1, body: bytes = b"x") -> Entry:
    return Entry(body=body, apex="example.com", zone_rev=1, serial=-1, account=account, deadline=math.inf, apexes=0)


def test_least_recently_used_entries_go_first_beyond_the_bound() -> None:
    cache = AnswerCache(max_entries=3)
    for n in range(3):
        cache.put((f"h{n}.example.com", "ANY"), entry(n))
    assert cache.get(("h0.example.com", "ANY")) is not None  # h0 used: h1 is now the oldest
    cache.put(("h3.example.com", "ANY"), entry(3))
    assert ("h1.example.com", "ANY") not in cache
    assert all((f"h{n}.example.com", "ANY") in cache for n in (0, 2, 3))
    assert len(cache) == 3 and cache.stats.evictions == 1
    cache.invalidate([keys.account(1)])  # the evicted entry's account: nothing left to drop
    assert len(cache) == 3 and cache.stats.invalidations == 0


def test_a_report_drops_that_accounts_entries_only() -> None:
    cache = AnswerCache()
    cache.put(("a.example.com", "ANY"), entry(1))
    cache.put(("www.a.example.com", "ANY"), entry(1))  # an alias: same account
    cache.put(("b.example.com", "ANY"), entry(2))
    cache.put(("example.com", "SOA"), entry())
    cache.invalidate([keys.alive(1)])
    assert ("a.example.com", "ANY") not in cache and ("www.a.example.com", "ANY") not in cache
    assert ("b.example.com", "ANY") in cache and ("example.com", "SOA") in cache
    assert cache.stats.invalidations == 2
    cache.invalidate([keys.account(2)])
    assert ("b.example.com", "ANY") not in cache


@pytest.mark.parametrize("report", [[keys.names()], [keys.shard_names(3)], None, ["hbdns:something-else"]])
def test_the_name_index_a_flush_or_an_unknown_key_drops_everything(report: list[str] | None) -> None:
    cache = AnswerCache()
    cache.put(("a.example.com", "ANY"), entry(1))
    cache.put(("example.com", "SOA"), entry())
    cache.invalidate(report)
    assert len(cache) == 0 and cache.stats.flushes == 1


def test_replacing_an_entry_moves_it_between_accounts() -> None:
    cache = AnswerCache()
    cache.put(("mail.example.com", "ANY"), entry(1))
    cache.put(("mail.example.com", "ANY"), entry(2, b"y"))  # the alias moved to account 2
    cache.invalidate([keys.account(1)])
    got = cache.get(("mail.example.com", "ANY"))
    assert got is not None and got.body == b"y"


def test_account_ids_are_read_from_any_per_account_key() -> None:
    assert keys.parse_account_key(keys.account(42)) == 42
    assert keys.parse_account_key(keys.alive(7).encode()) == 7
    assert keys.parse_account_key(keys.alive_legacy(23)) == 23
    assert keys.parse_account_key(keys.names()) is None
    assert keys.parse_account_key(keys.shard_names(5)) is None  # a shard's index: every entry read one
    assert keys.parse_account_key("other:{s:1}:1") is None  # not ours


def test_the_tracked_prefixes_cover_every_key_the_lookup_reads_and_do_not_overlap() -> None:
    prefixes = keys.lookup_prefixes()
    read = [keys.names(), *(keys.shard_names(s) for s in keys.all_shards())]
    read += [k for account_id in (1, 16, 31) for k in account_keys(account_id)]
    for key in read:
        assert any(key.startswith(p) for p in prefixes), key
    assert not any(a != b and a.startswith(b) for a in prefixes for b in prefixes)


def test_a_cache_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        AnswerCache(0)
