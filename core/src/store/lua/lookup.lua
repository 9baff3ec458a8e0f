-- Finds a user's coupon, telling an unknown campaign from a user without one.
-- KEYS[1] meta hash, KEYS[2] holders hash; ARGV[1] user id
-- Returns {'UNKNOWN'} | {'NONE'} | {'HELD', record} | {'SHARDED', "bucket,…"} (a sharded
-- campaign's own meta: ask the user's bucket)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'UNKNOWN'} end
local buckets = redis.call('HGET', KEYS[1], 'buckets')
if buckets then return {'SHARDED', buckets} end
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then return {'HELD', held} end
return {'NONE'}
