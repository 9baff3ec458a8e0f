-- Decides one issuance atomically; the only place stock is spent.
-- KEYS[1] meta hash (total, issued, window, flags), KEYS[2] holders hash, KEYS[3] outbox stream,
-- KEYS[4] wr:active (admitted user -> admission expiry ms), KEYS[5] wr:entry (queue.lua)
-- ARGV[1] user id, ARGV[2] campaign id, ARGV[3] coupon code to use if a coupon is issued,
-- ARGV[4] the highest seq the caller has handed out of this campaign's ARGV[5] incarnation
-- (a counter below it went back: Redis lost acknowledged writes, so the campaign is
-- suspended here rather than hand them out again; unless an admin already lifted a
-- suspension that covered it, 'cleared_high'; a campaign created again starts afresh)
-- ARGV[6] with a waiting room ('wr' = '1'): the expiry the user's verified admission token
-- carries, '' without one; it must be the user's live admission, which the coupon then ends
-- in this same call (ADMISSION_REQUIRED otherwise; holders and sold-out answers need none)
-- Returns {status, detail, incarnation}: ISSUED/ALREADY carry the holder record
-- "seq:issuedMs:code" and the campaign's incarnation; ISSUED also the issued counter
-- (the seq itself, but in a bucket). A sharded campaign's own meta names its buckets:
-- {'SHARDED', "bucket,…", incarnation}, and the caller asks the user's bucket. A bucket's
-- counter runs over its own positions; its 'extents' ("first:count,…") say which of the
-- campaign's seqs they are.
-- Closed by hand ('closed') and closed by the load-test gate ('gate_closed') are separate
-- flags, answered alike: CLOSED. 'suspended' is set when Redis may have lost acknowledged
-- writes (suspend.lua): nothing new is issued until an admin has audited and unsuspended.
-- Every redis.call costs about a microsecond of Lua overhead on the hottest path, so
-- the script makes as few as it can: one read of meta, one of holders, three writes (with a
-- waiting room, one read and two writes more: the admission checked and ended).
local m = redis.call('HMGET', KEYS[1], 'total', 'issued', 'opens_ms', 'closes_ms', 'paused', 'closed',
  'gate_closed', 'suspended', 'incarnation', 'buckets', 'extents', 'wr')
if not m[1] then
  -- Flags written into a campaign Redis lost entirely (suspend.lua): suspended, not unknown.
  if m[8] == '1' then return {'SUSPENDED'} end
  return {'UNKNOWN'}
end
if m[10] then return {'SHARDED', m[10], m[9] or ''} end
local held = redis.call('HGET', KEYS[2], ARGV[1])
local inc = m[9] or ''
if held then return {'ALREADY', held, inc} end
if m[8] == '1' then
  -- What this issuer acknowledged reaches the audit even after the suspension.
  local handed = tonumber(ARGV[4] or '0')
  if handed > 0 and ARGV[5] == inc and handed > tonumber(redis.call('HGET', KEYS[1], 'acked_high') or '0') then
    redis.call('HSET', KEYS[1], 'acked_high', handed)
  end
  return {'SUSPENDED'}
end
if m[5] == '1' then return {'PAUSED'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local opens = tonumber(m[3] or '0')
if opens > 0 and now < opens then return {'NOT_OPEN'} end
local closes = tonumber(m[4] or '0')
if m[6] == '1' or m[7] == '1' or (closes > 0 and now >= closes) then return {'CLOSED'} end
local issued = tonumber(m[2] or '0')
local handed = tonumber(ARGV[4] or '0')
if handed > issued and ARGV[5] == inc and handed > tonumber(redis.call('HGET', KEYS[1], 'cleared_high') or '0') then
  local acked = math.max(handed, tonumber(redis.call('HGET', KEYS[1], 'acked_high') or '0'))
  redis.call('HSET', KEYS[1], 'suspended', '1', 'suspended_epoch', 'counter-went-back',
    'suspended_ms', now, 'issued_at_suspend', issued, 'acked_high', acked)
  return {'SUSPENDED', 'NEW'}
end
if issued >= tonumber(m[1]) then return {'SOLD_OUT', m[1]} end
if m[12] == '1' then
  local adm = tonumber(redis.call('ZSCORE', KEYS[4], ARGV[1]) or '0')
  if adm <= now or adm ~= tonumber(ARGV[6] or '') then return {'ADMISSION_REQUIRED'} end
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('HDEL', KEYS[5], ARGV[1])
end
local counter = redis.call('HINCRBY', KEYS[1], 'issued', 1)
local seq = counter
if m[11] then
  local pos = counter
  for first, count in string.gmatch(m[11], '(%d+):(%d+)') do
    count = tonumber(count)
    if pos <= count then seq = tonumber(first) + pos - 1; pos = 0; break end
    pos = pos - count
  end
  if pos > 0 then return redis.error_reply('bucket extents cover fewer seqs than its total') end
end
local rec = seq .. ':' .. now .. ':' .. ARGV[3]
redis.call('HSET', KEYS[2], ARGV[1], rec)
redis.call('XADD', KEYS[3], '*', 'campaign', ARGV[2], 'user', ARGV[1], 'seq', seq, 'ts', now, 'code', ARGV[3])
return {'ISSUED', rec, inc, counter}
