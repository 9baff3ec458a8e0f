-- Gives a bucket of a sharded campaign seqs another bucket took for it (the second half of
-- a rebalance) or a restock's share, once per transfer id (a repeated give is a no-op).
-- KEYS[1] bucket meta, KEYS[2] bucket ledger
-- ARGV[1] transfer id, ARGV[2] where they come from (a bucket id, or 'restock'),
-- ARGV[3] seq ranges "first:count,…"
-- Returns 1 given now, 0 given before, -1 the bucket is gone
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
local n = 0
for _, count in string.gmatch(ARGV[3], '(%d+):(%d+)') do n = n + tonumber(count) end
local ext = redis.call('HGET', KEYS[1], 'extents') or ''
if ext ~= '' and ARGV[3] ~= '' then ext = ext .. ',' end
redis.call('HSET', KEYS[1], 'extents', ext .. ARGV[3])
redis.call('HINCRBY', KEYS[1], 'total', n)
redis.call('HSET', KEYS[2], ARGV[1], 'in:' .. ARGV[2] .. ':' .. ARGV[3])
return 1
