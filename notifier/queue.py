"""The notification queue on Redis: jobs that wait for another attempt, who is attempting which, dead letters.

A job (:class:`hbdns.notify_queue.Job`) is due at a time in ``notify_queue``; its JSON is in
``notify_jobs``. :meth:`Queue.claim` takes due jobs for one owner (a notifier incarnation, see
:mod:`notifier.presence`): each is marked in ``notify_inflight`` and pushed ``lease`` seconds ahead,
so it comes due again by itself if its owner hangs. When an owner's liveness ends, :meth:`Queue.takeover`
makes its jobs due at once: no fixed lease to sit out after a crash. :meth:`Queue.put` (schedule
again) and :meth:`Queue.finish` (sent, moot or dead-lettered) act only for the job's owner, so a
notifier that was taken for dead and comes back cannot undo what its successor did.

The scripts are module constants below (the lead moves every script to ``.lua`` files under one
loader); they touch only ``{notify}`` keys, passed in KEYS: one Redis Cluster slot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis

from hbdns import keys
from hbdns.notify_queue import DEAD_LETTER_CAP, Job

# --- Lua (KEYS/ARGV layout above each) --------------------------------------------------------------

# KEYS: queue jobs inflight ; ARGV: now lease_until limit token -> {id, job json, id, job json, ...}
LUA_CLAIM = r"""
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local job = redis.call('HGET', KEYS[2], id)
  if job then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
    redis.call('HSET', KEYS[3], id, ARGV[4])
    out[#out + 1] = id
    out[#out + 1] = job
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# KEYS: queue jobs since inflight ; ARGV: id job_json due first token
#   -> 1, or 0 when another owner holds the job now (it was taken over: leave it to them)
LUA_PUT = r"""
local owner = redis.call('HGET', KEYS[4], ARGV[1])
if owner and owner ~= ARGV[5] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"""

# KEYS: queue jobs since inflight dead dead_index dropped ; ARGV: id token [letter_json now cap]
#   -> 1 (removed), or 0 (another owner holds it now: it finds the sent marker and finishes it).
#   A letter is written either way: the owner that took over will not write one.
LUA_FINISH = r"""
if ARGV[3] then
  redis.call('HSET', KEYS[5], ARGV[1], ARGV[3])
  redis.call('ZADD', KEYS[6], ARGV[4], ARGV[1])
  local over = redis.call('ZCARD', KEYS[6]) - tonumber(ARGV[5])
  if over > 0 then
    local gone = redis.call('ZPOPMIN', KEYS[6], over)
    for i = 1, #gone, 2 do redis.call('HDEL', KEYS[5], gone[i]) end
    redis.call('INCRBY', KEYS[7], over)
  end
end
local owner = redis.call('HGET', KEYS[4], ARGV[1])
if owner and owner ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
"""

# KEYS: queue inflight ; ARGV: now, then the live owner tokens -> how many jobs were made due
LUA_TAKEOVER = r"""
local live = {}
for i = 2, #ARGV do live[ARGV[i]] = true end
local all = redis.call('HGETALL', KEYS[2])
local n = 0
for i = 1, #all, 2 do
  if not live[all[i + 1]] then
    redis.call('HDEL', KEYS[2], all[i])
    n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', ARGV[1], all[i])
  end
end
return n
"""


class Queue:
    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self._claim = r.register_script(LUA_CLAIM)
        self._put = r.register_script(LUA_PUT)
        self._finish = r.register_script(LUA_FINISH)
        self._takeover = r.register_script(LUA_TAKEOVER)

    def claim(self, now: float, lease: float, limit: int, token: str) -> list[Job]:
        """Due jobs for ``token``, each leased until ``now + lease`` (or until its owner dies)."""
        flat = self._claim(
            keys=[keys.notify_queue(), keys.notify_jobs(), keys.notify_inflight()],
            args=[repr(now), repr(now + lease), limit, token],
        )
        return [Job.from_json(flat[i + 1]) for i in range(0, len(flat), 2)]

    def put(self, job: Job, due: float, token: str, *, client: Any = None) -> Any:
        """Queue ``job`` (new or claimed by ``token``) to be due at ``due`` (1, or 0: another owner has it)."""
        args = [job.id, job.to_json(), repr(due), repr(job.first), token]
        return self._put(
            keys=[keys.notify_queue(), keys.notify_jobs(), keys.notify_queued_since(), keys.notify_inflight()],
            args=args,
            client=client or self.r,
        )

    def finish(self, job_id: str, token: str, letter: str = "", now: float = 0.0, *, client: Any = None) -> Any:
        """Remove a job (sent, moot, duplicate); with ``letter``, dead-letter it in the same step."""
        args: list[str | int] = [job_id, token]
        if letter:
            args += [letter, repr(now), DEAD_LETTER_CAP]
        return self._finish(
            keys=[
                keys.notify_queue(),
                keys.notify_jobs(),
                keys.notify_queued_since(),
                keys.notify_inflight(),
                keys.notify_dead(),
                keys.notify_dead_index(),
                keys.notify_dead_dropped(),
            ],
            args=args,
            client=client or self.r,
        )

    def takeover(self, now: float, live: Iterable[str]) -> int:
        """Make the claimed jobs of every owner not in ``live`` due at once; returns how many."""
        return int(self._takeover(keys=[keys.notify_queue(), keys.notify_inflight()], args=[repr(now), *live]))

    def size(self) -> int:
        return int(self.r.zcard(keys.notify_queue()))
