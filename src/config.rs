//! The plugin configuration (`WasmPlugin.pluginConfig`, or the Wasm filter's
//! `configuration`): JSON, validated strictly at configure time so that a bad
//! config is refused by the host instead of failing requests later.
use serde::Deserialize;

use crate::stream::ApiSettings;

/// A script given as a string or, as in Envoy's `DataSource`, `{"inline_string": ...}`.
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
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    inline_code: Option<String>,
    default_source_code: Option<Source>,
    #[serde(default)]
    fail_open: bool,
    #[serde(default)]
    allow_on_headers_stop_iteration: bool,
    filter_name: Option<String>,
    filter_context: Option<serde_json::Map<String, serde_json::Value>>,
    stat_prefix: Option<String>,
    instruction_budget: Option<u64>,
    memory_limit_bytes: Option<u64>,
}

/// Default instruction budget per callback: stops `while true do end` after
/// about 0.1 s of CPU in Envoy's V8 (measured in tests/e2e/test_sandbox.py).
pub const DEFAULT_INSTRUCTION_BUDGET: u64 = 10_000_000;
/// Default Lua heap limit per VM.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 << 20;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The config field the script came from; it is also the script's chunk name,
    /// so errors read `inline_code:3: ...`.
    pub script_name: &'static str,
    pub script: String,
    pub fail_open: bool,
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
        let (script_name, script) = match (raw.inline_code, raw.default_source_code) {
            (Some(_), Some(_)) => {
                return Err(
                    "invalid plugin configuration: only one of `inline_code` or `default_source_code` can be set"
                        .into(),
                )
            }
            (Some(code), None) => ("inline_code", code),
            (None, Some(Source::Inline(code))) => ("default_source_code", code),
            (None, Some(Source::DataSource(ds))) => ("default_source_code", ds.inline_string),
            (None, None) => {
                return Err(
                    "invalid plugin configuration: missing script: set `inline_code` (or `default_source_code`)".into(),
                )
            }
        };
        if let Some(prefix) = &raw.stat_prefix {
            if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
                return Err(format!(
                    "invalid plugin configuration: `stat_prefix` {prefix:?} must be non-empty and use only letters, digits, '_' and '-'"
                ));
            }
        }
        if let Some(n) = raw.instruction_budget.filter(|n| *n != 0 && *n < u64::from(crate::budget::STEP)) {
            return Err(format!(
                "invalid plugin configuration: `instruction_budget` {n} is below the minimum of {} (0 = unlimited)",
                crate::budget::STEP
            ));
        }
        if let Some(n) = raw.memory_limit_bytes.filter(|n| *n != 0 && *n < 1 << 20) {
            return Err(format!(
                "invalid plugin configuration: `memory_limit_bytes` {n} is below the minimum of 1048576 (0 = unlimited)"
            ));
        }
        if raw.filter_name.as_deref() == Some("") {
            return Err("invalid plugin configuration: `filter_name` must not be empty".into());
        }
        Ok(Config {
            script_name,
            script,
            fail_open: raw.fail_open,
            allow_on_headers_stop_iteration: raw.allow_on_headers_stop_iteration,
            api: ApiSettings {
                filter_name: raw.filter_name,
                filter_context: raw.filter_context,
                stat_prefix: raw.stat_prefix,
            },
            instruction_budget: raw.instruction_budget.unwrap_or(DEFAULT_INSTRUCTION_BUDGET),
            memory_limit_bytes: raw.memory_limit_bytes.unwrap_or(DEFAULT_MEMORY_LIMIT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_script_form() {
        let c = Config::parse(br#"{"inline_code": "x = 1"}"#).unwrap();
        assert_eq!((c.script_name, c.script.as_str(), c.fail_open), ("inline_code", "x = 1", false));
        let c = Config::parse(br#"{"default_source_code": "y = 2", "fail_open": true}"#).unwrap();
        assert_eq!((c.script_name, c.script.as_str(), c.fail_open), ("default_source_code", "y = 2", true));
        let c = Config::parse(br#"{"default_source_code": {"inline_string": "z = 3"}}"#).unwrap();
        assert_eq!(c.script, "z = 3");
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
        assert!(err("").contains("empty"));
        assert!(err("{not json").contains("line 1 column 2"));
        assert!(err(r#"{"inline_code": "x", "filter_context": [1]}"#).contains("expected a map"));
        assert!(err(r#"{"inline_code": "x", "stat_prefix": "a.b"}"#).contains("`stat_prefix` \"a.b\""));
        assert!(err(r#"{"inline_code": "x", "filter_name": ""}"#).contains("`filter_name` must not be empty"));
    }
}
