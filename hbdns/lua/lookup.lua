-- The DNS backend's lookup: account data and liveness for a batch of candidate (name, id) pairs,
-- each confirmed in its account's shard and read in one atomic step, so the live/neutral decision
-- is exact at the moment the alive key expires. Read-only, so it keeps working while Redis refuses
-- writes at maxmemory.
--
-- KEYS: per candidate: shard_names acct alive4 alive6 alive_legacy (shard_names of the id's shard,
--   the others of the id; hbdns/keys.py). On Redis Cluster the caller passes candidates of one
--   shard per call (one slot); on a standalone Redis one call may span shards.
-- ARGV: per candidate: name id
--   The caller found the id in the global name index (keys.names, the discovery) or kept it from an
--   earlier answer; the shard's own index (keys.shard_names) decides here whether it holds.
-- Returns per candidate: false (the shard holds no such name: the name is gone or in another shard,
--   ask the global index again), the id the shard holds for the name as a string (another account
--   of the same shard has it now: ask again with that id), or the account's fields in
--   pdns_backend.answers.ACCOUNT_FIELDS order followed by which families are live: 1 (IPv4) + 2
--   (IPv6), from the family keys and the legacy key (live for both, while older writers run; see
--   hbdns/keys.py); then the id, and per family (IPv4, IPv6) how many ms it stays live (PTTL of its
--   key or the legacy key, the longer; -1: not live, or no expiry). The last three are for the
--   backend's answer cache (pdns_backend/answer_cache.py): Redis reports writes to the keys read
--   here, and a cached live answer is not served past the moment its family's time is up.
-- ms a family stays live from the PTTLs (-2: missing, -1: no expiry) of its key and the legacy key
local function life(t, tl)
  if t == -1 or tl == -1 then return -1 end
  if t > tl then return t end
  if tl >= 0 then return tl end
  return -1
end

local out = {}
for i = 1, #ARGV / 2 do
  local name, cand = ARGV[2 * i - 1], ARGV[2 * i]
  local k = 5 * i - 4
  local id = redis.call('HGET', KEYS[k], name)
  if id ~= cand then
    out[i] = id or false
  else
    local a = redis.call('HMGET', KEYS[k + 1], 'plan', 'fqdn', 'ipv4', 'ipv6', 'neutral_ipv4', 'neutral_ipv6', 'mx')
    local t4, t6, tl = redis.call('PTTL', KEYS[k + 2]), redis.call('PTTL', KEYS[k + 3]), redis.call('PTTL', KEYS[k + 4])
    local mask = 0
    if t4 ~= -2 or tl ~= -2 then mask = 1 end
    if t6 ~= -2 or tl ~= -2 then mask = mask + 2 end
    a[#a + 1] = mask
    a[#a + 1] = id
    a[#a + 1] = life(t4, tl)
    a[#a + 1] = life(t6, tl)
    out[i] = a
  end
end
return out
