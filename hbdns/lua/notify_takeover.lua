-- The claimed jobs of dead owners made due at once (notifier/queue.py).
-- KEYS: queue inflight ; ARGV: now, then the live owner tokens -> how many jobs were made due
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
