-- A job of the notification queue removed (sent, moot) or dead-lettered, by its owner (notifier/queue.py).
-- KEYS: queue jobs since inflight dead dead_index dropped ; ARGV: id token [letter_json now cap]
--   -> 1 (removed), or 0 (another owner holds it now: it finds the sent marker and finishes it).
--   A letter is written either way: the owner that took over will not write one.
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
