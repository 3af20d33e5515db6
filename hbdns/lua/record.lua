-- An admin transition (created, removed) in the same format as the liveness scripts' own.
-- KEYS: events(s) log serials(s) [stats(s) acct] (the account's shard s: one slot)
-- ARGV: id fqdn kind bump(1|0) maxlen logcap apex [field value ...]
--   -> event id. With stats and the account's hash, 'removed' takes a live account off the shard's
--   live count (call it before the hash is deleted). bump: one more change of zone apex's answers
--   in the shard's count (the SOA serial sums them, hbdns.zone_serial).
local now = clock()
if KEYS[5] and ARGV[3] == 'removed' then
  stats_key = KEYS[4]
  state_moved(redis.call('HGET', KEYS[5], 'state'), 'removed')
end
local extra = {}
for i = 8, #ARGV do extra[#extra + 1] = ARGV[i] end
local eid = emit(KEYS[1], KEYS[2], ARGV[5], ARGV[6], ARGV[3], ARGV[1], ARGV[2], now, extra)
if ARGV[4] == '1' then bump_serial(KEYS[3], ARGV[7]) end
return eid
