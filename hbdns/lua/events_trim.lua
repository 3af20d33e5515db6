-- Ack-aware trimming of the events stream (hbdns/event_trim.py), one bounded atomic step.
-- Redis 7.0 has no trim that respects consumer groups, so this one reads every group (whatever its
-- name: the notifier's, the MTA flush's, any later one) and removes only entries that every group
-- has delivered and acknowledged, oldest first, while the stream is longer than `keep`; only past
-- the hard cap `cap` does it remove entries some group still needs, and then it counts them.
-- KEYS: events events_trim, of one shard (keys.events(s), keys.events_trim(s): one slot)
-- ARGV: keep cap chunk now_ms
-- Returns {removed_read, removed_at_cap, of_those_unread, length_after}. At most `chunk` entries go
-- per call (the caller repeats while a call removed `chunk`).
local ev, st = KEYS[1], KEYS[2]
local keep, cap, chunk, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local len = redis.call('XLEN', ev)
if len == 0 then return {0, 0, 0, 0} end

local function parse(id)
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(a), tonumber(b)
end
local function less(x, y)  -- ids as {ms, seq}
  return x[1] < y[1] or (x[1] == y[1] and x[2] < y[2])
end
local function fmt(x) return string.format('%d-%d', x[1], x[2]) end

-- per group: the last delivered id, and the oldest id it still needs (oldest pending, else the one
-- after the last delivered); no group at all: the first notifier will read from 0, so all are needed
local groups, need = {}, {0, 0}
local info = redis.call('XINFO', 'GROUPS', ev)
for i = 1, #info do
  local g, f = info[i], {}
  for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
  local ms, seq = parse(f['last-delivered-id'])
  local n = {ms, seq + 1}
  if tonumber(f['pending']) > 0 then
    local p = redis.call('XPENDING', ev, f['name'])
    local pm, ps = parse(p[2])
    if less({pm, ps}, n) then n = {pm, ps} end
  end
  groups[#groups + 1] = {name = f['name'], last = {ms, seq}}
  if #groups == 1 or less(n, need) then need = n end
end

-- 1. entries every group has: while longer than `keep`, the oldest of them go (never one >= need)
local read_removed = 0
if #groups > 0 and len > keep then
  local n = math.min(len - keep, chunk)
  local below = redis.call('XRANGE', ev, '-', '(' .. fmt(need), 'COUNT', n + 1)
  local cut = fmt(need)
  if #below > n then cut = below[n + 1][1] end
  if #below > 0 then read_removed = redis.call('XTRIM', ev, 'MINID', cut) end
  len = len - read_removed
end

-- 2. the hard cap: the oldest entries go whatever the groups have read, and each one some group
-- had not delivered and acknowledged is counted (never silent)
local capped, unread = 0, 0
if len > cap then
  local n = math.min(len - cap, chunk)
  local doomed = redis.call('XRANGE', ev, '-', '+', 'COUNT', n)
  local first, last = doomed[1][1], doomed[#doomed][1]
  local lost = {}
  for _, g in ipairs(groups) do
    local lc = 0
    -- from the first doomed id: a pending entry removed earlier stays in the PEL until acknowledged
    for _, p in ipairs(redis.call('XPENDING', ev, g.name, first, last, n)) do
      lost[p[1]] = true
      lc = lc + 1
    end
    for _, e in ipairs(doomed) do
      local ms, seq = parse(e[1])
      if less(g.last, {ms, seq}) then
        lost[e[1]] = true
        lc = lc + 1
      end
    end
    if lc > 0 then redis.call('HINCRBY', st, 'unread:' .. g.name, lc) end
  end
  for _, e in ipairs(doomed) do
    if #groups == 0 or lost[e[1]] then unread = unread + 1 end
  end
  local lms, lseq = parse(last)
  capped = redis.call('XTRIM', ev, 'MINID', fmt({lms, lseq + 1}))
  len = len - capped
  redis.call('HINCRBY', st, 'capped', capped)
  redis.call('HSET', st, 'last_cap_ms', now)
  if unread > 0 then
    redis.call('HINCRBY', st, 'unread', unread)
    redis.call('HSET', st, 'last_unread_ms', now)
  end
end
if read_removed > 0 then redis.call('HINCRBY', st, 'removed', read_removed) end
return {read_removed, capped, unread, len}
