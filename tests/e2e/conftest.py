"""Fixtures: a recording upstream and, per Envoy version, one Envoy serving every
scenario on its own listener (the plugin's listeners all share one VM), plus the
same scripts under Envoy's native Lua filter for side-by-side comparison."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import harness
from scenarios import SCENARIOS


def pytest_configure(config):
    if not harness.PLUGIN.exists():
        raise pytest.UsageError(f"{harness.PLUGIN} is missing: build it with scripts/build.sh")


@pytest.fixture(scope="session")
def upstream():
    up = harness.Upstream()
    yield up
    up.close()


@dataclass
class Deployment:
    envoy: harness.Envoy
    ports: dict[str, int]
    access_log: Path

    def port(self, name: str) -> int:
        return self.ports[name]

    def details(self, test_id: str) -> str | None:
        """%RESPONSE_CODE_DETAILS% of the request with this x-test-id (waits for
        Envoy to flush its access log)."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.access_log.exists():
                for line in self.access_log.read_text().splitlines():
                    parts = line.split(" ", 2)
                    if len(parts) == 3 and parts[0] == test_id:
                        return parts[2]
            time.sleep(0.05)
        return None


def deploy(
    version: str, upstream: harness.Upstream, names: list[str], scenarios: dict = SCENARIOS, extra_clusters=()
) -> Deployment:
    """One Envoy serving each named scenario on its own listener; `extra_clusters`
    are more cluster names (e.g. Istio's outbound|...) for the recording upstream."""
    admin = harness.free_port()
    listeners, ports = [], {}
    workdir_log = Path(harness.tempfile.mkdtemp(prefix="envoy-access-")) / "access.log"
    for name in names:
        sc = scenarios[name]
        for flavour in ("wasm", "native") if sc.native else ("wasm",):
            key = name if flavour == "wasm" else f"native:{name}"
            port = harness.free_port()
            ports[key] = port
            if flavour == "wasm":
                cfg = ({"inline_code": sc.script} if sc.script is not None else {}) | sc.config
                if sc.stop_iteration:
                    cfg["allow_on_headers_stop_iteration"] = True
                # A VM environment makes a VM of its own (Envoy keys VMs by their config).
                vm_id = "lua-env-" + name if sc.env else "lua"
                filt = harness.wasm_filter(cfg, vm_id=vm_id, stop_iteration=sc.stop_iteration, env=sc.env or None)
            else:
                filt = harness.native_lua_filter(sc.script)
            lst = harness.listener(key.replace(":", "_"), port, sc.pre_filters + [filt], routes=sc.routes)
            if sc.tls:
                lst["filter_chains"][0]["transport_socket"] = harness.tls_transport_socket(harness.test_certs())
                lst["listener_filters"] = [harness.TLS_INSPECTOR]
            hcm = lst["filter_chains"][0]["filters"][0]["typed_config"]
            hcm["access_log"] = [
                {
                    "name": "envoy.access_loggers.file",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                        "path": str(workdir_log),
                        "log_format": {
                            "text_format_source": {
                                "inline_string": "%REQ(X-TEST-ID)% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS%\n"
                            }
                        },
                    },
                }
            ]
            listeners.append(lst)
    config = harness.bootstrap(admin, upstream.port, listeners)
    config["static_resources"]["clusters"] += [harness.cluster(name, upstream.port) for name in extra_clusters]
    envoy = harness.Envoy(version, config, admin).start()
    return Deployment(envoy, ports, workdir_log)


@pytest.fixture(scope="module", params=harness.FULL_SUITE_VERSIONS)
def full(request, upstream):
    """Envoy (1.40.0 and 1.36.2) with every scenario."""
    dep = deploy(request.param, upstream, list(SCENARIOS))
    yield dep
    dep.envoy.stop()

