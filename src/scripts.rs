//! The configured scripts (the default one and `source_codes`), each in its own
//! Lua state, and the per-route choice between them.
//!
//! Envoy's `LuaPerRoute` is typed per-filter config, which a Wasm filter cannot
//! read; the same settings come from route (or, failing that, virtual-host)
//! metadata under `per_route_namespace`:
//! `{"name": "<source_codes key>", "disabled": true, "filter_context": {...}}`.
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

use prost_types::value::Kind;

use crate::config::Config;
use crate::host::{Host, MetricType};
use crate::proto::Metadata;
use crate::runtime::Runtime;

pub struct Scripts {
    config: Rc<Config>,
    default: Option<Rc<Runtime>>,
    named: BTreeMap<String, Rc<Runtime>>,
    /// Streams since the memory gauges were last set.
    streams: Cell<u32>,
    /// Gauge ids of `lua.vm.heap_bytes` and `lua.vm.linear_memory_bytes`.
    gauges: Cell<Option<(u32, u32)>>,
}

/// How often (in streams) the memory gauges are refreshed.
const MEMORY_REPORT_EVERY: u32 = 256;

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
        Ok(Scripts { config, default, named, streams: Cell::new(0), gauges: Cell::new(None) })
    }

    /// Called when a stream ends: every few streams, sets the gauges
    /// `wasmcustom.lua.vm.heap_bytes` (all Lua states of this configuration) and
    /// `wasmcustom.lua.vm.linear_memory_bytes` (the VM's Wasm memory). Gauges are
    /// per process, so with several workers they show the last reporter's VM.
    pub fn stream_done(&self, host: &dyn Host, linear_memory_bytes: u64) {
        let n = self.streams.get();
        self.streams.set(n.wrapping_add(1));
        if !n.is_multiple_of(MEMORY_REPORT_EVERY) {
            return;
        }
        let ids = match self.gauges.get() {
            Some(ids) => ids,
            None => {
                let (Ok(heap), Ok(linear)) = (
                    host.define_metric(MetricType::Gauge, "lua.vm.heap_bytes"),
                    host.define_metric(MetricType::Gauge, "lua.vm.linear_memory_bytes"),
                ) else {
                    return;
                };
                self.gauges.set(Some((heap, linear)));
                (heap, linear)
            }
        };
        let heap: usize = self.default.iter().chain(self.named.values()).map(|rt| rt.lua().used_memory()).sum();
        let _ = host.record_metric(ids.0, heap as u64);
        let _ = host.record_metric(ids.1, linear_memory_bytes);
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
