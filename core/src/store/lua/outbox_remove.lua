-- Removes delivered entries from an outbox stream without paying XDEL for each: XDEL costs
-- Redis about 2 us per entry, on the core the issue script needs, while trimming whole
-- stream nodes costs next to nothing.
-- KEYS[1] outbox stream; ARGV[1] consumer group; ARGV[2] the highest id of ARGV[3..], the
-- entries Kafka acknowledged.
-- Acknowledges them, then trims every entry below the oldest one still pending in the group
-- (with none pending: every entry up to ARGV[2]). Nothing unacknowledged is below that
-- floor: the group delivers in id order, so an entry never delivered lies above every
-- delivered one, and a delivered one not pending was acknowledged. Returns the floor;
-- acknowledged entries at or above it (a newer delivery finished before an older one) are
-- the caller's to XDEL.
for i = 3, #ARGV, 1000 do
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local p = redis.call('XPENDING', KEYS[1], ARGV[1])
local floor
if p[1] > 0 then
  floor = p[2]
else
  local ms, seq = string.match(ARGV[2], '^(%d+)-(%d+)$')
  floor = ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end
redis.call('XTRIM', KEYS[1], 'MINID', floor)
return floor
