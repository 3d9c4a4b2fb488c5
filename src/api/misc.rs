//! Stateless helpers of the stream handle: base64 and timestamps.
use mlua::{Lua, Value};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::handle::Handle;
use super::{script_error, ApiResult, Args};

/// `EnvoyTimestampResolution` values.
pub const MILLISECOND: i64 = 0;
pub const MICROSECOND: i64 = 1;

pub fn base64_escape(lua: &Lua, _: &Handle, args: &Args) -> ApiResult<Value> {
    let input = args.bytes(lua, 1)?;
    Ok(Value::String(lua.create_string(STANDARD.encode(input))?))
}

/// Decoded bytes, or `nil` when the input is not valid base64 (never an error).
pub fn base64_decode(lua: &Lua, _: &Handle, args: &Args) -> ApiResult<Value> {
    let input = args.bytes(lua, 1)?;
    match STANDARD.decode(input) {
        Ok(bytes) => Ok(Value::String(lua.create_string(bytes)?)),
        Err(_) => Ok(Value::Nil),
    }
}

fn resolution(args: &Args) -> ApiResult<Option<i64>> {
    match args.get(1) {
        Value::Nil => Ok(Some(MILLISECOND)),
        Value::Integer(i) => Ok(Some(*i)),
        Value::Number(f) if f.fract() == 0.0 => Ok(Some(*f as i64)),
        _ => Ok(None),
    }
}

/// Milliseconds since the epoch, as an integer (LuaJIT prints it without ".0").
pub fn timestamp(_: &Lua, h: &Handle, args: &Args) -> ApiResult<i64> {
    if resolution(args)? != Some(MILLISECOND) {
        return script_error("timestamp format must be MILLISECOND.");
    }
    Ok((h.state.host().now_nanos() / 1_000_000) as i64)
}

pub fn timestamp_string(_: &Lua, h: &Handle, args: &Args) -> ApiResult<String> {
    let nanos = h.state.host().now_nanos();
    match resolution(args)? {
        Some(MILLISECOND) => Ok((nanos / 1_000_000).to_string()),
        Some(MICROSECOND) => Ok((nanos / 1_000).to_string()),
        _ => script_error("timestamp format must be MILLISECOND or MICROSECOND."),
    }
}
