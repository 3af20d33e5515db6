-- The DNS backend's lookup: account data and liveness for a batch of names, read in one atomic
-- step, so the live/neutral decision is exact at the moment the alive key expires. Read-only, so it
-- keeps working while Redis refuses writes at maxmemory.
--
-- KEYS: names, then for each name that has a candidate id: acct alive4 alive6 alive_legacy (of that id)
-- ARGV: per name: name id ('' = no candidate: no keys passed for it)
--   The caller keeps name -> id from earlier answers; the name index decides here whether it holds.
-- Returns per name: false (no account has the name), the name's current id as a string (the
--   candidate was missing or stale: ask again with it), or the account's fields in
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
local k = 1
for i = 1, #ARGV, 2 do
  local name, cand = ARGV[i], ARGV[i + 1]
  local id = redis.call('HGET', KEYS[1], name)
  if cand == '' then
    out[#out + 1] = id or false
  else
    local acct = KEYS[k + 1]
    local up = k + 2
    k = k + 4
    if id ~= cand then
      out[#out + 1] = id or false
    else
      local a = redis.call('HMGET', acct, 'plan', 'fqdn', 'ipv4', 'ipv6', 'neutral_ipv4', 'neutral_ipv6', 'mx')
      local t4, t6, tl = redis.call('PTTL', KEYS[up]), redis.call('PTTL', KEYS[up + 1]), redis.call('PTTL', KEYS[up + 2])
      local mask = 0
      if t4 ~= -2 or tl ~= -2 then mask = 1 end
      if t6 ~= -2 or tl ~= -2 then mask = mask + 2 end
      a[#a + 1] = mask
      a[#a + 1] = id
      a[#a + 1] = life(t4, tl)
      a[#a + 1] = life(t6, tl)
      out[#out + 1] = a
    end
  end
end
return out
