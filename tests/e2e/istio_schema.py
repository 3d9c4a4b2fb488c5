"""The fields and types of the Istio resources the manifests in istio/ use, as
Istio's CRDs define them (transcribed from the CRD-generated types of
@kubernetes-models/istio 3.0.1 for WasmPlugin and ServiceEntry, and from istio/api
extensions/v1alpha1/traffic_extension.proto for TrafficExtension, Istio >= 1.30).
`problems(doc)` lists every unknown field, wrong type and missing required field."""
from __future__ import annotations

STR, INT, BOOL, ANY = "string", "integer", "boolean", "any"


def enum(*values):
    return ("enum", values)


def obj(required=(), **fields):
    return ("object", fields, set(required))


def arr(item):
    return ("array", item)


def mapping(value):
    return ("map", value)


METADATA = obj(["name"], name=STR, namespace=STR, labels=mapping(STR), annotations=mapping(STR))
SELECTOR = obj(matchLabels=mapping(STR))
TARGET_REF = obj(["kind", "name"], group=STR, kind=STR, name=STR, namespace=STR)
MATCH = arr(obj(mode=enum("UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"), ports=arr(obj(["number"], number=INT))))
PHASE = enum("UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS")
FAIL_STRATEGY = enum("FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD")
PULL_POLICY = enum("UNSPECIFIED_POLICY", "IfNotPresent", "Always")
VM_CONFIG = obj(env=arr(obj(["name"], name=STR, value=STR, valueFrom=enum("INLINE", "HOST"))))
PLUGIN_TYPE = enum("UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK")

WASM_PLUGIN_SPEC = obj(
    ["url"],
    failStrategy=FAIL_STRATEGY,
    imagePullPolicy=PULL_POLICY,
    imagePullSecret=STR,
    match=MATCH,
    phase=PHASE,
    pluginConfig=ANY,
    pluginName=STR,
    priority=INT,
    selector=SELECTOR,
    sha256=STR,
    targetRef=TARGET_REF,
    targetRefs=arr(TARGET_REF),
    type=PLUGIN_TYPE,
    url=STR,
    verificationKey=STR,
    vmConfig=VM_CONFIG,
)

TRAFFIC_EXTENSION_SPEC = obj(
    selector=SELECTOR,
    targetRefs=arr(TARGET_REF),
    phase=PHASE,
    priority=INT,
    match=MATCH,
    wasm=obj(
        ["url"],
        url=STR,
        sha256=STR,
        imagePullPolicy=PULL_POLICY,
        imagePullSecret=STR,
        pluginConfig=ANY,
        pluginName=STR,
        failStrategy=FAIL_STRATEGY,
        vmConfig=VM_CONFIG,
        type=PLUGIN_TYPE,
    ),
    lua=obj(["inlineCode"], inlineCode=STR),
)

SERVICE_ENTRY_SPEC = obj(
    ["hosts"],
    addresses=arr(STR),
    endpoints=arr(
        obj(
            address=STR,
            labels=mapping(STR),
            locality=STR,
            network=STR,
            ports=mapping(INT),
            serviceAccount=STR,
            weight=INT,
        )
    ),
    exportTo=arr(STR),
    hosts=arr(STR),
    location=enum("MESH_EXTERNAL", "MESH_INTERNAL"),
    ports=arr(obj(["name", "number"], name=STR, number=INT, protocol=STR, targetPort=INT)),
    resolution=enum("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"),
    subjectAltNames=arr(STR),
    workloadSelector=obj(labels=mapping(STR)),
)

KINDS = {
    ("extensions.istio.io/v1alpha1", "WasmPlugin"): WASM_PLUGIN_SPEC,
    ("extensions.istio.io/v1alpha1", "TrafficExtension"): TRAFFIC_EXTENSION_SPEC,
    ("networking.istio.io/v1", "ServiceEntry"): SERVICE_ENTRY_SPEC,
}


def check(value, schema, path: str, out: list[str]) -> None:
    if schema == ANY:
        return
    if schema == STR:
        if not isinstance(value, str):
            out.append(f"{path}: expected a string, got {type(value).__name__}")
    elif schema == INT:
        if not isinstance(value, int) or isinstance(value, bool):
            out.append(f"{path}: expected an integer, got {type(value).__name__}")
    elif schema == BOOL:
        if not isinstance(value, bool):
            out.append(f"{path}: expected a boolean, got {type(value).__name__}")
    elif schema[0] == "enum":
        if value not in schema[1]:
            out.append(f"{path}: {value!r} is not one of {', '.join(schema[1])}")
    elif schema[0] == "array":
        if not isinstance(value, list):
            out.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            check(item, schema[1], f"{path}[{i}]", out)
    elif schema[0] == "map":
        if not isinstance(value, dict):
            out.append(f"{path}: expected a map")
            return
        for k, v in value.items():
            check(v, schema[1], f"{path}.{k}", out)
    elif schema[0] == "object":
        if not isinstance(value, dict):
            out.append(f"{path}: expected an object")
            return
        fields, required = schema[1], schema[2]
        for k, v in value.items():
            if k not in fields:
                out.append(f"{path}.{k}: unknown field")
            else:
                check(v, fields[k], f"{path}.{k}", out)
        for k in sorted(required - value.keys()):
            out.append(f"{path}.{k}: required field missing")


def problems(doc: dict) -> list[str]:
    out: list[str] = []
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in KINDS:
        return [f"unknown resource {key}"]
    for k in doc:
        if k not in ("apiVersion", "kind", "metadata", "spec"):
            out.append(f"{k}: unknown top-level field")
    check(doc.get("metadata"), METADATA, "metadata", out)
    check(doc.get("spec"), KINDS[key], "spec", out)
    if key[1] == "TrafficExtension" and ("wasm" in doc.get("spec", {})) == ("lua" in doc.get("spec", {})):
        out.append("spec: exactly one of wasm or lua")
    return out
