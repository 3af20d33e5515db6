-- hbdns migrate, step sharded: the unsharded schema (hbdns/keys_unsharded.py) into the sharded one
-- (hbdns/keys.py), one atomic piece per call (hbdns/migrations/sharded.py says in which order).
-- Standalone Redis only where a call names keys of several slots (all keys are in KEYS even so).
-- ARGV[1] is the operation, ARGV[2] dry_run (1|0); every operation returns how many items it moved
-- (with dry_run: would move), 0 when there is nothing left: run again, it changes nothing.
--
-- copy: one account's keys to the new names, the old ones kept (an old backend still answers them)
--   KEYS: names old_deadlines deadlines(s) shard_names(s), then old/new pairs: acct alive4 alive6
--         alive_legacy log sms_outage notify_outage acme_credentials
--   ARGV: op dry id name_1 .. name_n (the names the global index gave this id)
--   Only while the new hash is missing: the account copies whole or not at all. COPY keeps values
--   and TTLs; a new key that exists already (written by a newer process meanwhile) is kept, a hash
--   takes only the old fields it lacks, an alive key the longer life. Deadline members (plain,
--   :4, :6) keep their score (ZADD GT); the names the index still gives this id go to shard_names.
-- remove: one copied account's old keys and deadline members (same KEYS as copy; ARGV: op dry id)
-- events: a chunk of the old stream's entries (in order) into the shard streams
--   KEYS: old_events map events(0) .. events(shards-1)
--   ARGV: op dry shards mass_shard ngroups {group last_delivered}*ngroups, then per entry:
--         old_id npending {group_index consumer idle_ms deliveries}*npending
--   Each entry is XADDed to its account's shard (mass events, account 0, to mass_shard) with the
--   field legacy_id = its old id, and noted in map (old id -> new id) so it is copied once. For each
--   group of the old stream the group is created on the shard stream (at 0: what it holds is
--   delivered); where that group has been delivered everything on the shard stream, an entry the
--   group had been delivered (old id <= its last delivered) moves the group's last delivered id on
--   (acknowledged entries stay acknowledged), and one it had pending is put in the same consumer's
--   pending list (XCLAIM FORCE, idle time and delivery count kept): delivered exactly as before.
-- globals: the ingest marks into every shard's, the trim counts into shard 0's, the mass events
--   KEYS: old_ingest old_trim old_mass trim(0) mass_events ingest(0) .. ingest(shards-1)
-- live: the count of one shard's live accounts (state 'live') into its stats 'live'
--   KEYS: stats(s) acct_1 .. acct_n (the shard's accounts, new hashes); ARGV: op dry recount(1|0)
--   Left alone when it exists and recount is 0 (the scripts keep it); written only if it differs.
-- finish: the old stream, the map, the old count and deadlines removed (every entry copied,
--   every account removed before)  KEYS: old_events map old_stats old_deadlines
local op, dry = ARGV[1], ARGV[2] == '1'

local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end

local function id_le(a, b)  -- stream id a <= b
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  return am < bm or (am == bm and as <= bs)
end

local function field(flat, name)  -- a value from a flat reply {k1, v1, k2, v2, ...}
  for i = 1, #flat, 2 do
    if flat[i] == name then return flat[i + 1] end
  end
  return nil
end

local PAIRS = 8

if op == 'copy' or op == 'remove' then
  local names, old_dl, dl, shard_names = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local id = ARGV[3]
  local function old(i) return KEYS[3 + 2 * i] end
  local function new(i) return KEYS[4 + 2 * i] end
  local members = {id, id .. ':4', id .. ':6'}
  local copied = redis.call('EXISTS', new(1)) == 1
  if op == 'remove' then
    if not copied then return 0 end
    local work = 0
    for i = 1, PAIRS do work = work + redis.call('EXISTS', old(i)) end
    for _, m in ipairs(members) do
      if redis.call('ZSCORE', old_dl, m) then work = work + 1 end
    end
    if work > 0 and not dry then
      for i = 1, PAIRS do redis.call('DEL', old(i)) end
      redis.call('ZREM', old_dl, unpack(members))
    end
    if work > 0 then return 1 end
    return 0
  end
  if copied or redis.call('EXISTS', old(1)) == 0 then return 0 end
  if dry then return 1 end
  for i = 2, PAIRS do
    local o, n = old(i), new(i)
    if redis.call('EXISTS', o) == 1 then
      if redis.call('EXISTS', n) == 0 then
        redis.call('COPY', o, n)
      elseif i <= 4 then  -- alive keys: the longer life (-1: none) wins
        local po, pn = redis.call('PTTL', o), redis.call('PTTL', n)
        if pn ~= -1 and (po == -1 or po > pn) then redis.call('COPY', o, n, 'REPLACE') end
      elseif redis.call('TYPE', o).ok == 'hash' then
        local h = redis.call('HGETALL', o)
        for j = 1, #h, 2 do redis.call('HSETNX', n, h[j], h[j + 1]) end
      elseif redis.call('TYPE', o).ok == 'list' then  -- the log: the newer entries first, then the old
        local items = redis.call('LRANGE', o, 0, -1)
        if #items > 0 then redis.call('RPUSH', n, unpack(items)) end
      end
    end
  end
  for _, m in ipairs(members) do
    local score = redis.call('ZSCORE', old_dl, m)
    if score then redis.call('ZADD', dl, 'GT', score, m) end
  end
  for i = 4, #ARGV do
    if redis.call('HGET', names, ARGV[i]) == id then redis.call('HSET', shard_names, ARGV[i], id) end
  end
  redis.call('COPY', old(1), new(1))
  return 1
end

if op == 'events' then
  local old_ev, map = KEYS[1], KEYS[2]
  local shards, mass_shard, ngroups = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
  local groups = {}
  for g = 1, ngroups do groups[g] = {name = ARGV[4 + 2 * g], last = ARGV[5 + 2 * g]} end
  local function group_last(stream, name)  -- the group's last delivered id on the stream, or nil
    if redis.call('EXISTS', stream) == 0 then return nil end
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
      if field(g, 'name') == name then return field(g, 'last-delivered-id') end
    end
    return nil
  end
  local caught_up = {}  -- stream -> group index -> the group was delivered all the stream holds
  local moved, i = 0, 6 + 2 * ngroups
  while i <= #ARGV do
    local old_id, npel = ARGV[i], tonumber(ARGV[i + 1])
    local pel = {}
    for p = 0, npel - 1 do
      local b = i + 2 + 4 * p
      pel[#pel + 1] = {g = tonumber(ARGV[b]), consumer = ARGV[b + 1], idle = ARGV[b + 2], n = ARGV[b + 3]}
    end
    i = i + 2 + 4 * npel
    if not redis.call('HGET', map, old_id) then
      local entry = redis.call('XRANGE', old_ev, old_id, old_id)
      if #entry == 0 then
        if not dry then redis.call('HSET', map, old_id, '-') end  -- trimmed meanwhile: nothing to deliver
      else
        moved = moved + 1
        if not dry then
          local fields = entry[1][2]
          local account = tonumber(field(fields, 'account') or '')
          local shard = mass_shard
          if account and account > 0 then shard = account % shards end
          local stream = KEYS[3 + shard]
          if not caught_up[stream] then  -- once per stream and call: then only this script writes it
            caught_up[stream] = {}
            for g, grp in ipairs(groups) do
              local last = group_last(stream, grp.name)
              if not last then
                redis.call('XGROUP', 'CREATE', stream, grp.name, '0-0', 'MKSTREAM')
                last = '0-0'
              end
              local info = redis.call('XINFO', 'STREAM', stream)
              caught_up[stream][g] = last == field(info, 'last-generated-id')
            end
          end
          local exact = {}
          for g, grp in ipairs(groups) do
            exact[g] = caught_up[stream][g] and id_le(old_id, grp.last)
            caught_up[stream][g] = exact[g]  -- a group not moved past this entry is behind from now on
          end
          local args = {'XADD', stream, '*'}
          for f = 1, #fields do args[#args + 1] = fields[f] end
          args[#args + 1] = 'legacy_id'
          args[#args + 1] = old_id
          local new_id = redis.call(unpack(args))
          for g, grp in ipairs(groups) do
            if exact[g] then redis.call('XGROUP', 'SETID', stream, grp.name, new_id) end
          end
          for _, p in ipairs(pel) do
            if exact[p.g] then
              redis.call('XCLAIM', stream, groups[p.g].name, p.consumer, 0, new_id,
                'IDLE', p.idle, 'RETRYCOUNT', p.n, 'FORCE', 'JUSTID')
            end
          end
          redis.call('HSET', map, old_id, new_id)
        end
      end
    end
  end
  return moved
end

if op == 'globals' then
  local old_ingest, old_trim, old_mass, trim, mass = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
  local moved = redis.call('EXISTS', old_ingest, old_trim, old_mass)
  if dry or moved == 0 then return moved end
  local ing = redis.call('HGETALL', old_ingest)
  if #ing > 0 then
    local mark, gap_ms = tonumber(field(ing, 'mark') or ''), field(ing, 'gap_ms')
    local gaps = cjson.decode(field(ing, 'gaps') or '[]')
    for k = 6, #KEYS do
      local cur = redis.call('HMGET', KEYS[k], 'mark', 'gap_ms', 'gaps')
      local merged, seen = {}, {}
      for _, list in ipairs({gaps, cjson.decode(cur[3] or '[]')}) do
        for _, g in ipairs(list) do
          local key = string.format('%d:%d', g[1], g[2])
          if not seen[key] then seen[key] = true; merged[#merged + 1] = g end
        end
      end
      table.sort(merged, function(a, b) return a[1] < b[1] end)
      while #merged > 32 do table.remove(merged, 1) end
      if #merged > 0 then redis.call('HSET', KEYS[k], 'gaps', cjson.encode(merged)) end
      local m = tonumber(cur[1] or '')
      if mark and (not m or mark > m) then redis.call('HSET', KEYS[k], 'mark', string.format('%d', mark)) end
      if gap_ms and not cur[2] then redis.call('HSET', KEYS[k], 'gap_ms', gap_ms) end
    end
  end
  local t = redis.call('HGETALL', old_trim)
  for j = 1, #t, 2 do
    local f, v = t[j], t[j + 1]
    if string.sub(f, 1, 5) == 'last_' then
      local cur = tonumber(redis.call('HGET', trim, f) or '')
      if not cur or tonumber(v) > cur then redis.call('HSET', trim, f, v) end
    else
      redis.call('HINCRBY', trim, f, v)
    end
  end
  local h = redis.call('HGETALL', old_mass)
  for j = 1, #h, 2 do redis.call('HSETNX', mass, h[j], h[j + 1]) end
  redis.call('DEL', old_ingest, old_trim, old_mass)
  return moved
end

if op == 'live' then
  local stored = redis.call('HGET', KEYS[1], 'live')
  if stored and ARGV[3] ~= '1' then return 0 end
  local n = 0
  for k = 2, #KEYS do
    if redis.call('HGET', KEYS[k], 'state') == 'live' then n = n + 1 end
  end
  if stored == tostring(n) then return 0 end
  if not dry then redis.call('HSET', KEYS[1], 'live', tostring(n)) end
  return 1
end

if op == 'finish' then
  local n = redis.call('EXISTS', KEYS[1], KEYS[3], KEYS[4])
  if not dry then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4]) end
  return n
end

return redis.error_reply('migrate_sharded: unknown operation ' .. tostring(op))
