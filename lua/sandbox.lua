-- Trims the standard library to what a request script may use: no file or
-- process access, no binary chunks. Runs once per Lua state, before the script.
--
-- Argument: exhausted() (Rust): the budget error's message once the callback's
-- instruction budget is spent, else nil. pcall, xpcall and coroutine.resume
-- raise it again while it is, so a script cannot catch it and keep running.
local exhausted = ...
local load, select, error = load, select, error

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

-- os: only the clock and calendar functions.
local keep = { time = true, clock = true, date = true, difftime = true }
for name in pairs(os) do
  if not keep[name] then os[name] = nil end
end
