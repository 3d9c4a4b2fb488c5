//! The stream handle passed to `envoy_on_request` / `envoy_on_response`.
use std::rc::Rc;

use mlua::{Lua, Table, UserData, UserDataFields, Value};

use super::header_map::HeaderMap;
use super::{log, method, script_error, values, ApiResult};
use crate::host::LocalReply;
use crate::stream::{Direction, StreamState, VmEnv};

/// Response details Envoy uses for `respond()` replies.
pub const RESPOND_DETAILS: &str = "lua_response";

pub struct Handle {
    state: Rc<StreamState>,
    dir: Direction,
}

impl Handle {
    pub fn new(state: Rc<StreamState>, dir: Direction) -> Handle {
        Handle { state, dir }
    }
}

impl UserData for Handle {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "Handle", false);
    }
}

pub fn raw_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "headers",
        method(lua, "headers", |_, h: &Handle, _| -> ApiResult<HeaderMap> {
            h.state.check_active()?;
            Ok(HeaderMap::new(h.state.clone(), h.dir.headers_map()))
        })?,
    )?;
    // respond() itself is a Lua function in lua/api.lua: it calls this, then parks
    // the coroutine for the rest of the stream.
    t.set("_respond", method(lua, "respond", respond)?)?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}

fn respond(lua: &Lua, h: &Handle, args: &super::Args) -> ApiResult<()> {
    if h.dir == Direction::Response {
        return script_error("respond not currently supported in the response path");
    }
    h.state.check_active()?;
    if h.state.forwarded(h.dir) {
        return script_error("respond() cannot be called if headers have been continued");
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
    h.state.send_local_reply(&LocalReply { status, details: RESPOND_DETAILS.into(), headers, body })
}
