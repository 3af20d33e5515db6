-- Due deferred-SMS jobs, leased so two notifiers don't both decide one (notifier/sms.py).
-- KEYS: zset ; ARGV: now lease_until limit -> members due by now, pushed to lease_until (a claim)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', ARGV[2], m) end
return due
