-- Helpers shared by the transition scripts; hbdns/scripts.py puts this file in front of every
-- script declared with lib=True, so each helper is written once.

-- Redis' clock, the one clock of every transition: (Unix ms, Unix s) from TIME.
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), tonumber(t[1])
end

-- A change of a zone's answers: one more in the shard's count for the zone (keys.serials). The SOA
-- serial is the zone hash's 'serial' plus these counts over every shard, so a change in any shard
-- moves it forward without a script touching another shard's slot.
local function bump_serial(serials_key, apex)
  redis.call('HINCRBY', serials_key, apex, 1)
end

-- A transition: appended to the events stream (for the notifier) and to the account's capped log
-- (for `hbdns account log`), in the same format for every writer. extra: flat {field, value, ...}.
-- The stream is not capped here: a cap at write time removes entries no consumer group has read.
-- The sweeper trims it below what every group acknowledged (events_trim.lua); `maxlen` is no longer
-- read, and stays in the callers' layouts so that they are unchanged.
local function emit(ev, log, maxlen, logcap, kind, id, fqdn, at, extra)
  local args = {'XADD', ev, '*', 'type', kind, 'account', id,
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

-- The count of accounts recorded live (keys.stats, field 'live'). A script that can change an
-- account's state sets stats_key from its KEYS and calls state_moved(old, new) with each change, so
-- the count follows every crossing of 'live'. Before `hbdns migrate` counted it the field is absent,
-- and stays so (a count started from 0 would be wrong for good).
local stats_key = nil
local function state_moved(old, new)
  if stats_key == nil or (old == 'live') == (new == 'live') then return end
  if redis.call('HEXISTS', stats_key, 'live') == 1 then
    local delta = -1
    if new == 'live' then delta = 1 end
    redis.call('HINCRBY', stats_key, 'live', delta)
  end
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

-- Our own outages are not the customers': a deadline whose window (the w ms before deadline d)
-- overlaps an ingest outage (no listener could store beats: Redis or every listener was down) is
-- held back until ingest has been healthy for one whole window. The listeners mark the ``ingest``
-- hash with Redis' clock (hbdns/lua/ingest_mark.lua); a silence longer than its gap_ms is an outage:
-- a closed one in ``gaps`` ([from, to]: the last mark before, the first after), or the one going on
-- now (since ``mark``). Returns 0 (not held: the deadline passed while ingest was healthy, or ingest
-- is not tracked because no listener ever marked) or when to look at the deadline again (Unix ms).
local function ingest_hold(ingest, d, w, now)
  local h = redis.call('HMGET', ingest, 'mark', 'gap_ms', 'gaps')
  local mark = tonumber(h[1] or '')
  if not mark then return 0 end
  local again = 0
  if now - mark > (tonumber(h[2] or '') or 2000) and d > mark then
    again = now + w  -- going on: not back yet, look again one window later
  end
  for _, g in ipairs(cjson.decode(h[3] or '[]')) do
    if g[1] < d and g[2] > d - w and g[2] + w > again then again = g[2] + w end
  end
  return again
end
