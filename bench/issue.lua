-- wrk script for bench/issue.sh. Every run goes through this script, so the client's
-- per-request Lua cost is the same for each path and the ratios compare the server only.
--   wrk -s bench/issue.lua URL -- healthz
--   wrk -s bench/issue.lua URL -- issue CAMPAIGN RUN_ID   (a fresh user per request)
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "healthz"
  campaign = args[2] or "bench"
  run = args[3] or "r"
  path = "/v1/campaigns/" .. campaign .. "/issue"
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  counter = counter + 1
  if mode == "healthz" then
    return wrk.format("GET", "/healthz")
  end
  local body = '{"userId":"' .. run .. "-" .. tid .. "-" .. counter .. '"}'
  return wrk.format("POST", path, headers, body)
end
