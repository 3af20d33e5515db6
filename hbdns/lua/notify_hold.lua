-- A receiver that fails as a whole: its hold, its probes, its end (notifier/leases.py).
-- KEYS: holds hash, queue ; times in ms in the hold (cjson keeps 14 digits), in s in the queue
-- ARGV 'check': op dest now_ms -> 'open' | 'due' (a probe may go now) | '<until_ms>' (held)
-- ARGV 'probe': op dest now_ms probe_until_ms -> 'probe' (you probe; held until probe_until) | '<until_ms>'
-- ARGV 'fail': op dest now_ms base_ms cap_ms retry_after_ms reason -> '<until_ms>' (the next probe)
-- ARGV 'ok': op dest now_ms window_end_ms -> ends the hold; queue jobs due before window_end are due now
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
