-- wrk script: GET the URL's path, expect 200 (and, with WRK_EXPECT_BODY, exactly that body).
-- Used for the nginx ceiling (body "ok") and the edge's GET /health.
dofile(os.getenv("WRK_LUA_DIR") .. "/common.lua")
local expect = os.getenv("WRK_EXPECT_BODY")
function check(status, headers, body)
  return status == 200 and (expect == nil or expect == "" or body == expect)
end
