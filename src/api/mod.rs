//! The Envoy Lua stream-handle API, one module per Lua object.
//!
//! Each object is a userdata whose `__index` is a table of methods built by
//! `lua/api.lua` from the "raw" Rust functions defined here. A raw function reports
//! a script-facing error by returning `(FAIL, message)`; the Lua wrapper raises it
//! with `error(message, 2)`, so scripts get plain string errors that carry their own
//! chunk name and line (`inline_code:7: ...`), as Envoy's `luaL_error` gives them.
//! Raising from Rust instead would give a userdata error without a position.
//!
//! The handle and header maps are the exception (`object.rs`): plain userdata
//! whose hottest methods are Lua C functions raising their own string errors.
pub mod body;
pub mod buffer;
pub mod crypto;
pub mod handle;
pub mod header_map;
pub mod http_call;
pub mod log;
pub mod metadata;
pub mod misc;
pub mod object;
pub mod shared_data;
pub mod ssl;
pub mod stats;
pub mod stream_info;
pub mod values;

use std::ffi::c_void;

use mlua::{Function, IntoLuaMulti, LightUserData, Lua, MultiValue, Table, UserData, Value};

use crate::host::HostError;

static FAIL_MARK: u8 = 0;
static YIELD_MARK: u8 = 0;
static WAIT_MARK: u8 = 0;

/// Returned (with a message) by raw methods to make their Lua wrapper raise.
pub fn fail_marker() -> Value {
    Value::LightUserData(LightUserData(std::ptr::addr_of!(FAIL_MARK) as *mut c_void))
}

/// Yielded by the API's blocking methods so the stream driver can tell its own
/// yields from a script calling `coroutine.yield` itself.
pub fn yield_marker() -> Value {
    Value::LightUserData(LightUserData(std::ptr::addr_of!(YIELD_MARK) as *mut c_void))
}

/// Returned by the raw part of a blocking method when what it needs has not
/// arrived: the Lua wrapper yields and calls it again when the driver resumes.
pub fn wait_marker() -> Value {
    Value::LightUserData(LightUserData(std::ptr::addr_of!(WAIT_MARK) as *mut c_void))
}

/// An error from an API method.
#[derive(Debug)]
pub enum ApiError {
    /// Reported to the script as a Lua error with this message.
    Script(String),
    /// An interpreter failure (e.g. out of memory) propagated as is.
    Lua(mlua::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn message(&self) -> String {
        match self {
            ApiError::Script(m) => m.clone(),
            ApiError::Lua(e) => crate::stream::describe_error(e),
        }
    }
}

impl From<mlua::Error> for ApiError {
    fn from(e: mlua::Error) -> Self {
        ApiError::Lua(e)
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        ApiError::Script(e.to_string())
    }
}

pub fn script_error<T>(msg: impl Into<String>) -> ApiResult<T> {
    Err(ApiError::Script(msg.into()))
}

/// The error of a method the Proxy-Wasm ABI gives no way to implement; `what`
/// names the call (`handle:setUpstreamOverrideHost()`), `reason` says why.
pub fn unsupported<T>(what: &str, reason: &str) -> ApiResult<T> {
    script_error(format!("{what} is unsupported on Proxy-Wasm: {reason}"))
}

/// Lua's name for a value's type, as `luaL_typename` prints it.
pub fn lua_type_name(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) | Value::Number(_) => "number",
        Value::LightUserData(_) => "userdata",
        other => other.type_name(),
    }
}

/// The arguments of a method call after `self`, with Envoy-style argument errors.
pub struct Args {
    method: &'static str,
    values: MultiValue,
}

impl Args {
    pub fn get(&self, n: usize) -> &Value {
        self.values.get(n - 1).unwrap_or(&Value::Nil)
    }

    /// The method's name, for error messages.
    pub fn method(&self) -> &'static str {
        self.method
    }

    pub fn present(&self, n: usize) -> bool {
        self.values.len() >= n
    }

    /// `bad argument #n to 'method' (expected expected, got type)`.
    pub fn bad<T>(&self, n: usize, expected: &str) -> ApiResult<T> {
        let got = if self.present(n) { lua_type_name(self.get(n)) } else { "no value" };
        script_error(format!("bad argument #{n} to '{}' ({expected} expected, got {got})", self.method))
    }

    /// A string argument; numbers are accepted as Lua would coerce them.
    pub fn bytes(&self, lua: &Lua, n: usize) -> ApiResult<Vec<u8>> {
        match values::to_bytes(lua, self.get(n))? {
            Some(b) => Ok(b),
            None => self.bad(n, "string"),
        }
    }

    /// An optional boolean argument (`nil`/absent = `None`).
    pub fn opt_bool(&self, n: usize) -> ApiResult<Option<bool>> {
        match self.get(n) {
            Value::Nil => Ok(None),
            Value::Boolean(b) => Ok(Some(*b)),
            _ => self.bad(n, "boolean"),
        }
    }

    pub fn integer(&self, n: usize) -> ApiResult<i64> {
        match self.get(n) {
            Value::Integer(i) => Ok(*i),
            Value::Number(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(*f as i64),
            Value::String(s) => match s.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()) {
                Some(i) => Ok(i),
                None => self.bad(n, "number"),
            },
            _ => self.bad(n, "number"),
        }
    }
}

/// A raw method with its `self` still untyped and its results converted.
type RawMethod = Box<dyn Fn(&Lua, &Value, &Args) -> ApiResult<MultiValue>>;

/// Wraps `f` as a raw method of type `T`: checks `self` (see
/// [`object::ApiSelf`]), converts script errors to `(FAIL, message)`. The typed
/// part is a small boxed closure and the Lua function around it is one
/// non-generic instance: with ~150 methods that keeps `plugin.wasm` hundreds of
/// KB smaller than a generic `create_function` per method.
pub fn method<T, F, R>(lua: &Lua, name: &'static str, f: F) -> mlua::Result<Function>
where
    T: object::ApiSelf,
    F: Fn(&Lua, &T, &Args) -> ApiResult<R> + 'static,
    R: IntoLuaMulti,
{
    raw_method(
        lua,
        name,
        Box::new(move |lua, this, args| {
            let Some(obj) = T::resolve(this)? else {
                return script_error(format!("calling '{name}' on bad self"));
            };
            Ok(f(lua, &obj, args)?.into_lua_multi(lua)?)
        }),
    )
}

fn raw_method(lua: &Lua, name: &'static str, f: RawMethod) -> mlua::Result<Function> {
    // `self` and the rest are taken apart by mlua as they come off the stack:
    // no second vector per call.
    lua.create_function(move |lua, (this, values): (Value, MultiValue)| {
        // A light userdata is a resolved object (lua/api.lua, object::resolve).
        if !matches!(this, Value::UserData(_) | Value::LightUserData(_)) {
            let msg = format!("calling '{name}' on bad self (use ':' to call methods, e.g. handle:{name}())");
            return (fail_marker(), msg).into_lua_multi(lua);
        }
        let args = Args { method: name, values };
        match f(lua, &this, &args) {
            Ok(r) => Ok(r),
            Err(ApiError::Script(msg)) => (fail_marker(), msg).into_lua_multi(lua),
            Err(ApiError::Lua(e)) => Err(e),
        }
    })
}

/// The raw method tables of every API object, keyed by object type name;
/// `lua/api.lua` turns them into the objects' method tables.
pub fn raw_methods(lua: &Lua, env: &std::rc::Rc<crate::stream::VmEnv>) -> mlua::Result<Table> {
    let raw = lua.create_table()?;
    raw.set("Handle", handle::raw_methods(lua, env)?)?;
    raw.set("HeaderMap", header_map::raw_methods(lua, env)?)?;
    raw.set("Buffer", buffer::raw_methods(lua, env)?)?;
    raw.set("StreamInfo", stream_info::raw_methods(lua, env)?)?;
    raw.set("DynamicMetadata", stream_info::dynamic_metadata_methods(lua, env)?)?;
    raw.set("Connection", stream_info::connection_methods(lua, env)?)?;
    raw.set("FilterState", stream_info::filter_state_methods(lua, env)?)?;
    raw.set("Metadata", metadata::raw_methods(lua, env)?)?;
    raw.set("Route", metadata::route_raw_methods(lua, env)?)?;
    raw.set("PublicKey", crypto::raw_methods(lua, env)?)?;
    raw.set("Ssl", ssl::raw_methods(lua, env)?)?;
    raw.set("SharedData", shared_data::raw_methods(lua, env)?)?;
    raw.set("ParsedSubject", ssl::parsed_subject_methods(lua, env)?)?;
    raw.set("Stats", stats::raw_methods(lua, env)?)?;
    raw.set("Counter", stats::counter_methods(lua, env)?)?;
    raw.set("Gauge", stats::gauge_methods(lua, env)?)?;
    raw.set("Histogram", stats::histogram_methods(lua, env)?)?;
    Ok(raw)
}

/// For lua/api.lua: `resolve(self)` of the plain-userdata objects (object.rs),
/// and the methods that are Lua C functions (complete: they raise their own
/// errors), both by type name.
pub fn native_methods(lua: &Lua) -> mlua::Result<(Table, Table)> {
    // SAFETY: these are Lua C functions that follow the Lua C API's rules.
    let c = |f: mlua::ffi::lua_CFunction| unsafe { lua.create_c_function(f) };
    let resolvers = lua.create_table()?;
    resolvers.set("Handle", c(object::resolve_handle)?)?;
    resolvers.set("HeaderMap", c(object::resolve_header_map)?)?;
    let natives = lua.create_table()?;
    let handle = lua.create_table()?;
    handle.set("headers", c(handle::headers)?)?;
    natives.set("Handle", handle)?;
    let headers = lua.create_table()?;
    headers.set("get", c(header_map::get)?)?;
    headers.set("add", c(header_map::add)?)?;
    headers.set("replace", c(header_map::replace)?)?;
    headers.set("remove", c(header_map::remove)?)?;
    natives.set("HeaderMap", headers)?;
    Ok((resolvers, natives))
}

/// Registry key of an object type's method table (its `__index`).
pub fn methods_key(type_name: &str) -> String {
    format!("plw.methods.{type_name}")
}

/// Registry key of an object type's `__pairs` function.
pub fn pairs_key(type_name: &str) -> String {
    format!("plw.pairs.{type_name}")
}

/// The userdata's metatable fields: `__index` (method table) and, if the type has
/// one, `__pairs`, both taken from what `lua/api.lua` registered.
pub fn add_object_fields<T: UserData, F: mlua::UserDataFields<T>>(
    fields: &mut F,
    type_name: &'static str,
    has_pairs: bool,
) {
    fields.add_meta_field_with("__index", move |lua| lua.named_registry_value::<Table>(&methods_key(type_name)));
    if has_pairs {
        fields.add_meta_field_with("__pairs", move |lua| lua.named_registry_value::<Function>(&pairs_key(type_name)));
    }
    fields.add_meta_field("__name", type_name);
}
