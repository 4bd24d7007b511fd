-- Shared by the wrk scripts of tests/bench-path.sh: every response is checked and the
-- run ends with one machine-readable line:
--   WRK_RESULT requests=N duration_us=N rps=X p50_us=N p90_us=N p99_us=N max_us=N
--              failed=N checked=N socket_errors=N
-- failed = responses that did not pass `check` (a non-200 status counts) + socket errors
-- (connect/read/write/timeout). A script sets `check(status, headers, body)` (true = good)
-- before wrk calls `response`. The first bad reply of each thread is printed to stderr.
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

failed = 0
checked = 0
first_bad = nil

function response(status, headers, body)
  checked = checked + 1
  if not check(status, headers, body) then
    failed = failed + 1
    if first_bad == nil then
      first_bad = "HTTP " .. status .. " " .. string.sub(body or "", 1, 400)
    end
  end
end

-- A JSON-RPC reply (JSON body or SSE stream) that holds a result and no error.
function rpc_ok(status, body)
  return status == 200 and body ~= nil
    and string.find(body, '"result"', 1, true) ~= nil
    and string.find(body, '"isError":true', 1, true) == nil
    and string.find(body, '"error"', 1, true) == nil
end

function done(summary, latency, requests)
  local bad, seen = 0, 0
  for _, t in ipairs(threads) do
    bad = bad + (t:get("failed") or 0)
    seen = seen + (t:get("checked") or 0)
    local fb = t:get("first_bad")
    if fb ~= nil then
      io.stderr:write("wrk: first failed reply (thread " .. t:get("tid") .. "): " .. fb .. "\n")
    end
  end
  local e = summary.errors
  local sock = e.connect + e.read + e.write + e.timeout
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d failed=%d checked=%d socket_errors=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    bad + sock, seen, sock))
end
