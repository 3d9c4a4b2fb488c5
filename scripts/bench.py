#!/usr/bin/env python3
"""Benchmark: the plugin side by side with Envoy's native Lua filter, a minimal
Rust Wasm plugin doing the same work (bench/minimal), the same plus mlua and
Lua 5.4 alone (bench/lua-floor: `header` and memory only), and no filter at all,
in one Envoy binary. Writes docs/benchmark.md and docs/benchmark.png.

  scripts/bench.sh [--rounds 5] [--duration 3] [--envoy 1.40.0] [--quick]

Per round, every (script, variant) cell runs once, interleaved (A B C D A B C D
...). Each cell starts Envoy, checks through the proxy that the filter did its
work (the upstream echoes what the filter added), warms up, then runs wrk with a
fixed connection count and reads Envoy's CPU time and memory from /proc. Medians
over rounds are reported, with ratios to the native Lua filter. The PROBES add
no header to check; a probe whose operation failed fails its requests closed,
which fails the cell (any non-2xx under load does)."""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import harness  # noqa: E402

PLUGIN = ROOT / "dist" / "plugin.wasm"
MINIMAL = ROOT / "dist" / "bench" / "minimal.wasm"
LUA_FLOOR = ROOT / "dist" / "bench" / "lua-floor.wasm"
VARIANTS = ["floor", "native", "minimal", "lua-floor", "plugin"]
# lua-floor (bench/lua-floor) does the `header` work only.
ONLY_HEADER = {"lua-floor"}
SCRIPTS = {
    "noop": "function envoy_on_request(h) end",
    "header": 'function envoy_on_request(h) h:headers():add("x-bench", "1") end\n'
    'function envoy_on_response(h) h:headers():add("x-bench-response", "1") end',
    "body": 'function envoy_on_request(h) local b = h:body() h:headers():add("x-body-length", b:length()) end',
    "httpcall": 'function envoy_on_request(h)\n'
    '  local rh = h:httpCall("callout", {[":method"] = "GET", [":path"] = "/callout", [":authority"] = "callout"}, nil, 5000)\n'
    '  h:headers():add("x-call-status", rh[":status"])\nend',
}
# Probes, run under the plugin only: what one V8-side operation costs on top of
# `noop`. A Wasm exception is how Lua unwinds for an error caught by pcall and
# for every yield (each blocking call: body(), httpCall(), respond()...); a host
# call that returns data re-enters the module to allocate its result.
PROBES = {
    "noop+exception": "function envoy_on_request(h) pcall(error, 'x') end",
    "noop+header read": "function envoy_on_request(h) local v = h:headers():get('user-agent') end",
}
# What the upstream echoes back for each script when the filter did its work.
CHECK = {"noop": None, "header": ("x-echo-bench", "1"), "body": ("x-echo-body-length", "4096"), "httpcall": ("x-echo-call-status", "200")}
BODY = b"x" * 4096
# Heap gauge samples per growth mark (see growth()).
HEAP_SAMPLES = 8
CONNECTIONS = 16


def filt(variant: str, script: str) -> list[dict]:
    if variant == "floor":
        return []
    if variant == "native":
        return [harness.native_lua_filter(SCRIPTS[script])]
    if variant == "minimal":
        f = harness.wasm_filter(script, vm_id="minimal", root_id="", stop_iteration=True)
        f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(MINIMAL)
        return [f]
    if variant == "lua-floor":
        f = harness.wasm_filter("", vm_id="lua-floor", root_id="", stop_iteration=True)
        f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(LUA_FLOOR)
        return [f]
    code = SCRIPTS.get(script) or PROBES[script]
    return [harness.wasm_filter({"inline_code": code, "allow_on_headers_stop_iteration": True}, stop_iteration=True)]


def upstream_config(admin: int, port: int, callout: int) -> dict:
    """A fast upstream (direct responses) that echoes what the filter added."""
    echo = [
        {"header": {"key": f"x-echo-{h}", "value": f"%REQ(x-{h})%"}}
        for h in ("bench", "body-length", "call-status")
    ]

    def lst(name, p, extra):
        lst = harness.listener(name, p, [])
        vh = lst["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]
        vh.pop("metadata", None)
        vh["routes"] = [{"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "ok"}}, **extra}]
        return lst

    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [lst("up", port, {"response_headers_to_add": echo}), lst("callout", callout, {})]},
    }


def proxy_config(admin: int, port: int, up: int, callout: int, variant: str, script: str) -> dict:
    lst = harness.listener("bench", port, filt(variant, script))
    hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
    vh = hcm["route_config"]["virtual_hosts"][0]
    vh.pop("metadata", None)
    vh["routes"] = [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
    lst["per_connection_buffer_limit_bytes"] = 1 << 20
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [lst], "clusters": [harness.cluster("upstream", up), harness.cluster("callout", callout)]},
    }


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    kb = {k: int(v.split()[0]) for k, v in re.findall(r"^(VmRSS|RssAnon):\s+(.*)$", status, re.M)}
    return kb["VmRSS"] / 1024, kb["RssAnon"] / 1024


def wrk(port: int, script: str, duration: float, threads: int = 1) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{CONNECTIONS}", f"-d{max(1, round(duration))}s", "--latency"]
    lua = None
    if script == "body":
        lua = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        lua.write('wrk.method = "POST"\nwrk.body = string.rep("x", 4096)\nwrk.headers["content-type"] = "application/octet-stream"\n')
        lua.close()
        cmd += ["-s", lua.name]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    if lua:
        os.unlink(lua.name)

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": requests, "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": ms("50"), "p99": ms("99"), "bad": int(errors.group(1)) if errors else 0}


def plugin_vm_memory(admin: int) -> dict:
    """The plugin's own gauges (MiB): Lua heap and the VM's linear memory."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?filter=wasmcustom.lua.vm", timeout=5) as r:
        stats = dict(line.split(": ", 1) for line in r.read().decode().splitlines() if ": " in line)
    return {
        "lua_heap": int(stats.get("wasmcustom.lua.vm.heap_bytes", 0)) / 2**20,
        "linear": int(stats.get("wasmcustom.lua.vm.linear_memory_bytes", 0)) / 2**20,
    }


def check_work(port: int, script: str) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=BODY if script == "body" else None, method="POST" if script == "body" else "GET")
    with urllib.request.urlopen(req, timeout=5) as r:
        headers = {k.lower(): v for k, v in r.getheaders()}
    expected = CHECK.get(script)
    if expected and headers.get(expected[0]) != expected[1]:
        raise RuntimeError(f"{script}: the filter did not do its work ({expected[0]}={headers.get(expected[0])!r})")


def cell(version, up, callout, variant, script, concurrency, duration, warmup) -> dict:
    admin, port = harness.free_port(), harness.free_port()
    envoy = harness.Envoy(version, proxy_config(admin, port, up, callout, variant, script), admin)
    started = time.monotonic()
    start(envoy, concurrency)
    try:
        if variant != "floor":
            check_work(port, script)
        ready = time.monotonic() - started
        wrk(port, script, warmup)
        pid = envoy.proc.pid
        cpu0 = proc_cpu(pid)
        result = wrk(port, script, duration)
        cpu = proc_cpu(pid) - cpu0
        rss, anon = proc_mem(pid)
        if result["bad"]:
            raise RuntimeError(f"{variant}/{script}: {result['bad']} non-2xx responses under load")
        vm = plugin_vm_memory(envoy.admin_port) if variant == "plugin" else {}
        return {**result, **vm, "cpu_per_10k": cpu / result["requests"] * 10000, "rss": rss, "anon": anon, "ready": ready}
    finally:
        envoy.stop()


def start(envoy: harness.Envoy, concurrency: int) -> None:
    """harness.Envoy.start with another --concurrency and quieter logs."""
    cfg = envoy.workdir / "envoy.json"
    cfg.write_text(json.dumps(envoy.config))
    envoy.proc = subprocess.Popen(
        [str(harness.envoy_binary(envoy.version)), "-c", str(cfg), "--concurrency", str(concurrency),
         "--disable-hot-restart", "--use-dynamic-base-id", "--log-level", "warn", "--log-path", str(envoy.log_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if envoy.proc.poll() is not None:
            raise RuntimeError(f"envoy exited: {envoy.log()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{envoy.admin_port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("envoy did not become ready")


def growth(version: str, up: int, callout: int, total: int) -> dict:
    """RSS and the plugin's Lua heap after ~10% of `total` requests and after all
    of them, on one worker (a leak shows as growth between the two). The heap
    gauge is a sample (every 256 streams) of a heap that also holds garbage not
    yet collected, so each mark takes the smallest of several samples: the
    live heap, which a leak would raise."""
    admin, port = harness.free_port(), harness.free_port()
    envoy = harness.Envoy(version, proxy_config(admin, port, up, callout, "plugin", "header"), admin)
    start(envoy, 1)
    try:
        check_work(port, "header")
        done, marks = 0, []
        for target in (total // 10, total):
            while done < target:
                done += wrk(port, "header", 5)["requests"]
            samples = []
            for _ in range(HEAP_SAMPLES):
                done += wrk(port, "header", 1)["requests"]
                samples.append(plugin_vm_memory(admin))
            rss, anon = proc_mem(envoy.proc.pid)
            vm = {"lua_heap": min(v["lua_heap"] for v in samples), "linear": samples[-1]["linear"]}
            marks.append({"requests": done, "rss": rss, "anon": anon, **vm})
        return {"early": marks[0], "late": marks[1]}
    finally:
        envoy.stop()


def median(cells: list[dict], key: str) -> float:
    return statistics.median(c[key] for c in cells)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--memory-duration", type=float, default=1.0, help="load (s) before each memory reading")
    p.add_argument("--envoy", default="1.40.0")
    p.add_argument("--concurrency", default="1,2,4,8,16", help="worker counts for the memory table")
    p.add_argument("--growth-requests", type=int, default=200_000, help="requests of the leak check (0 = skip)")
    p.add_argument("--quick", action="store_true", help="one round, short runs (a smoke test of the benchmark)")
    p.add_argument("--out", type=Path, default=ROOT / "docs")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.concurrency = 1, 1.0, 1.0, "1,2"
        args.growth_requests = min(args.growth_requests, 20_000)
    levels = [int(c) for c in args.concurrency.split(",")]
    for tool in ("wrk",):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: run scripts/bench.sh")
    began = time.monotonic()
    up_admin, up_port, callout = harness.free_port(), harness.free_port(), harness.free_port()
    upstream = harness.Envoy(args.envoy, upstream_config(up_admin, up_port, callout), up_admin)
    start(upstream, 1)
    results: dict = {}
    memory: dict = {}
    try:
        for rnd in range(args.rounds):
            for script in SCRIPTS:
                for variant in VARIANTS:
                    if variant == "floor" and script != "noop" or variant in ONLY_HEADER and script != "header":
                        continue
                    c = cell(args.envoy, up_port, callout, variant, script, 1, args.duration, args.warmup)
                    results.setdefault((variant, script), []).append(c)
                    print(f"round {rnd + 1} {script:8} {variant:8} {c['rps']:8.0f} rps  cpu/10k {c['cpu_per_10k']:.3f}s  "
                          f"p99 {c['p99']:.2f} ms  rss {c['rss']:.1f} MiB", flush=True)
            for probe in PROBES:
                c = cell(args.envoy, up_port, callout, "plugin", probe, 1, args.duration, args.warmup)
                results.setdefault(("plugin", probe), []).append(c)
            for n in levels:
                for variant in VARIANTS:
                    c = cell(args.envoy, up_port, callout, variant, "header", n, args.memory_duration, args.warmup)
                    memory.setdefault((variant, n), []).append(c)
        grown = growth(args.envoy, up_port, callout, args.growth_requests) if args.growth_requests else None
    finally:
        upstream.stop()
    report(args, results, memory, levels, grown, time.monotonic() - began)
    return 0


def report(args, results, memory, levels, grown, elapsed) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    wasm = PLUGIN.read_bytes()
    lines = [
        "# Benchmark: proxy-wasm-lua vs Envoy's native Lua filter",
        "",
        f"Envoy {args.envoy}, {os.cpu_count()} cores, wrk {CONNECTIONS} connections, {args.rounds} interleaved rounds of "
        f"{args.duration:g} s per cell (medians). Regenerate: `scripts/bench.sh` ({elapsed / 60:.1f} min this run).",
        "",
        f"`plugin.wasm`: {len(wasm) / 1024:.0f} KiB raw, {len(gzip.compress(wasm, 9)) / 1024:.0f} KiB gzip; "
        f"minimal Rust plugin: {MINIMAL.stat().st_size / 1024:.0f} KiB; Lua floor (mlua + Lua 5.4 alone): "
        f"{LUA_FLOOR.stat().st_size / 1024:.0f} KiB.",
        "",
        "## CPU and latency (`--concurrency 1`)",
        "",
        "| script | variant | req/s | Envoy CPU-s per 10k req | vs native | p50 ms | p99 ms | start → first request s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for script in SCRIPTS:
        native = median(results[("native", script)], "cpu_per_10k")
        for variant in VARIANTS:
            cells = results.get((variant, script))
            if not cells:
                continue
            cpu = median(cells, "cpu_per_10k")
            lines.append(
                f"| {script} | {variant} | {median(cells, 'rps'):.0f} | {cpu:.3f} | {cpu / native:.2f}× | "
                f"{median(cells, 'p50'):.2f} | {median(cells, 'p99'):.2f} | {median(cells, 'ready'):.2f} |"
            )
    noop = median(results[("plugin", "noop")], "cpu_per_10k")
    lines += ["", "## What one V8-side operation costs (plugin, CPU µs per request over `noop`)", "",
              "| probe | CPU µs per request | over `noop` |", "| --- | --- | --- |"]
    for probe in PROBES:
        cpu = median(results[("plugin", probe)], "cpu_per_10k")
        lines.append(f"| {probe} | {cpu * 100:.1f} | +{(cpu - noop) * 100:.1f} |")
    lines += ["", "## Memory after warm-up and load (`header` script), MiB: RSS / RssAnon", "",
              "| variant | " + " | ".join(f"{n} workers" for n in levels) + " |", "| --- |" + " --- |" * len(levels)]
    for variant in VARIANTS:
        row = [f"{median(memory[(variant, n)], 'rss'):.1f} / {median(memory[(variant, n)], 'anon'):.1f}" for n in levels]
        lines.append(f"| {variant} | " + " | ".join(row) + " |")
    lines += ["", "Plugin VM (its gauges, one worker's VM): Lua heap / Wasm linear memory, MiB: "
              + ", ".join(f"{n} workers {median(memory[('plugin', n)], 'lua_heap'):.2f} / {median(memory[('plugin', n)], 'linear'):.1f}"
                          for n in levels)]
    lines += ["", "## Plugin above the minimal Wasm plugin (RssAnon, MiB) and the target 4 + 1 × workers", "",
              "The Lua floor splits it: what the interpreter alone costs, and what the API adds on top.", "",
              "| workers | plugin − minimal | target | met | lua-floor − minimal | plugin − lua-floor |",
              "| --- | --- | --- | --- | --- | --- |"]
    for n in levels:
        anon = {v: median(memory[(v, n)], "anon") for v in ("plugin", "minimal", "lua-floor")}
        extra = anon["plugin"] - anon["minimal"]
        lines.append(f"| {n} | {extra:.1f} | {4 + n} | {'yes' if extra <= 4 + n else 'no'} | "
                     f"{anon['lua-floor'] - anon['minimal']:.1f} | {anon['plugin'] - anon['lua-floor']:.1f} |")
    if grown:
        e, l = grown["early"], grown["late"]

        def change(k):
            return (l[k] - e[k]) / e[k] * 100 if e[k] else 0.0

        lines += ["", f"## Growth: `header` script, one worker, {l['requests']} requests", "",
                  "| after | requests | RSS MiB | RssAnon MiB | Lua heap MiB (least of 8 samples) | linear memory MiB |", "| --- | --- | --- | --- | --- | --- |",
                  f"| ~10% | {e['requests']} | {e['rss']:.1f} | {e['anon']:.1f} | {e['lua_heap']:.2f} | {e['linear']:.1f} |",
                  f"| all | {l['requests']} | {l['rss']:.1f} | {l['anon']:.1f} | {l['lua_heap']:.2f} | {l['linear']:.1f} |",
                  f"| change | | {change('rss'):+.1f}% | {change('anon'):+.1f}% | {change('lua_heap'):+.1f}% | {change('linear'):+.1f}% |"]
    (args.out / "benchmark.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    chart(args, results, memory, levels)


def chart(args, results, memory, levels) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is missing: no chart (scripts/bench.sh installs it)")
        return
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(VARIANTS)
    for i, variant in enumerate(VARIANTS):
        xs = [j + i * width for j, s in enumerate(SCRIPTS) if (variant, s) in results]
        ys = [median(results[(variant, s)], "cpu_per_10k") for s in SCRIPTS if (variant, s) in results]
        a.bar(xs, ys, width, label=variant)
        b.plot(levels, [median(memory[(variant, n)], "anon") for n in levels], marker="o", label=variant)
    a.set_xticks([j + (len(VARIANTS) - 1) / 2 * width for j in range(len(SCRIPTS))], list(SCRIPTS))
    a.set_ylabel("Envoy CPU-seconds per 10k requests")
    a.set_title(f"CPU per request (Envoy {args.envoy})")
    a.legend()
    b.set_xlabel("worker threads (--concurrency)")
    b.set_ylabel("RssAnon, MiB")
    b.set_title("Private memory after load (header script)")
    b.legend()
    fig.tight_layout()
    fig.savefig(args.out / "benchmark.png", dpi=100)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
