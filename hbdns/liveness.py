"""State transitions, each one atomic Lua script on Redis, shared by every writer.

- :meth:`Liveness.beat` is what a heartbeat or a dyndns2 update does: replay check (counter strictly
  greater than the last accepted one, within the skew window of Redis' clock), refresh the ``alive``
  key and the deadline in one step, change the address, record ``recovered``/``ip_changed``, bump
  the zone's SOA serial. An ``offline`` beat neutralizes at once.
- :meth:`Liveness.sweep` finds accounts whose deadline passed (Redis ``TIME`` is the one clock) and
  neutralizes them; :meth:`Liveness.neutralize_if_due` is the same idempotent step for one account
  (used when a keyspace ``expired`` hint arrives early). The deadline is removed in the same script
  that records the transition, so two sweepers never record one transition twice.

Every transition is appended to the ``events`` stream (for the notifier) and to the account's
capped log (for ``hbdns account log``). The backend never reads ``state``: it answers from the
``alive`` key, which Redis expires exactly, so DNS flips even if no sweeper runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import redis

from hbdns import keys

_LUA_COMMON = r"""
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(t[1])
end
local function bump_serial(zone_key, sec)
  local s = tonumber(redis.call('HGET', zone_key, 'serial') or '0') or 0
  local n = s + 1
  if sec > n then n = sec end
  redis.call('HSET', zone_key, 'serial', string.format('%d', n))
end
local function emit(ev, log, maxlen, logcap, kind, id, fqdn, at, extra)
  local args = {'XADD', ev, 'MAXLEN', '~', maxlen, '*', 'type', kind, 'account', id,
                'fqdn', fqdn, 'at', string.format('%d', at)}
  local entry = {type = kind, account = tonumber(id), fqdn = fqdn, at = at}
  for i = 1, #extra, 2 do
    args[#args + 1] = extra[i]
    args[#args + 1] = tostring(extra[i + 1])
    entry[extra[i]] = extra[i + 1]
  end
  local eid = redis.call(unpack(args))
  entry['event_id'] = eid
  redis.call('LPUSH', log, cjson.encode(entry))
  redis.call('LTRIM', log, 0, tonumber(logcap) - 1)
  return eid
end
"""

# One script for a batch of beats/updates (a single update is a batch of one): one EVALSHA per batch
# keeps Redis' per-command cost out of the per-beat cost. Each beat is checked and applied in turn,
# the whole batch atomically. Fast path (live, same address): HMGET, HSET, PEXPIRE, ZADD, and the
# bare string 'ok' as its result: building a six-element reply per beat cost Redis ~4 us a beat
# (measured), more than any one of the four commands. Per beat only what the fast path reads is
# passed (2 keys, 7 args): the log and zone keys, needed only when something changes, are built in
# the script from their templates in hbdns.keys, and the source is one for the batch.
# KEYS: deadlines events, then per beat: acct alive
# ARGV: max_skew_ms maxlen logcap source, then per beat: id ipv4 ipv6 counter ttl_ms offline fp
#   fp: the account's config fingerprint the caller authenticated with ('' = not checked); when it
#   differs from the stored one (key, plan or zone changed since the caller read them) nothing is
#   applied and the result is 'rekey'.
# Returns per beat: 'ok' (accepted with the address(es) sent, DNS answer unchanged), 'rekey', or
#   {status, changed, old_ipv4, old_ipv6, fqdn, aliases_json}
BEAT_KEYS_PER_BEAT = 2
BEAT_ARGS_PER_BEAT = 7
_LOG_PRE, _LOG_SUF = keys.lua_parts(keys.account_log, 987654321987)
_ZONE_PRE, _ZONE_SUF = keys.lua_parts(keys.zone, "\x01")
_BEATS = (
    _LUA_COMMON
    + f"""
local LOG_PRE, LOG_SUF, ZONE_PRE, ZONE_SUF = {_LOG_PRE}, {_LOG_SUF}, {_ZONE_PRE}, {_ZONE_SUF}
"""
    + r"""
local dl, ev = KEYS[1], KEYS[2]
local skew, maxlen, logcap, source = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local now, sec = clock()
local nows = string.format('%d', now)

local function beat(acct, alive, id, ip4, ip6, counter, ttl, offline, fp)
  local cur = redis.call('HMGET', acct, 'fqdn', 'state', 'counter', 'ipv4', 'ipv6', 'fp', 'last_beat')
  local fqdn = cur[1]
  if not fqdn then return {'gone', '0', '', '', '', ''} end
  if fp ~= '' and fp ~= cur[6] then return 'rekey' end
  local old4, old6 = cur[4] or '', cur[5] or ''
  if counter ~= '' then
    local c = tonumber(counter)
    local last = tonumber(cur[3] or '')  -- '0' (or absent) before the first beat
    if last and c <= last then
      return {'replay', '0', '', '', fqdn, redis.call('HGET', acct, 'aliases') or '[]'}
    end
    if math.abs(c - now) > skew then
      return {'stale', '0', '', '', fqdn, redis.call('HGET', acct, 'aliases') or '[]'}
    end
    redis.call('HSET', acct, 'counter', counter, 'last_beat', nows)
  else
    redis.call('HSET', acct, 'last_beat', nows)
  end
  local state = cur[2] or 'neutral'
  local was_alive
  if offline == '1' then
    was_alive = redis.call('DEL', alive) == 1
  else
    -- PEXPIRE answers whether the key was there; only a missing key needs the SET
    was_alive = redis.call('PEXPIRE', alive, ttl) == 1
    if not was_alive then redis.call('SET', alive, '1', 'PX', ttl) end
  end
  -- bare 'ok' only when an address was sent (the caller knows it); a keepalive without one
  -- (dyndns2 'preserve') gets the stored addresses back in the full answer
  local fast = state == 'live' and was_alive and offline ~= '1' and (ip4 ~= '' or ip6 ~= '')
               and (ip4 == '' or ip4 == old4) and (ip6 == '' or ip6 == old6)
  if fast then
    redis.call('ZADD', dl, now + ttl, id)
    return 'ok'
  end
  -- something changes (or an offline beat): the rest of the record is needed
  local more = redis.call('HMGET', acct, 'since', 'aliases', 'zone')
  local since, aliases = tonumber(more[1] or '0') or 0, more[2] or '[]'
  local log, zone = LOG_PRE .. id .. LOG_SUF, ZONE_PRE .. (more[3] or '') .. ZONE_SUF
  if state == 'live' and not was_alive then
    -- expired but not yet swept: record the outage that really happened, at its deadline
    local d = tonumber(redis.call('ZSCORE', dl, id) or now)
    redis.call('HSET', acct, 'state', 'neutral', 'since', string.format('%d', d))
    emit(ev, log, maxlen, logcap, 'neutralized', id, fqdn, d, {'reason', 'missed'})
    state, since = 'neutral', d
  end
  local changed = 0
  if offline == '1' then
    redis.call('ZREM', dl, id)
    if state == 'live' then
      redis.call('HSET', acct, 'state', 'neutral', 'since', nows)
      emit(ev, log, maxlen, logcap, 'neutralized', id, fqdn, now, {'reason', 'offline', 'source', source})
      changed = 1
      bump_serial(zone, sec)
    end
    return {'offline', tostring(changed), old4, old6, fqdn, aliases}
  end
  redis.call('ZADD', dl, now + ttl, id)
  if state ~= 'live' then
    redis.call('HSET', acct, 'state', 'live', 'since', nows)
    emit(ev, log, maxlen, logcap, 'recovered', id, fqdn, now,
         {'neutral_since', since, 'duration_ms', now - since, 'source', source,
          'first', (tonumber(cur[7] or '0') or 0) > 0 and '0' or '1'})
    changed = 1
  end
  if ip4 ~= '' and ip4 ~= old4 then
    redis.call('HSET', acct, 'ipv4', ip4)
    emit(ev, log, maxlen, logcap, 'ip_changed', id, fqdn, now,
         {'family', '4', 'old', old4, 'new', ip4, 'source', source})
    changed = 1
  end
  if ip6 ~= '' and ip6 ~= old6 then
    redis.call('HSET', acct, 'ipv6', ip6)
    emit(ev, log, maxlen, logcap, 'ip_changed', id, fqdn, now,
         {'family', '6', 'old', old6, 'new', ip6, 'source', source})
    changed = 1
  end
  if changed == 1 then bump_serial(zone, sec) end
  return {'ok', tostring(changed), old4, old6, fqdn, aliases}
end

local out = {}
for i = 0, (#KEYS - 2) / 2 - 1 do
  local k, a = 3 + 2 * i, 5 + 7 * i
  out[i + 1] = beat(KEYS[k], KEYS[k + 1], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
                    tonumber(ARGV[a + 4]), ARGV[a + 5], ARGV[a + 6])
end
return out
"""
)

# KEYS: deadlines ; ARGV: limit -> ids whose deadline <= Redis TIME
_DUE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
"""

# KEYS: acct alive deadlines events log zone ; ARGV: id maxlen logcap
_NEUTRALIZE = (
    _LUA_COMMON
    + r"""
local acct, alive, dl, ev, log, zone = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, maxlen, logcap = ARGV[1], ARGV[2], ARGV[3]
local now, sec = clock()
local d = redis.call('ZSCORE', dl, id)
if not d then return {'none', '', ''} end
d = tonumber(d)
if d > now then return {'notdue', '', ''} end
local pttl = redis.call('PTTL', alive)
if pttl > 0 then
  redis.call('ZADD', dl, now + pttl, id)
  return {'alive', '', ''}
end
redis.call('ZREM', dl, id)
local cur = redis.call('HMGET', acct, 'fqdn', 'state', 'aliases')
if not cur[1] then return {'gone', '', ''} end
if cur[2] ~= 'live' then return {'already', cur[1], cur[3] or '[]'} end
redis.call('HSET', acct, 'state', 'neutral', 'since', string.format('%d', d))
emit(ev, log, maxlen, logcap, 'neutralized', id, cur[1], d, {'reason', 'missed', 'swept_at', now})
bump_serial(zone, sec)
return {'neutralized', cur[1], cur[3] or '[]'}
"""
)

# KEYS: events log zone ; ARGV: id fqdn kind bump maxlen logcap [field value ...]
_RECORD = (
    _LUA_COMMON
    + r"""
local now, sec = clock()
local extra = {}
for i = 7, #ARGV do extra[#extra + 1] = ARGV[i] end
local eid = emit(KEYS[1], KEYS[2], ARGV[5], ARGV[6], ARGV[3], ARGV[1], ARGV[2], now, extra)
if ARGV[4] == '1' then bump_serial(KEYS[3], sec) end
return eid
"""
)


@dataclass(frozen=True)
class BeatResult:
    """Outcome of one beat or update. ``status``: ok, offline, replay, stale, gone, or rekey (the
    account's key, plan or zone changed since the caller read them: nothing was applied)."""

    status: str
    changed: bool  # the DNS answer changed (address or live/neutral): purge caches
    old_ipv4: str
    old_ipv6: str
    names: tuple[str, ...]  # the account's names, for purges

    @property
    def accepted(self) -> bool:
        return self.status in ("ok", "offline")


OK = BeatResult("ok", False, "", "", ())  # the script's bare 'ok': accepted, DNS answer unchanged
REKEY = BeatResult("rekey", False, "", "", ())


class BeatRequest(NamedTuple):
    """One beat or update for the beat script.

    A NamedTuple rather than a frozen dataclass: the listener makes one per beat, and a frozen
    dataclass's ``__init__`` costs several times a tuple's (``object.__setattr__`` per field).
    """

    account_id: int
    zone: str
    expiry_ms: int
    ipv4: str = ""
    ipv6: str = ""
    counter: int | None = None  # None: no replay check (dyndns2 updates)
    offline: bool = False
    source: str = "beat"
    fp: str = ""  # the config fingerprint the caller authenticated with; "" = not checked


@dataclass(frozen=True)
class Neutralized:
    account_id: int
    names: tuple[str, ...]


def _names(fqdn: str, aliases: str) -> tuple[str, ...]:
    if not fqdn:
        return ()
    try:
        extra = json.loads(aliases or "[]")
    except ValueError:
        extra = []
    return (fqdn, *extra)


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Liveness:
    """The transition scripts bound to one Redis client (works on pipelines too)."""

    def __init__(
        self,
        r: redis.Redis,
        *,
        max_skew_ms: int = 300_000,
        events_maxlen: int = 100_000,
        log_size: int = 200,
    ) -> None:
        self.r = r
        self.max_skew_ms = max_skew_ms
        self.events_maxlen = events_maxlen
        self.log_size = log_size
        self._beat = r.register_script(_BEATS)
        self._due = r.register_script(_DUE)
        self._neutralize = r.register_script(_NEUTRALIZE)
        self._record = r.register_script(_RECORD)

    @staticmethod
    def _account_keys(account_id: int, zone: str) -> list[str]:
        return [
            keys.account(account_id),
            keys.alive(account_id),
            keys.deadlines(),
            keys.events(),
            keys.account_log(account_id),
            keys.zone(zone),
        ]

    @property
    def beat_sha(self) -> str:
        """SHA1 of the beat script, for writers that send EVALSHA themselves (the UDP listener)."""
        return str(self._beat.sha)

    @property
    def beat_script(self) -> str:
        """The beat script's text (to SCRIPT LOAD it again after a Redis restart)."""
        return _BEATS

    def beat_argv(self, reqs: Sequence[BeatRequest], source: str = "beat") -> tuple[list[str], list[str]]:
        """KEYS and ARGV of the beat script for a batch from one ``source`` (the requests' own
        ``source`` is not read here: :meth:`beats` splits a mixed batch): the one place that spells
        the script's call layout."""
        keys_ = [keys.deadlines(), keys.events()]
        args = [str(self.max_skew_ms), str(self.events_maxlen), str(self.log_size), source]
        for req in reqs:
            keys_ += [keys.account(req.account_id), keys.alive(req.account_id)]
            args += [
                str(req.account_id),
                req.ipv4,
                req.ipv6,
                "" if req.counter is None else str(req.counter),
                str(int(req.expiry_ms)),
                "1" if req.offline else "0",
                req.fp,
            ]
        return keys_, args

    @staticmethod
    def beat_result(raw: Any) -> BeatResult:
        """Decode one beat's part of the script's reply (public for writers that send EVALSHA themselves)."""
        if isinstance(raw, (str, bytes)):
            return OK if _s(raw) == "ok" else REKEY
        status, changed, old4, old6, fqdn, aliases = (_s(x) for x in raw)
        return BeatResult(status, changed == "1", old4, old6, _names(fqdn, aliases))

    def beat(self, req: BeatRequest) -> BeatResult:
        return self.beats([req])[0]

    def beats(self, reqs: Iterable[BeatRequest], chunk: int = 500) -> list[BeatResult]:
        """Many beats, one script call (one round trip, one atomic step) per ``chunk`` of them that
        share a source, in order."""
        reqs = list(reqs)
        out: list[BeatResult] = []
        i = 0
        while i < len(reqs):
            source = reqs[i].source
            j = i + 1
            while j < len(reqs) and j - i < chunk and reqs[j].source == source:
                j += 1
            keys_, args = self.beat_argv(reqs[i:j], source)
            out += [self.beat_result(raw) for raw in self._beat(keys=keys_, args=args)]
            i = j
        return out

    def due(self, limit: int = 1000) -> list[int]:
        return [int(_s(x)) for x in self._due(keys=[keys.deadlines()], args=[limit])]

    def neutralize_if_due(self, account_ids: Iterable[int]) -> list[Neutralized]:
        """Neutralize those of ``account_ids`` whose deadline passed; idempotent and race-free."""
        ids = list(account_ids)
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for account_id in ids:
            pipe.hget(keys.account(account_id), "zone")
        zones = [_s(z) if z is not None else "" for z in pipe.execute()]
        pipe = self.r.pipeline(transaction=False)
        for account_id, zone in zip(ids, zones, strict=True):
            self._neutralize(
                keys=self._account_keys(account_id, zone),
                args=[str(account_id), str(self.events_maxlen), str(self.log_size)],
                client=pipe,
            )
        out = []
        for account_id, raw in zip(ids, pipe.execute(), strict=True):
            status, fqdn, aliases = (_s(x) for x in raw)
            if status == "neutralized":
                out.append(Neutralized(account_id, _names(fqdn, aliases)))
        return out

    def sweep(self, limit: int = 1000) -> list[Neutralized]:
        """One sweep: neutralize up to ``limit`` accounts whose deadline has passed."""
        return self.neutralize_if_due(self.due(limit))

    def record(
        self,
        account_id: int,
        zone: str,
        fqdn: str,
        kind: str,
        extra: dict[str, str] | None = None,
        *,
        bump_serial: bool = True,
        client: Any = None,
    ) -> Any:
        """Append an admin transition (``created``, ``removed``) in the same format as the scripts'."""
        args: list[str] = [str(account_id), fqdn, kind, "1" if bump_serial else "0"]
        args += [str(self.events_maxlen), str(self.log_size)]
        for k, v in (extra or {}).items():
            args += [k, v]
        return self._record(
            keys=[keys.events(), keys.account_log(account_id), keys.zone(zone)],
            args=args,
            client=client or self.r,
        )
