-- Claim names in the global name index (keys.names), all or nothing (hbdns.provision_names.claim).
-- The first of the steps that give accounts their names without a transaction across Redis Cluster
-- slots: claim here, confirm in each account's shard (keys.shard_names), then the zone's and the
-- global sets. The DNS lookup answers a name only when the shard confirms it, so a claim alone
-- answers nothing.
--
-- KEYS: names
-- ARGV: per name: name id replace (replace: '' or the id of a holder the caller found stale, one
--   whose account neither confirms the name nor is claiming it, so the name may be taken from it)
-- Returns {} when every name now maps to its id (a name already mapping to it counts as claimed),
--   else the taken ones as a flat {name, holder id, ...} and nothing is written.
local names = KEYS[1]
local taken = {}
for i = 1, #ARGV, 3 do
  local cur = redis.call('HGET', names, ARGV[i])
  if cur and cur ~= ARGV[i + 1] and cur ~= ARGV[i + 2] then
    taken[#taken + 1] = ARGV[i]
    taken[#taken + 1] = cur
  end
end
if #taken > 0 then return taken end
for i = 1, #ARGV, 3 do
  redis.call('HSET', names, ARGV[i], ARGV[i + 1])
end
return taken
