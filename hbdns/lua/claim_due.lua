-- Claim the due members of a schedule zset (member -> due time, Unix ms): each is pushed to
-- now + lease, so two processes never take one at once, and one whose taker died is due again when
-- its lease ends. Redis' clock decides what is due.
-- KEYS: zset ; ARGV: lease_ms limit -> {member, claimed_score, member, claimed_score, ...}
local now = clock()
local until_ms = now + tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, m)
  out[#out + 1] = m
  out[#out + 1] = string.format('%d', until_ms)
end
return out
