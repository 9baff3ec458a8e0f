-- Changes one admin field of an existing campaign atomically.
-- KEYS[1] meta hash
-- ARGV[1] action: 'restock' (ARGV[2] = amount; on a sharded campaign recorded for sharing), 'pause', 'resume', 'close', 'reopen' (the
-- manual close), 'gate_close', 'gate_open' (the load-test gate's own flag, so neither
-- side ever undoes the other's close), 'unsuspend' (after an audit of a suspension; the
-- suspension's epoch is remembered so a late detector does not suspend it again, and the
-- counter is brought past every seq handed out), 'raise' (the audit's repair: the issued
-- counter brought up to ARGV[2] when below it, never down; returns {'RAISED', how far})
-- Returns {'OK', total} or {'UNKNOWN'}; a restock past ARGV[3] (the most a campaign may hold)
-- {'TOO_MUCH', total}; {'UNPROVISIONED'} for a meta that is only the suspension flags an
-- issuer wrote after Redis lost everything (no stock until provisioned again). The amount
-- goes to HINCRBY as it came: Lua would write a number of 10^14 or more as "1e+14", which
-- Redis refuses as an integer.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'UNKNOWN'} end
if redis.call('HEXISTS', KEYS[1], 'total') == 0 then return {'UNPROVISIONED'} end
local a = ARGV[1]
if a == 'restock' then
  local total = redis.call('HGET', KEYS[1], 'total') or '0'
  if tonumber(total) + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return {'TOO_MUCH', total} end
  local after = redis.call('HINCRBY', KEYS[1], 'total', ARGV[2])
  -- A sharded campaign's restock is recorded as ensure.lua records one, for the caller to
  -- share out to the buckets (once; a sharing cut short is finished by the next).
  if redis.call('HEXISTS', KEYS[1], 'buckets') == 1 then
    redis.call('HSET', KEYS[1], 'restock:' .. after, total)
  end
  return {'OK', after}
elseif a == 'pause' then redis.call('HSET', KEYS[1], 'paused', '1')
elseif a == 'resume' then redis.call('HSET', KEYS[1], 'paused', '0')
elseif a == 'close' then redis.call('HSET', KEYS[1], 'closed', '1')
elseif a == 'reopen' then redis.call('HSET', KEYS[1], 'closed', '0')
elseif a == 'gate_close' then redis.call('HSET', KEYS[1], 'gate_closed', '1')
elseif a == 'gate_open' then redis.call('HSET', KEYS[1], 'gate_closed', '0')
elseif a == 'unsuspend' then
  local m = redis.call('HMGET', KEYS[1], 'suspended_epoch', 'acked_high', 'issued')
  -- No seq an issuer handed out before the loss is handed out again: the counter moves past
  -- the highest one any issuer acknowledged (those coupons were given; whether to restock
  -- by as many is the campaign owner's call).
  if tonumber(m[2] or '0') > tonumber(m[3] or '0') then redis.call('HSET', KEYS[1], 'issued', m[2]) end
  redis.call('HSET', KEYS[1], 'suspended', '0', 'cleared_epoch', m[1] or '', 'cleared_high', m[2] or '0')
elseif a == 'raise' then
  local issued = tonumber(redis.call('HGET', KEYS[1], 'issued') or '0')
  local to = tonumber(ARGV[2])
  if to <= issued then return {'RAISED', 0} end
  redis.call('HSET', KEYS[1], 'issued', ARGV[2])
  return {'RAISED', to - issued}
else return redis.error_reply('unknown admin action ' .. a) end
return {'OK', tonumber(redis.call('HGET', KEYS[1], 'total'))}
