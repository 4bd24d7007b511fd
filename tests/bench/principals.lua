-- wrk script: the stateless (2026-07-28) tools/call of stateless.lua, each request signed
-- with the next of WRK_KEYS (comma-separated API keys, one per principal) in turn, so N
-- principals call at once. Env: WRK_LUA_DIR, WRK_KEYS, WRK_MCP_NAME, WRK_ARGS.
dofile(os.getenv("WRK_LUA_DIR") .. "/common.lua")
local name = os.getenv("WRK_MCP_NAME")
local body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"' .. name
  .. '","arguments":' .. (os.getenv("WRK_ARGS") or "{}") .. ','
  .. '"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
  .. '"io.modelcontextprotocol/clientInfo":{"name":"mcp-edge-bench","version":"1"},'
  .. '"io.modelcontextprotocol/clientCapabilities":{}}}}'
local keys = {}
for k in string.gmatch(os.getenv("WRK_KEYS"), "[^,]+") do
  table.insert(keys, k)
end
local requests = {}
-- In init: wrk sets the Host header only once the script has loaded.
function init(args)
for i, k in ipairs(keys) do
  requests[i] = wrk.format("POST", "/mcp", {
    ["Host"] = wrk.headers["Host"],
    ["Authorization"] = "Bearer " .. k,
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json, text/event-stream",
    ["MCP-Protocol-Version"] = "2026-07-28",
    ["Mcp-Method"] = "tools/call",
    ["Mcp-Name"] = name,
  }, body)
end
end
local next_key = 0
function request()
  next_key = next_key % #requests + 1
  return requests[next_key]
end
function check(status, headers, body)
  return rpc_ok(status, body)
end
