//! Header map objects (`handle:headers()`).
//!
//! Reads go to the host (once per callback, then cached); writes go straight to
//! the host. Unlike Envoy's native filter, `pairs()` iterates a snapshot, so
//! changing the map while iterating, or breaking out of the loop, is safe.
use std::cell::Cell;
use std::rc::Rc;

use mlua::{Function, Lua, MultiValue, Table, UserData, UserDataFields, Value};

use super::{log, method, script_error, values, ApiResult, Args};
use crate::host::MapType;
use crate::stream::{StreamState, VmEnv};

pub struct HeaderMap {
    state: Rc<StreamState>,
    map: MapType,
    /// `downstreamRequestHeaders()`: reads only.
    read_only: bool,
}

impl HeaderMap {
    pub fn new(state: Rc<StreamState>, map: MapType) -> HeaderMap {
        HeaderMap { state, map, read_only: false }
    }

    pub fn read_only(state: Rc<StreamState>, map: MapType) -> HeaderMap {
        HeaderMap { state, map, read_only: true }
    }

    fn check_writable(&self) -> ApiResult<()> {
        if self.read_only {
            return script_error("the headers from downstreamRequestHeaders() are read-only");
        }
        Ok(())
    }

    /// The values of `name`, in order.
    fn values(&self, name: &str) -> ApiResult<Vec<Vec<u8>>> {
        let pairs = self.state.header_pairs(self.map)?;
        Ok(pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect())
    }
}

impl UserData for HeaderMap {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "HeaderMap", true);
    }
}

/// Header names are case-insensitive; lookups use the lower-case form.
fn lookup_name(lua: &Lua, args: &Args) -> ApiResult<String> {
    Ok(String::from_utf8_lossy(&args.bytes(lua, 1)?).to_ascii_lowercase())
}

fn lua_bytes(lua: &Lua, b: &[u8]) -> ApiResult<Value> {
    Ok(Value::String(lua.create_string(b)?))
}

pub fn raw_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        method(lua, "get", |lua, h: &HeaderMap, args| {
            let name = lookup_name(lua, args)?;
            let vals = h.values(&name)?;
            if vals.is_empty() {
                return Ok(Value::Nil);
            }
            lua_bytes(lua, &vals.join(&b","[..]))
        })?,
    )?;
    t.set(
        "getAtIndex",
        method(lua, "getAtIndex", |lua, h: &HeaderMap, args| {
            let name = lookup_name(lua, args)?;
            let index = args.integer(2)?;
            let vals = h.values(&name)?;
            match usize::try_from(index).ok().and_then(|i| vals.get(i)) {
                Some(v) => lua_bytes(lua, v),
                None => Ok(Value::Nil),
            }
        })?,
    )?;
    t.set(
        "getNumValues",
        method(lua, "getNumValues", |lua, h: &HeaderMap, args| {
            let name = lookup_name(lua, args)?;
            Ok(h.values(&name)?.len() as i64)
        })?,
    )?;
    t.set(
        "add",
        method(lua, "add", |lua, h: &HeaderMap, args| {
            h.check_writable()?;
            let (name, value) = name_and_value(lua, args)?;
            let map = h.map;
            if name.starts_with(':') && !h.values(&name)?.is_empty() {
                return script_error(format!(
                    "cannot add a second '{name}': pseudo-headers have one value, use replace()"
                ));
            }
            h.state.modify_headers(map, |host| Ok(host.add_header(map, &name, &value)?))
        })?,
    )?;
    t.set(
        "replace",
        method(lua, "replace", |lua, h: &HeaderMap, args| {
            h.check_writable()?;
            let (name, value) = name_and_value(lua, args)?;
            let map = h.map;
            h.state.modify_headers(map, |host| Ok(host.replace_header(map, &name, &value)?))
        })?,
    )?;
    t.set(
        "remove",
        method(lua, "remove", |lua, h: &HeaderMap, args| {
            h.check_writable()?;
            let name = values::header_name(&args.bytes(lua, 1)?)?;
            if name.starts_with(':') {
                return script_error(format!(
                    "cannot remove pseudo-header '{name}': Envoy needs it to forward the message"
                ));
            }
            let map = h.map;
            h.state.modify_headers(map, |host| Ok(host.remove_header(map, &name)?))
        })?,
    )?;
    t.set(
        "setHttp1ReasonPhrase",
        method(lua, "setHttp1ReasonPhrase", |_, _: &HeaderMap, _| -> ApiResult<()> {
            script_error("unsupported on Proxy-Wasm: the ABI has no call to set the HTTP/1 reason phrase")
        })?,
    )?;
    t.set(
        "_pairs",
        method(lua, "pairs", |lua, h: &HeaderMap, _| -> ApiResult<Function> {
            let snapshot = h.state.header_pairs(h.map)?;
            let next = Cell::new(0usize);
            Ok(lua.create_function(move |lua, _: MultiValue| {
                let i = next.get();
                match snapshot.get(i) {
                    Some((k, v)) => {
                        next.set(i + 1);
                        Ok((Value::String(lua.create_string(k)?), Value::String(lua.create_string(v)?)))
                    }
                    None => Ok((Value::Nil, Value::Nil)),
                }
            })?)
        })?,
    )?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}

fn name_and_value(lua: &Lua, args: &Args) -> ApiResult<(String, Vec<u8>)> {
    let name = values::header_name(&args.bytes(lua, 1)?)?;
    let value = args.bytes(lua, 2)?;
    values::check_header_value(&name, &value)?;
    Ok((name, value))
}
