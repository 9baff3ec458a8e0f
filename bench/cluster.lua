-- wrk script for bench/cluster.sh: POST /issue for one campaign, a fresh user per request
-- (`<prefix>-<thread>-<n>`), no token: the service runs `--auth none`, so a million users
-- need no minted tokens (the cost of verifying tokens is bench/issue.sh's AUTH=none A/B).
--   wrk -s bench/cluster.lua URL -- CAMPAIGN PREFIX
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  path = "/v1/campaigns/" .. args[1] .. "/issue"
  prefix = args[2] .. "-" .. tid .. "-"
  n = 0
end

function request()
  n = n + 1
  return wrk.format("POST", path, { ["content-type"] = "application/json" },
    '{"userId":"' .. prefix .. n .. '"}')
end
