-- One rate-limit bucket (GCRA) on one key holding the "theoretical arrival time" (ms, Redis clock),
-- so every process enforces one limit without clock sync (hbdns/ratelimit.py).
-- KEYS: bucket ; ARGV: interval_ms burst take(1|0) -> 0 when allowed, else ms until the next one is
local now = clock()
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now - tolerance
if wait > 0 then return math.floor(wait) end
if ARGV[3] == '1' then
  local new = math.floor(tat + interval)
  redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.max(new - now, 1))
end
return 0
