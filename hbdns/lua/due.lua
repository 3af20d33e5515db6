-- The accounts whose deadline passed by Redis' clock (the sweeper's work list).
-- KEYS: deadlines ; ARGV: limit -> ids whose deadline <= TIME, oldest first
local now = clock()
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
