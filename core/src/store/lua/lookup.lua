-- Finds a user's coupon, telling an unknown campaign from a user without one.
-- KEYS[1] meta hash, KEYS[2] holders hash; ARGV[1] user id, ARGV[2] for a bucket the bucket
-- count the caller routed by ('' otherwise)
-- Returns {'UNKNOWN'} | {'NONE'} | {'HELD', record} | {'SHARDED', "bucket,…"} (a sharded
-- campaign's own meta: ask the user's bucket); UNKNOWN too from a bucket of a campaign
-- created again with another count than the caller routed by (the user may not be its)
if redis.call('EXISTS', KEYS[1]) == 0 then return {'UNKNOWN'} end
local m = redis.call('HMGET', KEYS[1], 'buckets', 'siblings')
if m[1] then return {'SHARDED', m[1]} end
if m[2] and (ARGV[2] or '') ~= '' and m[2] ~= ARGV[2] then return {'UNKNOWN'} end
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then return {'HELD', held} end
return {'NONE'}
