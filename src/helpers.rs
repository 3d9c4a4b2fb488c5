//! Bundled helper modules implemented in Rust: `json` (serde_json underneath,
//! lua-cjson's API where it matters) and `base64`. `require` loads them.
use mlua::{Function, LightUserData, Lua, MultiValue, Table, Value};

/// cjson's `null`: what JSON null decodes to, and encodes as null.
fn null() -> Value {
    static NULL: u8 = 0;
    Value::LightUserData(LightUserData(std::ptr::addr_of!(NULL) as *mut std::ffi::c_void))
}

/// How deep `encode` follows nested tables: serde_json's own limit for
/// decoding, and small enough for the Wasm stack (cjson allows 1000).
const MAX_DEPTH: usize = 128;

pub fn json_module(lua: &Lua) -> mlua::Result<Table> {
    let m = lua.create_table()?;
    m.set("null", null())?;
    // A table with this metatable encodes as [] even when empty (cjson's empty_array_mt).
    let empty_array_mt = lua.create_table()?;
    m.set("empty_array_mt", empty_array_mt.clone())?;
    m.set("empty_array", lua.create_table()?)?;
    let empty_array: Table = m.get("empty_array")?;
    empty_array.set_metatable(Some(empty_array_mt.clone()))?;
    let mt = empty_array_mt.clone();
    // Both return (nil, message) on failure; lua/sandbox.lua raises it as a
    // plain string error at the caller's position.
    m.set(
        "encode",
        lua.create_function(move |lua, v: Value| {
            let encoded = to_json(&v, &mt, 0)
                .and_then(|json| serde_json::to_string(&json).map_err(|e| format!("json.encode: {e}")));
            match encoded {
                Ok(s) => Ok((Value::String(lua.create_string(s)?), Value::Nil)),
                Err(msg) => Ok((Value::Nil, Value::String(lua.create_string(msg)?))),
            }
        })?,
    )?;
    m.set(
        "decode",
        lua.create_function(|lua, v: Value| {
            let Value::String(s) = v else {
                let msg = format!("bad argument #1 to 'decode' (string expected, got {})", v.type_name());
                return Ok((Value::Nil, Value::String(lua.create_string(msg)?)));
            };
            match serde_json::from_slice::<serde_json::Value>(&s.as_bytes()) {
                Ok(json) => Ok((from_json(lua, &json)?, Value::Nil)),
                Err(e) => Ok((Value::Nil, Value::String(lua.create_string(format!("json.decode: {e}"))?))),
            }
        })?,
    )?;
    Ok(m)
}

fn to_json(v: &Value, empty_array_mt: &Table, depth: usize) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    if depth > MAX_DEPTH {
        return Err(format!("json.encode: nesting deeper than {MAX_DEPTH} (a table that contains itself?)"));
    }
    Ok(match v {
        Value::Nil => J::Null,
        v if *v == null() => J::Null,
        Value::Boolean(b) => J::Bool(*b),
        Value::Integer(i) => J::from(*i),
        Value::Number(f) => match serde_json::Number::from_f64(*f) {
            Some(n) if f.fract() != 0.0 || f.abs() >= 9.007_199_254_740_992e15 => J::Number(n),
            Some(_) => J::from(*f as i64),
            None => return Err(format!("json.encode: cannot encode number {f} (NaN and infinity have no JSON form)")),
        },
        Value::String(s) => {
            J::String(s.to_str().map_err(|_| "json.encode: string is not valid UTF-8".to_string())?.to_string())
        }
        Value::Table(t) => {
            let len = t.raw_len();
            let mut count = 0usize;
            let mut all_positive_ints = true;
            for pair in t.pairs::<Value, Value>() {
                let (k, _) = pair.map_err(|e| e.to_string())?;
                count += 1;
                if !matches!(k, Value::Integer(i) if i >= 1) {
                    all_positive_ints = false;
                }
            }
            let is_empty_array = count == 0 && t.metatable().is_some_and(|m| m == *empty_array_mt);
            if is_empty_array || (count > 0 && all_positive_ints && count == len) {
                let mut items = Vec::with_capacity(len);
                for i in 1..=len {
                    let item: Value = t.raw_get(i).map_err(|e| e.to_string())?;
                    items.push(to_json(&item, empty_array_mt, depth + 1)?);
                }
                J::Array(items)
            } else {
                // Like cjson: an empty table is an object; number keys become strings.
                let mut map = serde_json::Map::new();
                for pair in t.pairs::<Value, Value>() {
                    let (k, item) = pair.map_err(|e| e.to_string())?;
                    let key = match &k {
                        Value::String(s) => {
                            s.to_str().map_err(|_| "json.encode: key is not valid UTF-8".to_string())?.to_string()
                        }
                        Value::Integer(i) => i.to_string(),
                        Value::Number(f) => f.to_string(),
                        other => {
                            return Err(format!("json.encode: cannot encode a table key of type {}", other.type_name()))
                        }
                    };
                    map.insert(key, to_json(&item, empty_array_mt, depth + 1)?);
                }
                J::Object(map)
            }
        }
        other => return Err(format!("json.encode: cannot encode a value of type {}", other.type_name())),
    })
}

fn from_json(lua: &Lua, v: &serde_json::Value) -> mlua::Result<Value> {
    use serde_json::Value as J;
    Ok(match v {
        J::Null => null(),
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, from_json(lua, item)?)?;
            }
            Value::Table(t)
        }
        J::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, item) in map {
                t.raw_set(lua.create_string(k)?, from_json(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

pub fn base64_module(lua: &Lua) -> mlua::Result<Table> {
    use base64::Engine;
    let m = lua.create_table()?;
    let encode: Function = lua.create_function(|lua, v: Value| match v {
        Value::String(s) => Ok((
            Value::String(lua.create_string(base64::engine::general_purpose::STANDARD.encode(s.as_bytes()))?),
            Value::Nil,
        )),
        other => {
            let msg = format!("bad argument #1 to 'encode' (string expected, got {})", other.type_name());
            Ok((Value::Nil, Value::String(lua.create_string(msg)?)))
        }
    })?;
    m.set("encode", encode)?;
    // nil plus a reason for invalid input, the ordinary Lua way.
    m.set(
        "decode",
        lua.create_function(|lua, s: Value| {
            let Value::String(s) = s else {
                return Ok(MultiValue::from_vec(vec![
                    Value::Nil,
                    Value::String(lua.create_string("base64.decode: string expected")?),
                ]));
            };
            match base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
                Ok(bytes) => Ok(MultiValue::from_vec(vec![Value::String(lua.create_string(bytes)?)])),
                Err(e) => Ok(MultiValue::from_vec(vec![
                    Value::Nil,
                    Value::String(lua.create_string(format!("base64.decode: {e}"))?),
                ])),
            }
        })?,
    )?;
    Ok(m)
}
