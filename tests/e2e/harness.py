"""Real-Envoy test harness: a recording upstream, Envoy bootstraps with the plugin
(or Envoy's native Lua filter) on loopback listeners, and a small HTTP client."""
from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENVOY_CACHE = ROOT / ".cache" / "envoy"
ALL_VERSIONS = ["1.36.2", "1.37.0", "1.38.2", "1.39.3", "1.40.0"]
# The full suite runs on the newest and the oldest supported Envoy; CI's matrix
# sets E2E_ENVOY_VERSIONS to run it on one version per job.
FULL_SUITE_VERSIONS = os.environ.get("E2E_ENVOY_VERSIONS", "1.40.0 1.36.2").split()
PLUGIN = Path(os.environ.get("PLUGIN_WASM", ROOT / "dist" / "plugin.wasm"))


def envoy_binary(version: str) -> Path:
    return ENVOY_CACHE / version / "envoy" / "_bin" / "envoy"


_GIVEN_PORTS: set[int] = set()


def free_port() -> int:
    """A free loopback port, never the same one twice in this process (the OS may
    hand a just-closed port out again before Envoy binds the first one)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN_PORTS:
            _GIVEN_PORTS.add(port)
            return port


# --------------------------------------------------------------------------- upstream


class HeaderLookup:
    headers: list[tuple[str, str]]

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header(self, name: str) -> str | None:
        vals = self.values(name)
        return ",".join(vals) if vals else None


@dataclass
class Received(HeaderLookup):
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    trailers: list[tuple[str, str]] = field(default_factory=list)


def read_chunked(rfile) -> tuple[bytes, list[tuple[str, str]]]:
    """Reads a chunked HTTP/1.1 body and its trailers."""
    body = b""
    while True:
        size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            break
        body += rfile.read(size)
        rfile.readline()
    trailers = []
    while True:
        line = rfile.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode().partition(":")
        trailers.append((k.strip().lower(), v.strip()))
    return body, trailers


class Upstream:
    """Records every request and answers by path:
    - `/status/NNN`: that status; `/slow/MS`: after MS milliseconds;
    - `/big/N`: a body of N bytes; `/empty`: 200 with no body;
    - `/chunked`: a chunked body in three writes; `/trailers`: the same plus a trailer;
    - with `x-404-first`: 404 for the first request of an x-test-id, then as usual;
    - `/check`: an authorization service: 200 with `x-user: alice` for
      `authorization: Bearer good`, else 403;
    - anything else: 200 "upstream body\n".
    Every answer has `x-upstream: yes` and two `x-up-multi` headers."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._missed: set[str] = set()
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _serve(self):
                trailers: list[tuple[str, str]] = []
                if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                    body, trailers = read_chunked(self.rfile)
                else:
                    length = int(self.headers.get("content-length") or 0)
                    body = self.rfile.read(length) if length else b""
                with upstream._lock:
                    upstream.requests.append(
                        Received(self.command, self.path, list(self.headers.items()), body, trailers)
                    )
                parts = self.path.split("?")[0].split("/")
                kind = parts[1] if len(parts) > 1 else ""
                status, payload = 200, b"upstream body\n"
                test_id = self.headers.get("x-test-id") or ""
                if self.headers.get("x-404-first") and test_id not in upstream._missed:
                    # The first request of this test gets 404, later ones 200.
                    upstream._missed.add(test_id)
                    status = 404
                if kind == "status":
                    status = int(parts[2])
                elif kind == "slow":
                    time.sleep(int(parts[2]) / 1000)
                elif kind == "big":
                    payload = b"x" * int(parts[2])
                elif kind == "empty":
                    payload = b""
                elif kind == "check":
                    good = self.headers.get("authorization") == "Bearer good"
                    status, payload = (200, b"ok\n") if good else (403, b"no\n")
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("x-upstream", "yes")
                self.send_header("x-up-multi", "one")
                self.send_header("x-up-multi", "two")
                self.send_header("x-echo-test-id", self.headers.get("x-test-id") or "")
                if kind == "check" and status == 200:
                    self.send_header("x-user", "alice")
                if kind in ("chunked", "trailers"):
                    self.send_header("transfer-encoding", "chunked")
                    if kind == "trailers":
                        self.send_header("trailer", "x-up-trailer")
                    self.end_headers()
                    for piece in (b"one,", b"two,", b"three"):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                        time.sleep(0.02)
                    self.wfile.write(b"0\r\n")
                    if kind == "trailers":
                        self.wfile.write(b"x-up-trailer: t1\r\n")
                    self.wfile.write(b"\r\n")
                    return
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def find(self, test_id: str) -> Received | None:
        with self._lock:
            for r in self.requests:
                if r.header("x-test-id") == test_id:
                    return r
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- envoy config


def wasm_filter(
    plugin_config: dict | str,
    vm_id: str = "lua",
    root_id: str = "lua",
    stop_iteration: bool = False,
    env: dict | None = None,
) -> dict:
    """The plugin as an Envoy Wasm filter; `env` becomes the VM's environment
    (Istio: WasmPlugin vmConfig.env)."""
    value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "lua",
                "root_id": root_id,
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(PLUGIN)}},
                    **({"environment_variables": {"key_values": env}} if env else {}),
                },
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value},
                "fail_open": False,
                # Envoy >= 1.35: a headers Pause stays StopIteration, so the body still arrives.
                **({"allow_on_headers_stop_iteration": True} if stop_iteration else {}),
            },
        },
    }


def native_lua_filter(script: str) -> dict:
    return {
        "name": "envoy.filters.http.lua",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"inline_string": script},
        },
    }


BUFFER_LIMIT = 65536

# Route and virtual-host metadata of every listener. The native filter reads its
# own under its name (envoy.filters.http.lua); the plugin, named "lua" here,
# falls back to that name, and a plugin configured with filter_name "custom"
# reads the "custom" namespace.
ROUTE_METADATA = {
    "filter_metadata": {
        "envoy.filters.http.lua": {"route_key": "route-value", "n": 5, "nested": {"list": ["a", 2, True]}},
        "custom": {"route_key": "custom-value"},
        "other.filter": {"route_key": "not for lua"},
    }
}
VHOST_METADATA = {"filter_metadata": {"envoy.filters.http.lua": {"vhost_key": "vhost-value"}}}


def listener(name: str, port: int, filters: list[dict], routes: list[dict] | None = None) -> dict:
    """A plaintext HTTP listener; `routes` go before the built-in ones."""
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": name,
                            "http_protocol_options": {"enable_trailers": True},
                            "route_config": {
                                "name": f"{name}_routes",
                                "virtual_hosts": [
                                    {
                                        "name": "all",
                                        "domains": ["*"],
                                        "metadata": VHOST_METADATA,
                                        "routes": (routes or [])
                                        + [
                                            {
                                                "name": "alt",
                                                "match": {
                                                    "prefix": "/",
                                                    "headers": [{"name": "x-route-to", "string_match": {"exact": "alt"}}],
                                                },
                                                "direct_response": {"status": 203, "body": {"inline_string": "alt route"}},
                                            },
                                            {
                                                "name": "default",
                                                "match": {"prefix": "/"},
                                                "route": {"cluster": "upstream"},
                                                "metadata": ROUTE_METADATA,
                                            },
                                        ],
                                    }
                                ],
                            },
                            "http_filters": filters
                            + [
                                {
                                    "name": "envoy.filters.http.router",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                    },
                                }
                            ],
                        },
                    }
                ]
            }
        ],
    }


def cluster(name: str, port: int) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "per_connection_buffer_limit_bytes": BUFFER_LIMIT,
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {"enable_trailers": True}},
            }
        },
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}
            ],
        },
    }


def bootstrap(admin_port: int, upstream_port: int, listeners: list[dict]) -> dict:
    """Clusters: `upstream` (the recording server) and `refused` (a closed port)."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": listeners,
            "clusters": [cluster("upstream", upstream_port), cluster("refused", free_port())],
        },
    }


# --------------------------------------------------------------------------- TLS


@dataclass
class Certs:
    dir: Path

    def path(self, name: str) -> str:
        return str(self.dir / name)


_CERTS: Certs | None = None


def test_certs() -> Certs:
    """A throw-away CA, a server certificate (CN lua.test, two DNS SANs, a URI SAN)
    and a client certificate (two O entries, a URI SAN), made with openssl once per run."""
    global _CERTS
    if _CERTS is not None:
        return _CERTS
    d = Path(tempfile.mkdtemp(prefix="e2e-certs-"))

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=e2e test CA")
    for name, subject, san in [
        ("server", "/CN=lua.test/O=Server Org", "DNS:lua.test,DNS:alt.lua.test,URI:spiffe://test/server"),
        ("client", "/CN=client one/O=Org A/O=Org B", "URI:spiffe://test/client,DNS:client.test"),
    ]:
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    _CERTS = Certs(d)
    return _CERTS


# Sets the requested server name (SNI) for streamInfo():requestedServerName().
TLS_INSPECTOR = {
    "name": "envoy.filters.listener.tls_inspector",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"},
}


def tls_transport_socket(certs: Certs) -> dict:
    """Downstream TLS; a client certificate is optional and validated against the test CA."""
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "common_tls_context": {
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": certs.path("server.crt")},
                        "private_key": {"filename": certs.path("server.key")},
                    }
                ],
                "validation_context": {"trusted_ca": {"filename": certs.path("ca.crt")}},
            },
        },
    }


def tls_request(port: int, path: str, headers: list[tuple[str, str]], client_cert: bool, sni: str = "lua.test") -> Response:
    ctx = ssl.create_default_context(cafile=test_certs().path("ca.crt"))
    if client_cert:
        ctx.load_cert_chain(test_certs().path("client.crt"), test_certs().path("client.key"))

    class Conn(http.client.HTTPConnection):
        def connect(self):
            super().connect()
            self.sock = ctx.wrap_socket(self.sock, server_hostname=sni)

    conn = Conn("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for k, v in headers:
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------- envoy process


@dataclass
class Response(HeaderLookup):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class EnvoyFailed(Exception):
    def __init__(self, message: str, log: str):
        super().__init__(message)
        self.log = log


@dataclass
class Envoy:
    version: str
    config: dict
    admin_port: int
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="envoy-e2e-")))
    proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "envoy.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 5.0) -> str:
        """Waits until Envoy's log has a line matching `pattern`; returns the line."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            for line in self.log().splitlines():
                if rx.search(line):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matches {pattern!r}; log tail:\n{self.log()[-4000:]}")
            time.sleep(0.05)

    def launch(self) -> "Envoy":
        """Starts the process without waiting (configs Envoy must refuse use this)."""
        cfg = self.workdir / "envoy.json"
        cfg.write_text(json.dumps(self.config, indent=1))
        binary = envoy_binary(self.version)
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: run scripts/setup.sh")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "-c", str(cfg),
                "--concurrency", "1",
                "--disable-hot-restart",
                "--use-dynamic-base-id",
                "--log-level", "info",
                "--component-log-level", "wasm:debug,lua:debug",
                "--log-path", str(self.log_path),
                "--file-flush-interval-msec", "20",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        return self

    def start(self, timeout: float = 60.0) -> "Envoy":
        """Starts Envoy and waits until its admin endpoint reports ready."""
        self.launch()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EnvoyFailed(f"envoy {self.version} exited with {self.proc.returncode}", self.log())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise EnvoyFailed(f"envoy {self.version} did not become ready in {timeout}s", self.log())

    def wait_exit(self, timeout: float = 60.0) -> int:
        """For configurations Envoy must refuse: waits for the process to exit."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stats(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats", timeout=5) as r:
            return r.read().decode()


def start_envoy_process(version: str, config: dict) -> Envoy:
    """Starts Envoy without waiting for readiness (for configs it must refuse)."""
    return Envoy(version, config, config["admin"]["address"]["socket_address"]["port_value"]).launch()


def request(
    port: int,
    path: str = "/",
    method: str = "GET",
    headers: list[tuple[str, str]] | dict | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        for k, v in items:
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("content-length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def raw_request(
    port: int,
    path: str,
    headers: list[tuple[str, str]],
    chunks: list[bytes],
    trailers: list[tuple[str, str]] | None = None,
    method: str = "POST",
    timeout: float = 10.0,
) -> Response:
    """A chunked request written piece by piece (several data frames at Envoy)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        head = f"{method} {path} HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        sock.sendall(head.encode())
        for c in chunks:
            sock.sendall(b"%x\r\n%s\r\n" % (len(c), c))
            time.sleep(0.03)
        tail = b"0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in (trailers or [])).encode() + b"\r\n"
        sock.sendall(tail)
        r = http.client.HTTPResponse(sock)
        r.begin()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        sock.close()
