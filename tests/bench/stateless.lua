-- wrk script: one fixed stateless (2026-07-28) JSON-RPC POST to /mcp, the same request
-- `mcp-edge bench --mode stateless` sends (headers and params._meta as in
-- src/bin/mcp-edge/bench.rs). Env: WRK_LUA_DIR, WRK_KEY (API key), WRK_MCP_METHOD
-- (tools/list | tools/call), WRK_MCP_NAME (tool, tools/call only), WRK_ARGS (JSON object),
-- WRK_PARAM_HEADERS ("Name: value" lines, for x-mcp-header schema properties; optional).
dofile(os.getenv("WRK_LUA_DIR") .. "/common.lua")
local method = os.getenv("WRK_MCP_METHOD")
local name = os.getenv("WRK_MCP_NAME")
local meta = '"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
  .. '"io.modelcontextprotocol/clientInfo":{"name":"mcp-edge-bench","version":"1"},'
  .. '"io.modelcontextprotocol/clientCapabilities":{}}'
local params
if method == "tools/call" then
  params = '{"name":"' .. name .. '","arguments":' .. (os.getenv("WRK_ARGS") or "{}") .. "," .. meta .. "}"
else
  params = "{" .. meta .. "}"
end
wrk.method = "POST"
wrk.path = "/mcp"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"' .. method .. '","params":' .. params .. "}"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("WRK_KEY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = "2026-07-28"
wrk.headers["Mcp-Method"] = method
if method == "tools/call" then
  wrk.headers["Mcp-Name"] = name
end
for line in string.gmatch(os.getenv("WRK_PARAM_HEADERS") or "", "[^\n]+") do
  local k, v = string.match(line, "^([^:]+):%s*(.*)$")
  if k then wrk.headers[k] = v end
end
function check(status, headers, body)
  return rpc_ok(status, body)
end
