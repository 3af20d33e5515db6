-- A claimed schedule member is done: remove it, unless it was scheduled anew since the claim (its
-- score is no longer the claimed one), so a newer request is never lost.
-- KEYS: zset ; ARGV: member claimed_score -> 1 removed, 0 kept
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
