"""The Lua scripts the end-to-end tests run, each on its own listener. Scenarios
with native=True also run under Envoy's native Lua filter for comparison."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Scenario:
    script: str | None
    config: dict = field(default_factory=dict)
    native: bool = False
    # Set Envoy's PluginConfig allow_on_headers_stop_iteration and tell the plugin so.
    stop_iteration: bool = False
    # HTTP filters placed before the Lua filter (both flavours).
    pre_filters: list = field(default_factory=list)
    # Serve the listener over TLS (harness.test_certs()).
    tls: bool = False
    # Routes before the built-in ones, and the VM's environment variables.
    routes: list = field(default_factory=list)
    env: dict = field(default_factory=dict)


HEADERS = r"""
function envoy_on_request(h)
  local hd = h:headers()
  hd:add("x-added", "a1")
  hd:add("x-added", "a2")
  hd:replace("x-replaced", "new")
  hd:remove("x-removed")
  hd:add("x-multi-get", hd:get("x-multi") or "none")
  hd:add("x-multi-count", hd:getNumValues("x-multi"))
  hd:add("x-multi-1", hd:getAtIndex("x-multi", 1) or "nil")
  hd:add("x-multi-9", hd:getAtIndex("x-multi", 9) or "nil")
  local seen = {}
  for k, v in pairs(hd) do
    if k:sub(1, 6) == "x-iter" then seen[#seen + 1] = k .. "=" .. v end
  end
  hd:add("x-iterated", table.concat(seen, ";"))
  hd:replace(":path", "/rewritten" .. hd:get(":path"))
end

function envoy_on_response(h)
  local hd = h:headers()
  hd:add("x-resp-added", "r")
  hd:remove("x-upstream")
  hd:add("x-resp-multi", hd:get("x-up-multi"))
  hd:add("x-resp-status", hd:get(":status"))
end
"""

RESPOND = r"""
function envoy_on_request(h)
  local path = h:headers():get(":path")
  if path == "/deny" then
    h:respond({[":status"] = "403", ["x-reason"] = "denied"}, "go away")
  elseif path == "/empty" then
    h:respond({[":status"] = "204", ["x-empty"] = "1"})
  elseif path == "/multi" then
    h:respond({[":status"] = 200, ["x-list"] = {"one", "two"}}, "listed")
  end
end

function envoy_on_response(h)
  h:headers():add("x-response-hook", h:headers():get(":status"))
end
"""

ERROR = r"""
function envoy_on_request(h)
  if h:headers():get("x-fail") then
    local t = nil
    return t.boom
  end
  h:headers():add("x-ok", "1")
end
"""

ERROR_RESPONSE = r"""
function envoy_on_response(h)
  h:headers():add("x-before-error", "1")
  error("response failed")
end
"""

BAD_ARGS = r"""
function envoy_on_request(h)
  local hd = h:headers()
  local path = hd:get(":path")
  if path == "/uncaught" then
    hd:add("x-bad", {})
  end
  local ok, err = pcall(function() hd:add("x-inj", "a\r\nx-evil: 1") end)
  hd:add("x-inj-error", err)
  ok, err = pcall(function() hd:remove(":authority") end)
  hd:add("x-remove-error", err)
  ok, err = pcall(function() h:respond({[":status"] = "42"}) end)
  hd:add("x-respond-error", err)
end
"""

SHARED_A = r"""
who = "a"
count = 0
function envoy_on_request(h)
  count = count + 1
  h:headers():add("x-who", who)
  h:headers():add("x-count", count)
end
"""

SHARED_B = r"""
function envoy_on_request(h)
  h:headers():add("x-who", tostring(who))
end
"""

LOGS = r"""
function envoy_on_request(h)
  h:logDebug("debug message")
  h:logInfo("info message")
  h:logWarn("warn message")
  h:logErr("error message")
  h:logCritical("critical message")
  h:headers():logInfo("from the header object")
end
"""

# The handle and a header map kept in upvalues and used by the next request
# (src/api/object.rs: plain userdata naming their stream by id).
KEPT = r"""
local kept_handle, kept_headers
function envoy_on_request(h)
  local hd = h:headers()
  if kept_handle then
    local function try(f, ...)
      local ok, e = pcall(f, ...)
      return ok and "ok" or e
    end
    hd:add("x-kept-get", try(kept_headers.get, kept_headers, ":path"))
    hd:add("x-kept-add", try(kept_headers.add, kept_headers, "x-a", "1"))
    hd:add("x-kept-headers", try(kept_handle.headers, kept_handle))
    hd:add("x-kept-escape", try(kept_handle.base64Escape, kept_handle, "x"))
    hd:add("x-kept-pairs", try(function() for _ in pairs(kept_headers) do end end))
    hd:add("x-wrong-self", try(hd.add, h, "x-b", "1"))
    hd:add("x-same", tostring(h:headers() == hd) .. " " .. tostring(kept_headers == hd))
  end
  kept_handle, kept_headers = h, hd
end
"""

SCENARIOS: dict[str, Scenario] = {
    "kept": Scenario(KEPT),
    "headers": Scenario(HEADERS, native=True),
    "respond": Scenario(RESPOND, native=True),
    "error": Scenario(ERROR, native=True),
    "error_response": Scenario(ERROR_RESPONSE),
    "fail_open": Scenario(ERROR, {"fail_open": True}),
    "bad_args": Scenario(BAD_ARGS),
    "shared_a": Scenario(SHARED_A),
    "shared_b": Scenario(SHARED_B),
    "logs": Scenario(LOGS),
    # The Envoy-style field instead of inline_code.
    "datasource": Scenario(
        None,
        {"default_source_code": {"inline_string": "function envoy_on_request(h) h:headers():add('x-ds', 'yes') end"}},
    ),
}
