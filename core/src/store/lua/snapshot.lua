-- Reads a consistent view of one campaign.
-- KEYS[1] meta hash, KEYS[2] outbox stream, KEYS[3] wr:line, KEYS[4] wr:active, KEYS[5] wr:state
-- Returns {} when unknown, else
-- {total, issued, opens_ms, closes_ms, paused, closed, now_ms, outbox_len, gate_closed,
--  suspended, suspended_ms, issued_at_suspend, acked_high, room_on, queued, active, admitted}
local m = redis.call('HMGET', KEYS[1], 'total', 'issued', 'opens_ms', 'closes_ms', 'paused', 'closed',
  'gate_closed', 'suspended', 'suspended_ms', 'issued_at_suspend', 'acked_high', 'wr')
if not m[1] then return {} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return {m[1], m[2] or '0', m[3] or '0', m[4] or '0', m[5] or '0', m[6] or '0', tostring(now),
  redis.call('XLEN', KEYS[2]), m[7] or '0', m[8] or '0', m[9] or '0', m[10] or '0', m[11] or '0',
  m[12] == '1' and '1' or '0', redis.call('ZCARD', KEYS[3]), redis.call('ZCARD', KEYS[4]),
  redis.call('HGET', KEYS[5], 'admitted') or '0'}
