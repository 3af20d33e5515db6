-- How far one outage's offline message got, per recipient: may it, or its recovery, go now (notifier/outage.py).
-- KEYS: outage hash of the account, the account hash
-- ARGV: op field outage_ms token now lease_until merge_if_absent live_token...
-- op 'offline' -> 'go' (now sending by token) | 'moot' (closed) | 'done' (sent) | 'busy'
-- op 'recovery'-> 'plain' | 'merged' (closed now) | 'absent' (nothing attempted, SMS) | 'busy'
-- op 'sent'/'queued'/'dead' (the offline message's outcome) -> 'ok', or 'lost' if token no longer holds it
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
