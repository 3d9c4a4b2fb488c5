//! The stream handle passed to `envoy_on_request` / `envoy_on_response`.
use std::ffi::c_int;
use std::rc::Rc;

use mlua::{ffi, Lua, Table, Value};

use super::metadata::{self, RouteObject};
use super::object::{self, Kind};
use super::shared_data::SharedData;
use super::stats::Stats;
use super::stream_info::{Connection, StreamInfo};
use super::{body, crypto, http_call, log, method, misc, script_error, unsupported, values, ApiResult};
use crate::host::{LocalReply, MapType};
use crate::stream::{Direction, StreamState, VmEnv, Wait};

/// Response details Envoy uses for `respond()` replies.
pub const RESPOND_DETAILS: &str = "lua_response";

pub struct Handle {
    pub(crate) state: Rc<StreamState>,
    pub(crate) dir: Direction,
}

impl Handle {
    pub fn new(state: Rc<StreamState>, dir: Direction) -> Handle {
        Handle { state, dir }
    }
}

/// `headers()`, a Lua C function (object.rs): every call in a stream returns the
/// same object, as Envoy's does, kept as the handle's user value.
///
/// # Safety
/// A Lua C function: only Lua calls it, with its arguments on the stack.
pub unsafe extern "C-unwind" fn headers(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua; `raise` runs with nothing left to drop.
    unsafe {
        let token = match object::self_token(state, &object::HANDLE, "headers") {
            Ok(t) => t,
            Err(msg) => object::raise(state, msg),
        };
        let Kind::Handle(dir) = token.kind else { object::raise(state, "calling 'headers' on bad self".into()) };
        if let Err(msg) = token.stream() {
            object::raise(state, msg.into());
        }
        if ffi::lua_getiuservalue(state, 1, 1) == ffi::LUA_TUSERDATA {
            return 1;
        }
        ffi::lua_pop(state, 1);
        object::push(state, object::header_map_token(&token, dir.headers_map()));
        ffi::lua_pushvalue(state, -1);
        ffi::lua_setiuservalue(state, 1, 1);
        1
    }
}

pub fn raw_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "downstreamRequestHeaders",
        method(lua, "downstreamRequestHeaders", |lua, h: &Handle, _| -> ApiResult<mlua::AnyUserData> {
            h.state.check_active()?;
            Ok(object::new_header_map(lua, &h.state, MapType::RequestHeaders, true)?)
        })?,
    )?;
    // The blocking methods are Lua functions in lua/api.lua around these.
    t.set("_body", method(lua, "body", body::body)?)?;
    t.set("_bodyChunks", method(lua, "bodyChunks", body::body_chunks)?)?;
    t.set("_nextChunk", method(lua, "bodyChunks", body::next_chunk)?)?;
    t.set("_trailers", method(lua, "trailers", body::trailers)?)?;
    t.set("_httpCall", method(lua, "httpCall", http_call::http_call)?)?;
    t.set("_httpCallResult", method(lua, "httpCall", http_call::http_call_result)?)?;
    t.set("_respond", method(lua, "respond", respond)?)?;
    t.set("base64Escape", method(lua, "base64Escape", misc::base64_escape)?)?;
    t.set("base64Decode", method(lua, "base64Decode", misc::base64_decode)?)?;
    t.set("timestamp", method(lua, "timestamp", misc::timestamp)?)?;
    t.set("timestampString", method(lua, "timestampString", misc::timestamp_string)?)?;
    t.set(
        "streamInfo",
        method(lua, "streamInfo", |_, h: &Handle, _| {
            h.state.check_active()?;
            Ok(StreamInfo::new(h.state.clone()))
        })?,
    )?;
    t.set(
        "connection",
        method(lua, "connection", |_, h: &Handle, _| {
            h.state.check_active()?;
            Ok(Connection::new(h.state.clone()))
        })?,
    )?;
    t.set("metadata", method(lua, "metadata", |lua, h: &Handle, _| metadata::route_metadata(lua, &h.state))?)?;
    t.set(
        "route",
        method(lua, "route", |_, h: &Handle, _| {
            h.state.check_active()?;
            Ok(RouteObject::route(h.state.clone()))
        })?,
    )?;
    t.set(
        "virtualHost",
        method(lua, "virtualHost", |_, h: &Handle, _| {
            h.state.check_active()?;
            Ok(RouteObject::virtual_host(h.state.clone()))
        })?,
    )?;
    t.set(
        "filterContext",
        method(lua, "filterContext", |lua, h: &Handle, _| metadata::filter_context(lua, &h.state))?,
    )?;
    t.set(
        "connectionStreamInfo",
        method(lua, "connectionStreamInfo", |_, h: &Handle, _| -> ApiResult<Value> {
            h.state.check_active()?;
            unsupported(
                "handle:connectionStreamInfo()",
                "Envoy gives a Wasm HTTP filter the stream's properties only; connection-level dynamic metadata is not among them",
            )
        })?,
    )?;
    t.set("importPublicKey", method(lua, "importPublicKey", crypto::import_public_key)?)?;
    t.set("verifySignature", method(lua, "verifySignature", crypto::verify_signature)?)?;
    t.set(
        "stats",
        method(lua, "stats", |_, h: &Handle, _| {
            h.state.check_active()?;
            Ok(Stats::new(h.state.env.clone()))
        })?,
    )?;
    t.set("clearRouteCache", method(lua, "clearRouteCache", clear_route_cache)?)?;
    t.set(
        "sharedData",
        method(lua, "sharedData", |_, h: &Handle, _| {
            h.state.check_active()?;
            Ok(SharedData::new(h.state.clone()))
        })?,
    )?;
    t.set("setUpstreamOverrideHost", method(lua, "setUpstreamOverrideHost", set_upstream_override_host)?)?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}

/// `clearRouteCache()`: Envoy's `clear_route_cache` foreign function. A no-op
/// on the response path, as in Envoy.
fn clear_route_cache(_: &Lua, h: &Handle, _: &super::Args) -> ApiResult<()> {
    h.state.check_active()?;
    if h.dir == Direction::Response {
        return Ok(());
    }
    match h.state.host().call_foreign_function("clear_route_cache", &[]) {
        Ok(_) => Ok(()),
        Err(e) if e.status == 1 => {
            unsupported("handle:clearRouteCache()", "this host has no clear_route_cache foreign function")
        }
        Err(e) => Err(e.into()),
    }
}

/// `setUpstreamOverrideHost(host, strict?)`: arguments are checked as Envoy
/// checks them; then, on the request path, the call fails: no host call or
/// property reaches Envoy's upstream override host.
fn set_upstream_override_host(lua: &Lua, h: &Handle, args: &super::Args) -> ApiResult<()> {
    h.state.check_active()?;
    let host = String::from_utf8_lossy(&args.bytes(lua, 1)?).into_owned();
    args.opt_bool(2)?;
    let is_ip = host.parse::<std::net::IpAddr>().is_ok() || host.parse::<std::net::SocketAddr>().is_ok();
    if !is_ip {
        return script_error("host is not a valid IP address");
    }
    if h.dir == Direction::Response {
        return Ok(());
    }
    unsupported(
        "handle:setUpstreamOverrideHost()",
        "the ABI has no call or property that sets Envoy's upstream override host (and Envoy registers no foreign function for it)",
    )
}

/// `respond(headers, body?)`: a local reply instead of the message. Unlike
/// Envoy's native filter it also works in `envoy_on_response` while the
/// response headers are held: the reply replaces the upstream response.
fn respond(lua: &Lua, h: &Handle, args: &super::Args) -> ApiResult<()> {
    h.state.check_active()?;
    // While the response has not started, a local reply can still replace the
    // exchange even if the request headers went upstream (Envoy then drops the
    // upstream request); the native filter refuses that case (envoy#12985).
    let response_started = h.state.flow(Direction::Response).seen.get();
    let too_late = match h.dir {
        Direction::Request => response_started,
        Direction::Response => h.state.forwarded(Direction::Response),
    };
    if too_late {
        return script_error("respond() cannot be called if headers have been continued");
    }
    if h.dir == Direction::Response && h.state.responded() {
        return script_error("respond() cannot replace a response that is itself a local reply");
    }
    let Value::Table(table) = args.get(1) else {
        return args.bad(1, "table");
    };
    let body = match args.get(2) {
        Value::Nil => Vec::new(),
        v => match values::to_bytes(lua, v)? {
            Some(b) => b,
            None => return args.bad(2, "string"),
        },
    };
    let mut headers = values::headers_table(lua, table)?;
    let status = headers
        .iter()
        .position(|(k, _)| k == ":status")
        .map(|i| headers.remove(i).1)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|s| (200..=599).contains(s));
    let Some(status) = status else {
        return script_error(":status must be between 200-599");
    };
    if headers.iter().any(|(k, _)| k.starts_with(':')) {
        return script_error("respond() headers may not contain pseudo-headers other than ':status'");
    }
    h.state.send_local_reply(&LocalReply { status, details: RESPOND_DETAILS.into(), headers, body })?;
    h.state.flow(h.dir).wait.set(Wait::Responded);
    Ok(())
}
