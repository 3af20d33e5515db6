-- hbdns migrate, step alive_per_family: one account from the single alive key of versions before
-- per-family liveness to the per-family layout; idempotent, safe while services run (one atomic
-- step per account, and nothing an older process still reads is removed: the legacy key expires on
-- its own).
-- KEYS: acct alive4 alive6 alive_legacy deadlines ; ARGV: id dry_run(1|0)
-- - the legacy key's remaining TTL onto the alive key of each family with a stored address (unless
--   that key already lives longer: a new writer refreshed it);
-- - the plain deadline member '<id>' onto '<id>:4' / '<id>:6' (GT: a later deadline is kept) while
--   the legacy key still carries it; a due one without the key is left to the sweeper, which reads
--   it as both families and records the outage once;
-- - the 'live' field (the families recorded live), derived from 'state' and the stored addresses.
-- Returns 1 when the account had something to convert (with dry_run: would have), else 0.
local acct, dl, legacy = KEYS[1], KEYS[5], KEYS[4]
local alive = {['4'] = KEYS[2], ['6'] = KEYS[3]}
local id, dry = ARGV[1], ARGV[2] == '1'
local cur = redis.call('HMGET', acct, 'fqdn', 'state', 'ipv4', 'ipv6', 'live')
if not cur[1] then return 0 end
local stored = ''
if cur[3] and cur[3] ~= '' then stored = '4' end
if cur[4] and cur[4] ~= '' then stored = stored .. '6' end
local work = 0
local pttl = redis.call('PTTL', legacy)
if pttl > 0 then
  for _, f in ipairs({'4', '6'}) do
    if string.find(stored, f, 1, true) and redis.call('PTTL', alive[f]) < pttl then
      work = 1
      if not dry then redis.call('SET', alive[f], '1', 'PX', pttl) end
    end
  end
  local d = redis.call('ZSCORE', dl, id)
  if d then
    work = 1
    if not dry then
      for _, f in ipairs({'4', '6'}) do
        if string.find(stored, f, 1, true) then redis.call('ZADD', dl, 'GT', d, id .. ':' .. f) end
      end
      redis.call('ZREM', dl, id)
    end
  end
end
if not cur[5] then
  work = 1
  if not dry then redis.call('HSET', acct, 'live', recorded_live(cur[2], cur[5], cur[3], cur[4])) end
end
return work
