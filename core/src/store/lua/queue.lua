-- One join or poll of a campaign's waiting room, with a bounded admission step in the same
-- atomic call (no background worker: each call moves the line on a little).
-- KEYS[1] meta, KEYS[2] holders, KEYS[3] wr:line (user -> score), KEYS[4] wr:seen (user in
-- line -> last poll ms), KEYS[5] wr:active (admitted user -> admission expiry ms), KEYS[6]
-- wr:entry (user -> "score:tokenExpiresMs"), KEYS[7] wr:state (ticket, tokens, refill_ms,
-- admitted)
-- ARGV[1] 'join' or 'poll', ARGV[2] user, ARGV[3] join: the user's own score below 2^50
-- (drawn by the caller, the same at every join) for one who comes before the opening;
-- poll: the score the queue token carries
-- Returns {'UNKNOWN'}, {'NO_ROOM'}, or {status, score, tokenExpiresMs, position,
-- admissionExpiresMs, queued, active, remaining, admittedNow, lapsedNow, opensMs, nowMs,
-- created, admitPerSecond, queueTtlMs, admitting}; status WAITING, ADMITTED, EXPIRED, SOLD_OUT,
-- ISSUED (a holder: nothing to wait for) or CLOSED. Numbers go back as strings: Lua would
-- print a score of 2^50 + n with 14 digits.
-- Admission: at most wr_max admitted at once, at wr_rate a second (a bucket holding one
-- second's worth), never more admitted-but-undecided users than stock remains, and only
-- while the campaign is open. Each call lapses at most 100 admissions and 100 places in
-- line and admits at most 100 users.
local m = redis.call('HMGET', KEYS[1], 'total', 'issued', 'opens_ms', 'closes_ms', 'paused', 'closed',
  'gate_closed', 'suspended', 'wr', 'wr_max', 'wr_rate', 'wr_session_ms', 'wr_queue_ms', 'wr_shuffle')
if not m[1] then return {'UNKNOWN'} end
if m[9] ~= '1' then return {'NO_ROOM'} end
local line, seen, active, entry, state = KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local op, user = ARGV[1], ARGV[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max_active, rate = tonumber(m[10]), tonumber(m[11])
local session_ms, queue_ms = tonumber(m[12]), tonumber(m[13])
local opens, closes = tonumber(m[3] or '0'), tonumber(m[4] or '0')
local remaining = tonumber(m[1]) - tonumber(m[2] or '0')
local function s(x) return string.format('%.0f', x) end
local lapsed, admitted, created = 0, 0, 0
local closed = m[6] == '1' or m[7] == '1' or (closes > 0 and now >= closes)
-- Whether the room admits now (the metric StampedeWaitingRoomStalled reads).
local admitting = (now >= opens and m[5] ~= '1' and m[8] ~= '1' and remaining > 0 and not closed) and 1 or 0

local function reply(status, e, position, adm)
  -- Every key of the room outlives the longest wait between two calls (a place's queue TTL,
  -- an admission's session TTL, from now), plus a minute, and no longer. The TTLs are
  -- renewed when this call may have (re)created a key and otherwise once half that minute
  -- has passed since the last renewal, so that the keys still last the longest wait from
  -- now whatever its length (renewing after a share of the whole TTL did not: with a queue
  -- TTL past three minutes a quiet room's keys could go before a place promised at a
  -- poll). A PEXPIRE is a write (AOF, replicas): five on every poll cost more than the
  -- rest of the call, five every 30 s nothing.
  local slack = 60000
  local ttl = math.max(queue_ms, session_ms) + slack
  local renewed = tonumber(redis.call('HGET', state, 'renewed_ms') or '')
  if created == 1 or admitted > 0 or not renewed or now - renewed >= slack / 2 then
    redis.call('HSET', state, 'renewed_ms', s(now))
    for _, k in ipairs({line, seen, active, entry, state}) do redis.call('PEXPIRE', k, ttl) end
  end
  local score, token_exp = string.match(e or '', '^([^:]+):(%d+)$')
  return {status, score or '', token_exp or '0', s(position or 0), adm or '0',
    s(redis.call('ZCARD', line)), s(redis.call('ZCARD', active)), s(math.max(remaining, 0)),
    s(admitted), s(lapsed), s(opens), s(now), s(created), s(rate), s(queue_ms), s(admitting)}
end

local function leave(users)
  redis.call('ZREM', line, unpack(users))
  redis.call('ZREM', seen, unpack(users))
  redis.call('ZREM', active, unpack(users))
  redis.call('HDEL', entry, unpack(users))
end

-- Admissions past their session and places in line nobody polled lapse; the caller's own
-- is checked too, whatever its rank among the lapsed.
local gone = redis.call('ZRANGE', active, '-inf', s(now), 'BYSCORE', 'LIMIT', 0, 100)
if #gone > 0 then leave(gone); lapsed = lapsed + #gone end
gone = redis.call('ZRANGE', seen, '-inf', s(now - queue_ms), 'BYSCORE', 'LIMIT', 0, 100)
if #gone > 0 then leave(gone); lapsed = lapsed + #gone end
local mine = redis.call('ZSCORE', seen, user)
local my_adm = redis.call('ZSCORE', active, user)
if (mine and tonumber(mine) <= now - queue_ms) or (my_adm and tonumber(my_adm) <= now) then
  leave({user}); lapsed = lapsed + 1
end

if redis.call('HEXISTS', KEYS[2], user) == 1 then
  leave({user})
  return reply('ISSUED')
end
if remaining <= 0 then
  -- Sold out: nobody waits; the whole room goes at once (UNLINK frees it off the main thread).
  redis.call('UNLINK', line, seen, active, entry)
  return reply('SOLD_OUT')
end
if closed then return reply('CLOSED') end

local e = redis.call('HGET', entry, user)
if op == 'join' and not e then
  local score
  if now < opens and m[14] == '1' then score = ARGV[3]
  else score = s(1125899906842624 + redis.call('HINCRBY', state, 'ticket', 1)) end
  -- The queue token lasts a day past the opening (or the join); the place, while polled.
  e = score .. ':' .. s(math.max(now, opens) + 86400000)
  redis.call('ZADD', line, score, user)
  redis.call('ZADD', seen, s(now), user)
  redis.call('HSET', entry, user, e)
  created = 1
end
if not e then return reply('EXPIRED') end
if op == 'poll' and string.match(e, '^([^:]+):') ~= ARGV[3] then return reply('EXPIRED') end
if redis.call('ZSCORE', line, user) then redis.call('ZADD', seen, s(now), user) end

-- Sold out and closed returned above: admitting here means open, not paused or suspended.
if admitting == 1 then
  local n_active = redis.call('ZCARD', active)
  local b = redis.call('HMGET', state, 'tokens', 'refill_ms')
  local tokens = tonumber(b[1] or '') or rate
  tokens = math.min(rate, tokens + math.max(0, now - (tonumber(b[2] or '') or now)) * rate / 1000)
  local n = math.min(100, math.floor(tokens), max_active - n_active, remaining - n_active)
  if n > 0 then
    local popped = redis.call('ZPOPMIN', line, n)
    for i = 1, #popped, 2 do
      redis.call('ZADD', active, s(now + session_ms), popped[i])
      redis.call('ZREM', seen, popped[i])
      admitted = admitted + 1
    end
    -- Since the room's keys last expired: what the operator's status reports. The bucket is
    -- written only when it is spent: refilling from an older (tokens, refill_ms) reaches the
    -- same level, so a poll that admits nobody writes nothing here.
    if admitted > 0 then
      redis.call('HINCRBY', state, 'admitted', admitted)
      redis.call('HSET', state, 'tokens', tostring(tokens - admitted), 'refill_ms', s(now))
    end
  end
end

local adm = redis.call('ZSCORE', active, user)
if adm then return reply('ADMITTED', e, 0, adm) end
local rank = redis.call('ZRANK', line, user)
if rank then return reply('WAITING', e, rank + 1) end
redis.call('HDEL', entry, user)
return reply('EXPIRED')
