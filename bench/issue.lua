-- wrk script for bench/issue.sh. Every run goes through this script, so the client's
-- per-request Lua cost is the same for each path and the ratios compare the server only.
--   wrk -s bench/issue.lua URL -- healthz TOKENS THREADS
--   wrk -s bench/issue.lua URL -- issue CAMPAIGN TOKENS THREADS   (a fresh user per request)
--   wrk -s bench/issue.lua URL -- sold-out CAMPAIGN TOKENS THREADS   (the same requests)
-- A last argument DEPTH (default 1) pipelines: each write carries DEPTH requests, each for
-- its own user, and the next write goes when all of their answers are in (HTTP/1.1
-- pipelining; wrk counts every answer).
-- TOKENS is a file of `<user> <bearer token>` lines, each for a distinct user
-- (`stampede-service token --with-sub --sub-prefix P --count N`); thread i of THREADS
-- takes every THREADS-th line from line i. The body names the user too, so the same run
-- works against `serve --auth none` (or a build from before tokens) for an A/B. Signing in Lua would cost the client more than the server
-- spends verifying, so the tokens are minted before the run. Every request carries one
-- (healthz ignores it) so the client's cost stays equal across paths. A thread that runs
-- out starts over (those users then get 200, their coupon again) and done() says so; on
-- /healthz and a sold-out campaign a repeated user is answered as a fresh one, so those
-- runs (which outrun the tokens on fast machines) start over without a word.
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "healthz"
  local file, nthreads
  if mode == "healthz" then
    file, nthreads, depth = args[2], tonumber(args[3] or "1"), tonumber(args[4] or "1")
  else
    campaign, file, nthreads = args[2] or "bench", args[3], tonumber(args[4] or "1")
    depth = tonumber(args[5] or "1")
  end
  path = "/v1/campaigns/" .. (campaign or "bench") .. "/issue"
  tokens, counter, wrapped = {}, 0, 0
  local n = 0
  for line in io.lines(file) do
    if n % nthreads == tid - 1 then
      local user, token = line:match("^(%S+) (%S+)$")
      tokens[#tokens + 1] = { "Bearer " .. token, '{"userId":"' .. user .. '"}' }
    end
    n = n + 1
  end
  assert(#tokens > 0, "no tokens for thread " .. tid .. " in " .. tostring(file))
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  if depth == 1 then
    return one()
  end
  local batch = {}
  for i = 1, depth do
    batch[i] = one()
  end
  return table.concat(batch)
end

function one()
  counter = counter + 1
  if counter > #tokens then
    counter, wrapped = 1, wrapped + 1
  end
  local t = tokens[counter]
  headers["Authorization"] = t[1]
  if mode == "healthz" then
    return wrk.format("GET", "/healthz", headers)
  end
  return wrk.format("POST", path, headers, t[2])
end

function done()
  for _, t in ipairs(threads) do
    local w = t:get("wrapped")
    if w and w > 0 and t:get("mode") == "issue" then
      io.stderr:write("bench/issue.lua: thread ", t:get("tid"), " ran out of tokens ", w,
        " time(s): later requests repeated users; mint more (TOKENS_PER_SEC)\n")
    end
  end
end
