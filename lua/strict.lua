-- strict_globals: after the script's top level has run, assigning a global that
-- does not exist yet is an error. Globals made per request are the classic
-- memory leak of Envoy Lua scripts (they live as long as the worker); globals
-- the top level declared (even as false) stay assignable. rawset(_G, k, v)
-- remains the explicit way out.
local error, tostring = error, tostring
setmetatable(_G, {
  __newindex = function(_, name)
    error("assignment to undeclared global '" .. tostring(name)
      .. "' (strict_globals: declare it at the script's top level, or use a local)", 2)
  end,
})
