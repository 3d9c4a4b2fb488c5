//! The configured scripts (the default one and `source_codes`), each in its own
//! Lua state, and the per-route choice between them.
//!
//! Envoy's `LuaPerRoute` is typed per-filter config, which a Wasm filter cannot
//! read; the same settings come from route (or, failing that, virtual-host)
//! metadata under `per_route_namespace`:
//! `{"name": "<source_codes key>", "disabled": true, "filter_context": {...}}`.
use std::collections::BTreeMap;
use std::rc::Rc;

use prost_types::value::Kind;

use crate::config::Config;
use crate::host::Host;
use crate::proto::Metadata;
use crate::runtime::Runtime;

pub struct Scripts {
    config: Rc<Config>,
    default: Option<Rc<Runtime>>,
    named: BTreeMap<String, Rc<Runtime>>,
}

/// What a stream runs.
pub enum Choice {
    /// This script, with the route's `filter_context` if it has one.
    Run(Rc<Runtime>, Option<prost_types::Struct>),
    /// Nothing: the route disables the filter, or names no script that exists,
    /// or there is no default script (as Envoy's filter does then).
    Skip,
}

impl Scripts {
    pub fn new(config: Config, host: Rc<dyn Host>) -> Result<Scripts, String> {
        let config = Rc::new(config);
        let default = match &config.default_script {
            Some(script) => Some(Runtime::new(config.clone(), script, host.clone())?),
            None => None,
        };
        let mut named = BTreeMap::new();
        for (name, script) in &config.source_codes {
            named.insert(name.clone(), Runtime::new(config.clone(), script, host.clone())?);
        }
        Ok(Scripts { config, default, named })
    }

    pub fn default_runtime(&self) -> Option<&Rc<Runtime>> {
        self.default.as_ref()
    }

    pub fn named(&self, name: &str) -> Option<&Rc<Runtime>> {
        self.named.get(name)
    }

    /// The script for the stream whose request headers just arrived. Without
    /// per-route settings (no `source_codes`, no `per_route_namespace`) no
    /// property is read: the default script runs.
    pub fn choose(&self, host: &dyn Host) -> Result<Choice, String> {
        let Some(ns) = &self.config.per_route_namespace else {
            return Ok(self.default_choice(None));
        };
        let mut settings = None;
        for property in ["route_metadata", "virtual_host_metadata"] {
            let bytes = host.property(&["xds", property]).map_err(|e| e.to_string())?;
            if let Some(bytes) = bytes {
                let md = Metadata::decode_property(&bytes, &format!("xds.{property}"))?;
                if let Some(s) = md.filter_metadata.get(ns) {
                    settings = Some(s.clone());
                    break;
                }
            }
        }
        let Some(settings) = settings else {
            return Ok(self.default_choice(None));
        };
        let field = |k: &str| settings.fields.get(k).and_then(|v| v.kind.clone());
        let context = match field("filter_context") {
            Some(Kind::StructValue(s)) => Some(s),
            _ => None,
        };
        if let Some(Kind::BoolValue(true)) = field("disabled") {
            return Ok(Choice::Skip);
        }
        match field("name") {
            Some(Kind::StringValue(name)) => Ok(match self.named.get(&name) {
                Some(rt) => Choice::Run(rt.clone(), context),
                None => Choice::Skip,
            }),
            _ => Ok(self.default_choice(context)),
        }
    }

    fn default_choice(&self, context: Option<prost_types::Struct>) -> Choice {
        match &self.default {
            Some(rt) => Choice::Run(rt.clone(), context),
            None => Choice::Skip,
        }
    }
}
