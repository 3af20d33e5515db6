-- A message's sent marker: who may send it now, and what became of it (notifier/leases.py).
-- KEYS: sent marker
-- ARGV 'claim': op token lease_ms allow_dead live_token... -> 'go' | 'busy' | 'done:<state>'
-- ARGV 'release': op token -> 1 if the marker was ours and is gone
-- ARGV 'set': op token state ttl_s -> 1 ('sent' always wins: a delivery is a fact; no state replaces it)
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
