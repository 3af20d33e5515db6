"""Merging the two messages of one outage when the first could not go out in time.

Per recipient of an account (a *thread*: channel + recipient digest) ``keys.notify_outage`` keeps
how far the latest outage's "offline" message got: ``<outage start ms> sending <owner>@<until>``,
``queued``, ``sent``, ``dead`` or ``closed`` (it will never be sent). Both messages of an outage
carry its start (``Message.outage_ms``: the ``neutralized`` event's time, the ``recovered`` event's
``neutral_since``), and each asks the script below before it is sent, atomically with the account's
state (same slot ``{a:<id>}``):

- the offline message goes only while that very outage is still open and nothing closed it; once
  the account is back (or a later outage began) it is moot and never sent, whichever notifier
  holds it and however late its stream entry is read;
- the recovery goes *plain* ("back online after ...") only if the offline message was sent; while
  it is being sent the recovery waits for the outcome; otherwise the recovery goes *merged* ("was
  offline from .. to .., 4 min 38 s") and closes the thread, so the offline message can no longer
  go out after it. For SMS, a recovery whose offline SMS was never attempted (a blip shorter than
  ``sms_min_outage``, or one that ended in quiet hours) sends nothing at all.

So a customer never gets "offline" after "back online", also with several notifier processes, a
crash between any two steps, or a channel down for hours. The decision is made when the recovery
is attempted and depends only on the thread's state, which moves forward only: a retry of the
recovery decides the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from hbdns import keys
from notifier.messages import SMS, Message

GO, MOOT, DONE, BUSY = "go", "moot", "done", "busy"
PLAIN, MERGED, ABSENT = "plain", "merged", "absent"

# --- Lua -------------------------------------------------------------------------------------------

# KEYS: outage hash of the account, the account hash
# ARGV: op field outage_ms token now lease_until merge_if_absent live_token...
# op 'offline' -> 'go' (now sending by token) | 'moot' (closed) | 'done' (sent) | 'busy'
# op 'recovery'-> 'plain' | 'merged' (closed now) | 'absent' (nothing attempted, SMS) | 'busy'
# op 'sent'/'queued'/'dead' (the offline message's outcome) -> 'ok', or 'lost' if token no longer holds it
LUA_OUTAGE = r"""
local h, acct = KEYS[1], KEYS[2]
local op, field, o, token = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now, lease_until = tonumber(ARGV[5]), ARGV[6]
local live = {}
for i = 8, #ARGV do live[ARGV[i]] = true end
local cur = redis.call('HGET', h, field)
local co, cst, cown, cuntil
if cur then
  local a, b, c = string.match(cur, '^(%d+) (%a+) ?(.*)$')
  co, cst = tonumber(a), b
  if c and c ~= '' then
    cown, cuntil = string.match(c, '^(.*)@([%d.]+)$')
    cuntil = tonumber(cuntil)
  end
end
local function put(state, extra)
  local v = ARGV[3] .. ' ' .. state
  if extra then v = v .. ' ' .. extra end
  redis.call('HSET', h, field, v)
end
local this = co == o
local busy = this and cst == 'sending' and cown and live[cown] and cuntil and cuntil > now
if op == 'offline' then
  if co and co > o then return 'moot' end
  if this and cst == 'closed' then return 'moot' end
  if this and cst == 'sent' then return 'done' end
  if busy then return 'busy' end
  local st = redis.call('HMGET', acct, 'state', 'since')
  if st[1] ~= 'neutral' or tonumber(st[2] or '') ~= o then
    put('closed')
    return 'moot'
  end
  put('sending', token .. '@' .. lease_until)
  return 'go'
elseif op == 'recovery' then
  if co and co > o then return 'merged' end
  if this and cst == 'sent' then return 'plain' end
  if this and cst == 'closed' then return 'merged' end
  if busy then return 'busy' end
  if not this and ARGV[7] ~= '1' then return 'absent' end
  put('closed')
  return 'merged'
else
  if not (this and cst == 'sending' and cown == token) then return 'lost' end
  put(op)
  return 'ok'
end
"""


class Outages:
    def __init__(self, r: redis.Redis, *, lease: float) -> None:
        self.r = r
        self.lease = lease
        self._script = r.register_script(LUA_OUTAGE)

    def ask(self, message: Message, token: str, now: float, live: Iterable[str]) -> str:
        """Whether and how ``message`` (one with a ``role``) may go now: see the script's comment for the answers."""
        return self.ask_many([message], token, now, live)[0]

    def ask_many(self, messages: Sequence[Message], token: str, now: float, live: Iterable[str]) -> list[str]:
        """:meth:`ask` for messages of different threads, in one round trip."""
        live_args = list(live)
        pipe = self.r.pipeline(transaction=False)
        for m in messages:
            args = [m.role, m.thread, str(m.outage_ms), token, repr(now), repr(now + self.lease)]
            args += ["0" if m.channel == SMS else "1", *live_args]
            self._script(keys=[keys.notify_outage(m.account), keys.account(m.account)], args=args, client=pipe)
        return [str(x) for x in pipe.execute()] if messages else []

    def settle(self, message: Message, outcome: str, token: str, pipe: redis.client.Pipeline) -> None:
        """Record the offline message's outcome (``sent``, ``queued`` or ``dead``) in ``pipe``."""
        args = [outcome, message.thread, str(message.outage_ms), token, "0", "0", "0"]
        self._script(keys=[keys.notify_outage(message.account), keys.account(message.account)], args=args, client=pipe)
