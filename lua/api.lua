-- Builds the method tables of the API objects from the raw Rust methods.
--
-- Arguments: raw (type name -> method name -> function), FAIL, YIELD and WAIT
-- (light userdata markers). Returns: type name -> {methods = table, pairs = function?}.
--
-- A raw method reports a script error by returning FAIL, message. The wrappers
-- raise it with error(message, 2), so the script sees a plain string that starts
-- with its own chunk name and line, as Envoy's luaL_error messages do.
--
-- A raw blocking method returns WAIT when what it needs has not arrived (it has
-- recorded what it waits for); the wrapper yields YIELD to the stream driver and
-- calls it again once the driver resumes the coroutine.
--
-- RESOLVE (type name -> function): the handle and header maps are plain userdata
-- (src/api/object.rs); their wrappers pass resolve(self) to the raw method.
-- NATIVE (type name -> method name -> function): methods that are Lua C
-- functions raising their own errors, used as they are.
local raw, FAIL, YIELD, WAIT, RESOLVE, NATIVE = ...
local error, yield = error, coroutine.yield

-- How many values each method returns (wrappers return exactly that many; "*":
-- whatever the raw method returns). NATIVE methods need no entry; theirs are
-- kept so the table still lists every method.
local RESULTS = {
  Handle = {
    headers = 1, downstreamRequestHeaders = 1,
    base64Escape = 1, base64Decode = 1, timestamp = 1, timestampString = 1,
    streamInfo = 1, connection = 1,
    metadata = 1, route = 1, virtualHost = 1, filterContext = 1, connectionStreamInfo = 1,
    importPublicKey = 1, verifySignature = 2, setUpstreamOverrideHost = 0, clearRouteCache = 0, stats = 1,
    sharedData = 1,
  },
  HeaderMap = {
    get = 1, getAtIndex = 1, getNumValues = 1, add = 0, replace = 0, remove = 0, setHttp1ReasonPhrase = 0,
  },
  Buffer = { length = 1, getBytes = 1, setBytes = 1 },
  StreamInfo = {
    protocol = 1, downstreamLocalAddress = 1, downstreamDirectLocalAddress = 1, downstreamRemoteAddress = 1,
    downstreamDirectRemoteAddress = 1, requestedServerName = 1, routeName = 1, dynamicMetadata = 1,
    filterState = 1, downstreamSslConnection = 1, dynamicTypedMetadata = 1, virtualClusterName = 1,
    drainConnectionUponCompletion = 0,
  },
  DynamicMetadata = { get = "*", set = 0 },
  Connection = { ssl = 1 },
  FilterState = { get = "*", set = 0 },
  Metadata = { get = "*" },
  Route = { metadata = 1 },
  PublicKey = { get = 1 },
  Stats = { counter = 1, gauge = 1, histogram = 1 },
  Counter = { inc = 0, add = 0, value = 1 },
  Gauge = { inc = 0, dec = 0, add = 0, sub = 0, set = 0, value = 1 },
  Histogram = { recordValue = 0 },
  Ssl = {
    peerCertificatePresented = 1, peerCertificateValidated = 1, uriSanLocalCertificate = 1,
    uriSanPeerCertificate = 1, dnsSansLocalCertificate = 1, dnsSansPeerCertificate = 1,
    oidsPeerCertificate = 1, oidsLocalCertificate = 1, sha256PeerCertificateDigest = 1,
    serialNumberPeerCertificate = 1, issuerPeerCertificate = 1, subjectPeerCertificate = 1,
    subjectLocalCertificate = 1, urlEncodedPemEncodedPeerCertificate = 1,
    urlEncodedPemEncodedPeerCertificateChain = 1, parsedSubjectPeerCertificate = 1,
    validFromPeerCertificate = 1, expirationPeerCertificate = 1, sessionId = 1, ciphersuiteId = 1,
    ciphersuiteString = 1, tlsVersion = 1,
  },
  ParsedSubject = { commonName = 1, organizationName = 1 },
  SharedData = { get = 2, set = "*" },
}
local LOG = { logTrace = 0, logDebug = 0, logInfo = 0, logWarn = 0, logErr = 0, logCritical = 0 }

local pack, unpack = table.pack, table.unpack

local function as_is(self) return self end

-- resolve: RESOLVE[type] for the plain-userdata objects, else as_is.
local function wrap(f, n, resolve)
  if n == "*" then -- as many values as the raw method returns (possibly none)
    return function(self, ...)
      local r = pack(f(resolve(self), ...))
      if r[1] == FAIL then error(r[2], 2) end
      return unpack(r, 1, r.n)
    end
  end
  if n == 0 then
    return function(self, ...)
      local a, b = f(resolve(self), ...)
      if a == FAIL then error(b, 2) end
    end
  end
  if n == 2 then
    return function(self, ...)
      local a, b = f(resolve(self), ...)
      if a == FAIL then error(b, 2) end
      return a, b
    end
  end
  return function(self, ...)
    local a, b = f(resolve(self), ...)
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
      methods[name] = wrap(f, n, RESOLVE[type_name] or as_is)
    end
  end
  for name, f in pairs(NATIVE[type_name] or {}) do methods[name] = f end
  objects[type_name] = { methods = methods }
end

local handle = objects.Handle.methods
local raw_handle = raw.Handle
local RH = RESOLVE.Handle

-- A blocking method with one result: yields until the raw part has it.
-- (self stays referenced here, so the resolved pointer stays valid across yields.)
local function blocking(f)
  return function(self, arg)
    local s = RH(self)
    local a, b = f(s, arg)
    while a == WAIT do
      yield(YIELD)
      a, b = f(s, arg)
    end
    if a == FAIL then error(b, 2) end
    return a
  end
end

handle.body = blocking(raw_handle._body)
handle.trailers = blocking(raw_handle._trailers)

-- bodyChunks(): an iterator whose every step waits for the next data frame.
local raw_chunks, raw_next = raw_handle._bodyChunks, raw_handle._nextChunk
handle.bodyChunks = function(self)
  local a, b = raw_chunks(RH(self))
  if a == FAIL then error(b, 2) end
  return function()
    local c, m = raw_next(RH(self))
    while c == WAIT do
      yield(YIELD)
      c, m = raw_next(RH(self))
    end
    if c == FAIL then error(m, 2) end
    return c
  end
end

-- httpCall(...): (headers, body) once the answer arrives; nothing if asynchronous.
local raw_call, raw_result = raw_handle._httpCall, raw_handle._httpCallResult
handle.httpCall = function(self, ...)
  local s = RH(self)
  local a, b = raw_call(s, ...)
  if a == FAIL then error(b, 2) end
  if a == nil then return end
  while a == WAIT do
    yield(YIELD)
    a, b = raw_result(s)
  end
  if a == FAIL then error(b, 2) end
  return a, b
end

-- respond(headers, body): validated and sent by Rust, then the coroutine parks
-- for the rest of the stream, as in Envoy (no script code runs after it).
local raw_respond = raw_handle._respond
handle.respond = function(self, headers, body)
  local a, b = raw_respond(RH(self), headers, body)
  if a == FAIL then error(b, 2) end
  while true do yield(YIELD) end
end

-- pairs(obj): iterates a snapshot (header entries in wire order; metadata namespaces).
local function pairs_of(raw_pairs, resolve)
  resolve = resolve or as_is
  return function(self)
    local it, msg = raw_pairs(resolve(self))
    if it == FAIL then error(msg, 2) end
    return it, self, nil
  end
end
objects.HeaderMap.pairs = pairs_of(raw.HeaderMap._pairs, RESOLVE.HeaderMap)
objects.DynamicMetadata.pairs = pairs_of(raw.DynamicMetadata._pairs)
objects.Metadata.pairs = pairs_of(raw.Metadata._pairs)

return objects
