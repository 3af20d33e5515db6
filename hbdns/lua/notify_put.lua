-- A job of the notification queue, new or scheduled again by its owner (notifier/queue.py).
-- KEYS: queue jobs since inflight ; ARGV: id job_json due first token
--   -> 1, or 0 when another owner holds the job now (it was taken over: leave it to them)
local owner = redis.call('HGET', KEYS[4], ARGV[1])
if owner and owner ~= ARGV[5] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
