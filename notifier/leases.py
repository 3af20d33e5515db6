"""Who may send a message now (its sent marker) and whether a receiver may be tried now (its hold).

**Sent markers** (``keys.sent(message.key)``): ``sending:<owner>`` while an attempt runs, then
``sent``, ``dead`` or ``moot``, kept ``notify_sent_ttl`` seconds, so a message handed over twice (a
redelivered stream entry, two notifiers, a retry racing a takeover) goes out once. A ``sending``
marker of an owner that is no longer live (:mod:`notifier.presence`) is taken over at once; the
marker's own expiry (5 x ``notify_claim_idle``, at least 5 min) only covers an owner that is alive
but stuck. Only a
crash between the receiver's acceptance and the marker write sends a message twice.

**Holds** (``keys.notify_holds``): when a receiver fails as a whole (the SMTP relay or SMS gateway
is down, a webhook host answers 503) it is held: messages for it wait in the queue without an
attempt, and one probe per backoff step tries it. The backoff is the time since the hold began,
clamped to [``notify_backoff``, ``notify_probe_max``] (Postfix's rule for its queue), so probes
double their spacing up to the cap; a ``Retry-After`` is honoured up to the cap. A success ends
the hold, and the waiting messages follow at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis

from hbdns import keys

GO, BUSY = "go", "busy"
OPEN, DUE, PROBE = "open", "due", "probe"

# --- Lua (KEYS/ARGV layout above each) --------------------------------------------------------------

# KEYS: sent marker
# ARGV 'claim': op token lease_ms allow_dead live_token... -> 'go' | 'busy' | 'done:<state>'
# ARGV 'release': op token -> 1 if the marker was ours and is gone
# ARGV 'set': op token state ttl_s -> 1 ('sent' always wins: a delivery is a fact; no state replaces it)
LUA_MARKER = r"""
local op, token = ARGV[1], ARGV[2]
local v = redis.call('GET', KEYS[1])
if op == 'claim' then
  local function take()
    redis.call('SET', KEYS[1], 'sending:' .. token, 'PX', ARGV[3])
    return 'go'
  end
  if not v then return take() end
  local owner = string.match(v, '^sending:(.*)$')
  if owner then
    if owner == token then return 'busy' end
    for i = 5, #ARGV do
      if ARGV[i] == owner then return 'busy' end
    end
    return take()
  end
  if v == 'dead' and ARGV[4] == '1' then return take() end
  return 'done:' .. v
elseif op == 'release' then
  if v == 'sending:' .. token then return redis.call('DEL', KEYS[1]) end
  return 0
elseif op == 'set' then
  if v == 'sent' and ARGV[3] ~= 'sent' then return 0 end
  redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
  return 1
end
return redis.error_reply('unknown op ' .. tostring(op))
"""

# KEYS: holds hash, queue ; times in ms in the hold (cjson keeps 14 digits), in s in the queue
# ARGV 'check': op dest now_ms -> 'open' | 'due' (a probe may go now) | '<until_ms>' (held)
# ARGV 'probe': op dest now_ms probe_until_ms -> 'probe' (you probe; held until probe_until) | '<until_ms>'
# ARGV 'fail': op dest now_ms base_ms cap_ms retry_after_ms reason -> '<until_ms>' (the next probe)
# ARGV 'ok': op dest now_ms window_end_ms -> ends the hold; queue jobs due before window_end are due now
LUA_HOLD = r"""
local op, dest, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local raw = redis.call('HGET', KEYS[1], dest)
local h = raw and cjson.decode(raw)
if op == 'ok' then
  if not h then return 0 end
  redis.call('HDEL', KEYS[1], dest)
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. (now / 1000), tonumber(ARGV[4]) / 1000)
  for _, id in ipairs(due) do redis.call('ZADD', KEYS[2], 'XX', now / 1000, id) end
  return #due
elseif op == 'check' or op == 'probe' then
  if not h then return 'open' end
  if now < h['until'] then return string.format('%d', h['until']) end
  if op == 'check' then return 'due' end
  h['until'] = tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], dest, cjson.encode(h))
  return 'probe'
elseif op == 'fail' then
  local base, cap, ra = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  if not h then h = {since = now, failures = 0} end
  local delay = math.min(math.max(now - h['since'], base), cap)
  delay = math.max(delay, math.min(ra, cap))
  h['until'] = now + delay
  h['failures'] = h['failures'] + 1
  h['reason'] = ARGV[7]
  h['last'] = now
  redis.call('HSET', KEYS[1], dest, cjson.encode(h))
  return string.format('%d', h['until'])
end
return redis.error_reply('unknown op ' .. tostring(op))
"""


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class Markers:
    """The sent markers of messages, by idempotency key."""

    def __init__(self, r: redis.Redis, *, lease: float, ttl: int) -> None:
        self.r = r
        self.lease_ms = int(lease * 1000)
        self.ttl = ttl
        self._script = r.register_script(LUA_MARKER)

    def claim(self, items: Sequence[tuple[str, bool]], token: str, live: Iterable[str]) -> list[str]:
        """For each (message key, may take a dead marker): ``go``, ``busy`` or ``done:<state>``; one round trip."""
        live_args = list(live)
        pipe = self.r.pipeline(transaction=False)
        for key, allow_dead in items:
            args = ["claim", token, self.lease_ms, "1" if allow_dead else "0", *live_args]
            self._script(keys=[keys.sent(key)], args=args, client=pipe)
        return [str(x) for x in pipe.execute()]

    def release(self, key: str, token: str, pipe: redis.client.Pipeline) -> None:
        self._script(keys=[keys.sent(key)], args=["release", token], client=pipe)

    def set(self, key: str, token: str, state: str, pipe: redis.client.Pipeline) -> None:
        self._script(keys=[keys.sent(key)], args=["set", token, state, self.ttl], client=pipe)


class Holds:
    """Receivers that fail as a whole, shared by every notifier (see the module docstring)."""

    def __init__(self, r: redis.Redis, *, base: float, cap: float) -> None:
        self.r = r
        self.base = base
        self.cap = cap
        self._script = r.register_script(LUA_HOLD)

    def _call(self, args: list[str | int], client: Any = None) -> Any:
        return self._script(keys=[keys.notify_holds(), keys.notify_queue()], args=args, client=client)

    def check(self, dests: Iterable[str], now: float) -> dict[str, str | float]:
        """Per destination: ``open``, ``due`` (held, but a probe may go now), or the time it is held until."""
        todo = list(dests)
        if not todo:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for dest in todo:
            self._call(["check", dest, _ms(now)], pipe)
        return {dest: _state(reply) for dest, reply in zip(todo, pipe.execute(), strict=True)}

    def probe(self, dest: str, now: float, lease: float) -> str | float:
        """Take the probe of a ``due`` destination (held ``lease`` more seconds meanwhile): ``probe``, or
        the time it is held until (another notifier probes it), or ``open`` (the hold ended)."""
        return _state(self._call(["probe", dest, _ms(now), _ms(now + lease)]))

    def fail(self, dest: str, now: float, reason: str, retry_after: float = 0.0) -> float:
        """Record a failure of ``dest`` as a whole; returns when it may be tried next."""
        args: list[str | int] = ["fail", dest, _ms(now), _ms(self.base), _ms(self.cap), _ms(retry_after), reason[:300]]
        return int(self._call(args)) / 1000

    def ok(self, dest: str, now: float, window: float) -> int:
        """End the hold of ``dest``: what waits in the queue for up to ``window`` more seconds is due now."""
        return int(self._call(["ok", dest, _ms(now), _ms(now + window)]))


def _state(reply: Any) -> str | float:
    text = str(reply)
    return text if text in (OPEN, DUE, PROBE) else int(text) / 1000


class Gates:
    """The receivers' hold states within one batch: one probe per held receiver, the others wait for it.

    The probe is taken only when a message is about to be attempted (``probe``), so a batch whose
    messages all turn out moot does not hold the receiver for a probe that never runs.
    """

    def __init__(self, states: dict[str, str | float], timeout: float, probe: Callable[[str], str | float]) -> None:
        self.states = dict(states)
        self.timeout = timeout
        self._probe = probe
        self._probing: set[str] = set()
        self._cond = threading.Condition()

    def enter(self, dest: str) -> str | float:
        """``open`` or ``probe``: attempt (as the probe); a float: held until then, do not attempt."""
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                state = self.states.get(dest, OPEN)
                if state == DUE and dest not in self._probing:
                    self.states[dest] = state = self._probe(dest)
                    if state == PROBE:
                        self._probing.add(dest)
                        return PROBE
                if state not in (DUE, PROBE):
                    return state
                if not self._cond.wait(max(0.0, deadline - time.monotonic())):
                    return time.time() + self.timeout

    def resolve(self, dest: str, state: str | float) -> None:
        """The probe's outcome: ``open``, or held until a time."""
        with self._cond:
            self.states[dest] = state
            self._probing.discard(dest)
            self._cond.notify_all()
