-- A mass outage's start or the end of its hold, recorded once with its event for the notifier
-- (hbdns/mass.py), so two sweepers never alarm the operator twice for one event.
-- KEYS: mass_events events(MASS_SHARD), one slot (keys.mass_events is in that shard's) ;
-- ARGV: op scope state_json now_ms [field value ...]
-- op 'start': records state_json for the scope unless the scope's event still holds; 1 if it did
--   (and appended 'mass_started' with the fields), else 0.
-- op 'over': replaces the scope's event, if it is the one that started at state_json's started_ms
--   and is not over yet, with state_json; 1 if it did (and appended 'mass_hold_over'), else 0.
local h, ev = KEYS[1], KEYS[2]
local op, scope, raw, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local new = cjson.decode(raw)
local cur = redis.call('HGET', h, scope)
local old = cur and cjson.decode(cur)
local kind
if op == 'start' then
  if old and tonumber(old.hold_until_ms) > tonumber(now) then return 0 end
  kind = 'mass_started'
else
  if not old or tonumber(old.started_ms) ~= tonumber(new.started_ms) or old.over then return 0 end
  kind = 'mass_hold_over'
end
redis.call('HSET', h, scope, raw)
local args = {'XADD', ev, '*', 'type', kind, 'account', '0', 'fqdn', '', 'at', now, 'scope', scope}
for i = 5, #ARGV do args[#args + 1] = ARGV[i] end
redis.call(unpack(args))
return 1
