//! `handle:stats()`: counters, gauges and histograms as Proxy-Wasm metrics.
//!
//! Envoy files plugin metrics under its `wasmcustom` namespace, so a metric
//! `name` appears as `wasmcustom.lua.<name>` (or `wasmcustom.lua.<stat_prefix>.<name>`)
//! where the native filter uses `<hcm prefix>lua.<name>`: a Wasm plugin cannot
//! see the connection manager's stat prefix. Envoy's metrics are per process,
//! so every worker's VM counts into the same metric, as with the native filter.
use std::rc::Rc;

use mlua::{Lua, Table, UserData, UserDataFields, Value};

use super::{log, method, script_error, ApiResult, Args};
use crate::host::MetricType;
use crate::stream::VmEnv;

/// The scope object `stats()` returns.
pub struct Stats {
    env: Rc<VmEnv>,
}

/// A counter, gauge or histogram: a metric id of this VM.
pub struct Metric {
    env: Rc<VmEnv>,
    id: u32,
}

impl UserData for Stats {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "Stats", false);
    }
}

/// One userdata type per metric kind so each has only its own methods.
pub struct Counter(Metric);
pub struct Gauge(Metric);
pub struct Histogram(Metric);

impl UserData for Counter {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "Counter", false);
    }
}
impl UserData for Gauge {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "Gauge", false);
    }
}
impl UserData for Histogram {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "Histogram", false);
    }
}

impl Stats {
    pub fn new(env: Rc<VmEnv>) -> Stats {
        Stats { env }
    }

    /// Defines the metric once per VM (Envoy hands out a new id on every
    /// define_metric call, all for the same underlying stat).
    fn metric(&self, kind: MetricType, name: &[u8]) -> ApiResult<Metric> {
        let name = String::from_utf8_lossy(name);
        let full = match &self.env.settings.stat_prefix {
            Some(prefix) => format!("lua.{prefix}.{name}"),
            None => format!("lua.{name}"),
        };
        let key = (kind as u32, full);
        if let Some(id) = self.env.metrics.borrow().get(&key) {
            return Ok(Metric { env: self.env.clone(), id: *id });
        }
        let id = self.env.host.define_metric(kind, &key.1)?;
        self.env.metrics.borrow_mut().insert(key, id);
        Ok(Metric { env: self.env.clone(), id })
    }
}

/// A non-negative amount (fractions dropped, as Envoy's cast does), or Envoy's
/// error for a negative one.
fn amount(args: &Args, n: usize, negative_msg: &str) -> ApiResult<u64> {
    let v = match args.get(n) {
        Value::Integer(i) => *i as f64,
        Value::Number(f) => *f,
        _ => args.integer(n)? as f64,
    };
    if v < 0.0 || v.is_nan() {
        return script_error(negative_msg);
    }
    // Saturating float-to-int cast.
    Ok(v as u64)
}

const HISTOGRAM_UNITS: [&str; 6] = ["ms", "milliseconds", "microseconds", "nanoseconds", "bytes", "unspecified"];

pub fn raw_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "counter",
        method(lua, "counter", |lua, s: &Stats, args| {
            Ok(Counter(s.metric(MetricType::Counter, &args.bytes(lua, 1)?)?))
        })?,
    )?;
    t.set(
        "gauge",
        method(lua, "gauge", |lua, s: &Stats, args| Ok(Gauge(s.metric(MetricType::Gauge, &args.bytes(lua, 1)?)?)))?,
    )?;
    t.set(
        "histogram",
        method(lua, "histogram", |lua, s: &Stats, args| {
            let name = args.bytes(lua, 1)?;
            // Proxy-Wasm metrics have no unit: a valid unit is accepted and
            // not recorded (documented difference).
            if !args.get(2).is_nil() {
                let unit = String::from_utf8_lossy(&args.bytes(lua, 2)?).into_owned();
                if !HISTOGRAM_UNITS.contains(&unit.as_str()) {
                    return script_error(format!(
                        "invalid histogram unit '{unit}', expected 'ms', 'milliseconds', 'microseconds', 'nanoseconds', 'bytes', or 'unspecified'"
                    ));
                }
            }
            Ok(Histogram(s.metric(MetricType::Histogram, &name)?))
        })?,
    )?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}

fn value(m: &Metric) -> ApiResult<Value> {
    let v = m.env.host.get_metric(m.id)?;
    Ok(Value::Integer(i64::try_from(v).unwrap_or(i64::MAX)))
}

pub fn counter_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("inc", method(lua, "inc", |_, c: &Counter, _| Ok(c.0.env.host.increment_metric(c.0.id, 1)?))?)?;
    t.set(
        "add",
        method(lua, "add", |_, c: &Counter, args| {
            let n = amount(args, 1, "counter add amount must be non-negative")?;
            Ok(c.0.env.host.increment_metric(c.0.id, i64::try_from(n).unwrap_or(i64::MAX))?)
        })?,
    )?;
    t.set("value", method(lua, "value", |_, c: &Counter, _| value(&c.0))?)?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}

pub fn gauge_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("inc", method(lua, "inc", |_, g: &Gauge, _| Ok(g.0.env.host.increment_metric(g.0.id, 1)?))?)?;
    t.set("dec", method(lua, "dec", |_, g: &Gauge, _| Ok(g.0.env.host.increment_metric(g.0.id, -1)?))?)?;
    t.set(
        "add",
        method(lua, "add", |_, g: &Gauge, args| {
            let n = amount(args, 1, "gauge add amount must be non-negative")?;
            Ok(g.0.env.host.increment_metric(g.0.id, i64::try_from(n).unwrap_or(i64::MAX))?)
        })?,
    )?;
    t.set(
        "sub",
        method(lua, "sub", |_, g: &Gauge, args| {
            let n = amount(args, 1, "gauge sub amount must be non-negative")?;
            Ok(g.0.env.host.increment_metric(g.0.id, -i64::try_from(n).unwrap_or(i64::MAX))?)
        })?,
    )?;
    t.set(
        "set",
        method(lua, "set", |_, g: &Gauge, args| {
            let n = amount(args, 1, "gauge set value must be non-negative")?;
            Ok(g.0.env.host.record_metric(g.0.id, n)?)
        })?,
    )?;
    t.set("value", method(lua, "value", |_, g: &Gauge, _| value(&g.0))?)?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}

pub fn histogram_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "recordValue",
        method(lua, "recordValue", |_, h: &Histogram, args| {
            let n = amount(args, 1, "histogram value must be non-negative")?;
            Ok(h.0.env.host.record_metric(h.0.id, n)?)
        })?,
    )?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}
