-- wrk script: session-mode (2025-06-18) tools/call over sessions opened beforehand by
-- tests/bench/open_sessions.py. The ids in WRK_SESSIONS_FILE (one a line) are split
-- between wrk's threads; each thread sends its calls to its sessions in turn, so all
-- sessions carry load whatever the connection count. Every call has its own JSON-RPC id.
-- Env: WRK_LUA_DIR, WRK_KEY, WRK_SESSIONS_FILE, WRK_MCP_NAME, WRK_ARGS, WRK_THREADS.
dofile(os.getenv("WRK_LUA_DIR") .. "/common.lua")
local name = os.getenv("WRK_MCP_NAME")
local args = os.getenv("WRK_ARGS") or "{}"
local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
local sessions = {}
local headers = {}
local next_i = 0
local next_id = 0

function init(argv)
  local ids = {}
  for line in io.lines(os.getenv("WRK_SESSIONS_FILE")) do
    if line ~= "" then table.insert(ids, line) end
  end
  -- tid is set by setup(); sessions i with i % nthreads == tid belong to this thread.
  for i, id in ipairs(ids) do
    if (i - 1) % nthreads == tid then table.insert(sessions, id) end
  end
  if #sessions == 0 then error("thread " .. tid .. " got no session") end
  for i, id in ipairs(sessions) do
    headers[i] = {
      ["Authorization"] = "Bearer " .. os.getenv("WRK_KEY"),
      ["Content-Type"] = "application/json",
      ["Accept"] = "application/json, text/event-stream",
      ["MCP-Protocol-Version"] = "2025-06-18",
      ["Mcp-Session-Id"] = id,
    }
  end
end

function request()
  next_i = next_i % #sessions + 1
  next_id = next_id + 1
  local body = '{"jsonrpc":"2.0","id":' .. next_id .. ',"method":"tools/call","params":{"name":"'
    .. name .. '","arguments":' .. args .. "}}"
  return wrk.format("POST", "/mcp", headers[next_i], body)
end

function check(status, headers, body)
  return rpc_ok(status, body)
end
