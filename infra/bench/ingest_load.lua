-- wrk script for infra/bench/ingest_load.sh: POSTs pre-signed requests, each once.
-- wrk -s ingest_load.lua <url> -- <requests file> <api key> <threads>
-- Thread k of n takes the lines with (line number % n) == k, so no two threads send the
-- same request (a repeat would be absorbed as a replay, not written).
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

local requests = {}
local next_request = 0

function init(args)
  local file, key, n = args[1], args[2], tonumber(args[3])
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
  local line_no = 0
  for line in io.lines(file) do
    if line_no % n == id then
      local path, body = line:match("^([^\t]+)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", path, headers, body)
    end
    line_no = line_no + 1
  end
end

function request()
  next_request = next_request + 1
  if next_request > #requests then
    wrk.thread:stop()
    next_request = #requests
  end
  return requests[next_request]
end
