-- One ACME DNS-01 value at a name's challenge (hbdns.acme.set_value), written in one step on the
-- challenge key alone (its own slot, {n:<name>}).
--
-- Who may write it is checked by the caller around this call, not here: the credential (a global
-- key) and the name's owner (the account's shard, keys.shard_names) live in other Redis Cluster
-- slots, and no script may touch two slots. The caller checks both before, and again after the
-- write, removing the value it wrote when either changed meanwhile (hbdns/acme.py), so a value never
-- outlives its right to exist by more than that round trip. What stays atomic here is the value
-- set's own bookkeeping: expired values out, the newest max_values kept, the key's expiry.
--
-- KEYS: txt
-- ARGV: value ttl_ms max_values
-- Returns the number of values kept. Each value is scored by its expiry on Redis' clock; the key
-- expires with its newest value.
local txt = KEYS[1]
local value, ttl, keep = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = clock()
redis.call('ZREMRANGEBYSCORE', txt, '-inf', string.format('%d', now))
redis.call('ZADD', txt, string.format('%d', now + ttl), value)
local n = redis.call('ZCARD', txt)
if n > keep then
  redis.call('ZREMRANGEBYRANK', txt, 0, n - keep - 1)
  n = keep
end
local newest = redis.call('ZRANGE', txt, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', txt, newest[2])
return n
