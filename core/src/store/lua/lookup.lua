-- Finds a user's coupon, telling an unknown campaign from a user without one.
-- KEYS[1] meta hash, KEYS[2] holders hash; ARGV[1] user id
-- Returns {'UNKNOWN'} | {'NONE'} | {'HELD', record}
if redis.call('EXISTS', KEYS[1]) == 0 then return {'UNKNOWN'} end
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then return {'HELD', held} end
return {'NONE'}
