-- Neutralize one account if its deadline passed and its alive key is gone; idempotent, so two
-- sweepers (or a sweeper and a keyspace hint) never record one transition twice: the deadline is
-- removed in the same step that records it.
-- KEYS: acct alive deadlines events log zone ; ARGV: id maxlen logcap
-- Returns {status, fqdn, aliases_json}, status none notdue alive gone already neutralized.
local acct, alive, dl, ev, log, zone = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, maxlen, logcap = ARGV[1], ARGV[2], ARGV[3]
local now, sec = clock()
local d = redis.call('ZSCORE', dl, id)
if not d then return {'none', '', ''} end
d = tonumber(d)
if d > now then return {'notdue', '', ''} end
local pttl = redis.call('PTTL', alive)
if pttl > 0 then
  redis.call('ZADD', dl, now + pttl, id)
  return {'alive', '', ''}
end
redis.call('ZREM', dl, id)
local cur = redis.call('HMGET', acct, 'fqdn', 'state', 'aliases')
if not cur[1] then return {'gone', '', ''} end
if cur[2] ~= 'live' then return {'already', cur[1], cur[3] or '[]'} end
redis.call('HSET', acct, 'state', 'neutral', 'since', string.format('%d', d))
emit(ev, log, maxlen, logcap, 'neutralized', id, cur[1], d, {'reason', 'missed', 'swept_at', now})
bump_serial(zone, sec)
return {'neutralized', cur[1], cur[3] or '[]'}
