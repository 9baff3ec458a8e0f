-- Sets a campaign's waiting room (issue #16) in its meta hash, where issue.lua and
-- queue.lua read it in the same call as the stock.
-- KEYS[1] meta hash, KEYS[2..6] the room's keys (wr:line, seen, active, entry, state), whose
-- TTLs are set for the new settings here and now (queue.lua renews them from its calls,
-- which in a quiet room may not come before the old TTL ends)
-- ARGV[1] enabled ('1'/'0'), ARGV[2] max active, ARGV[3] admissions a second, ARGV[4]
-- session TTL ms, ARGV[5] queue TTL ms, ARGV[6] shuffle at the opening ('1'/'0')
-- Returns {'OK'}, {'UNKNOWN'}, or {'SHARDED'}: a sharded campaign's buckets each issue on
-- their own slot, where no one script could see the line, so they have no waiting room
if redis.call('EXISTS', KEYS[1]) == 0 then return {'UNKNOWN'} end
if redis.call('HEXISTS', KEYS[1], 'buckets') == 1 or redis.call('HEXISTS', KEYS[1], 'extents') == 1 then
  return {'SHARDED'}
end
redis.call('HSET', KEYS[1], 'wr', ARGV[1], 'wr_max', ARGV[2], 'wr_rate', ARGV[3],
  'wr_session_ms', ARGV[4], 'wr_queue_ms', ARGV[5], 'wr_shuffle', ARGV[6])
-- queue.lua's TTL (the longest wait plus a minute); a key that does not exist stays so.
local ttl = math.max(tonumber(ARGV[4]), tonumber(ARGV[5])) + 60000
for i = 2, 6 do
  if KEYS[i] then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return {'OK'}
