-- A heartbeat listener that can store beats says so (every fraction of a second), on Redis' clock.
-- A silence longer than gap_ms since the last mark, from any listener, was an ingest outage: it is
-- recorded as [last mark, now] in ``gaps`` (those that ended more than keep_ms ago dropped, at most
-- 32 kept), where the sweeper and the beat script find it (lib.lua ``ingest_hold``).
-- One shard's copy (keys.ingest(s)): the listener marks every shard's, one call each, pipelined,
-- so each script reading one shard finds the marks there.
-- KEYS: ingest(s) ; ARGV: gap_ms keep_ms -> now (Unix ms)
local now = clock()
local gap, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'mark', 'gaps')
local mark = tonumber(h[1] or '')
if mark and mark >= now then return now end  -- another listener marked in this very millisecond
if mark and now - mark > gap then
  local kept = {}
  for _, g in ipairs(cjson.decode(h[2] or '[]')) do
    if g[2] > now - keep then kept[#kept + 1] = g end
  end
  kept[#kept + 1] = {mark, now}
  while #kept > 32 do table.remove(kept, 1) end
  redis.call('HSET', KEYS[1], 'gaps', cjson.encode(kept))
end
redis.call('HSET', KEYS[1], 'mark', string.format('%d', now), 'gap_ms', string.format('%d', gap))
return now
