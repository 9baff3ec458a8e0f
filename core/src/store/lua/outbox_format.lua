-- Records the outbox format every live relay of a campaign reads (store/outbox_format.rs),
-- which the issue script consults before writing batch entries.
-- KEYS[1] the campaign's meta hash; ARGV[1] the format.
-- Returns the format it replaced (1 when none was recorded), the same format when nothing
-- changed, or 0 for a campaign that does not exist: a relay racing a deletion must not
-- bring a lone field of its meta back.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local was = tonumber(redis.call('HGET', KEYS[1], 'outbox_format') or '1')
if was ~= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'outbox_format', ARGV[1])
end
return was
