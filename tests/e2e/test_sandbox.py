"""The sandbox in real Envoy: every way a script can run away (endless loops,
also under pcall, unbounded memory, runaway recursion through Lua and through C)
fails that request closed, and the next request on the same worker succeeds."""
from __future__ import annotations

import time
import uuid

import pytest

import harness
from conftest import deploy
from scenarios import Scenario

GUARDED = r"""
function envoy_on_request(h)
  local hd = h:headers()
  local bad = hd:get("x-bad")
  if bad == "loop" then
    while true do end
  elseif bad == "pcall-loop" then
    while true do pcall(function() while true do end end) end
  elseif bad == "memory" then
    local t = {}
    while true do t[#t + 1] = string.rep("x", 4096) .. #t end
  elseif bad == "recursion" then
    local function f() return 1 + f() end
    f()
  elseif bad == "c-recursion" then
    local t = setmetatable({}, {__index = function(t, k) return t[k] end})
    local x = t.x
  elseif bad == "pattern" then
    string.find(string.rep("a", 20), string.rep("(", 40) .. "a" .. string.rep(")", 40))
  elseif bad == "huge-rep" then
    local s = string.rep("x", 1 << 40)
  elseif bad == "table-error" then
    error({code = 1})
  elseif bad == "metamethod-error" then
    local t = setmetatable({}, {__add = function() error("boom in __add") end})
    local x = t + 1
  elseif bad == "yield" then
    coroutine.yield("from the script")
  end
  hd:add("x-good", "yes")
end
"""

CASES = {
    "guarded": Scenario(GUARDED, config={"memory_limit_bytes": 16 << 20}),
}


@pytest.fixture(scope="module", params=harness.FULL_SUITE_VERSIONS)
def sandbox(request, upstream):
    dep = deploy(request.param, upstream, list(CASES), CASES)
    yield dep
    dep.envoy.stop()


def good_request_follows(dep, upstream):
    test_id = uuid.uuid4().hex
    resp = harness.request(dep.port("guarded"), "/", headers=[("x-test-id", test_id)])
    assert resp.status == 200
    assert upstream.find(test_id).header("x-good") == "yes"


@pytest.mark.parametrize(
    "bad,message",
    [
        ("loop", r"inline_code:6: instruction budget exceeded: more than 10000000 Lua instructions in one callback"),
        ("pcall-loop", r"instruction budget exceeded"),
        ("memory", r"not enough memory"),
        ("recursion", r"stack overflow|not enough memory"),
        ("c-recursion", r"stack overflow"),
        ("pattern", r"too many captures"),
        ("huge-rep", r"not enough memory|resulting string too large"),
        ("table-error", r"table: 0x"),
        ("metamethod-error", r"boom in __add"),
        ("yield", r"script performed an unexpected yield"),
    ],
)
def test_runaway_scripts_fail_that_request_only(sandbox, upstream, bad, message):
    for _ in range(2):  # twice: the VM is as good after the first failure as before
        started = time.monotonic()
        resp = harness.request(sandbox.port("guarded"), "/", headers=[("x-bad", bad)], timeout=30)
        elapsed = time.monotonic() - started
        assert resp.status == 500, resp
        assert elapsed < 5, f"{bad} took {elapsed:.2f}s"
        good_request_follows(sandbox, upstream)
    sandbox.envoy.wait_log(r"script error in envoy_on_request: .*(" + message + ")")
    assert "failed: Uncaught" not in sandbox.envoy.log()  # never a trap


def test_the_default_budget_stops_an_endless_loop_in_about_a_tenth_of_a_second(sandbox, upstream):
    harness.request(sandbox.port("guarded"), "/", headers=[("x-bad", "loop")])  # warm up
    times = []
    for _ in range(5):
        started = time.monotonic()
        resp = harness.request(sandbox.port("guarded"), "/", headers=[("x-bad", "loop")])
        times.append(time.monotonic() - started)
        assert resp.status == 500
    times.sort()
    print(f"endless loop stopped after {times[2] * 1000:.0f} ms (median of 5)")
    assert times[2] < 1.0
