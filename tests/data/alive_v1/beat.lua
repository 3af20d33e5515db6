-- A batch of beats or dyndns2 updates (a single update is a batch of one), each checked and applied
-- in turn, the whole batch one atomic step. Called by hbdns.liveness (redis-py) and by the UDP
-- listener's hand-encoded EVALSHA (heartbeat_listener/redis_io.py); Liveness.beat_argv spells the
-- layout once.
--
-- KEYS: deadlines events zone_1 .. zone_m, then per beat: acct alive log
-- ARGV: max_skew_ms maxlen logcap source m zone_name_1 .. zone_name_m,
--       then per beat: id ipv4 ipv6 counter ttl_ms offline fp
--   The zones are those of the batch's accounts, each once per batch rather than once per beat.
--   counter: '' = no replay check (dyndns2 updates). offline: '1' neutralizes at once.
--   fp: the account's config fingerprint the caller authenticated with ('' = not checked); when it
--   differs from the stored one (key, plan or zone changed since the caller read them) nothing is
--   applied and the result is 'rekey'. An account whose zone is not among the batch's zones is
--   refused the same way (the caller's view of it is stale).
-- Returns per beat: 'ok' (accepted with the address(es) sent, DNS answer unchanged), 'rekey', or
--   {status, changed, old_ipv4, old_ipv6, fqdn, aliases_json}, status ok offline replay stale gone.
--
-- The fast path (live, same address) is HMGET, HSET, PEXPIRE, ZADD and the bare string 'ok': a
-- table reply per beat would cost Redis more than any one of those commands.

local dl, ev = KEYS[1], KEYS[2]
local skew, maxlen, logcap, source = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local nzones = tonumber(ARGV[5])
local zone_key = {}
for i = 1, nzones do zone_key[ARGV[5 + i]] = KEYS[2 + i] end
local now, sec = clock()
local nows = string.format('%d', now)

local function beat(acct, alive, log, id, ip4, ip6, counter, ttl, offline, fp)
  local cur = redis.call('HMGET', acct, 'fqdn', 'state', 'counter', 'ipv4', 'ipv6', 'fp', 'last_beat', 'zone')
  local fqdn = cur[1]
  if not fqdn then return {'gone', '0', '', '', '', ''} end
  if fp ~= '' and fp ~= cur[6] then return 'rekey' end
  local zone = zone_key[cur[8]]
  if not zone then return 'rekey' end
  local old4, old6 = cur[4] or '', cur[5] or ''
  if counter ~= '' then
    local c = tonumber(counter)
    local last = tonumber(cur[3] or '')  -- '0' (or absent) before the first beat
    if last and c <= last then
      return {'replay', '0', '', '', fqdn, redis.call('HGET', acct, 'aliases') or '[]'}
    end
    if math.abs(c - now) > skew then
      return {'stale', '0', '', '', fqdn, redis.call('HGET', acct, 'aliases') or '[]'}
    end
    redis.call('HSET', acct, 'counter', counter, 'last_beat', nows)
  else
    redis.call('HSET', acct, 'last_beat', nows)
  end
  local state = cur[2] or 'neutral'
  local was_alive
  if offline == '1' then
    was_alive = redis.call('DEL', alive) == 1
  else
    -- PEXPIRE answers whether the key was there; only a missing key needs the SET
    was_alive = redis.call('PEXPIRE', alive, ttl) == 1
    if not was_alive then redis.call('SET', alive, '1', 'PX', ttl) end
  end
  -- bare 'ok' only when an address was sent (the caller knows it); a keepalive without one
  -- (dyndns2 'preserve') gets the stored addresses back in the full answer
  local fast = state == 'live' and was_alive and offline ~= '1' and (ip4 ~= '' or ip6 ~= '')
               and (ip4 == '' or ip4 == old4) and (ip6 == '' or ip6 == old6)
  if fast then
    redis.call('ZADD', dl, now + ttl, id)
    return 'ok'
  end
  -- something changes (or an offline beat): the rest of the record is needed
  local more = redis.call('HMGET', acct, 'since', 'aliases')
  local since, aliases = tonumber(more[1] or '0') or 0, more[2] or '[]'
  if state == 'live' and not was_alive then
    -- expired but not yet swept: record the outage that really happened, at its deadline
    local d = tonumber(redis.call('ZSCORE', dl, id) or now)
    redis.call('HSET', acct, 'state', 'neutral', 'since', string.format('%d', d))
    emit(ev, log, maxlen, logcap, 'neutralized', id, fqdn, d, {'reason', 'missed'})
    state, since = 'neutral', d
  end
  local changed = 0
  if offline == '1' then
    redis.call('ZREM', dl, id)
    if state == 'live' then
      redis.call('HSET', acct, 'state', 'neutral', 'since', nows)
      emit(ev, log, maxlen, logcap, 'neutralized', id, fqdn, now, {'reason', 'offline', 'source', source})
      changed = 1
      bump_serial(zone, sec)
    end
    return {'offline', tostring(changed), old4, old6, fqdn, aliases}
  end
  redis.call('ZADD', dl, now + ttl, id)
  if state ~= 'live' then
    redis.call('HSET', acct, 'state', 'live', 'since', nows)
    emit(ev, log, maxlen, logcap, 'recovered', id, fqdn, now,
         {'neutral_since', since, 'duration_ms', now - since, 'source', source,
          'first', (tonumber(cur[7] or '0') or 0) > 0 and '0' or '1'})
    changed = 1
  end
  if ip4 ~= '' and ip4 ~= old4 then
    redis.call('HSET', acct, 'ipv4', ip4)
    emit(ev, log, maxlen, logcap, 'ip_changed', id, fqdn, now,
         {'family', '4', 'old', old4, 'new', ip4, 'source', source})
    changed = 1
  end
  if ip6 ~= '' and ip6 ~= old6 then
    redis.call('HSET', acct, 'ipv6', ip6)
    emit(ev, log, maxlen, logcap, 'ip_changed', id, fqdn, now,
         {'family', '6', 'old', old6, 'new', ip6, 'source', source})
    changed = 1
  end
  if changed == 1 then bump_serial(zone, sec) end
  return {'ok', tostring(changed), old4, old6, fqdn, aliases}
end

local out = {}
local k0, a0 = 2 + nzones, 5 + nzones
for i = 0, (#KEYS - k0) / 3 - 1 do
  local k, a = k0 + 1 + 3 * i, a0 + 1 + 7 * i
  out[i + 1] = beat(KEYS[k], KEYS[k + 1], KEYS[k + 2], ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
                    tonumber(ARGV[a + 4]), ARGV[a + 5], ARGV[a + 6])
end
return out
