-- wrk script for bench/waiting-room.sh: every user of TOKENS joins one campaign's waiting
-- room once (POST /v1/campaigns/{c}/queue), then the thread stops.
--   wrk -s bench/queue-join.lua URL -- CAMPAIGN TOKENS THREADS
-- TOKENS is a file of `<user> <bearer token>` lines (`stampede-service token --with-sub
-- --sub-prefix P --count N`); thread i of THREADS takes every THREADS-th line from line i.
-- Once a thread has sent its users it sends GET /idle (404 on the public port, no Redis)
-- until every join has been answered, then stops: never a join cut off in flight, never a
-- user repeated (a repeat would meet the per-user rate limit). done() prints
-- `joined=<201s> again=<200s> other=<rest> (statuses: …)`.
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local campaign, file, nthreads = args[1], args[2], tonumber(args[3] or "1")
  path = "/v1/campaigns/" .. campaign .. "/queue"
  users, sent, answered = {}, 0, 0
  created, again, other, codes = 0, 0, 0, ""
  seen_codes = {}
  local n = 0
  for line in io.lines(file) do
    if n % nthreads == tid - 1 then
      local user, token = line:match("^(%S+) (%S+)$")
      users[#users + 1] = { "Bearer " .. token, '{"userId":"' .. user .. '"}' }
    end
    n = n + 1
  end
  assert(#users > 0, "no tokens for thread " .. tid .. " in " .. tostring(file))
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  if sent >= #users then return wrk.format("GET", "/idle") end
  sent = sent + 1
  headers["Authorization"] = users[sent][1]
  return wrk.format("POST", path, headers, users[sent][2])
end

function response(status)
  if status == 404 then return end
  if status == 201 then created = created + 1
  elseif status == 200 then again = again + 1
  else
    other = other + 1
    if not seen_codes[status] then seen_codes[status] = true; codes = codes .. " " .. status end
  end
  answered = answered + 1
  if answered >= #users then wrk.thread:stop() end
end

function done()
  local c, a, o, codes = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    c, a, o = c + t:get("created"), a + t:get("again"), o + t:get("other")
    codes = codes .. t:get("codes")
  end
  io.write(string.format("joined=%d again=%d other=%d (statuses:%s)\n", c, a, o, codes))
end
