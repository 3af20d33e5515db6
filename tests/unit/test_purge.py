"""Coalescing a burst of pdns purges (hbdns/purge.py)."""

from __future__ import annotations

from hbdns.purge import coalesce


def test_a_burst_in_one_zone_is_one_purge_of_the_zone() -> None:
    names = [f"h{i}.dyn.example.net" for i in range(25)] + ["other.example.org", "mx.h1.dyn.example.net"]
    assert coalesce(names, 20) == ["dyn.example.net", "mx.h1.dyn.example.net", "other.example.org"]


def test_few_names_are_purged_one_by_one_and_repeats_once() -> None:
    names = ["a.dyn.example.net", "A.dyn.example.net.", "b.dyn.example.net"]
    assert coalesce(names, 20) == ["a.dyn.example.net", "b.dyn.example.net"]


def test_a_top_level_domain_is_never_purged_whole() -> None:
    assert coalesce([f"h{i}.test" for i in range(30)], 20) == sorted(f"h{i}.test" for i in range(30))
