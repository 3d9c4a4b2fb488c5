"""The main job: a real Envoy on loopback running dist/plugin.wasm with
examples/demo.lua in front of a sample upstream; sends a few requests and shows
what the client and the upstream saw."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import harness  # noqa: E402

VERSION = sys.argv[1] if len(sys.argv) > 1 else "1.40.0"


def main() -> int:
    script = (ROOT / "examples" / "demo.lua").read_text()
    upstream = harness.Upstream()
    port, admin = harness.free_port(), harness.free_port()
    config = harness.bootstrap(
        admin, upstream.port, [harness.listener("demo", port, [harness.wasm_filter({"inline_code": script})])]
    )
    envoy = harness.Envoy(VERSION, config, admin).start()
    print(f"Envoy {VERSION} is listening on 127.0.0.1:{port} with plugin.wasm running examples/demo.lua\n")
    ok = True
    try:
        for path, headers, expect in [
            ("/hello", [], 200),
            ("/hello", [], 200),
            ("/admin", [], 403),
            ("/hello", [("x-explode", "1")], 500),
            ("/hello", [], 200),
        ]:
            before = len(upstream.requests)
            resp = harness.request(port, path, headers=headers)
            seen = upstream.requests[before:] if len(upstream.requests) > before else []
            shown = {k: v for k, v in resp.headers if k.startswith("x-")}
            print(f"GET {path} {dict(headers) or ''}".rstrip())
            print(f"  -> {resp.status} {json.dumps(shown)} body={resp.body!r}")
            if seen:
                up = {k: v for k, v in seen[0].headers if k.lower().startswith("x-greeting") or k.lower() == "x-request-number"}
                print(f"     upstream saw {seen[0].path} with {json.dumps(up)}")
            else:
                print("     (not forwarded upstream)")
            ok &= resp.status == expect
        print("\nEnvoy log lines from the plugin:")
        for line in envoy.log().splitlines():
            if "script" in line and "[wasm]" in line:
                print("  " + line.split("] ", 2)[-1])
    finally:
        envoy.stop()
        upstream.close()
    print("\ndemo " + ("succeeded" if ok else "FAILED: unexpected status"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
