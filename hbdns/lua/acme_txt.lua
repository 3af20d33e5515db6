-- The ACME DNS-01 values the DNS backend answers (hbdns.acme.values): per challenge key, the values
-- whose expiry (the score, Unix ms on Redis' clock) is still ahead. Read-only.
--
-- KEYS: txt_1 .. txt_n
-- Returns per key the list of its live values (empty when none).
local now = string.format('%d', clock())
local out = {}
for i = 1, #KEYS do
  out[i] = redis.call('ZRANGEBYSCORE', KEYS[i], '(' .. now, '+inf')
end
return out
