-- The DNS backend's lookup: account data and liveness for a batch of names, read in one atomic
-- step, so the live/neutral decision is exact at the moment the alive key expires. Read-only, so it
-- keeps working while Redis refuses writes at maxmemory.
--
-- KEYS: names, then for each name that has a candidate id: acct alive (of that id)
-- ARGV: per name: name id ('' = no candidate: no keys passed for it)
--   The caller keeps name -> id from earlier answers; the name index decides here whether it holds.
-- Returns per name: false (no account has the name), the name's current id as a string (the
--   candidate was missing or stale: ask again with it), or the account's fields in
--   pdns_backend.answers.ACCOUNT_FIELDS order followed by 1/0 for its alive key, the id, and the
--   alive key's remaining life in ms (PTTL; -1: not live or no expiry). The last two are for the
--   backend's answer cache (pdns_backend/answer_cache.py): the keys read here are tracked for
--   invalidation, and a cached live answer is not served past that moment.
local out = {}
local k = 1
for i = 1, #ARGV, 2 do
  local name, cand = ARGV[i], ARGV[i + 1]
  local id = redis.call('HGET', KEYS[1], name)
  if cand == '' then
    out[#out + 1] = id or false
  else
    local acct, alive = KEYS[k + 1], KEYS[k + 2]
    k = k + 2
    if id ~= cand then
      out[#out + 1] = id or false
    else
      local a = redis.call('HMGET', acct, 'plan', 'fqdn', 'ipv4', 'ipv6', 'neutral_ipv4', 'neutral_ipv6', 'mx')
      local ttl = redis.call('PTTL', alive)
      a[#a + 1] = ttl == -2 and 0 or 1
      a[#a + 1] = id
      a[#a + 1] = ttl >= 0 and ttl or -1
      out[#out + 1] = a
    end
  end
end
return out
