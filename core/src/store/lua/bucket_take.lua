-- Takes up to ARGV[3] unissued seqs off the top of a bucket of a sharded campaign for
-- another bucket: the first half of a rebalance (take before give), so stock in transit
-- is in no bucket, never in two. Recorded in the bucket's ledger under the transfer id; a
-- repeated call returns what the first one took.
-- KEYS[1] bucket meta, KEYS[2] bucket ledger
-- ARGV[1] transfer id, ARGV[2] recipient bucket id, ARGV[3] most seqs to take
-- Returns the seq ranges taken, "first:count,…" ('' when the bucket has none to spare). A
-- suspended bucket spares nothing, and never positions an issuer reported handing out
-- ('acked_high': its Redis lost them, the counter went back; they are not spare).
local prior = redis.call('HGET', KEYS[2], ARGV[1])
if prior then return string.match(prior, '^out:[^:]*:(.*)$') or '' end
local m = redis.call('HMGET', KEYS[1], 'total', 'issued', 'extents', 'suspended', 'acked_high')
if not m[1] or not m[3] or m[4] == '1' then return '' end
local total = tonumber(m[1])
local issued = math.max(tonumber(m[2] or '0'), tonumber(m[5] or '0'))
local k = math.min(tonumber(ARGV[3]), total - issued)
if k <= 0 then return '' end
local ext = {}
for first, count in string.gmatch(m[3], '(%d+):(%d+)') do
  ext[#ext + 1] = {tonumber(first), tonumber(count)}
end
local taken, need = {}, k
while need > 0 do
  local e = ext[#ext]
  if e[2] <= need then
    table.remove(ext)
    table.insert(taken, 1, e)
    need = need - e[2]
  else
    e[2] = e[2] - need
    table.insert(taken, 1, {e[1] + e[2], need})
    need = 0
  end
end
local function fmt(list)
  local out = {}
  for i, e in ipairs(list) do out[i] = string.format('%d:%d', e[1], e[2]) end
  return table.concat(out, ',')
end
local ranges = fmt(taken)
redis.call('HSET', KEYS[1], 'total', total - k, 'extents', fmt(ext))
redis.call('HSET', KEYS[2], ARGV[1], 'out:' .. ARGV[2] .. ':' .. ranges)
return ranges
