//! Conversions between Lua values and header names/values.
use mlua::{Lua, Value};

use super::{lua_type_name, script_error, ApiResult};

/// A Lua string or number as bytes (numbers as Lua prints them, except that an
/// integral float prints without ".0", as LuaJIT-era scripts expect); `None` for
/// other types.
pub fn to_bytes(lua: &Lua, v: &Value) -> ApiResult<Option<Vec<u8>>> {
    Ok(match v {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(i) => Some(i.to_string().into_bytes()),
        Value::Number(f) if f.fract() == 0.0 && f.abs() < 1.0e15 => Some((*f as i64).to_string().into_bytes()),
        Value::Number(_) => lua.coerce_string(v.clone())?.map(|s| s.as_bytes().to_vec()),
        _ => None,
    })
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

/// Reads a headers table as given to `respond()` (and later `httpCall()`): string
/// keys; values strings, numbers, or arrays of those (one entry per element).
pub fn headers_table(lua: &Lua, table: &mlua::Table) -> ApiResult<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for pair in table.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let Value::String(k) = k else {
            return script_error(format!("header key must be a string, got {}", lua_type_name(&k)));
        };
        let name = header_name(&k.as_bytes())?;
        match &v {
            Value::Table(list) => {
                for item in list.sequence_values::<Value>() {
                    let item = item?;
                    let Some(bytes) = to_bytes(lua, &item)? else {
                        return script_error(format!(
                            "header value for '{name}' must be a string, got {}",
                            lua_type_name(&item)
                        ));
                    };
                    check_header_value(&name, &bytes)?;
                    out.push((name.clone(), bytes));
                }
            }
            other => {
                let Some(bytes) = to_bytes(lua, other)? else {
                    return script_error(format!(
                        "header value for '{name}' must be a string or an array of strings, got {}",
                        lua_type_name(other)
                    ));
                };
                check_header_value(&name, &bytes)?;
                out.push((name, bytes));
            }
        }
    }
    Ok(out)
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
