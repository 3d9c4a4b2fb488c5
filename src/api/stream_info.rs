//! `handle:streamInfo()`, its dynamic metadata, and `handle:connection()`.
//!
//! Values come from Proxy-Wasm properties. Dynamic metadata reads Envoy's
//! (property `metadata`, e.g. what jwt_authn or header_to_metadata stored) with
//! the script's own writes laid over it. The writes are kept by the plugin for
//! the stream (shared by `envoy_on_request` and `envoy_on_response`): the ABI has
//! no call that writes Envoy's dynamic metadata (`set_property` and
//! `set_envoy_filter_state` write filter state), so other filters and access
//! logs do not see them.
use std::rc::Rc;

use mlua::{Function, Lua, MultiValue, Table, UserData, UserDataFields, Value};

use super::{log, metadata, method, script_error, ssl, values, ApiResult};
use crate::proto::{Metadata, SetEnvoyFilterStateArguments};
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

pub struct FilterState {
    state: Rc<StreamState>,
}

impl UserData for FilterState {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "FilterState", false);
    }
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

/// Envoy's dynamic metadata (property `metadata`), decoded; `None` if there is none.
fn envoy_dynamic_metadata(state: &StreamState) -> ApiResult<Option<Metadata>> {
    metadata::metadata_property(state, &["metadata"])
}

/// One namespace as Lua sees it: Envoy's struct with the script's keys laid over.
fn merged_namespace(lua: &Lua, envoy: Option<&prost_types::Struct>, ours: &Value) -> ApiResult<Value> {
    let base = match envoy {
        Some(s) => Some(metadata::pb_struct_to_lua(lua, s)?),
        None => None,
    };
    match (base, ours) {
        (None, Value::Nil) => Ok(Value::Nil),
        (None, ours) => values::copy_metadata_value(lua, ours, 0),
        (Some(base), Value::Table(ours)) => {
            for pair in ours.pairs::<Value, Value>() {
                let (k, v) = pair?;
                base.raw_set(k, values::copy_metadata_value(lua, &v, 0)?)?;
            }
            Ok(Value::Table(base))
        }
        (Some(base), _) => Ok(Value::Table(base)),
    }
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
        method(lua, "filterState", |_, s: &StreamInfo, _| {
            s.state.check_active()?;
            Ok(FilterState { state: s.state.clone() })
        })?,
    )?;
    t.set(
        "dynamicTypedMetadata",
        method(lua, "dynamicTypedMetadata", |lua, s: &StreamInfo, args| -> ApiResult<Value> {
            let name = String::from_utf8_lossy(&args.bytes(lua, 1)?).into_owned();
            match envoy_dynamic_metadata(&s.state)?.and_then(|m| m.typed_filter_metadata.get(&name).cloned()) {
                Some(any) => metadata::typed_metadata_to_lua(lua, &any),
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    t.set(
        "downstreamSslConnection",
        method(lua, "downstreamSslConnection", |_, s: &StreamInfo, _| ssl::ssl(&s.state))?,
    )?;
    t.set(
        "virtualClusterName",
        method(lua, "virtualClusterName", |_, s: &StreamInfo, _| -> ApiResult<Value> {
            s.state.check_active()?;
            super::unsupported(
                "streamInfo():virtualClusterName()",
                "Envoy exposes no property for the matched virtual cluster (the xds.* attributes stop at route and virtual host)",
            )
        })?,
    )?;
    t.set(
        "drainConnectionUponCompletion",
        method(lua, "drainConnectionUponCompletion", |_, s: &StreamInfo, _| -> ApiResult<Value> {
            s.state.check_active()?;
            super::unsupported(
                "streamInfo():drainConnectionUponCompletion()",
                "the ABI has no call that marks the downstream connection for draining",
            )
        })?,
    )?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}

pub fn dynamic_metadata_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let dm = lua.create_table()?;
    dm.set(
        "get",
        method(lua, "get", |lua, d: &DynamicMetadata, args| -> ApiResult<MultiValue> {
            d.state.check_active()?;
            let ns = args.bytes(lua, 1)?;
            let ours = d.state.dynamic_metadata(lua)?.raw_get::<Value>(lua.create_string(&ns)?)?;
            let envoy = envoy_dynamic_metadata(&d.state)?;
            let envoy_ns = envoy.as_ref().and_then(|m| m.filter_metadata.get(&*String::from_utf8_lossy(&ns)));
            let value = merged_namespace(lua, envoy_ns, &ours)?;
            // Envoy returns no value at all (not nil) for an absent namespace.
            if value.is_nil() {
                return Ok(MultiValue::new());
            }
            Ok(MultiValue::from_vec(vec![value]))
        })?,
    )?;
    dm.set(
        "set",
        method(lua, "set", |lua, d: &DynamicMetadata, args| -> ApiResult<()> {
            d.state.check_active()?;
            let ns = lua.create_string(args.bytes(lua, 1)?)?;
            let key = lua.create_string(args.bytes(lua, 2)?)?;
            let value = values::copy_metadata_value(lua, args.get(3), 0)?;
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
            let store = d.state.dynamic_metadata(lua)?;
            let envoy = envoy_dynamic_metadata(&d.state)?.unwrap_or_default();
            let mut entries = Vec::new();
            for (ns, s) in &envoy.filter_metadata {
                let ours = store.raw_get::<Value>(lua.create_string(ns)?)?;
                entries.push((Value::String(lua.create_string(ns)?), merged_namespace(lua, Some(s), &ours)?));
            }
            for pair in store.pairs::<Value, Value>() {
                let (k, v) = pair?;
                let known = match &k {
                    Value::String(ns) => envoy.filter_metadata.contains_key(&*ns.to_string_lossy()),
                    _ => false,
                };
                if !known {
                    entries.push((k, values::copy_metadata_value(lua, &v, 0)?));
                }
            }
            Ok(metadata::snapshot_iterator(lua, entries)?)
        })?,
    )?;
    log::add_methods(lua, env, &dm)?;
    Ok(dm)
}

pub fn connection_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let conn = lua.create_table()?;
    conn.set("ssl", method(lua, "ssl", |_, c: &Connection, _| ssl::ssl(&c.state))?)?;
    log::add_methods(lua, env, &conn)?;
    Ok(conn)
}

pub fn filter_state_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        method(lua, "get", |lua, f: &FilterState, args| -> ApiResult<MultiValue> {
            f.state.check_active()?;
            let name = String::from_utf8_lossy(&args.bytes(lua, 1)?).into_owned();
            if args.present(2) && !args.get(2).is_nil() {
                args.bytes(lua, 2)?;
                return super::unsupported(
                    "filterState():get(name, field)",
                    "get_property returns field values without their type, so numbers and strings cannot be told apart",
                );
            }
            // The object's serialization (`serializeAsString`), as Envoy's
            // get(name); no value at all when absent, as in Envoy.
            Ok(match f.state.host().property(&["filter_state", &name])? {
                Some(bytes) => MultiValue::from_vec(vec![Value::String(lua.create_string(bytes)?)]),
                None => MultiValue::new(),
            })
        })?,
    )?;
    t.set(
        "set",
        method(lua, "set", |lua, f: &FilterState, args| -> ApiResult<()> {
            f.state.check_active()?;
            let key = String::from_utf8_lossy(&args.bytes(lua, 1)?).into_owned();
            let factory = String::from_utf8_lossy(&args.bytes(lua, 2)?).into_owned();
            let value = args.bytes(lua, 3)?;
            // Envoy's set_envoy_filter_state looks the factory up by the key and
            // stores the object under it; there is no way to store under another name.
            if key != factory {
                return super::unsupported(
                    "filterState():set() with a key different from the factory name",
                    "Envoy's set_envoy_filter_state stores an object under its factory's name",
                );
            }
            let arguments = SetEnvoyFilterStateArguments { path: key.clone(), value: value.clone(), span: 0 };
            match f
                .state
                .host()
                .call_foreign_function("set_envoy_filter_state", &prost::Message::encode_to_vec(&arguments))
            {
                Ok(_) => Ok(()),
                Err(e) if e.status == 1 => script_error(format!("'{factory}' does not have an object factory")),
                Err(e) if e.status == 2 => script_error(format!(
                    "failed to create an object '{key}' from value '{}'",
                    String::from_utf8_lossy(&value)
                )),
                Err(e) => Err(e.into()),
            }
        })?,
    )?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}
