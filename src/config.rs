//! The plugin configuration (`WasmPlugin.pluginConfig`, or the Wasm filter's
//! `configuration`): JSON, validated strictly at configure time so that a bad
//! config is refused by the host instead of failing requests later.
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::stream::ApiSettings;

/// A script or module given as a string or, as in Envoy's `DataSource`,
/// `{"inline_string": ...}`; a named script may also set its own `fail_open`.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged, expecting = "a string or {\"inline_string\": \"...\"}")]
pub enum Source {
    Inline(String),
    DataSource(DataSource),
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    pub inline_string: String,
    /// Only for `source_codes` entries: overrides the global `fail_open`.
    pub fail_open: Option<bool>,
}

impl Source {
    fn into_parts(self) -> (String, Option<bool>) {
        match self {
            Source::Inline(code) => (code, None),
            Source::DataSource(ds) => (ds.inline_string, ds.fail_open),
        }
    }
}

/// The reply of a request failed closed.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FailReply {
    #[serde(default = "default_fail_status")]
    pub status: u32,
    #[serde(default = "default_fail_body")]
    pub body: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_fail_status() -> u32 {
    500
}

fn default_fail_body() -> String {
    "Internal Server Error\n".into()
}

impl Default for FailReply {
    fn default() -> Self {
        FailReply { status: default_fail_status(), body: default_fail_body(), headers: BTreeMap::new() }
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    inline_code: Option<String>,
    default_source_code: Option<Source>,
    #[serde(default)]
    source_codes: BTreeMap<String, Source>,
    #[serde(default)]
    modules: BTreeMap<String, Source>,
    per_route_namespace: Option<String>,
    #[serde(default)]
    fail_open: bool,
    fail_closed_reply: Option<FailReply>,
    #[serde(default)]
    allow_on_headers_stop_iteration: bool,
    filter_name: Option<String>,
    filter_context: Option<serde_json::Map<String, serde_json::Value>>,
    stat_prefix: Option<String>,
    clear_route_cache: Option<bool>,
    instruction_budget: Option<u64>,
    memory_limit_bytes: Option<u64>,
    #[serde(default)]
    strict_globals: bool,
    luajit_compat: Option<bool>,
}

/// Default instruction budget per callback: stops `while true do end` after
/// about 0.1 s of CPU in Envoy's V8 (measured in tests/e2e/test_sandbox.py).
pub const DEFAULT_INSTRUCTION_BUDGET: u64 = 10_000_000;
/// Default Lua heap limit per VM.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 << 20;
/// Where per-route settings are looked up when `per_route_namespace` is unset.
pub const DEFAULT_PER_ROUTE_NAMESPACE: &str = "proxy-wasm-lua";

/// One script: the default one or an entry of `source_codes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// The script's chunk name, so errors read `inline_code:3: ...` or
    /// `source_codes.auth:3: ...`.
    pub chunk_name: String,
    pub source: String,
    pub fail_open: bool,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The script run where no per-route setting picks another (None: only
    /// routes that name a script run one).
    pub default_script: Option<Script>,
    /// `source_codes`: scripts a route picks by name, each in its own Lua state.
    pub source_codes: BTreeMap<String, Script>,
    /// `modules`: Lua sources loadable with `require(name)`.
    pub modules: BTreeMap<String, String>,
    /// Route / virtual-host metadata namespace of per-route settings; `None` when
    /// per-route settings are off (no `source_codes` and no namespace given).
    pub per_route_namespace: Option<String>,
    pub fail_closed_reply: FailReply,
    /// Set when the Wasm filter's PluginConfig has `allow_on_headers_stop_iteration:
    /// true` (Envoy >= 1.35): the plugin may then hold headers while it reads the
    /// body, as Envoy's native filter does. It must match the host's setting:
    /// without host support a held header also holds the body back.
    pub allow_on_headers_stop_iteration: bool,
    /// `filter_name`, `filter_context` and `stat_prefix` (see README).
    pub api: ApiSettings,
    /// Lua instructions per callback; 0 = unlimited.
    pub instruction_budget: u64,
    /// Lua heap bytes per VM; 0 = unlimited.
    pub memory_limit_bytes: u64,
    /// Writing an undeclared global from a request hook is an error.
    pub strict_globals: bool,
    /// LuaJIT-era globals and modules (`bit`, `unpack`, `loadstring`, ...).
    pub luajit_compat: bool,
}

fn invalid<T>(msg: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("invalid plugin configuration: {msg}"))
}

/// A Lua module name: dot-separated identifiers.
fn valid_module_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

impl Config {
    /// Parses and validates; the error names the offending field (and the JSON
    /// line/column where serde knows it).
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(
                "plugin configuration is empty: set `inline_code` (or `default_source_code`) to a Lua script".into()
            );
        }
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| format!("invalid plugin configuration: {e}"))?;
        let default = match (raw.inline_code, raw.default_source_code) {
            (Some(_), Some(_)) => return invalid("only one of `inline_code` or `default_source_code` can be set"),
            (Some(code), None) => Some(("inline_code", code, None)),
            (None, Some(src)) => {
                let (code, fail_open) = src.into_parts();
                Some(("default_source_code", code, fail_open))
            }
            (None, None) => None,
        };
        if default.is_none() && raw.source_codes.is_empty() {
            return invalid("missing script: set `inline_code` (or `default_source_code`, or `source_codes`)");
        }
        let default_script = match default {
            Some((_, _, Some(_))) => {
                return invalid(
                    "`fail_open` inside `default_source_code` is not allowed: use the top-level `fail_open`",
                )
            }
            Some((field, code, None)) => {
                Some(Script { chunk_name: field.into(), source: code, fail_open: raw.fail_open })
            }
            None => None,
        };
        let mut source_codes = BTreeMap::new();
        for (name, src) in raw.source_codes {
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return invalid(format!("`source_codes` name {name:?} must be non-empty without spaces"));
            }
            let (code, fail_open) = src.into_parts();
            let script = Script {
                chunk_name: format!("source_codes.{name}"),
                source: code,
                fail_open: fail_open.unwrap_or(raw.fail_open),
            };
            source_codes.insert(name, script);
        }
        let mut modules = BTreeMap::new();
        for (name, src) in raw.modules {
            if !valid_module_name(&name) {
                return invalid(format!(
                    "`modules` name {name:?} is not a Lua module name (dot-separated identifiers, e.g. \"acme.util.json\")"
                ));
            }
            let (code, fail_open) = src.into_parts();
            if fail_open.is_some() {
                return invalid(format!("`modules.{name}`: `fail_open` applies to scripts, not modules"));
            }
            modules.insert(name, code);
        }
        let per_route_namespace = match raw.per_route_namespace {
            Some(ns) if ns.is_empty() => return invalid("`per_route_namespace` must not be empty"),
            Some(ns) => Some(ns),
            None if !source_codes.is_empty() => Some(DEFAULT_PER_ROUTE_NAMESPACE.into()),
            None => None,
        };
        let fail_closed_reply = raw.fail_closed_reply.unwrap_or_default();
        if !(200..=599).contains(&fail_closed_reply.status) {
            return invalid(format!(
                "`fail_closed_reply.status` {} must be between 200 and 599",
                fail_closed_reply.status
            ));
        }
        for (k, v) in &fail_closed_reply.headers {
            let bad_name = k.is_empty() || k.starts_with(':') || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':');
            if bad_name || v.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return invalid(format!("`fail_closed_reply.headers`: {k:?}: {v:?} is not a valid header"));
            }
        }
        if raw.clear_route_cache == Some(false) {
            return invalid(
                "`clear_route_cache: false` is unsupported on Proxy-Wasm: Envoy clears the route cache whenever a Wasm filter changes request headers",
            );
        }
        if let Some(prefix) = &raw.stat_prefix {
            if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return invalid(format!(
                    "`stat_prefix` {prefix:?} must be non-empty and use only letters, digits, '_' and '-'"
                ));
            }
        }
        if let Some(n) = raw.instruction_budget.filter(|n| *n != 0 && *n < u64::from(crate::budget::STEP)) {
            return invalid(format!(
                "`instruction_budget` {n} is below the minimum of {} (0 = unlimited)",
                crate::budget::STEP
            ));
        }
        if let Some(n) = raw.memory_limit_bytes.filter(|n| *n != 0 && *n < 1 << 20) {
            return invalid(format!("`memory_limit_bytes` {n} is below the minimum of 1048576 (0 = unlimited)"));
        }
        if raw.filter_name.as_deref() == Some("") {
            return invalid("`filter_name` must not be empty");
        }
        Ok(Config {
            default_script,
            source_codes,
            modules,
            per_route_namespace,
            fail_closed_reply,
            allow_on_headers_stop_iteration: raw.allow_on_headers_stop_iteration,
            api: ApiSettings {
                filter_name: raw.filter_name,
                filter_context: raw.filter_context,
                stat_prefix: raw.stat_prefix,
            },
            instruction_budget: raw.instruction_budget.unwrap_or(DEFAULT_INSTRUCTION_BUDGET),
            memory_limit_bytes: raw.memory_limit_bytes.unwrap_or(DEFAULT_MEMORY_LIMIT),
            strict_globals: raw.strict_globals,
            luajit_compat: raw.luajit_compat.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_script_form() {
        let script = |c: &Config| c.default_script.clone().unwrap();
        let c = Config::parse(br#"{"inline_code": "x = 1"}"#).unwrap();
        let s = script(&c);
        assert_eq!((s.chunk_name.as_str(), s.source.as_str(), s.fail_open), ("inline_code", "x = 1", false));
        let c = Config::parse(br#"{"default_source_code": "y = 2", "fail_open": true}"#).unwrap();
        let s = script(&c);
        assert_eq!((s.chunk_name.as_str(), s.source.as_str(), s.fail_open), ("default_source_code", "y = 2", true));
        let c = Config::parse(br#"{"default_source_code": {"inline_string": "z = 3"}}"#).unwrap();
        assert_eq!(script(&c).source, "z = 3");
        assert_eq!(c.per_route_namespace, None);
        let c = Config::parse(
            br#"{"source_codes": {"a": "x = 1", "b": {"inline_string": "y = 2", "fail_open": true}}, "fail_open": false,
                 "modules": {"acme.util": "return {}"}}"#,
        )
        .unwrap();
        assert!(c.default_script.is_none());
        assert_eq!(c.source_codes["a"].chunk_name, "source_codes.a");
        assert!(!c.source_codes["a"].fail_open && c.source_codes["b"].fail_open);
        assert_eq!(c.per_route_namespace.as_deref(), Some(DEFAULT_PER_ROUTE_NAMESPACE));
        assert_eq!(c.modules["acme.util"], "return {}");
    }

    #[test]
    fn rejections_name_the_field() {
        let err = |j: &str| Config::parse(j.as_bytes()).unwrap_err();
        assert!(err(r#"{"inline_code": "x", "bogus": 1}"#).contains("unknown field `bogus`"));
        assert!(err(r#"{"inline_code": 5}"#).contains("invalid type: integer `5`, expected a string"));
        assert!(err(r#"{"inline_code": "x", "fail_open": "yes"}"#)
            .contains("invalid type: string \"yes\", expected a boolean"));
        assert!(err(r#"{"default_source_code": {"filename": "/x.lua"}}"#).contains("inline_string"));
        assert!(err(r#"{"inline_code": "x", "default_source_code": "y"}"#).contains("only one of"));
        assert!(err(r#"{"fail_open": true}"#).contains("missing script"));
        assert!(err(r#"{"inline_code": "x", "modules": {"a..b": "return 1"}}"#).contains("`modules` name \"a..b\""));
        assert!(err(r#"{"inline_code": "x", "modules": {"m": {"inline_string": "", "fail_open": true}}}"#)
            .contains("`modules.m`: `fail_open` applies to scripts"));
        assert!(
            err(r#"{"inline_code": "x", "fail_closed_reply": {"status": 99}}"#).contains("must be between 200 and 599")
        );
        assert!(err(r#"{"inline_code": "x", "fail_closed_reply": {"headers": {"a b": "c"}}}"#)
            .contains("`fail_closed_reply.headers`"));
        assert!(err(r#"{"inline_code": "x", "clear_route_cache": false}"#).contains("unsupported on Proxy-Wasm"));
        assert!(err(r#"{"source_codes": {"has space": "x"}}"#).contains("must be non-empty without spaces"));
        assert!(err("").contains("empty"));
        assert!(err("{not json").contains("line 1 column 2"));
        assert!(err(r#"{"inline_code": "x", "filter_context": [1]}"#).contains("expected a map"));
        assert!(err(r#"{"inline_code": "x", "stat_prefix": "a.b"}"#).contains("`stat_prefix` \"a.b\""));
        assert!(err(r#"{"inline_code": "x", "filter_name": ""}"#).contains("`filter_name` must not be empty"));
    }
}
