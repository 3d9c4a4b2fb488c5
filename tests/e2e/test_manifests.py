"""The manifests and examples in istio/: every document matches Istio's CRD fields
and types (unknown fields fail), every example's pluginConfig runs in real Envoy
with the behaviour it promises, and the plain Envoy bootstrap starts and serves."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

import harness
from conftest import deploy
from istio_schema import problems
from scenarios import Scenario

ISTIO = harness.ROOT / "istio"
MANIFESTS = sorted(ISTIO.rglob("*.yaml"))
ISTIO_CLUSTERS = ["outbound|8080||authz.auth.svc.cluster.local", "outbound|80||fallback.example.com"]


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def plugin_documents() -> dict[str, dict]:
    """name -> the WasmPlugin / TrafficExtension (wasm) document."""
    out = {}
    for path in MANIFESTS:
        if path.name == "envoy-bootstrap.yaml":
            continue
        for doc in documents(path):
            if doc["kind"] in ("WasmPlugin", "TrafficExtension"):
                out[f"{path.stem}:{doc['metadata']['name']}"] = doc
    return out


PLUGINS = plugin_documents()


@pytest.mark.parametrize("path", [p for p in MANIFESTS if p.name != "envoy-bootstrap.yaml"], ids=lambda p: p.name)
def test_manifest_matches_the_istio_crds(path):
    for doc in documents(path):
        assert problems(doc) == [], f"{path.name}: {doc['kind']} {doc['metadata'].get('name')}"


def test_the_schema_check_can_fail():
    doc = documents(ISTIO / "wasmplugin.yaml")[0]
    doc["spec"]["pluginconfig"] = doc["spec"].pop("pluginConfig")
    doc["spec"]["priority"] = "10"
    doc["spec"]["failStrategy"] = "FAIL_CLOSED"
    assert problems(doc) == [
        "spec.failStrategy: 'FAIL_CLOSED' is not one of FAIL_CLOSE, FAIL_OPEN, FAIL_RELOAD",
        "spec.priority: expected an integer, got str",
        "spec.pluginconfig: unknown field",
    ]


def scenario(doc: dict) -> Scenario:
    wasm = doc["spec"] if doc["kind"] == "WasmPlugin" else doc["spec"]["wasm"]
    env = {e["name"]: e["value"] for e in wasm.get("vmConfig", {}).get("env", [])}
    # Istio's WasmPlugin cannot set allow_on_headers_stop_iteration: run as Istio does.
    return Scenario(None, config=wasm["pluginConfig"], env=env)


@pytest.fixture(scope="module", params=harness.FULL_SUITE_VERSIONS)
def examples(request, upstream):
    cases = {name.replace(":", "_"): scenario(doc) for name, doc in PLUGINS.items()}
    dep = deploy(request.param, upstream, list(cases), cases, extra_clusters=ISTIO_CLUSTERS)
    yield dep
    dep.envoy.stop()


def send(dep, upstream, name, path="/", headers=()):
    test_id = uuid.uuid4().hex
    resp = harness.request(dep.port(name), path, headers=[("x-test-id", test_id), *headers])
    return resp, upstream.find(test_id)


def test_every_plugin_document_has_a_behaviour_test():
    assert sorted(PLUGINS) == sorted(
        [
            "wasmplugin:lua",
            "trafficextension:lua",
            "header-transform:header-transform",
            "ext-authz:ext-authz",
            "fallback-404:fallback-404",
            "library:library",
        ]
    )


def test_main_wasmplugin(examples, upstream):
    resp, got = send(examples, upstream, "wasmplugin_lua")
    assert resp.status == 200
    assert got.header("x-deploy-env") == "production"
    assert resp.header("x-served-by") == "proxy-wasm-lua"
    examples.envoy.wait_log(r'script log: \{"(what":"request","path":"/|path":"/","what":"request)"\}')


def test_traffic_extension(examples, upstream):
    resp, got = send(examples, upstream, "trafficextension_lua")
    assert resp.status == 200 and got.header("x-lua") == "traffic-extension"


def test_header_transform(examples, upstream):
    resp, got = send(examples, upstream, "header-transform_header-transform", headers=[("X-Tenant", "ACME"), ("x-debug", "1")])
    assert resp.status == 200
    assert got.header("x-tenant") == "acme" and got.header("x-debug") is None
    assert got.header("x-request-start").isdigit()
    assert resp.header("x-upstream") is None
    assert resp.header("x-content-type-options") == "nosniff"


@pytest.mark.parametrize(
    "token,status,user",
    [("Bearer good", 200, "alice"), ("Bearer bad", 403, None), (None, 401, None)],
    ids=["allowed", "denied", "no-credentials"],
)
def test_ext_authz(examples, upstream, token, status, user):
    headers = [("authorization", token)] if token else []
    resp, got = send(examples, upstream, "ext-authz_ext-authz", headers=headers)
    assert resp.status == status
    if status == 200:
        assert got.header("x-user") == user and got.header("authorization") is None
    else:
        assert got is None


def test_fallback_on_404(examples, upstream):
    resp, _ = send(examples, upstream, "fallback-404_fallback-404", path="/page", headers=[("x-404-first", "1")])
    # The 404 was replaced by the fallback backend's answer to the same request.
    assert resp.status == 200 and resp.body == b"upstream body\n"
    assert resp.header("x-upstream") == "yes"
    resp, _ = send(examples, upstream, "fallback-404_fallback-404", path="/status/201")
    assert resp.status == 201


def test_library_rate_limits_through_its_modules(examples, upstream):
    key = uuid.uuid4().hex
    statuses = [send(examples, upstream, "library_library", headers=[("x-api-key", key)])[0].status for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_plain_envoy_bootstrap_starts_and_serves(upstream):
    config = yaml.safe_load((ISTIO / "envoy-bootstrap.yaml").read_text())
    port, admin = harness.free_port(), harness.free_port()
    listener = config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"].update(address="127.0.0.1", port_value=port)
    wasm = listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"]["config"]
    assert wasm["vm_config"]["code"]["local"]["filename"] == "PLUGIN_WASM"
    wasm["vm_config"]["code"]["local"]["filename"] = str(harness.PLUGIN)
    endpoint = config["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    endpoint["endpoint"]["address"]["socket_address"]["port_value"] = upstream.port
    config["admin"] = {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}}
    envoy = harness.Envoy(harness.FULL_SUITE_VERSIONS[0], config, admin).start()
    try:
        test_id = uuid.uuid4().hex
        resp = harness.request(port, "/", headers=[("x-test-id", test_id)])
        assert resp.status == 200
        assert upstream.find(test_id).header("x-lua") == "bootstrap"
        assert resp.header("x-body-length") == str(len(b"upstream body\n"))
    finally:
        envoy.stop()
