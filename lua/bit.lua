-- LuaJIT's `bit` module on Lua 5.4 integers: every result is a signed 32-bit
-- number, as in LuaJIT, so scripts written for Envoy's LuaJIT keep working.
local floor, fmod, type, mtype = math.floor, math.fmod, type, math.type
local error, select, format = error, select, string.format

-- Any number -> its value modulo 2^32, as a signed 32-bit integer.
local function tobit(x)
  if type(x) ~= "number" then
    error("bad argument #1 to 'tobit' (number expected, got " .. type(x) .. ")", 2)
  end
  if mtype(x) == "float" then
    if x ~= x or x == 1 / 0 or x == -1 / 0 then return 0 end
    x = fmod(floor(x + 0.5), 4294967296)
  end
  x = math.tointeger(x) & 0xffffffff
  if x >= 0x80000000 then x = x - 0x100000000 end
  return x
end

local function fold(op)
  return function(x, ...)
    local r = tobit(x)
    for i = 1, select("#", ...) do
      r = op(r, tobit((select(i, ...))))
    end
    return tobit(r)
  end
end

local function u32(x) return tobit(x) & 0xffffffff end

local bit = {
  tobit = tobit,
  band = fold(function(a, b) return a & b end),
  bor = fold(function(a, b) return a | b end),
  bxor = fold(function(a, b) return a ~ b end),
  bnot = function(x) return tobit(~tobit(x)) end,
  lshift = function(x, n) return tobit(u32(x) << (tobit(n) & 31)) end,
  rshift = function(x, n) return tobit(u32(x) >> (tobit(n) & 31)) end,
  arshift = function(x, n)
    local v, s = tobit(x), tobit(n) & 31
    if v >= 0 then return v >> s end
    return tobit(~((~v) >> s))
  end,
  rol = function(x, n)
    local v, s = u32(x), tobit(n) & 31
    return tobit((v << s) | (v >> (32 - s)))
  end,
  ror = function(x, n)
    local v, s = u32(x), tobit(n) & 31
    return tobit((v >> s) | (v << (32 - s)))
  end,
  bswap = function(x)
    local v = u32(x)
    return tobit(((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >> 8) & 0xff00) | (v >> 24))
  end,
  tohex = function(x, n)
    n = n == nil and 8 or tobit(n)
    local upper = n < 0
    if upper then n = -n end
    if n > 8 then n = 8 end
    if n == 0 then return "" end
    local v = u32(x)
    if n < 8 then v = v & ((1 << (4 * n)) - 1) end
    return format(upper and "%0" .. n .. "X" or "%0" .. n .. "x", v)
  end,
}

return bit
