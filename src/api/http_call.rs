//! `handle:httpCall(cluster, headers, body, timeout_ms | options, asynchronous?)`.
use std::ffi::c_int;

use mlua::{ffi, IntoLuaMulti, Lua, MultiValue, Table, Value};

use super::handle::Handle;
use super::{lua_type_name, script_error, values, wait_marker, ApiResult, Args};
use crate::host::HttpCallError;
use crate::stream::{CallResult, Wait};

const OPTION_KEYS: [&str; 5] = ["asynchronous", "timeout_ms", "trace_sampled", "return_duplicate_headers", "send_xff"];

struct Options {
    asynchronous: bool,
    timeout_ms: i64,
    return_duplicate_headers: bool,
    send_xff: bool,
}

fn timeout_ms(v: i64) -> ApiResult<i64> {
    if v < 0 {
        return script_error("http call timeout must be >= 0");
    }
    Ok(v)
}

fn options(args: &Args) -> ApiResult<Options> {
    let mut o = Options { asynchronous: false, timeout_ms: 0, return_duplicate_headers: false, send_xff: true };
    if let Value::Table(t) = args.get(4) {
        for pair in t.pairs::<Value, Value>() {
            let (k, v) = pair?;
            let key = match &k {
                Value::String(s) => s.to_string_lossy(),
                other => {
                    return script_error(format!("\"{}\" is not valid key for httpCall() options", other.to_string()?))
                }
            };
            if !OPTION_KEYS.contains(&key.as_str()) {
                return script_error(format!("\"{key}\" is not valid key for httpCall() options"));
            }
            let flag = || match &v {
                Value::Boolean(b) => Ok(*b),
                other => {
                    script_error(format!("httpCall() option '{key}' must be a boolean, got {}", lua_type_name(other)))
                }
            };
            match key.as_str() {
                "asynchronous" => o.asynchronous = flag()?,
                "return_duplicate_headers" => o.return_duplicate_headers = flag()?,
                "send_xff" => o.send_xff = flag()?,
                // Proxy-Wasm calls carry no tracing decision; accepted for compatibility.
                "trace_sampled" => {
                    flag()?;
                }
                _ => {
                    o.timeout_ms = match &v {
                        Value::Integer(i) => timeout_ms(*i)?,
                        Value::Number(f) if f.fract() == 0.0 => timeout_ms(*f as i64)?,
                        other => {
                            return script_error(format!(
                                "httpCall() option 'timeout_ms' must be an integer, got {}",
                                lua_type_name(other)
                            ))
                        }
                    }
                }
            }
        }
        return Ok(o);
    }
    o.timeout_ms = timeout_ms(args.integer(4)?)?;
    o.asynchronous = match args.get(5) {
        Value::Nil => false,
        Value::Boolean(b) => *b,
        _ => return script_error("http call asynchronous flag must be 'true', 'false', or empty"),
    };
    Ok(o)
}

/// The IP of `ip:port` / `[v6]:port`.
fn address_ip(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((ip, port)) if !ip.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => ip,
        _ => addr,
    }
}

/// Starts the call. Returns the wait marker (synchronous), nothing
/// (asynchronous), or the failure result when the host could not start it.
pub fn http_call(lua: &Lua, h: &Handle, args: &Args) -> ApiResult<MultiValue> {
    h.state.check_active()?;
    let Value::String(cluster) = args.get(1) else { return args.bad(1, "string") };
    let Value::Table(headers) = args.get(2) else { return args.bad(2, "table") };
    let body = match args.get(3) {
        Value::Nil => None,
        v => match values::to_bytes(lua, v)? {
            Some(b) => Some(b),
            None => return args.bad(3, "string"),
        },
    };
    let opts = options(args)?;
    let mut list = values::headers_table(lua, headers)?;
    let has = |name: &str, list: &[(String, Vec<u8>)]| list.iter().any(|(k, _)| k == name);
    if !(has(":path", &list) && has(":method", &list) && has(":authority", &list)) {
        return script_error("http call headers must include ':path', ':method', and ':authority'");
    }
    if let Some(b) = &body {
        list.retain(|(k, _)| k != "content-length");
        list.push(("content-length".into(), b.len().to_string().into_bytes()));
    }
    if opts.send_xff {
        // Envoy's Wasm http_call does not add x-forwarded-for; the native filter does.
        if let Some(addr) = h.state.host().property(&["source", "address"])? {
            let addr = String::from_utf8_lossy(&addr);
            let ip = address_ip(&addr).as_bytes().to_vec();
            match list.iter_mut().find(|(k, _)| k == "x-forwarded-for") {
                Some((_, v)) => {
                    v.push(b',');
                    v.extend_from_slice(&ip);
                }
                None => list.push(("x-forwarded-for".into(), ip)),
            }
        }
    }
    let mut text = Vec::with_capacity(list.len());
    for (k, v) in list {
        match String::from_utf8(v) {
            Ok(v) => text.push((k, v)),
            Err(_) => {
                return script_error(format!(
                    "httpCall header '{k}' is not valid UTF-8 (Proxy-Wasm passes call headers as text)"
                ))
            }
        }
    }
    let timeout = u32::try_from(opts.timeout_ms).unwrap_or(u32::MAX);
    let cluster = cluster
        .to_str()
        .map_err(|_| super::ApiError::Script("http call cluster invalid. Must be configured".into()))?;
    match h.state.host().http_call(&cluster, &text, body.as_deref(), timeout) {
        Err(HttpCallError::BadArgument) => script_error("http call cluster invalid. Must be configured"),
        Err(HttpCallError::Failed) => {
            if opts.asynchronous {
                return Ok(MultiValue::new());
            }
            result_values(lua, CallResult::failure(opts.return_duplicate_headers))
        }
        Ok(_) if opts.asynchronous => Ok(MultiValue::new()),
        Ok(token) => {
            let flow = h.state.flow(h.dir);
            flow.call_duplicates.set(opts.return_duplicate_headers);
            flow.wait.set(Wait::HttpCall(token));
            Ok(wait_marker().into_lua_multi(lua)?)
        }
    }
}

/// After the coroutine resumes: the call's `(headers, body)`.
pub fn http_call_result(lua: &Lua, h: &Handle, _: &Args) -> ApiResult<MultiValue> {
    h.state.check_active()?;
    let flow = h.state.flow(h.dir);
    match flow.call.borrow_mut().take() {
        Some(result) => {
            flow.wait.set(Wait::Nothing);
            result_values(lua, result)
        }
        None if matches!(flow.wait.get(), Wait::HttpCall(_)) => Ok(wait_marker().into_lua_multi(lua)?),
        None => script_error("internal error: httpCall resumed without a response"),
    }
}

fn result_values(lua: &Lua, r: CallResult) -> ApiResult<MultiValue> {
    let headers: Table = if r.return_duplicate_headers {
        let headers = lua.create_table()?;
        for (k, v) in r.headers {
            let value = lua.create_string(&v)?;
            match headers.raw_get::<Value>(k.as_str())? {
                Value::Nil => headers.raw_set(k, value)?,
                Value::Table(list) => list.raw_push(value)?,
                first => headers.raw_set(k, lua.create_sequence_from([first, Value::String(value)])?)?,
            }
        }
        headers
    } else {
        // One protected call for the whole table (mlua's raw_set is one per
        // entry); a later value of a repeated name replaces the earlier one.
        // SAFETY: pushes the table plus two values at a time (a protected call
        // runs with LUA_MINSTACK free slots) and leaves the table; a memory
        // error is caught by exec_raw.
        unsafe {
            lua.exec_raw::<Table>((), |state| {
                ffi::lua_createtable(state, 0, c_int::try_from(r.headers.len()).unwrap_or(0));
                for (k, v) in &r.headers {
                    ffi::lua_pushlstring(state, k.as_ptr().cast(), k.len());
                    ffi::lua_pushlstring(state, v.as_ptr().cast(), v.len());
                    ffi::lua_rawset(state, -3);
                }
            })?
        }
    };
    let body = if r.body.is_empty() { Value::Nil } else { Value::String(lua.create_string(&r.body)?) };
    Ok((headers, body).into_lua_multi(lua)?)
}

#[cfg(test)]
mod tests {
    use super::address_ip;

    #[test]
    fn ip_of_address() {
        assert_eq!(address_ip("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(address_ip("[::1]:80"), "::1");
        assert_eq!(address_ip("10.0.0.1"), "10.0.0.1");
    }
}
