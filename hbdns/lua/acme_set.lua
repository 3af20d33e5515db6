-- One ACME DNS-01 value at a name's challenge (hbdns.acme.set_value), checked and written in one
-- step: the credential must still be the one the caller verified, and the name still the account's.
--
-- KEYS: names cred txt
-- ARGV: name account_id key_digest value ttl_ms max_values
-- Returns the number of values kept, -1 (credential revoked or replaced), -2 (name not the
--   account's any more). The newest max_values values are kept (acme-dns keeps two), each scored by
--   its expiry on Redis' clock; the key expires with its newest value.
local names, cred, txt = KEYS[1], KEYS[2], KEYS[3]
local name, id, digest, value = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ttl, keep = tonumber(ARGV[5]), tonumber(ARGV[6])
local c = redis.call('HMGET', cred, 'sha256', 'account', 'name')
if c[1] ~= digest or c[2] ~= id or c[3] ~= name then return -1 end
if redis.call('HGET', names, name) ~= id then return -2 end
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
