-- Due jobs of the notification queue, leased to one owner (notifier/queue.py).
-- KEYS: queue jobs inflight ; ARGV: now lease_until limit token -> {id, job json, id, job json, ...}
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
