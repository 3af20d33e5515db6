-- A batch of beats or dyndns2 updates (a single update is a batch of one), each checked and applied
-- in turn, the whole batch one atomic step. Called by hbdns.liveness (redis-py) and by the UDP
-- listener's hand-encoded EVALSHA (heartbeat_listener/redis_io.py); Liveness.beat_argv spells the
-- layout once.
--
-- KEYS: deadlines events stats ingest zone_1 .. zone_m, then per beat: acct alive4 alive6 alive_legacy
--       log
-- ARGV: max_skew_ms maxlen logcap source m zone_name_1 .. zone_name_m,
--       then per beat: id ipv4 ipv6 counter ttl_ms offline fp fams age_ms
--   The zones are those of the batch's accounts, each once per batch rather than once per beat.
--   counter: '' = no replay check (dyndns2 updates). offline: '1' neutralizes at once (every family).
--   fp: the account's config fingerprint the caller authenticated with ('' = not checked); when it
--   differs from the stored one (key, plan or zone changed since the caller read them) nothing is
--   applied and the result is 'rekey'. An account whose zone is not among the batch's zones is
--   refused the same way (the caller's view of it is stale).
--   fams: the address families this beat keeps alive ('4', '6', '46'); '' = those of the addresses
--   sent (a beat: the family it arrived over), or with none sent those with a stored address.
--   age_ms: how long ago the listener received the beat ('' = just now): a beat held while Redis
--   was away and written on reconnect lives that much shorter, and counts from when it came.
-- Returns per beat: 'ok' (accepted with the address(es) sent, DNS answer unchanged), 'rekey', or
--   {status, changed, old_ipv4, old_ipv6, fqdn, aliases_json}, status ok offline replay stale gone.
--
-- Liveness is per family: the family's alive key (TTL = the plan's expiry) and its deadline member
-- '<id>:<family>'. The hash's 'live' field records the families recorded live; 'state' is 'live'
-- while any is. First family back: 'recovered'; another one back: 'family_back'; a family found
-- expired before the sweeper got to it is recorded first, at its deadline ('family_lost', or
-- 'neutralized' for the last one). The legacy alive key of older writers counts for both families.
-- Not an outage, though, when the beat came before that deadline and was only written late, or when
-- the deadline is one of our own outages (held by the sweeper, or its window overlaps an ingest
-- outage: lib.lua ingest_hold): the family simply stays live.
--
-- The fast path (live, same address) is HMGET, HSET, PEXPIRE, ZADD and the bare string 'ok': a
-- table reply per beat would cost Redis more than any one of those commands.

local dl, ev, ingest = KEYS[1], KEYS[2], KEYS[4]
stats_key = KEYS[3]
local skew, maxlen, logcap, source = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local nzones = tonumber(ARGV[5])
local zone_key = {}
for i = 1, nzones do zone_key[ARGV[5 + i]] = KEYS[4 + i] end
local now, sec = clock()
local nows = string.format('%d', now)
local FAMS = {'4', '6'}

local function has(set, f) return string.find(set, f, 1, true) ~= nil end
local function without(set, f) return (string.gsub(set, f, '')) end
local function with(set, f)
  if has(set, f) then return set end
  if f == '4' then return '4' .. set end
  return set .. '6'
end

local function beat(acct, a4, a6, legacy, log, id, ip4, ip6, counter, ttl, offline, fp, fams, age)
  local window, recv = ttl, now
  if age ~= '' then  -- received a while ago (held while Redis was away)
    recv = now - tonumber(age)
    ttl = math.max(1, ttl - tonumber(age))
  end
  local cur = redis.call('HMGET', acct, 'fqdn', 'state', 'counter', 'ipv4', 'ipv6', 'fp', 'last_beat', 'zone',
                         'live')
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
  local live = cur[9] or recorded_live(cur[2], nil, old4, old6)
  local want = ''
  local was = {}
  if offline ~= '1' and fams == '' and (ip4 == '') ~= (ip6 == '') then
    -- a heartbeat: one address, and the family it came over is the one it keeps alive
    local f, key, same = '4', a4, ip4 == old4
    if ip4 == '' then f, key, same = '6', a6, ip6 == old6 end
    -- PEXPIRE answers whether the key was there; only a missing key needs the SET
    local up = redis.call('PEXPIRE', key, ttl) == 1
    if up and same and string.find(live, f, 1, true) and cur[9] then
      redis.call('ZADD', dl, now + ttl, id .. ':' .. f)
      return 'ok'
    end
    if not up then redis.call('SET', key, '1', 'PX', ttl) end
    want, was[f] = f, up
  elseif offline ~= '1' then
    want = fams
    if want == '' then
      if ip4 ~= '' then want = '4' end
      if ip6 ~= '' then want = want .. '6' end
      if want == '' then
        if old4 ~= '' then want = '4' end
        if old6 ~= '' then want = want .. '6' end
      end
    end
    local fast = ip4 ~= '' or ip6 ~= ''
    for _, f in ipairs(FAMS) do
      if has(want, f) then
        local key = f == '4' and a4 or a6
        was[f] = redis.call('PEXPIRE', key, ttl) == 1
        if not was[f] then redis.call('SET', key, '1', 'PX', ttl) end
        fast = fast and was[f] and has(live, f)
      end
    end
    -- bare 'ok' only when an address was sent (the caller knows it); a keepalive without one
    -- (dyndns2 'preserve') gets the stored addresses back in the full answer
    if fast and want ~= '' and cur[9] and (ip4 == '' or ip4 == old4) and (ip6 == '' or ip6 == old6) then
      for _, f in ipairs(FAMS) do
        if has(want, f) then redis.call('ZADD', dl, now + ttl, id .. ':' .. f) end
      end
      return 'ok'
    end
  end
  -- something changes (or an offline beat, or a hash of an older writer): the rest of the record
  local alive = {['4'] = a4, ['6'] = a6}
  local state = cur[2] or 'neutral'  -- as recorded: the live count follows each change (state_moved)
  local more = redis.call('HMGET', acct, 'since', 'aliases', 'lost4', 'lost6')
  local since, aliases = tonumber(more[1] or '0') or 0, more[2] or '[]'
  local lost_at = {['4'] = tonumber(more[3] or '') or since, ['6'] = tonumber(more[4] or '') or since}
  local changed = 0
  -- families recorded live whose key is gone (and no legacy key holds them): expired but not yet
  -- swept. Record the outage that really happened, at its deadline.
  local legacy_up = nil
  for _, f in ipairs(FAMS) do
    if has(live, f) then
      local up = was[f]
      if up == nil then up = redis.call('EXISTS', alive[f]) == 1 end
      if not up then
        if legacy_up == nil then legacy_up = redis.call('EXISTS', legacy) == 1 end
        if not legacy_up then
          local m = id .. ':' .. f
          local d = tonumber(redis.call('ZSCORE', dl, m) or redis.call('ZSCORE', dl, id) or now)
          if recv <= d and d <= now or redis.call('HEXISTS', acct, 'held' .. f) == 1
             or ingest_hold(ingest, d, window, now) > 0 then
            -- not an outage of the customer's: it stays live (this beat's families refreshed below)
            if has(want, f) then
              redis.call('HDEL', acct, 'held' .. f, 'held')
              changed = 1  -- the key was gone: DNS answered neutral
            end
          else
            redis.call('ZREM', dl, m)
            live = without(live, f)
            lost_at[f] = d
            redis.call('HSET', acct, 'lost' .. f, string.format('%d', d))
            if live == '' then
              redis.call('HSET', acct, 'state', 'neutral', 'since', string.format('%d', d))
              state_moved(state, 'neutral')
              state = 'neutral'
              emit(ev, log, maxlen, logcap, 'neutralized', id, fqdn, d, {'reason', 'missed', 'family', f})
              since = d
            else
              emit(ev, log, maxlen, logcap, 'family_lost', id, fqdn, d, {'reason', 'missed', 'family', f})
            end
          end
        end
      end
    end
  end
  if offline == '1' then
    redis.call('DEL', a4, a6, legacy)
    redis.call('ZREM', dl, id, id .. ':4', id .. ':6')
    redis.call('HDEL', acct, 'held4', 'held6', 'held')
    state_moved(state, 'neutral')
    if live ~= '' then
      redis.call('HSET', acct, 'state', 'neutral', 'since', nows, 'live', '', 'lost4', nows, 'lost6', nows)
      emit(ev, log, maxlen, logcap, 'neutralized', id, fqdn, now,
           {'reason', 'offline', 'source', source, 'family', family_list(live)})
      changed = 1
      bump_serial(zone, sec)
    else
      redis.call('HSET', acct, 'state', 'neutral', 'live', '')
    end
    return {'offline', tostring(changed), old4, old6, fqdn, aliases}
  end
  local back = ''
  for _, f in ipairs(FAMS) do
    if has(want, f) then
      redis.call('ZADD', dl, now + ttl, id .. ':' .. f)
      if not has(live, f) then back = with(back, f) end
    end
  end
  if back ~= '' then
    if live == '' then
      redis.call('HSET', acct, 'state', 'live', 'since', nows)
      state_moved(state, 'live')
      state = 'live'
      emit(ev, log, maxlen, logcap, 'recovered', id, fqdn, now,
           {'neutral_since', since, 'duration_ms', now - since, 'source', source,
            'first', (tonumber(cur[7] or '0') or 0) > 0 and '0' or '1', 'family', family_list(back)})
    else
      local f = back  -- one family: the other one is live
      local new = (f == '4' and old4 or old6) == ''  -- a family heard for the first time
      emit(ev, log, maxlen, logcap, 'family_back', id, fqdn, now,
           {'family', f, 'neutral_since', lost_at[f], 'duration_ms', now - lost_at[f], 'source', source,
            'first', new and '1' or '0'})
    end
    for _, f in ipairs(FAMS) do
      if has(back, f) then live = with(live, f) end
    end
    changed = 1
  end
  redis.call('HSET', acct, 'live', live)
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
local k0, a0 = 4 + nzones, 5 + nzones
for i = 0, (#KEYS - k0) / 5 - 1 do
  local k, a = k0 + 1 + 5 * i, a0 + 1 + 9 * i
  out[i + 1] = beat(KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], ARGV[a], ARGV[a + 1], ARGV[a + 2],
                    ARGV[a + 3], tonumber(ARGV[a + 4]), ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8])
end
return out
