//! Conversions between Lua values and header names/values.
use std::borrow::Cow;
use std::ffi::{c_int, CStr};

use mlua::{ffi, Lua, Value};

use super::{lua_type_name, script_error, ApiResult};

/// A Lua string or number as bytes (numbers as Lua prints them, except that an
/// integral float prints without ".0", as LuaJIT-era scripts expect); `None` for
/// other types.
pub fn to_bytes(lua: &Lua, v: &Value) -> ApiResult<Option<Vec<u8>>> {
    Ok(match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(i) => Some(i.to_string().into_bytes()),
        Value::Number(f) => match integral_text(*f) {
            Some(text) => Some(text),
            None => lua.coerce_string(v.clone())?.map(|s| s.as_bytes().to_vec()),
        },
        _ => None,
    })
}

/// An integral float as an integer prints (`3.0` -> `3`); `None` for the rest,
/// which Lua formats itself.
fn integral_text(f: f64) -> Option<Vec<u8>> {
    (f.fract() == 0.0 && f.abs() < 1.0e15).then(|| (f as i64).to_string().into_bytes())
}

/// The value at stack index `idx` as [`to_bytes`] converts it; `None` for
/// other types. A string is borrowed (it lives as long as it stays on the
/// stack); a number Lua must format is converted on a copy, so neither a
/// `lua_next` key nor an argument changes.
///
/// # Safety
/// Called from a Lua C function (or a protected call) with a free slot.
pub unsafe fn stack_bytes<'a>(state: *mut ffi::lua_State, idx: c_int) -> Option<Cow<'a, [u8]>> {
    // SAFETY: the value is on the stack; the copy is popped again.
    unsafe {
        match ffi::lua_type(state, idx) {
            ffi::LUA_TSTRING => Some(Cow::Borrowed(super::object::lua_bytes(state, idx))),
            ffi::LUA_TNUMBER if ffi::lua_isinteger(state, idx) != 0 => {
                Some(Cow::Owned(ffi::lua_tointegerx(state, idx, std::ptr::null_mut()).to_string().into_bytes()))
            }
            ffi::LUA_TNUMBER => {
                if let Some(text) = integral_text(ffi::lua_tonumberx(state, idx, std::ptr::null_mut())) {
                    return Some(Cow::Owned(text));
                }
                ffi::lua_pushvalue(state, idx);
                let bytes = super::object::lua_bytes(state, -1).to_vec();
                ffi::lua_pop(state, 1);
                Some(Cow::Owned(bytes))
            }
            _ => None,
        }
    }
}

/// RFC 9110 token characters (all ASCII), one bit each.
const TCHAR: u128 = {
    let mut bits = 0u128;
    let mut c = 0u8;
    while c < 128 {
        if c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            )
        {
            bits |= 1 << c;
        }
        c += 1;
    }
    bits
};

fn is_tchar(b: u8) -> bool {
    b < 128 && (TCHAR >> b) & 1 == 1
}

/// Validates and lower-cases a header name. Pseudo-headers (`:path`) are allowed.
pub fn header_name(raw: &[u8]) -> ApiResult<String> {
    let body = raw.strip_prefix(b":").unwrap_or(raw);
    if !body.is_empty() && body.iter().all(|b| is_tchar(*b)) {
        // All ASCII, so the lower-cased bytes are valid UTF-8.
        if let Ok(name) = String::from_utf8(raw.to_ascii_lowercase()) {
            return Ok(name);
        }
    }
    if raw.is_empty() {
        return script_error("header name must not be empty");
    }
    if raw.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return script_error(format!(
            "header name '{}' contains CR, LF or NUL",
            String::from_utf8_lossy(raw).escape_debug()
        ));
    }
    script_error(format!("invalid header name '{}'", String::from_utf8_lossy(raw).escape_debug()))
}

/// Refuses CR, LF and NUL in a header value: Envoy's native filter would send
/// CR/LF out raw (header injection) and truncate at NUL.
pub fn check_header_value(name: &str, value: &[u8]) -> ApiResult<()> {
    if value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return script_error(format!("header value for '{name}' contains CR, LF or NUL"));
    }
    Ok(())
}

/// Reads a headers table as given to `respond()` and `httpCall()`: string
/// keys; values strings, numbers, or arrays of those (one entry per element).
/// Read with `lua_next` in one protected call: through mlua's table iterator
/// every step was a protected call of its own.
pub fn headers_table(lua: &Lua, table: &mlua::Table) -> ApiResult<Vec<(String, Vec<u8>)>> {
    let mut out = Ok(Vec::new());
    // SAFETY: `read_headers` keeps the stack balanced per step (exec_raw's
    // guard restores it after an early return) and raises no Lua error itself;
    // a memory error in lua_next/lua_rawgeti is caught by exec_raw.
    unsafe { lua.exec_raw::<()>(table, |state| out = read_headers(state, 1))? };
    out.map_err(super::ApiError::Script)
}

/// # Safety
/// `t` is the stack index of a table, with room for four more values (a
/// protected call runs with LUA_MINSTACK free slots).
unsafe fn read_headers(state: *mut ffi::lua_State, t: c_int) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    // SAFETY: see above; every value read is on the stack while it is read.
    unsafe {
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, t) != 0 {
            // key at -2, value at -1
            if ffi::lua_type(state, -2) != ffi::LUA_TSTRING {
                return Err(format!("header key must be a string, got {}", type_name(state, -2)));
            }
            let name = header_name(super::object::lua_bytes(state, -2)).map_err(|e| e.message())?;
            if ffi::lua_type(state, -1) == ffi::LUA_TTABLE {
                let mut i = 1;
                while ffi::lua_rawgeti(state, -1, i) != ffi::LUA_TNIL {
                    let Some(bytes) = stack_bytes(state, -1).map(Cow::into_owned) else {
                        return Err(format!(
                            "header value for '{name}' must be a string, got {}",
                            type_name(state, -1)
                        ));
                    };
                    check_header_value(&name, &bytes).map_err(|e| e.message())?;
                    out.push((name.clone(), bytes));
                    ffi::lua_pop(state, 1);
                    i += 1;
                }
                ffi::lua_pop(state, 1);
            } else {
                let Some(bytes) = stack_bytes(state, -1).map(Cow::into_owned) else {
                    return Err(format!(
                        "header value for '{name}' must be a string or an array of strings, got {}",
                        type_name(state, -1)
                    ));
                };
                check_header_value(&name, &bytes).map_err(|e| e.message())?;
                out.push((name, bytes));
            }
            ffi::lua_pop(state, 1); // the value; the key stays for lua_next
        }
    }
    Ok(out)
}

/// Lua's name for the type at `idx` (as `lua_type_name` gives it).
unsafe fn type_name(state: *mut ffi::lua_State, idx: c_int) -> String {
    // SAFETY: lua_typename returns a static C string.
    unsafe { CStr::from_ptr(ffi::lua_typename(state, ffi::lua_type(state, idx))).to_string_lossy().into_owned() }
}

/// Lua → metadata value, with the rules of Envoy's conversion to protobuf:
/// arrays (positive integer keys) and string-keyed maps, nested; other types fail.
pub fn copy_metadata_value(lua: &Lua, v: &Value, depth: usize) -> ApiResult<Value> {
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
                            lua_type_name(other)
                        ))
                    }
                }
                out.raw_set(k, copy_metadata_value(lua, &val, depth + 1)?)?;
            }
            Value::Table(out)
        }
        other => return script_error(format!("unexpected type '{}' in dynamicMetadata", lua_type_name(other))),
    })
}
