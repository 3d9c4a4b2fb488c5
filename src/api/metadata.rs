//! Metadata objects: `metadata()`, `route():metadata()`, `virtualHost():metadata()`
//! and `filterContext()`, plus the protobuf/JSON → Lua conversions they and
//! dynamic metadata share.
//!
//! Route and virtual-host metadata come from the properties `xds.route_metadata`
//! and `xds.virtual_host_metadata` (serialized `envoy.config.core.v3.Metadata`).
//! A Wasm filter cannot be named `envoy.filters.http.lua`, so where Envoy looks
//! under the Lua filter's own name the plugin looks under its `filter_name`
//! (default: the plugin name) and then under `envoy.filters.http.lua`, so route
//! metadata written for the native filter keeps working.
use std::rc::Rc;

use mlua::{Function, Lua, MultiValue, Table, UserData, UserDataFields, Value};
use prost_types::value::Kind;

use super::{log, method, values, ApiResult};
use crate::proto::{Metadata, STRUCT_TYPE_URL};
use crate::stream::{StreamState, VmEnv};

/// The name Envoy's native Lua filter registers under.
pub const CANONICAL_NAME: &str = "envoy.filters.http.lua";

/// A read-only metadata object over a snapshot (a Lua table of converted values).
pub struct MetadataObject {
    table: Table,
}

impl UserData for MetadataObject {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "Metadata", true);
    }
}

/// What `route()` and `virtualHost()` return: an object whose only method is
/// `metadata()`.
pub struct RouteObject {
    state: Rc<StreamState>,
    property: &'static str,
}

impl UserData for RouteObject {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "Route", false);
    }
}

impl RouteObject {
    pub fn route(state: Rc<StreamState>) -> RouteObject {
        RouteObject { state, property: "route_metadata" }
    }

    pub fn virtual_host(state: Rc<StreamState>) -> RouteObject {
        RouteObject { state, property: "virtual_host_metadata" }
    }
}

/// An integral protobuf double as a Lua integer (so `tostring` prints "5", as it
/// did under Envoy's LuaJIT); other numbers stay floats.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.007_199_254_740_992e15 {
        Value::Integer(n as i64)
    } else {
        Value::Number(n)
    }
}

/// `google.protobuf.Value` → Lua, with Envoy's rules: null → nil, struct → table,
/// list → array. Depth is bounded by prost's decode recursion limit.
pub fn pb_value_to_lua(lua: &Lua, v: &prost_types::Value) -> mlua::Result<Value> {
    Ok(match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Nil,
        Some(Kind::NumberValue(n)) => number(*n),
        Some(Kind::StringValue(s)) => Value::String(lua.create_string(s)?),
        Some(Kind::BoolValue(b)) => Value::Boolean(*b),
        Some(Kind::StructValue(s)) => Value::Table(pb_struct_to_lua(lua, s)?),
        Some(Kind::ListValue(l)) => {
            let t = lua.create_table_with_capacity(l.values.len(), 0)?;
            for (i, item) in l.values.iter().enumerate() {
                t.raw_set(i + 1, pb_value_to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

pub fn pb_struct_to_lua(lua: &Lua, s: &prost_types::Struct) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, s.fields.len())?;
    for (k, v) in &s.fields {
        t.raw_set(lua.create_string(k)?, pb_value_to_lua(lua, v)?)?;
    }
    Ok(t)
}

/// JSON (the plugin configuration's `filter_context`) → Lua, with the same rules.
/// serde_json's recursion limit bounds the depth.
pub fn json_to_lua(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    Ok(match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => number(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(lua.create_string(s)?),
        serde_json::Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, json_to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
        serde_json::Value::Object(map) => Value::Table(json_object_to_lua(lua, map)?),
    })
}

fn json_object_to_lua(lua: &Lua, map: &serde_json::Map<String, serde_json::Value>) -> mlua::Result<Table> {
    let t = lua.create_table_with_capacity(0, map.len())?;
    for (k, v) in map {
        t.raw_set(lua.create_string(k)?, json_to_lua(lua, v)?)?;
    }
    Ok(t)
}

/// Reads and decodes a metadata-typed property (`None` when the host has none,
/// e.g. no route matched).
pub fn metadata_property(state: &StreamState, path: &[&str]) -> ApiResult<Option<Metadata>> {
    state.check_active()?;
    match state.host().property(path)? {
        Some(bytes) => Ok(Some(Metadata::decode_property(&bytes, &path.join(".")).map_err(super::ApiError::Script)?)),
        None => Ok(None),
    }
}

/// The metadata object of `property` (`route_metadata` / `virtual_host_metadata`)
/// for this filter: the struct under the filter name, else under Envoy's
/// canonical Lua filter name, else empty.
fn filter_metadata(lua: &Lua, state: &StreamState, property: &str) -> ApiResult<MetadataObject> {
    let metadata = metadata_property(state, &["xds", property])?;
    let name = state.env.filter_name();
    let found = metadata.as_ref().and_then(|m| {
        (!name.is_empty())
            .then(|| m.filter_metadata.get(&*name))
            .flatten()
            .or_else(|| m.filter_metadata.get(CANONICAL_NAME))
    });
    let table = match found {
        Some(s) => pb_struct_to_lua(lua, s)?,
        None => lua.create_table()?,
    };
    Ok(MetadataObject { table })
}

/// `handle:metadata()`: the matched route's metadata for this filter.
pub fn route_metadata(lua: &Lua, state: &StreamState) -> ApiResult<MetadataObject> {
    filter_metadata(lua, state, "route_metadata")
}

/// `handle:filterContext()`: the route's per-route `filter_context` if it has
/// one (it replaces, not merges), else the configuration's, else empty.
pub fn filter_context(lua: &Lua, state: &StreamState) -> ApiResult<MetadataObject> {
    state.check_active()?;
    let table = match (&*state.route_filter_context.borrow(), &state.env.settings.filter_context) {
        (Some(route), _) => pb_struct_to_lua(lua, route)?,
        (None, Some(map)) => json_object_to_lua(lua, map)?,
        (None, None) => lua.create_table()?,
    };
    Ok(MetadataObject { table })
}

/// A typed (Any) metadata entry reflected into a table the way Envoy's native
/// filter reflects a `google.protobuf.Struct` (`{fields = {k = {string_value =
/// ...}}}`); `nil` for other message types, which the plugin has no descriptors
/// for (Envoy returns `nil` for types it cannot unpack, too).
pub fn typed_metadata_to_lua(lua: &Lua, any: &prost_types::Any) -> ApiResult<Value> {
    if any.type_url != STRUCT_TYPE_URL {
        return Ok(Value::Nil);
    }
    let Ok(s) = <prost_types::Struct as prost::Message>::decode(any.value.as_slice()) else {
        return Ok(Value::Nil);
    };
    Ok(Value::Table(reflect_struct(lua, &s)?))
}

fn reflect_struct(lua: &Lua, s: &prost_types::Struct) -> mlua::Result<Table> {
    let fields = lua.create_table()?;
    for (k, v) in &s.fields {
        fields.raw_set(lua.create_string(k)?, reflect_value(lua, v)?)?;
    }
    let t = lua.create_table()?;
    t.raw_set("fields", fields)?;
    Ok(t)
}

fn reflect_value(lua: &Lua, v: &prost_types::Value) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    match &v.kind {
        None => {}
        Some(Kind::NullValue(_)) => t.raw_set("null_value", "NULL_VALUE")?,
        Some(Kind::NumberValue(n)) => t.raw_set("number_value", number(*n))?,
        Some(Kind::StringValue(s)) => t.raw_set("string_value", lua.create_string(s)?)?,
        Some(Kind::BoolValue(b)) => t.raw_set("bool_value", *b)?,
        Some(Kind::StructValue(s)) => t.raw_set("struct_value", reflect_struct(lua, s)?)?,
        Some(Kind::ListValue(l)) => {
            let values = lua.create_table()?;
            for (i, item) in l.values.iter().enumerate() {
                values.raw_set(i + 1, reflect_value(lua, item)?)?;
            }
            let list = lua.create_table()?;
            list.raw_set("values", values)?;
            t.raw_set("list_value", list)?;
        }
    }
    Ok(t)
}

pub fn raw_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        method(lua, "get", |lua, m: &MetadataObject, args| -> ApiResult<MultiValue> {
            let key = lua.create_string(args.bytes(lua, 1)?)?;
            let value = m.table.raw_get::<Value>(key)?;
            // Envoy returns no value at all (not nil) for an absent key.
            if value.is_nil() {
                return Ok(MultiValue::new());
            }
            // A copy, so a script changing the result cannot change later reads.
            Ok(MultiValue::from_vec(vec![values::copy_metadata_value(lua, &value, 0)?]))
        })?,
    )?;
    t.set(
        "_pairs",
        method(lua, "pairs", |lua, m: &MetadataObject, _| -> ApiResult<Function> {
            let mut entries = Vec::new();
            for pair in m.table.pairs::<Value, Value>() {
                let (k, v) = pair?;
                entries.push((k, values::copy_metadata_value(lua, &v, 0)?));
            }
            Ok(snapshot_iterator(lua, entries)?)
        })?,
    )?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}

pub fn route_raw_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("metadata", method(lua, "metadata", |lua, r: &RouteObject, _| filter_metadata(lua, &r.state, r.property))?)?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}

/// A `pairs` step function over fixed entries: iterating a snapshot makes
/// changes during iteration and breaking out early harmless.
pub fn snapshot_iterator(lua: &Lua, entries: Vec<(Value, Value)>) -> mlua::Result<Function> {
    let next = std::cell::Cell::new(0usize);
    lua.create_function(move |_, _: MultiValue| {
        let i = next.get();
        next.set(i + 1);
        Ok(entries.get(i).cloned().unwrap_or((Value::Nil, Value::Nil)))
    })
}
