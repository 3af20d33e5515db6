-- An admin transition (created, removed) in the same format as the liveness scripts' own.
-- KEYS: events log zone ; ARGV: id fqdn kind bump(1|0) maxlen logcap [field value ...] -> event id
local now, sec = clock()
local extra = {}
for i = 7, #ARGV do extra[#extra + 1] = ARGV[i] end
local eid = emit(KEYS[1], KEYS[2], ARGV[5], ARGV[6], ARGV[3], ARGV[1], ARGV[2], now, extra)
if ARGV[4] == '1' then bump_serial(KEYS[3], sec) end
return eid
