-- Trims the standard library to what a request script may use: no file or
-- process access, no binary chunks. Runs once per Lua state, before the script.
local load, select = load, select

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
