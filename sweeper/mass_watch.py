"""Finding mass outages where they show first: in the sweeper, before it records the transitions.

:meth:`MassWatch.observe` runs on every batch the sweep or a keyspace hint is about to neutralize.
It notes each heartbeat account that is silent now (recorded live, no ``alive`` key left) in the
window of its scopes (``keys.mass_silent``: the zone's and the system's), and when a scope crossed
the threshold (:mod:`hbdns.mass`) it records the mass event and its ``mass_started`` event
*before* the batch's ``neutralized`` events are written, so the notifier already knows of the hold
when it reads them.

The share is of the accounts that were live when the window began: the last census
(:meth:`census_step`, every ``CENSUS_EVERY`` s: live heartbeat accounts per scope), less those gone
silent between the census and the window's start, plus those gone silent since (recoveries and new
accounts in between are not counted: a census is at most ``CENSUS_EVERY`` old). For the system
scope the count also includes the deadlines due within the window that the sweep has not reached
yet (every deadline member: a dual-stack account counts twice), so a sweeper that falls behind in a
mass outage (the first 100k bench run: 23 s) still recognises it within a sweep of the first
deadlines, before their messages' settle time ends.
:meth:`over_step` ends each hold: it counts the event's accounts back and still down, and appends
``mass_hold_over`` for the operator.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import redis

from hbdns import keys, mass, scripts
from hbdns.config import Settings
from hbdns.logs import RateLimitedLog
from hbdns.mass import SYSTEM, MassEvent
from hbdns.plans import Plan

log = logging.getLogger(__name__)

CENSUS_EVERY = 30.0  # seconds between censuses of live heartbeat accounts
CHUNK = 5000  # accounts per pipeline


class MassWatch:
    def __init__(
        self,
        r: redis.Redis,
        settings: Settings,
        plans: Mapping[str, Plan],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r: Any = r
        self.scopes = settings.mass_scopes
        self.share = settings.mass_share
        self.min_accounts = settings.mass_min_accounts
        self.window_ms = int(settings.mass_window * 1000)
        self.hold_ms = int(settings.mass_hold * 1000)
        # silent marks are kept for the window, the hold and two censuses: the hold's end counts them
        self.keep_ms = self.window_ms + self.hold_ms + int(2 * CENSUS_EVERY * 1000)
        self.heartbeat = frozenset(name for name, p in plans.items() if p.kind == "heartbeat")
        self.windows = {name: p.expiry_ms for name, p in plans.items()}
        self.clock = clock
        self._last_census = -CENSUS_EVERY
        self._warn = RateLimitedLog(log, 10.0)

    @property
    def enabled(self) -> bool:
        return bool(self.scopes)

    def _scopes_of(self, zone: str) -> list[str]:
        out = []
        if "system" in self.scopes:
            out.append(SYSTEM)
        if "zone" in self.scopes and zone:
            out.append(mass.zone_scope(zone))
        return out

    # --- the sweep's batches ------------------------------------------------------------------------

    def observe(self, members: Iterable[tuple[int, int] | int]) -> list[MassEvent]:
        """Note the silent heartbeat accounts among ``members`` (deadline members or account ids) and
        start the mass events whose threshold they crossed; returns those started."""
        if not self.enabled:
            return []
        ids = sorted({m if isinstance(m, int) else m[0] for m in members})
        if not ids:
            return []
        shards = sorted({keys.shard_of(i) for i in ids})
        pipe = self.r.pipeline(transaction=False)
        for shard in shards:
            pipe.hmget(keys.ingest(shard), "mark", "gap_ms", "gaps")
        for i in ids:
            pipe.hmget(keys.account(i), "zone", "plan", "state")
            pipe.exists(keys.alive(i, 4), keys.alive(i, 6), keys.alive_legacy(i))
            dl = keys.deadlines(keys.shard_of(i))
            pipe.zmscore(dl, [keys.deadline_member(i, 4), keys.deadline_member(i, 6), str(i)])
        pipe.hgetall(keys.mass_census())
        replies = pipe.execute()
        ingest = dict(zip(shards, replies[: len(shards)], strict=True))
        replies = replies[len(shards) :]
        census = replies[-1]
        census_at = int(census.get("@at", 0) or 0)
        if not census_at:
            return []  # no census yet (the mass loop takes one at start): the share is unknown
        now = int(self.clock() * 1000)
        by_scope: dict[str, dict[str, int]] = {}
        for n, account_id in enumerate(ids):
            (zone, plan, state), alive, due = replies[3 * n], replies[3 * n + 1], replies[3 * n + 2]
            if state == "live" and not alive and plan in self.heartbeat:
                # silent since its last deadline (a sweeper back from downtime finds old ones: not a burst)
                since = int(max((float(d) for d in due if d is not None), default=now))
                if ingest_hold(ingest[keys.shard_of(account_id)], since, self.windows[plan], now) > 0:
                    continue  # our own ingest outage, not the customer's: the sweep holds it too
                for scope in self._scopes_of(zone or ""):
                    by_scope.setdefault(scope, {})[str(account_id)] = since
        if not by_scope:
            return []
        ws = now - self.window_ms
        pipe = self.r.pipeline(transaction=False)
        for shard in keys.all_shards():  # due within the window, not yet swept (this batch too)
            pipe.zcount(keys.deadlines(shard), ws, now)
        for scope, silent_ids in by_scope.items():
            key = keys.mass_silent(scope)
            pipe.zadd(key, silent_ids, nx=True)
            pipe.zremrangebyscore(key, "-inf", now - self.keep_ms)
            pipe.zcount(key, ws, "+inf")
            pipe.zcount(key, min(census_at, ws), max(census_at, ws))
        replies = pipe.execute()
        backlog, counts = sum(int(n) for n in replies[: keys.SHARDS]), replies[keys.SHARDS :]
        # the system's silent accounts the sweep has not reached yet: a sweeper that falls behind in a
        # mass outage still recognises it within a sweep or two of the first deadlines (zones: their
        # own accounts only, the deadlines are not kept per zone)
        pending = max(0, backlog - len(ids))
        started: list[MassEvent] = []
        system_holds: bool | None = None
        for n, scope in enumerate(by_scope):  # the system first: while it holds, a zone adds nothing
            if scope != SYSTEM:
                if system_holds is None:
                    system_holds = self._system_holds(started, now)
                if system_holds:
                    break
            silent, between = int(counts[4 * n + 2]), int(counts[4 * n + 3])
            if scope == SYSTEM:
                silent += pending
            live = int(census.get(scope, 0) or 0)
            # live when the window began: the census, moved to the window's start
            of = max(live - between if census_at < ws else live + between, silent)
            if silent >= self.min_accounts and silent >= self.share * of:
                event = MassEvent(scope, now, ws, now + self.hold_ms, silent, of)
                if self._mark("start", event):
                    started.append(event)
        return started

    def _system_holds(self, started: list[MassEvent], now: int) -> bool:
        if any(e.scope == SYSTEM for e in started):
            return True
        system = mass.load(self.r).get(SYSTEM)
        return system is not None and system.holding(now)

    def _mark(self, op: str, event: MassEvent) -> bool:
        values = {
            "started_ms": event.started_ms,
            "hold_until_ms": event.hold_until_ms,
            "silent": event.silent,
            "of": event.of,
            "recovered": event.recovered,
            "still_down": event.still_down,
        }
        args: list[str | int] = [op, event.scope, event.to_json(), int(self.clock() * 1000)]
        for k, v in values.items():
            args += [k, v]
        mark_keys = [keys.mass_events(), keys.events(keys.MASS_SHARD)]  # one slot: MASS_SHARD's
        done = int(scripts.MASS_MARK(self.r, mark_keys, args)) == 1
        if done and op == "start":
            log.error(
                "mass outage: many heartbeat accounts silent at once; DNS neutralizes them, their "
                "customers' outage messages are held",
                extra={
                    "scope": event.scope,
                    "silent": event.silent,
                    "of": event.of,
                    "window_s": self.window_ms / 1000,
                    "hold_until_ms": event.hold_until_ms,
                },
            )
        elif done:
            log.warning(
                "mass outage: hold over; customers still down are told now",
                extra={"scope": event.scope, "recovered": event.recovered, "still_down": event.still_down},
            )
        return done

    # --- the mass loop ------------------------------------------------------------------------------

    def step(self) -> int:
        """The sweeper's ``mass`` loop: a census when one is due, and the holds that ended."""
        if not self.enabled:
            return 0
        if time.monotonic() - self._last_census >= CENSUS_EVERY:
            self._last_census = time.monotonic()
            self.census_step()
        return self.over_step()

    def census_step(self) -> dict[str, int]:
        """Count the live heartbeat accounts of each scope (those with a deadline); stored for :meth:`observe`."""
        now = int(self.clock() * 1000)
        ids: set[int] = set()
        for shard in keys.all_shards():
            for raw in self.r.zrange(keys.deadlines(shard), 0, -1):
                try:
                    ids.add(keys.parse_deadline_member(raw)[0])
                except ValueError:
                    continue
        counts: dict[str, int] = {}
        ordered = sorted(ids)
        for start in range(0, len(ordered), CHUNK):
            pipe = self.r.pipeline(transaction=False)
            for i in ordered[start : start + CHUNK]:
                pipe.hmget(keys.account(i), "zone", "plan", "state")
            for zone, plan, state in pipe.execute():
                if state == "live" and plan in self.heartbeat:
                    for scope in self._scopes_of(zone or ""):
                        counts[scope] = counts.get(scope, 0) + 1
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(keys.mass_census())
        pipe.hset(keys.mass_census(), mapping={**counts, "@at": now})
        pipe.execute()
        return counts

    def over_step(self) -> int:
        """End the holds that are over: count the event's accounts back and still down, tell the operator."""
        now = int(self.clock() * 1000)
        ended = 0
        for event in mass.load(self.r).values():
            if event.over or event.holding(now):
                continue
            members = self.r.zrangebyscore(
                keys.mass_silent(event.scope), event.window_start_ms, f"({event.hold_until_ms}"
            )
            pipe = self.r.pipeline(transaction=False)
            for m in members:
                pipe.hget(keys.account(int(m)), "state")
            states = pipe.execute() if members else []
            back = sum(1 for s in states if s == "live")
            down = sum(1 for s in states if s == "neutral")
            if self._mark("over", replace(event, over=True, recovered=back, still_down=down)):
                ended += 1
        return ended


def ingest_hold(h: list[Any], d: int, w: int, now: int) -> int:
    """hbdns/lua/lib.lua's ``ingest_hold`` on a shard's ingest hash (``mark``, ``gap_ms``, ``gaps``):
    when the deadline ``d`` of a plan window ``w`` ms is to be looked at again because its window
    overlaps an ingest outage (0: it does not). A silence that is our own outage (Redis or every
    listener down) is no customer's, so it counts towards no mass outage either: without this a
    sweep right after a long Redis outage, before the listeners wrote their held beats, found every
    account silent and held every customer's messages for a mass outage that never was."""
    mark_s, gap_s, gaps_s = h
    if not mark_s:
        return 0
    mark, again = int(mark_s), 0
    if now - mark > int(gap_s or 2000) and d > mark:
        again = now + w
    for start, end in json.loads(gaps_s or "[]"):
        if start < d and end > d - w and end + w > again:
            again = end + w
    return again
