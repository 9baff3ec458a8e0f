-- Suspends a campaign because Redis may have lost acknowledged writes (it restarted or
-- failed over: its epoch changed), and records the highest seq the calling process
-- acknowledged, so the audit can tell which acknowledged coupons exist nowhere.
-- KEYS[1] meta hash
-- ARGV[1] the new epoch, ARGV[2] highest seq the caller acknowledged (0: none),
-- ARGV[3] '1' to write the flags even when the campaign is gone (Redis lost everything:
-- re-provisioning keeps them, so the campaign comes back suspended), ARGV[4] the
-- incarnation ARGV[2] belongs to (a high of an earlier campaign of the same id is not
-- recorded, unless Redis lost everything: then the campaign here was created after the loss)
-- Returns 1 when this call suspended the campaign, else 0 (already suspended for this
-- epoch, unsuspended by an admin for this epoch with no seq above what that covered, or gone).
local exists = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[3] ~= '1' and not exists then return 0 end
local m = redis.call('HMGET', KEYS[1], 'acked_high', 'suspended', 'suspended_epoch', 'cleared_epoch',
  'issued', 'incarnation', 'cleared_high')
local acked = tonumber(ARGV[2])
local same = ARGV[3] == '1' or (m[6] or '') == ARGV[4]
if same and acked > tonumber(m[1] or '0') then redis.call('HSET', KEYS[1], 'acked_high', acked) end
if m[2] == '1' and m[3] == ARGV[1] then return 0 end
-- Lifted for this epoch: a late detector (its connection stuck through the audit) reporting
-- seqs above what the lifting covered suspends it again, for an audit that sees them.
if m[4] == ARGV[1] and not (same and acked > tonumber(m[7] or '0')) then return 0 end
if m[2] ~= '1' then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'suspended_ms', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000),
    'issued_at_suspend', m[5] or '0')
end
redis.call('HSET', KEYS[1], 'suspended', '1', 'suspended_epoch', ARGV[1])
return 1
