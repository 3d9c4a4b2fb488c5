-- Builds the method tables of the API objects from the raw Rust methods.
--
-- Arguments: raw (type name -> method name -> function), FAIL and YIELD (light
-- userdata markers). Returns: type name -> {methods = table, pairs = function?}.
--
-- A raw method reports a script error by returning FAIL, message. The wrappers
-- raise it with error(message, 2), so the script sees a plain string that starts
-- with its own chunk name and line, as Envoy's luaL_error messages do.
local raw, FAIL, YIELD = ...
local error, yield = error, coroutine.yield

-- How many values each method returns (wrappers return exactly that many).
local RESULTS = {
  Handle = { headers = 1 },
  HeaderMap = { get = 1, getAtIndex = 1, getNumValues = 1, add = 0, replace = 0, remove = 0 },
}
local LOG = { logTrace = 0, logDebug = 0, logInfo = 0, logWarn = 0, logErr = 0, logCritical = 0 }

local function wrap(f, n)
  if n == 0 then
    return function(...)
      local a, b = f(...)
      if a == FAIL then error(b, 2) end
    end
  end
  return function(...)
    local a, b = f(...)
    if a == FAIL then error(b, 2) end
    return a
  end
end

local objects = {}
for type_name, fns in pairs(raw) do
  local methods, results = {}, RESULTS[type_name] or {}
  for name, f in pairs(fns) do
    if name:sub(1, 1) ~= "_" then
      local n = results[name] or LOG[name]
      if n == nil then error("api.lua: no result count for " .. type_name .. "." .. name) end
      methods[name] = wrap(f, n)
    end
  end
  objects[type_name] = { methods = methods }
end

-- respond(headers, body): validated and sent by Rust, then the coroutine parks
-- for the rest of the stream, as in Envoy (no script code runs after it).
local raw_respond = raw.Handle._respond
objects.Handle.methods.respond = function(self, headers, body)
  local a, b = raw_respond(self, headers, body)
  if a == FAIL then error(b, 2) end
  while true do yield(YIELD) end
end

-- pairs(headers): iterates a snapshot of the entries, in wire order.
local raw_pairs = raw.HeaderMap._pairs
objects.HeaderMap.pairs = function(self)
  local it, msg = raw_pairs(self)
  if it == FAIL then error(msg, 2) end
  return it, self, nil
end

return objects
