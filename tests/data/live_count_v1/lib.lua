-- Helpers shared by the transition scripts; hbdns/scripts.py puts this file in front of every
-- script declared with lib=True, so each helper is written once.

-- Redis' clock, the one clock of every transition: (Unix ms, Unix s) from TIME.
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(t[1])
end

-- The zone's SOA serial after a change of its answers: one more, and never behind the Unix time in
-- seconds, so it keeps growing across a restore of an older database.
local function bump_serial(zone_key, sec)
  local s = tonumber(redis.call('HGET', zone_key, 'serial') or '0') or 0
  local n = s + 1
  if sec > n then n = sec end
  redis.call('HSET', zone_key, 'serial', string.format('%d', n))
end

-- A transition: appended to the events stream (for the notifier) and to the account's capped log
-- (for `hbdns account log`), in the same format for every writer. extra: flat {field, value, ...}.
local function emit(ev, log, maxlen, logcap, kind, id, fqdn, at, extra)
  local args = {'XADD', ev, 'MAXLEN', '~', maxlen, '*', 'type', kind, 'account', id,
                'fqdn', fqdn, 'at', string.format('%d', at)}
  local entry = {type = kind, account = tonumber(id), fqdn = fqdn, at = at}
  for i = 1, #extra, 2 do
    args[#args + 1] = extra[i]
    args[#args + 1] = tostring(extra[i + 1])
    entry[extra[i]] = extra[i + 1]
  end
  local eid = redis.call(unpack(args))
  entry['event_id'] = eid
  redis.call('LPUSH', log, cjson.encode(entry))
  redis.call('LTRIM', log, 0, tonumber(logcap) - 1)
  return eid
end

-- The families an account's recorded state holds live ('', '4', '6' or '46'): its ``live`` field,
-- or, for a hash written before per-family liveness (no such field), every family with an address
-- while its state is live, so data of older writers reads the same as before.
local function recorded_live(state, live, ip4, ip6)
  if live then return live end
  if state ~= 'live' then return '' end
  local out = ''
  if ip4 and ip4 ~= '' then out = '4' end
  if ip6 and ip6 ~= '' then out = out .. '6' end
  return out
end

-- '4' / '6' / '4,6' for an event's family field, from a set like '46'.
local function family_list(set)
  if set == '46' then return '4,6' end
  return set
end
