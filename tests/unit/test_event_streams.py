"""Event ids over the shard streams (hbdns/event_streams.py): the pure parts, and the lookups on fakeredis."""

from __future__ import annotations

import pytest
import redis

from hbdns import event_streams, keys


def test_an_event_id_names_its_shard_unless_the_entry_carries_its_old_id() -> None:
    assert event_streams.event_id(7, "1733000000000-2") == "7/1733000000000-2"
    assert event_streams.event_id(7, b"1-0", {b"type": b"x"}) == "7/1-0"
    assert event_streams.event_id(7, "9-0", {"legacy_id": "1700000000000-4"}) == "1700000000000-4"
    assert event_streams.event_id(7, "9-0", {b"legacy_id": b"1700000000000-4"}) == "1700000000000-4"
    with pytest.raises(ValueError):
        event_streams.event_id(keys.SHARDS, "1-0")


@pytest.mark.parametrize(
    ("eid", "parsed"),
    [("3/1733000000000-0", (3, "1733000000000-0")), ("1700000000000-4", (None, "1700000000000-4")),
     ("15/1-99", (15, "1-99"))],
)  # fmt: skip
def test_parse_reads_shard_and_entry(eid: str, parsed: tuple[int | None, str]) -> None:
    assert event_streams.parse(eid) == parsed


@pytest.mark.parametrize("eid", ["", "junk", "16/1-0", "-1/1-0", "x/1-0", "3/1", "3/a-0", "3/1-0/2", "/1-0"])
def test_parse_refuses_what_is_no_event_id(eid: str) -> None:
    with pytest.raises(ValueError):
        event_streams.parse(eid)


def test_find_reads_one_shard_and_a_legacy_id_wherever_the_migration_put_it(fake_redis: redis.Redis) -> None:
    entry = fake_redis.xadd(keys.events(4), {"type": "recovered", "account": "4"})
    assert event_streams.find(fake_redis, f"4/{entry}") == {"type": "recovered", "account": "4"}
    assert event_streams.find(fake_redis, f"5/{entry}") is None
    fake_redis.xadd(keys.events(9), {"type": "neutralized", "account": "9", "legacy_id": "5-0"}, id="5-0")
    fake_redis.xadd(keys.events(2), {"type": "neutralized", "account": "2", "legacy_id": "6-1"})  # a new entry id
    fake_redis.xadd(keys.events(3), {"type": "test", "account": "3"}, id="6-1")  # the same entry id, another event
    assert event_streams.find(fake_redis, "5-0") == {"type": "neutralized", "account": "9", "legacy_id": "5-0"}
    assert event_streams.find(fake_redis, "6-1") == {"type": "neutralized", "account": "2", "legacy_id": "6-1"}
    assert event_streams.find(fake_redis, "9/5-0") is None  # a copied entry is found by its old id only
    assert event_streams.find(fake_redis, "7-0") is None and event_streams.find(fake_redis, "junk") is None


def test_group_totals_sum_the_shards_that_have_the_group(fake_redis: redis.Redis) -> None:
    assert event_streams.group_totals(fake_redis, "g") == event_streams.GroupTotals(False, 0, 0, 0)
    for shard in (1, 2):
        fake_redis.xgroup_create(keys.events(shard), "g", id="0", mkstream=True)
        fake_redis.xadd(keys.events(shard), {"type": "test"})
        fake_redis.xadd(keys.events(shard), {"type": "test"})
    fake_redis.xreadgroup("g", "c", {keys.events(2): ">"}, count=1)
    assert event_streams.group_totals(fake_redis, "g") == event_streams.GroupTotals(True, 1, 3, 2)
