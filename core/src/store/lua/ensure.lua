-- Creates a campaign or brings an existing one to the requested stock, never resetting
-- holders or the issued count. Stock only grows; a smaller stock is refused.
-- A gated campaign (ARGV[5] = '1') is created closed by the gate (gate_closed = '1') in
-- this same call, so it never answers an issue before its gate passes; an existing
-- campaign's flags (closed, gate_closed, paused, suspended) are never touched here.
-- 'incarnation' (Redis time in microseconds) tells a campaign created again under the same
-- id (forgotten, then re-provisioned) from the one before it.
-- KEYS[1] meta hash
-- ARGV[1] stock, ARGV[2] set window ('1' or '0'), ARGV[3] opens_ms, ARGV[4] closes_ms,
-- ARGV[5] created closed by the gate ('1' or '0'), ARGV[6] '' for a campaign, else
-- 'buckets=<bucket,…>' for a sharded campaign's own meta (set when created, never changed)
-- or 'extents=<first:count,…>&siblings=<n>' for one of its buckets, n the campaign's bucket
-- count (issue.lua and lookup.lua refuse a caller that routed by another count): a bucket's
-- stock is set when it is created and moves only by transfers (bucket_take/bucket_give),
-- never here
-- ARGV[7] '' or a waiting room to create the campaign with, 'wr=1,wr_max=…,…' (fields of
-- queue_config.lua): set in the creating call, so no issuance slips in before it; an
-- existing campaign's waiting room is changed by queue_config.lua, never here
-- A bucket's ARGV[6] also says how the campaign stands, never stored: 'afresh=1' while the
-- campaign's own meta does not exist yet (a bucket a provisioning cut short left must hold
-- the shares asked now, else it is set to them while it has issued nothing: 'STALE_BUCKET'
-- once it has), 'known=1' once it does (a bucket missing then is not made anew over shares
-- that transfers and restocks have moved since: 'MISSING').
-- Returns {outcome, total_before, total_after, window_changed}; SHARDED when a campaign
-- (ARGV[6] '') is asked of a sharded campaign: its shard count is fixed
local stock = tonumber(ARGV[1])
local role = {}
for field, value in string.gmatch(ARGV[6] or '', '(%a+)=([^&]*)') do role[field] = value end
local total = redis.call('HGET', KEYS[1], 'total')
if not total and role.known == '1' then return {'MISSING', 0, 0, 0} end
if not total then
  local t = redis.call('TIME')
  local opens, closes = '0', '0'
  if ARGV[2] == '1' then opens, closes = ARGV[3], ARGV[4] end
  redis.call('HSET', KEYS[1], 'total', stock, 'issued', 0, 'opens_ms', opens, 'closes_ms', closes,
    'paused', '0', 'closed', '0', 'gate_closed', ARGV[5] == '1' and '1' or '0',
    'created_ms', string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)),
    'incarnation', t[1] .. '.' .. t[2])
  for _, field in ipairs({'buckets', 'extents', 'siblings'}) do
    if role[field] then redis.call('HSET', KEYS[1], field, role[field]) end
  end
  for f, v in string.gmatch(ARGV[7] or '', '(wr[%a_]*)=([^,]*)') do redis.call('HSET', KEYS[1], f, v) end
  return {'CREATED', 0, stock, 1}
end
total = tonumber(total)
if (ARGV[6] or '') == '' and redis.call('HEXISTS', KEYS[1], 'buckets') == 1 then
  return {'SHARDED', total, total, 0}
end
local is_bucket = role.extents ~= nil
if is_bucket and role.afresh == '1' then
  local have = redis.call('HMGET', KEYS[1], 'extents', 'issued', 'siblings')
  if have[1] ~= role.extents or have[3] ~= role.siblings then
    if tonumber(have[2] or '0') > 0 then return {'STALE_BUCKET', total, total, 0} end
    redis.call('HSET', KEYS[1], 'total', stock, 'extents', role.extents, 'siblings', role.siblings)
    return {'UPDATED', total, stock, 0}
  end
end
if not is_bucket and stock < total then return {'STOCK_DECREASE', total, total, 0} end
local window_changed = 0
if ARGV[2] == '1' then
  local w = redis.call('HMGET', KEYS[1], 'opens_ms', 'closes_ms')
  if w[1] ~= ARGV[3] or w[2] ~= ARGV[4] then
    redis.call('HSET', KEYS[1], 'opens_ms', ARGV[3], 'closes_ms', ARGV[4])
    window_changed = 1
  end
end
if stock > total and not is_bucket then
  redis.call('HINCRBY', KEYS[1], 'total', stock - total)
  -- A sharded campaign's restock is shared out to its buckets by the caller, once.
  if redis.call('HEXISTS', KEYS[1], 'buckets') == 1 then
    redis.call('HSET', KEYS[1], 'restock:' .. stock, total)
  end
  return {'RESTOCKED', total, stock, window_changed}
end
if window_changed == 1 then return {'UPDATED', total, total, 1} end
return {'UNCHANGED', total, total, 0}
