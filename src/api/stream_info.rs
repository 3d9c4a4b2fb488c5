//! `handle:streamInfo()`, its dynamic metadata, and `handle:connection()`.
//!
//! Values come from Proxy-Wasm properties. Dynamic metadata is kept by the plugin
//! for the stream (shared by `envoy_on_request` and `envoy_on_response`): the ABI
//! has no call that writes Envoy's dynamic metadata (`set_property` only writes
//! filter state), so other filters and access logs do not see it.
use std::rc::Rc;

use mlua::{Function, Lua, MultiValue, Table, UserData, UserDataFields, Value};

use super::{log, method, script_error, ApiResult, Args};
use crate::stream::{StreamState, VmEnv};

pub struct StreamInfo {
    pub(crate) state: Rc<StreamState>,
}

pub struct DynamicMetadata {
    state: Rc<StreamState>,
}

pub struct Connection {
    state: Rc<StreamState>,
}

impl UserData for StreamInfo {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "StreamInfo", false);
    }
}

impl UserData for DynamicMetadata {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "DynamicMetadata", true);
    }
}

impl UserData for Connection {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "Connection", false);
    }
}

impl StreamInfo {
    pub fn new(state: Rc<StreamState>) -> StreamInfo {
        StreamInfo { state }
    }
}

impl Connection {
    pub fn new(state: Rc<StreamState>) -> Connection {
        Connection { state }
    }
}

fn property_string(state: &StreamState, path: &[&str]) -> ApiResult<String> {
    state.check_active()?;
    Ok(state.host().property(path)?.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_default())
}

/// Lua → metadata value, with the rules of Envoy's conversion to protobuf:
/// arrays (positive integer keys) and string-keyed maps, nested; other types fail.
fn metadata_copy(lua: &Lua, v: &Value, depth: usize) -> ApiResult<Value> {
    if depth > 64 {
        return script_error("dynamic metadata value is nested too deeply");
    }
    Ok(match v {
        Value::Nil | Value::Boolean(_) | Value::Integer(_) | Value::Number(_) | Value::String(_) => v.clone(),
        Value::Table(t) => {
            let out = lua.create_table()?;
            for pair in t.pairs::<Value, Value>() {
                let (k, val) = pair?;
                match &k {
                    Value::String(_) | Value::Integer(_) => {}
                    Value::Number(f) if f.fract() == 0.0 && *f >= 1.0 => {}
                    other => {
                        return script_error(format!(
                            "unexpected type {} in table key (only string keys are supported)",
                            super::lua_type_name(other)
                        ))
                    }
                }
                out.raw_set(k, metadata_copy(lua, &val, depth + 1)?)?;
            }
            Value::Table(out)
        }
        other => return script_error(format!("unexpected type '{}' in dynamicMetadata", super::lua_type_name(other))),
    })
}

fn not_yet(name: &'static str) -> impl Fn(&Lua, &StreamInfo, &Args) -> ApiResult<Value> {
    move |_, _, _| script_error(format!("streamInfo():{name}() is not implemented yet in proxy-wasm-lua"))
}

pub fn raw_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "protocol",
        method(lua, "protocol", |_, s: &StreamInfo, _| property_string(&s.state, &["request", "protocol"]))?,
    )?;
    // Envoy's properties carry the addresses after XFF handling only; the direct
    // variants return the same values.
    for (name, path) in [
        ("downstreamLocalAddress", ["destination", "address"]),
        ("downstreamDirectLocalAddress", ["destination", "address"]),
        ("downstreamRemoteAddress", ["source", "address"]),
        ("downstreamDirectRemoteAddress", ["source", "address"]),
        ("requestedServerName", ["connection", "requested_server_name"]),
        ("routeName", ["xds", "route_name"]),
    ] {
        t.set(name, method(lua, name, move |_, s: &StreamInfo, _| property_string(&s.state, &path))?)?;
    }
    t.set(
        "dynamicMetadata",
        method(lua, "dynamicMetadata", |_, s: &StreamInfo, _| {
            s.state.check_active()?;
            Ok(DynamicMetadata { state: s.state.clone() })
        })?,
    )?;
    t.set(
        "filterState",
        method(lua, "filterState", |_, _: &StreamInfo, _| -> ApiResult<Value> {
            script_error("streamInfo():filterState() is not implemented yet in proxy-wasm-lua")
        })?,
    )?;
    t.set("downstreamSslConnection", method(lua, "downstreamSslConnection", |_, s: &StreamInfo, _| ssl(&s.state))?)?;
    for name in ["dynamicTypedMetadata", "virtualClusterName", "drainConnectionUponCompletion"] {
        t.set(name, method(lua, name, not_yet(name))?)?;
    }
    log::add_methods(lua, env, &t)?;
    Ok(t)
}

/// `nil` on a plaintext connection; the SSL object is not available yet.
fn ssl(state: &StreamState) -> ApiResult<Value> {
    state.check_active()?;
    match state.host().property(&["connection", "tls_version"])? {
        Some(v) if !v.is_empty() => {
            script_error("the SSL connection object is not implemented yet in proxy-wasm-lua (TLS connection)")
        }
        _ => Ok(Value::Nil),
    }
}

pub fn dynamic_metadata_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let dm = lua.create_table()?;
    dm.set(
        "get",
        method(lua, "get", |lua, d: &DynamicMetadata, args| -> ApiResult<MultiValue> {
            d.state.check_active()?;
            let ns = args.bytes(lua, 1)?;
            let store = d.state.dynamic_metadata(lua)?;
            let value = store.raw_get::<Value>(lua.create_string(&ns)?)?;
            // Envoy returns no value at all (not nil) for an absent namespace.
            if value.is_nil() {
                return Ok(MultiValue::new());
            }
            Ok(MultiValue::from_vec(vec![metadata_copy(lua, &value, 0)?]))
        })?,
    )?;
    dm.set(
        "set",
        method(lua, "set", |lua, d: &DynamicMetadata, args| -> ApiResult<()> {
            d.state.check_active()?;
            let ns = lua.create_string(args.bytes(lua, 1)?)?;
            let key = lua.create_string(args.bytes(lua, 2)?)?;
            let value = metadata_copy(lua, args.get(3), 0)?;
            let store = d.state.dynamic_metadata(lua)?;
            let ns_table = match store.raw_get::<Value>(&ns)? {
                Value::Table(t) => t,
                _ => {
                    let t = lua.create_table()?;
                    store.raw_set(&ns, &t)?;
                    t
                }
            };
            ns_table.raw_set(key, value)?;
            Ok(())
        })?,
    )?;
    dm.set(
        "_pairs",
        method(lua, "pairs", |lua, d: &DynamicMetadata, _| -> ApiResult<Function> {
            d.state.check_active()?;
            // Iterates a snapshot: changing the metadata while iterating is safe.
            let store = d.state.dynamic_metadata(lua)?;
            let mut entries = Vec::new();
            for pair in store.pairs::<Value, Value>() {
                let (k, v) = pair?;
                entries.push((k, metadata_copy(lua, &v, 0)?));
            }
            let next = std::cell::Cell::new(0usize);
            Ok(lua.create_function(move |_, _: MultiValue| {
                let i = next.get();
                next.set(i + 1);
                Ok(entries.get(i).cloned().unwrap_or((Value::Nil, Value::Nil)))
            })?)
        })?,
    )?;
    log::add_methods(lua, env, &dm)?;
    Ok(dm)
}

pub fn connection_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let conn = lua.create_table()?;
    conn.set("ssl", method(lua, "ssl", |_, c: &Connection, _| ssl(&c.state))?)?;
    log::add_methods(lua, env, &conn)?;
    Ok(conn)
}
