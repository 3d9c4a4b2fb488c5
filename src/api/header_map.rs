//! Header map objects (`handle:headers()`).
//!
//! Reads go to the host (once per callback, then cached); writes go straight to
//! the host. Unlike Envoy's native filter, `pairs()` iterates a snapshot, so
//! changing the map while iterating, or breaking out of the loop, is safe.
//!
//! A header map is a plain userdata (object.rs); `get`, `add`, `replace` and
//! `remove` are Lua C functions, the rest mlua methods.
use std::cell::Cell;
use std::ffi::c_int;
use std::rc::Rc;

use mlua::{ffi, Function, Lua, MultiValue, Table, Value};

use super::object::{self, Kind, Token};
use super::{log, method, script_error, values, ApiResult, Args};
use crate::host::{Host, HostResult, MapType};
use crate::stream::{StreamState, VmEnv};

/// A header map as its mlua methods see it (the writes are Lua C functions).
pub struct HeaderMap {
    state: Rc<StreamState>,
    map: MapType,
}

impl HeaderMap {
    /// The object a header map token (object.rs) names.
    pub fn from_parts(state: Rc<StreamState>, map: MapType) -> HeaderMap {
        HeaderMap { state, map }
    }

    /// The values of `name`, in order.
    fn values(&self, name: &str) -> ApiResult<Vec<Vec<u8>>> {
        values_of(&self.state, self.map, name)
    }
}

fn values_of(state: &StreamState, map: MapType, name: &str) -> ApiResult<Vec<Vec<u8>>> {
    let pairs = state.header_pairs(map)?;
    Ok(pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect())
}

fn check_writable(read_only: bool) -> ApiResult<()> {
    if read_only {
        return script_error("the headers from downstreamRequestHeaders() are read-only");
    }
    Ok(())
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

fn name_and_value(name: &[u8], value: &[u8]) -> ApiResult<String> {
    let name = values::header_name(name)?;
    values::check_header_value(&name, value)?;
    Ok(name)
}

// The hot methods, as Lua C functions on the Lua stack (see object.rs): no
// mlua call machinery and no copies of their string arguments.

/// `self`, its stream and whether it is read-only, or the error to raise.
unsafe fn this(state: *mut ffi::lua_State, method: &str) -> Result<(Token, MapType, bool), String> {
    // SAFETY: called from a Lua C function.
    let token = unsafe { object::self_token(state, &object::HEADER_MAP, method) }?;
    match token.kind {
        Kind::HeaderMap { map, read_only } => Ok((token, map, read_only)),
        Kind::Handle(_) => Err(format!("calling '{method}' on bad self")),
    }
}

/// Runs a header map method given its name and body; raises its error.
unsafe fn run(
    state: *mut ffi::lua_State,
    method: &str,
    f: impl FnOnce(&StreamState, MapType, bool) -> Result<c_int, String>,
) -> c_int {
    // SAFETY: called from a Lua C function.
    let result = unsafe { this(state, method) }
        .and_then(|(token, map, read_only)| token.stream().map_err(String::from).and_then(|s| f(s, map, read_only)));
    match result {
        Ok(n) => n,
        // SAFETY: nothing of the body is left to drop.
        Err(msg) => unsafe { object::raise(state, msg) },
    }
}

fn script(e: super::ApiError) -> String {
    e.message()
}

/// `get(name)`: the values joined with ",", or nil.
///
/// # Safety
/// A Lua C function: only Lua calls it, with its arguments on the stack.
pub unsafe extern "C-unwind" fn get(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua.
    unsafe {
        run(state, "get", |stream, map, _| {
            let name = String::from_utf8_lossy(&object::arg_bytes(state, 1, "get")?).to_ascii_lowercase();
            let vals = values_of(stream, map, &name).map_err(script)?;
            if vals.is_empty() {
                ffi::lua_pushnil(state);
            } else {
                let joined = vals.join(&b","[..]);
                ffi::lua_pushlstring(state, joined.as_ptr().cast(), joined.len());
            }
            Ok(1)
        })
    }
}

/// `add(name, value)` and `replace(name, value)`: `write` is the host call;
/// `adds` refuses a second value of a pseudo-header.
unsafe fn set(
    state: *mut ffi::lua_State,
    method: &str,
    adds: bool,
    write: fn(&dyn Host, MapType, &str, &[u8]) -> HostResult<()>,
) -> c_int {
    // SAFETY: called from a Lua C function.
    unsafe {
        run(state, method, |stream, map, read_only| {
            check_writable(read_only).map_err(script)?;
            let raw_name = object::arg_bytes(state, 1, method)?;
            let value = object::arg_bytes(state, 2, method)?;
            let name = name_and_value(&raw_name, &value).map_err(script)?;
            if adds && name.starts_with(':') && !values_of(stream, map, &name).map_err(script)?.is_empty() {
                return Err(format!("cannot add a second '{name}': pseudo-headers have one value, use replace()"));
            }
            stream.modify_headers(map, |host| Ok(write(host, map, &name, &value)?)).map_err(script)?;
            Ok(0)
        })
    }
}

/// `add(name, value)`.
///
/// # Safety
/// A Lua C function: only Lua calls it, with its arguments on the stack.
pub unsafe extern "C-unwind" fn add(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua.
    unsafe { set(state, "add", true, |host, map, name, value| host.add_header(map, name, value)) }
}

/// `replace(name, value)`.
///
/// # Safety
/// A Lua C function: only Lua calls it, with its arguments on the stack.
pub unsafe extern "C-unwind" fn replace(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua.
    unsafe { set(state, "replace", false, |host, map, name, value| host.replace_header(map, name, value)) }
}

/// `remove(name)`.
///
/// # Safety
/// A Lua C function: only Lua calls it, with its arguments on the stack.
pub unsafe extern "C-unwind" fn remove(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua.
    unsafe {
        run(state, "remove", |stream, map, read_only| {
            check_writable(read_only).map_err(script)?;
            let name = values::header_name(&object::arg_bytes(state, 1, "remove")?).map_err(script)?;
            if name.starts_with(':') {
                return Err(format!("cannot remove pseudo-header '{name}': Envoy needs it to forward the message"));
            }
            stream.modify_headers(map, |host| Ok(host.remove_header(map, &name)?)).map_err(script)?;
            Ok(0)
        })
    }
}
