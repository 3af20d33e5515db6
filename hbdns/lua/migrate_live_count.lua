-- hbdns migrate, step live_count: count the accounts whose recorded state is live into keys.stats
-- (field 'live'), which the transition scripts then keep (lib.lua's state_moved). One atomic step:
-- no beat can change a state between the count and its write. Safe to run again at any time: it
-- writes only when the stored count differs (e.g. after older writers ran beside newer ones).
-- KEYS: stats acct_1 .. acct_n (every account's hash) ; ARGV: dry_run(1|0)
-- Returns {live, changed}: the count, and 1 when the stored one was absent or differed.
local n = 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'state') == 'live' then n = n + 1 end
end
local stored = redis.call('HGET', KEYS[1], 'live')
local changed = 0
if stored ~= tostring(n) then changed = 1 end
if changed == 1 and ARGV[1] ~= '1' then redis.call('HSET', KEYS[1], 'live', tostring(n)) end
return {n, changed}
