-- Trims the standard library to what a request script may use and wires up
-- `require`. Runs once per Lua state, before the script.
--
-- Arguments (from src/runtime.rs):
--   exhausted()  the budget error's message once the callback's instruction
--                budget is spent, else nil;
--   getenv(name) the VM's environment (Istio vmConfig.env, WASI environ);
--   modules      pluginConfig.modules: name -> compiled chunk;
--   bundled      bundled helper modules: name -> loader (json, base64, bit);
--   compat       install the LuaJIT-era globals (luajit_compat).
local exhausted, getenv, modules, bundled, compat = ...
local load, select, error, tostring = load, select, error, tostring

-- pcall, xpcall and coroutine.resume raise the budget error again while the
-- budget is spent, so a script cannot catch it and keep running.
local function rethrow_if_exhausted(ok, ...)
  if not ok then
    local budget_error = exhausted()
    if budget_error then error(budget_error, 0) end
  end
  return ok, ...
end
local raw_pcall, raw_xpcall, raw_resume = pcall, xpcall, coroutine.resume
pcall = function(...) return rethrow_if_exhausted(raw_pcall(...)) end
xpcall = function(...) return rethrow_if_exhausted(raw_xpcall(...)) end
coroutine.resume = function(...) return rethrow_if_exhausted(raw_resume(...)) end

dofile = nil
loadfile = nil

-- load() accepts text chunks only (binary chunks can crash the interpreter).
_G.load = function(chunk, chunkname, mode, ...)
  if mode ~= nil and mode ~= "t" and mode ~= "bt" then
    return nil, "attempt to load a " .. tostring(mode) .. " chunk (only text chunks are allowed)"
  end
  if select("#", ...) > 0 then
    return load(chunk, chunkname, "t", ...)
  end
  return load(chunk, chunkname, "t")
end

-- os: the clock and calendar functions, and getenv over the VM's environment.
local keep = { time = true, clock = true, date = true, difftime = true }
for name in pairs(os) do
  if not keep[name] then os[name] = nil end
end
os.getenv = getenv

-- io: there is no file system; opening fails the ordinary Lua way.
local function no_file(path)
  return nil, tostring(path) .. ": No such file or directory (the proxy-wasm-lua sandbox has no file system)", 2
end
io = {
  open = no_file,
  lines = function(path)
    local _, msg = no_file(path)
    error(msg, 2)
  end,
  type = function() return nil end,
}
package.loaded.io = io

-- require: bundled helpers and pluginConfig.modules; no file or C searchers.
-- Writing package.path / package.cpath is harmless: nothing reads them.
package.path, package.cpath = "", ""
package.loadlib = nil
local searchers = package.searchers
local preload_searcher = searchers[1]
for i = #searchers, 1, -1 do searchers[i] = nil end
searchers[1] = preload_searcher
searchers[2] = function(name)
  local chunk = modules[name]
  if chunk then return chunk, "pluginConfig.modules." .. name end
  return "no module '" .. name .. "' in pluginConfig.modules"
end

-- The Rust halves return (nil, message) on failure; raise it at the caller.
local function raising(f)
  return function(...)
    local r, err = f(...)
    if r == nil and err ~= nil then error(err, 2) end
    return r
  end
end
package.preload.json = function()
  local m = bundled.json()
  m.encode, m.decode = raising(m.encode), raising(m.decode)
  return m
end
package.preload.base64 = function()
  local m = bundled.base64()
  m.encode = raising(m.encode)
  return m
end
package.preload.bit = bundled.bit

if compat then
  -- Globals scripts written for Envoy's LuaJIT use.
  unpack = table.unpack
  loadstring = function(chunk, chunkname) return _G.load(chunk, chunkname, "t") end
  table.getn = function(t) return #t end
  math.pow = function(x, y) return x ^ y end
  bit = require("bit")
end
