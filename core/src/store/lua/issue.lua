-- Decides a batch of issuances of one campaign atomically; the only place stock is spent.
-- An issuer sends the requests of a campaign that arrive while its earlier ones are with
-- Redis as one call (store/batch.rs): what each call costs beyond its commands (reading,
-- parsing and answering it, the script's start, the campaign's meta) is paid once per batch.
-- KEYS[1] meta hash (total, issued, window, flags), KEYS[2] holders hash, KEYS[3] outbox stream,
-- KEYS[4] wr:active (admitted user -> admission expiry ms), KEYS[5] wr:entry (queue.lua)
-- ARGV[1] campaign id, ARGV[2] the highest seq the caller has handed out of this campaign's
-- ARGV[3] incarnation (a counter below it went back: Redis lost acknowledged writes, so the
-- campaign is suspended here rather than hand them out again; unless an admin already lifted
-- a suspension that covered it, 'cleared_high'; a campaign created again starts afresh);
-- ARGV[4] when a call that issues more than one coupon writes them as one batch entry: '1'
-- always, '0' never, '' once the relays allow it (meta 'outbox_format' >= 2);
-- ARGV[5] for a bucket, the bucket count its users were routed by ('' otherwise): a bucket
-- of a campaign created again with another count answers UNKNOWN (its users may be
-- another's), and the caller learns the buckets anew;
-- then three per user: the user id, the coupon code to use if a coupon is issued, and with a
-- waiting room ('wr' = '1') the expiry the user's verified admission token carries ('' without
-- one); it must be the user's live admission, which the coupon then ends in this same call
-- (ADMISSION_REQUIRED otherwise; holders and sold-out answers need none).
-- Returns four values per user, in the order asked: status, detail, incarnation, counter.
-- ISSUED/ALREADY carry the holder record "seq:issuedMs:code" and the campaign's incarnation;
-- ISSUED also the issued counter (the seq itself, but in a bucket). A sharded campaign's own
-- meta names its buckets: 'SHARDED', "bucket,…", incarnation, and the caller asks the user's
-- bucket. A bucket's counter runs over its own positions; its 'extents' ("first:count,…") say
-- which of the campaign's seqs they are. A user named twice in a batch gets the coupon once
-- (the second answer is ALREADY).
-- Closed by hand ('closed') and closed by the load-test gate ('gate_closed') are separate
-- flags, answered alike: CLOSED. 'suspended' is set when Redis may have lost acknowledged
-- writes (suspend.lua): nothing new is issued until an admin has audited and unsuspended;
-- 'SUSPENDED', 'NEW' tells the caller this call suspended it.
-- Every redis.call costs about a microsecond of Lua overhead on the hottest path, so a batch
-- makes as few as it can: one read of meta, one of holders, the clock, then per coupon one
-- XADD and for the batch one counter and one holders write (a waiting room adds a read of
-- the admissions and two writes).
-- An outbox entry has five fields, campaign user seq ts code: every relay reads them. A call
-- that issues several coupons may write one batch entry instead (ARGV[4]): 'batch' campaign,
-- 'ts' now, then per coupon user and "seq:code" (core/src/issuance.rs
-- `Issuance::all_from_raw_fields`): one XADD, and one entry for the relay to read,
-- acknowledge and delete, per call instead of per coupon. Relays read it from the release
-- that added it; the relays themselves record in meta 'outbox_format' the lowest format any
-- live relay of the campaign reads (store/outbox_format.rs), so an older relay still running
-- through a rolling upgrade (which would drop such entries as malformed) never meets one.
-- Relays also read the two-field shape (the Kafka message itself, `KafkaRecord`).
local m = redis.call('HMGET', KEYS[1], 'total', 'issued', 'opens_ms', 'closes_ms', 'paused', 'closed',
  'gate_closed', 'suspended', 'incarnation', 'buckets', 'extents', 'wr', 'outbox_format', 'siblings')
local n = (#ARGV - 5) / 3
local out = {}
local function answer(status, detail, inc, counter)
  out[#out + 1] = status
  out[#out + 1] = detail or ''
  out[#out + 1] = inc or ''
  out[#out + 1] = counter or ''
end
local function all(status, detail, inc)
  for _ = 1, n do answer(status, detail, inc) end
  return out
end
if not m[1] then
  -- Flags written into a campaign Redis lost entirely (suspend.lua): suspended, not unknown.
  if m[8] == '1' then return all('SUSPENDED') end
  return all('UNKNOWN')
end
if m[10] then return all('SHARDED', m[10], m[9] or '') end
if m[14] and ARGV[5] ~= '' and m[14] ~= ARGV[5] then return all('UNKNOWN') end
local inc = m[9] or ''
local users = {}
for i = 1, n do users[i] = ARGV[3 * i + 3] end
local held = redis.call('HMGET', KEYS[2], unpack(users))
local new = false
for i = 1, n do
  if not held[i] then new = true end
end
local handed = tonumber(ARGV[2] or '0')
local issued = tonumber(m[2] or '0')
-- What stops every new issuance of the batch, if anything (holders are answered anyway).
local stop, stop_detail, now, now_text
if new and m[8] == '1' then
  -- What this issuer acknowledged reaches the audit even after the suspension.
  if handed > 0 and ARGV[3] == inc and handed > tonumber(redis.call('HGET', KEYS[1], 'acked_high') or '0') then
    redis.call('HSET', KEYS[1], 'acked_high', handed)
  end
  stop = 'SUSPENDED'
elseif new and m[5] == '1' then
  stop = 'PAUSED'
elseif new then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  -- Made text once, as an integer: Lua (and redis.call) turn a number into text with a
  -- float format ("%.14g"/"%.17g", digit by digit), ~6 % of Redis's CPU in a profile under
  -- load when every coupon did so three or four times; seqs are made text as integers too.
  now_text = string.format('%d', now)
  local opens = tonumber(m[3] or '0')
  local closes = tonumber(m[4] or '0')
  if opens > 0 and now < opens then
    stop = 'NOT_OPEN'
  elseif m[6] == '1' or m[7] == '1' or (closes > 0 and now >= closes) then
    stop = 'CLOSED'
  elseif handed > issued and ARGV[3] == inc and handed > tonumber(redis.call('HGET', KEYS[1], 'cleared_high') or '0') then
    local acked = math.max(handed, tonumber(redis.call('HGET', KEYS[1], 'acked_high') or '0'))
    redis.call('HSET', KEYS[1], 'suspended', '1', 'suspended_epoch', 'counter-went-back',
      'suspended_ms', now, 'issued_at_suspend', issued, 'acked_high', acked)
    stop, stop_detail = 'SUSPENDED', 'NEW'
  end
end
local wr = new and not stop and m[12] == '1'
local admitted = wr and redis.call('ZMSCORE', KEYS[4], unpack(users)) or {}
-- The seq of bucket position `pos` (a plain campaign's position is its seq).
local function seq_of(pos)
  if not m[11] then return pos end
  for first, count in string.gmatch(m[11], '(%d+):(%d+)') do
    count = tonumber(count)
    if pos <= count then return tonumber(first) + pos - 1 end
    pos = pos - count
  end
  return nil
end
-- A live admission, and the one the user's token names.
local function admits(adm, claimed)
  return adm > now and adm == claimed
end
local total = tonumber(m[1])
local counter = issued
local records, entries, ended = {}, {}, {}
local fresh = {}
for i = 1, n do
  local user, code = users[i], ARGV[3 * i + 4]
  local rec = held[i] or fresh[user]
  if rec then
    answer('ALREADY', rec, inc)
  elseif stop then
    answer(stop, stop_detail)
  elseif counter >= total then
    answer('SOLD_OUT', m[1])
  elseif wr and not admits(tonumber(admitted[i] or '0'), tonumber(ARGV[3 * i + 5])) then
    answer('ADMISSION_REQUIRED')
  else
    counter = counter + 1
    local seq = seq_of(counter)
    if not seq then return redis.error_reply('bucket extents cover fewer seqs than its total') end
    seq = string.format('%d', seq)
    rec = seq .. ':' .. now_text .. ':' .. code
    fresh[user] = rec
    records[#records + 1] = user
    records[#records + 1] = rec
    entries[#entries + 1] = {user, seq, code}
    if wr then ended[#ended + 1] = user end
    answer('ISSUED', rec, inc, counter)
  end
end
-- The writes, once every answer is known (an error above has written nothing).
if counter > issued then
  redis.call('HINCRBY', KEYS[1], 'issued', counter - issued)
  redis.call('HSET', KEYS[2], unpack(records))
  local batches = ARGV[4] == '1' or (ARGV[4] == '' and tonumber(m[13] or '1') >= 2)
  if batches and #entries > 1 then
    local batch = {'batch', ARGV[1], 'ts', now_text}
    for _, e in ipairs(entries) do
      batch[#batch + 1] = e[1]
      batch[#batch + 1] = e[2] .. ':' .. e[3]
    end
    redis.call('XADD', KEYS[3], '*', unpack(batch))
  else
    for _, e in ipairs(entries) do
      redis.call('XADD', KEYS[3], '*', 'campaign', ARGV[1], 'user', e[1], 'seq', e[2], 'ts', now_text, 'code', e[3])
    end
  end
  if #ended > 0 then
    redis.call('ZREM', KEYS[4], unpack(ended))
    redis.call('HDEL', KEYS[5], unpack(ended))
  end
end
return out
