-- One due deadline member -> the family it stands for neutralized, if its deadline passed and its
-- alive key is gone; idempotent, so two sweepers (or a sweeper and a keyspace hint) never record one
-- transition twice: the member is removed in the same step that records it.
-- KEYS: acct alive4 alive6 alive_legacy deadlines events log serials stats ingest, every one of the
--   account's shard (keys.py: one slot)
-- ARGV: id family maxlen logcap window_ms apex
--   family: '4' or '6' (member '<id>:<family>'), or '' for the plain '<id>' member of older writers,
--   which stands for both families. window_ms: the account's plan window (misses x interval + grace).
--   apex: the account's zone, whose change count in the shard's serials hash goes up by one.
-- Records 'family_lost' while another family stays live, 'neutralized' when none is left (its
-- 'family' field: the family or families that went last).
-- A deadline whose window overlaps an ingest outage (lib.lua ingest_hold) is held instead: the
-- member moves to when ingest will have been healthy for a whole window, the deadline it had is kept
-- in the account's 'held<family>' field (the transition is recorded at that time, if it comes to
-- one; a beat meanwhile clears it).
-- Returns {status, fqdn, aliases_json}, status none notdue alive held gone already neutralized lost.
local acct, a4, a6, legacy, dl, ev, log, serials = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local ingest = KEYS[10]
local id, fam, maxlen, logcap, window, apex = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
stats_key = KEYS[9]
local alive = {['4'] = a4, ['6'] = a6}
local now = clock()
local member = id
if fam ~= '' then member = id .. ':' .. fam end
local d = redis.call('ZSCORE', dl, member)
if not d then return {'none', '', ''} end
d = tonumber(d)
if d > now then return {'notdue', '', ''} end
local pttl = redis.call('PTTL', legacy)
if fam ~= '' then pttl = math.max(pttl, redis.call('PTTL', alive[fam])) end
local held = 'held' .. fam
if pttl > 0 then
  redis.call('ZADD', dl, now + pttl, member)
  redis.call('HDEL', acct, held)
  return {'alive', '', ''}
end
local again = ingest_hold(ingest, d, window, now)
if again > 0 and redis.call('EXISTS', acct) == 1 then
  redis.call('ZADD', dl, again, member)
  redis.call('HSETNX', acct, held, string.format('%d', d))
  return {'held', '', ''}
end
redis.call('ZREM', dl, member)
local cur = redis.call('HMGET', acct, 'fqdn', 'state', 'aliases', 'live', 'ipv4', 'ipv6', held)
if not cur[1] then return {'gone', '', ''} end
d = tonumber(cur[7] or '') or d  -- held: the deadline it had
redis.call('HDEL', acct, held)
local live = recorded_live(cur[2], cur[4], cur[5], cur[6])
local gone = ''
for _, f in ipairs({'4', '6'}) do
  if string.find(live, f, 1, true) and (fam == f or (fam == '' and redis.call('EXISTS', alive[f]) == 0)) then
    gone = gone .. f
    live = (string.gsub(live, f, ''))
    redis.call('HSET', acct, 'lost' .. f, string.format('%d', d))
    if fam == '' then redis.call('ZREM', dl, id .. ':' .. f) end
  end
end
if gone == '' and not (cur[2] == 'live' and live == '') then  -- (live with no family: an odd old record)
  if cur[4] == nil then redis.call('HSET', acct, 'live', live) end
  return {'already', cur[1], cur[3] or '[]'}
end
redis.call('HSET', acct, 'live', live)
local status = 'lost'
if live == '' then
  redis.call('HSET', acct, 'state', 'neutral', 'since', string.format('%d', d))
  state_moved(cur[2], 'neutral')
  emit(ev, log, maxlen, logcap, 'neutralized', id, cur[1], d,
       {'reason', 'missed', 'family', family_list(gone), 'swept_at', now})
  status = 'neutralized'
else
  emit(ev, log, maxlen, logcap, 'family_lost', id, cur[1], d,
       {'reason', 'missed', 'family', family_list(gone), 'swept_at', now})
end
if apex and apex ~= '' then bump_serial(serials, apex) end
return {status, cur[1], cur[3] or '[]'}
