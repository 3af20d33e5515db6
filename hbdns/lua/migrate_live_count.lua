-- hbdns migrate, step live_count: count the accounts whose recorded state is live into the
-- unsharded stats hash (field 'live'), which the transition scripts of that schema then keep
-- (lib.lua's state_moved), and which the step 'sharded' splits into the per-shard counts. One atomic
-- step: no beat can change a state between the count and its write. Safe to run again at any time:
-- it writes only when the stored count differs (e.g. after older writers ran beside newer ones), and
-- nothing at all on a database in the sharded schema (no unsharded account hash, no unsharded stats).
-- KEYS: stats acct_1 .. acct_n (every account's unsharded hash) ; ARGV: dry_run(1|0)
-- Returns {live, changed}: the count, and 1 when the stored one was absent or differed.
local n, seen = 0, 0
for i = 2, #KEYS do
  local state = redis.call('HGET', KEYS[i], 'state')
  if state then seen = seen + 1 end
  if state == 'live' then n = n + 1 end
end
local stored = redis.call('HGET', KEYS[1], 'live')
if seen == 0 and not stored then return {0, 0} end
local changed = 0
if stored ~= tostring(n) then changed = 1 end
if changed == 1 and ARGV[1] ~= '1' then redis.call('HSET', KEYS[1], 'live', tostring(n)) end
return {n, changed}
