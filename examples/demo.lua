-- A sample script: tags requests, blocks one path, and reports on the response.
-- Run it with scripts/demo.sh.
local blocked = { ["/admin"] = true }
local served = 0 -- per-VM state persists across requests, as in Envoy

function envoy_on_request(handle)
  local headers = handle:headers()
  local path = headers:get(":path")
  if blocked[path] then
    handle:logWarn("blocking " .. path)
    handle:respond({ [":status"] = "403", ["x-blocked-by"] = "lua" }, "forbidden\n")
  end
  if headers:get("x-explode") then
    error("the client asked for it") -- fails closed: 500, details lua_script_error
  end
  served = served + 1
  headers:add("x-request-number", served)
  headers:replace("x-greeting", "hello from lua")
end

function envoy_on_response(handle)
  local headers = handle:headers()
  headers:add("x-lua-status", headers:get(":status"))
  headers:remove("server")
end
