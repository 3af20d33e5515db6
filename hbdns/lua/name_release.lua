-- Release names from the global name index (keys.names): each one only while it still maps to the
-- given account (hbdns.provision_names.release), so a name another account claimed meanwhile stays
-- that account's. The last step of taking names away, after the shard stopped confirming them
-- (keys.shard_names).
--
-- KEYS: names
-- ARGV: per name: name id
-- Returns how many were released.
local names = KEYS[1]
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', names, ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', names, ARGV[i])
    n = n + 1
  end
end
return n
