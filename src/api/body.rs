//! The blocking body methods of the stream handle: `body()`, `bodyChunks()`
//! and `trailers()`.
//!
//! Each raw function either returns its result or records what it waits for in
//! the direction's flow and returns the wait marker; the Lua wrapper then yields
//! and calls it again when the driver resumes the coroutine.
use mlua::{IntoLua, Lua, Value};

use super::buffer::{Buffer, Kind};
use super::handle::Handle;
use super::{script_error, wait_marker, ApiResult, Args};
use crate::stream::{Trailers, Wait};

fn waiting(h: &Handle, wait: Wait) -> ApiResult<Value> {
    h.state.flow(h.dir).wait.set(wait);
    Ok(wait_marker())
}

fn ready(h: &Handle) {
    h.state.flow(h.dir).wait.set(Wait::Nothing);
}

/// `body(always_wrap?)`: the whole body, once it has arrived.
pub fn body(lua: &Lua, h: &Handle, args: &Args) -> ApiResult<Value> {
    let always_wrap = args.opt_bool(1)?.unwrap_or(false);
    h.state.check_active()?;
    let flow = h.state.flow(h.dir);
    if flow.streaming.get() {
        ready(h);
        return script_error("cannot call body() after body streaming has started");
    }
    if flow.body.borrow().is_some() {
        ready(h);
        return Ok(Buffer::new(h.state.clone(), h.dir, Kind::Whole).into_lua(lua)?);
    }
    if flow.body_passed.get() {
        ready(h);
        return script_error("cannot call body() after body has been streamed");
    }
    if flow.end.get() {
        ready(h);
        if flow.body_seen.get() {
            // Ended while buffered but not copied (should not happen): say so.
            return script_error(format!("the {} body is no longer available", h.dir.noun()));
        }
        if always_wrap {
            return Ok(Buffer::new(h.state.clone(), h.dir, Kind::Injected).into_lua(lua)?);
        }
        return Ok(Value::Nil);
    }
    waiting(h, Wait::Body)
}

/// `bodyChunks()`: starts streaming; the iterator is built in lua/api.lua.
pub fn body_chunks(_: &Lua, h: &Handle, _: &Args) -> ApiResult<bool> {
    h.state.check_active()?;
    let flow = h.state.flow(h.dir);
    if flow.body_seen.get() || flow.body.borrow().is_some() {
        return script_error("cannot call bodyChunks after body processing has begun");
    }
    flow.streaming.set(true);
    Ok(true)
}

/// One step of the `bodyChunks()` iterator: the next frame, `nil` at the end.
pub fn next_chunk(lua: &Lua, h: &Handle, _: &Args) -> ApiResult<Value> {
    h.state.check_active()?;
    let flow = h.state.flow(h.dir);
    if flow.chunk_pending.get() {
        if let Some(seq) = flow.frame.get() {
            flow.chunk_pending.set(false);
            ready(h);
            return Ok(Buffer::new(h.state.clone(), h.dir, Kind::Chunk(seq)).into_lua(lua)?);
        }
        flow.chunk_pending.set(false);
    }
    if flow.end.get() {
        ready(h);
        return Ok(Value::Nil);
    }
    waiting(h, Wait::Chunk)
}

/// `trailers()`: the trailers once they arrive, `nil` if the message ends without.
pub fn trailers(lua: &Lua, h: &Handle, _: &Args) -> ApiResult<Value> {
    h.state.check_active()?;
    let flow = h.state.flow(h.dir);
    if flow.trailers.get() != Trailers::None {
        ready(h);
        return Ok(Value::UserData(super::object::new_header_map(lua, &h.state, h.dir.trailers_map(), false)?));
    }
    if flow.end.get() {
        ready(h);
        return Ok(Value::Nil);
    }
    waiting(h, Wait::Trailers)
}
