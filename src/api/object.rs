//! The objects every request makes: the stream handle (two per request, one per
//! hook) and its header maps. They are plain Lua userdata holding a [`Token`],
//! with no Rust value inside and no `__gc`. mlua userdata carry a finalizer, and
//! creating and finalizing four of them was a fifth of the `header` script's
//! instructions per request.
//!
//! A token names its stream by pointer and id. The pointer is used only while
//! that stream is the one the VM is running ([`VmEnv::current_stream`]). A kept
//! object fails with the same messages as [`StreamState::check_active`].
//! Other streams are checked against [`VmEnv::is_live`], which must not
//! dereference a pointer that may dangle.
//!
//! The hot methods (`headers()`, header `get`/`add`/`replace`/`remove`) are
//! Lua C functions working on the Lua stack directly: the raw functions in
//! `header_map.rs` and `handle.rs`. The other methods are mlua functions, as for
//! every other object. Their Lua wrappers (lua/api.lua) pass `self` through
//! [`resolve`] first, which turns a genuine object into a light userdata
//! pointing at its token ([`ApiSelf`] reads it back).
use std::ffi::{c_int, c_void, CStr};
use std::rc::Rc;

use mlua::{ffi, AnyUserData, Function, Lua, Table, Value};

use super::handle::Handle;
use super::header_map::HeaderMap;
use super::{script_error, ApiResult};
use crate::host::MapType;
use crate::stream::{Direction, StreamState, VmEnv};

/// An object type: its `__name` (what `tostring` and argument errors show) and
/// the registry key of its metatable (a light userdata: no string to hash).
pub struct Type {
    name: &'static CStr,
    key: &'static u8,
}

static HANDLE_KEY: u8 = 0;
static HEADER_MAP_KEY: u8 = 0;
pub static HANDLE: Type = Type { name: c"Handle", key: &HANDLE_KEY };
pub static HEADER_MAP: Type = Type { name: c"HeaderMap", key: &HEADER_MAP_KEY };

impl Type {
    fn key(&self) -> *const c_void {
        (self.key as *const u8).cast()
    }

    /// Pushes the type's metatable.
    ///
    /// # Safety
    /// `state` is a Lua state the metatables were installed in.
    unsafe fn push_metatable(&self, state: *mut ffi::lua_State) {
        // SAFETY: see above.
        unsafe { ffi::lua_rawgetp(state, ffi::LUA_REGISTRYINDEX, self.key()) };
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Handle(Direction),
    HeaderMap { map: MapType, read_only: bool },
}

/// What an object's userdata block holds.
#[derive(Clone, Copy)]
pub struct Token {
    env: *const VmEnv,
    stream: *const StreamState,
    id: u64,
    pub kind: Kind,
}

impl Token {
    fn new(state: &Rc<StreamState>, kind: Kind) -> Token {
        Token { env: Rc::as_ptr(&state.env), stream: Rc::as_ptr(state), id: state.id(), kind }
    }

    /// The token's stream while the VM runs it, else the error `check_active`
    /// would give.
    pub fn stream(&self) -> Result<&StreamState, &'static str> {
        // SAFETY: the VmEnv outlives every Lua state using it (the Runtime owns
        // both), and Lua code only runs while that state is alive.
        let env = unsafe { &*self.env };
        if self.id != 0 && env.current_stream() == self.id {
            // SAFETY: the stream the host is calling into is alive: its driver
            // holds it until the stream's end, which is never during a run.
            Ok(unsafe { &*self.stream })
        } else if env.is_live(self.id) {
            Err(StreamState::OUTSIDE_ITS_STREAM)
        } else {
            Err(StreamState::AFTER_ITS_STREAM)
        }
    }

    /// [`Token::stream`] as a new strong reference, for objects made from this one.
    pub fn stream_rc(&self) -> ApiResult<Rc<StreamState>> {
        match self.stream() {
            Ok(_) => {
                // SAFETY: `stream` came from `Rc::as_ptr` and the stream is alive
                // (checked above), so its allocation holds at least one strong
                // reference; this adds one, taken back by `from_raw`.
                unsafe {
                    Rc::increment_strong_count(self.stream);
                    Ok(Rc::from_raw(self.stream))
                }
            }
            Err(msg) => script_error(msg),
        }
    }
}

/// Creates the metatables of both object types: `__index` the method tables
/// lua/api.lua built, `__pairs` for header maps, `__metatable = false` (as mlua
/// protects its own userdata).
pub fn install(lua: &Lua, handle_methods: &Table, header_methods: &Table, header_pairs: &Function) -> mlua::Result<()> {
    // SAFETY: the closure pops what it pushes; exec_raw runs it protected.
    unsafe {
        lua.exec_raw::<()>((handle_methods, header_methods, header_pairs), |state| {
            // Stack: 1 handle methods, 2 header methods, 3 header pairs.
            for (ty, methods, pairs) in [(&HANDLE, 1, None), (&HEADER_MAP, 2, Some(3))] {
                ffi::lua_createtable(state, 0, 4);
                ffi::lua_pushstring(state, ty.name.as_ptr());
                ffi::lua_setfield(state, -2, c"__name".as_ptr());
                ffi::lua_pushvalue(state, methods);
                ffi::lua_setfield(state, -2, c"__index".as_ptr());
                if let Some(pairs) = pairs {
                    ffi::lua_pushvalue(state, pairs);
                    ffi::lua_setfield(state, -2, c"__pairs".as_ptr());
                }
                ffi::lua_pushboolean(state, 0);
                ffi::lua_setfield(state, -2, c"__metatable".as_ptr());
                ffi::lua_rawsetp(state, ffi::LUA_REGISTRYINDEX, ty.key());
            }
        })
    }
}

/// Pushes a new object (header maps: with no user value; handles: one, the
/// `headers()` object once made). May raise a Lua memory error: callers hold no
/// Rust value that needs dropping.
///
/// # Safety
/// `state` is a running Lua state with room for one more value.
pub unsafe fn push(state: *mut ffi::lua_State, token: Token) {
    let (ty, user_values) = match token.kind {
        Kind::Handle(_) => (&HANDLE, 1),
        Kind::HeaderMap { .. } => (&HEADER_MAP, 0),
    };
    // SAFETY: a fresh block of the token's size (Lua aligns it for any type).
    unsafe {
        let block = ffi::lua_newuserdatauv(state, std::mem::size_of::<Token>(), user_values);
        std::ptr::write(block.cast::<Token>(), token);
        ty.push_metatable(state);
        ffi::lua_setmetatable(state, -2);
    }
}

/// `make_handle(stream, dir)`: the handle a hook runs with, made in Lua (see
/// `runtime.rs`: hooks run through a small Lua function calling this), so the
/// driver only passes a pointer and a number to the coroutine. `stream` is the
/// state the driver is running; scripts never see this function.
///
/// # Safety
/// A Lua C function: only the hook runner calls it, with a live stream.
pub unsafe extern "C-unwind" fn make_handle(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: the runner passes the driver's live StreamState and a direction.
    unsafe {
        let stream = ffi::lua_touserdata(state, 1).cast::<StreamState>().cast_const();
        let dir = if ffi::lua_tointegerx(state, 2, std::ptr::null_mut()) == Direction::Response as ffi::lua_Integer {
            Direction::Response
        } else {
            Direction::Request
        };
        if stream.is_null() {
            raise(state, "internal error: hook run without a stream".into());
        }
        let s = &*stream;
        let token = Token { env: Rc::as_ptr(&s.env), stream, id: s.id(), kind: Kind::Handle(dir) };
        push(state, token);
    }
    1
}

fn make(lua: &Lua, token: Token) -> mlua::Result<AnyUserData> {
    // SAFETY: `push` pushes one value; exec_raw runs it protected (a memory
    // error becomes an Err) and returns it.
    unsafe { lua.exec_raw::<AnyUserData>((), |state| push(state, token)) }
}

/// A header map object (`downstreamRequestHeaders()`, `trailers()`).
pub fn new_header_map(lua: &Lua, state: &Rc<StreamState>, map: MapType, read_only: bool) -> mlua::Result<AnyUserData> {
    make(lua, Token::new(state, Kind::HeaderMap { map, read_only }))
}

/// A header map token for the stream of `token` (raw `headers()`).
pub fn header_map_token(token: &Token, map: MapType) -> Token {
    Token { kind: Kind::HeaderMap { map, read_only: false }, ..*token }
}

/// The token of the object at stack index `idx` if it is of type `name`.
///
/// # Safety
/// `state` is a running Lua state and `idx` a valid index.
pub unsafe fn token_at(state: *mut ffi::lua_State, idx: c_int, ty: &Type) -> Option<Token> {
    // SAFETY: a block with the type's metatable holds a Token.
    unsafe {
        let block = block_at(state, idx, ty);
        (!block.is_null()).then(|| *block.cast::<Token>())
    }
}

/// The block of the userdata at `idx` if it has `ty`'s metatable, else null
/// (luaL_testudata, with the metatable found by pointer, not by name).
///
/// # Safety
/// `state` is a running Lua state and `idx` a valid index.
unsafe fn block_at(state: *mut ffi::lua_State, idx: c_int, ty: &Type) -> *mut c_void {
    // SAFETY: balanced pushes and pops on a valid stack.
    unsafe {
        if ffi::lua_type(state, idx) != ffi::LUA_TUSERDATA || ffi::lua_getmetatable(state, idx) == 0 {
            return std::ptr::null_mut();
        }
        ty.push_metatable(state);
        let same = ffi::lua_rawequal(state, -1, -2) != 0;
        ffi::lua_pop(state, 2);
        if same {
            ffi::lua_touserdata(state, idx)
        } else {
            std::ptr::null_mut()
        }
    }
}

unsafe fn resolve(state: *mut ffi::lua_State, ty: &Type) -> c_int {
    // SAFETY: index 1 exists or is none.
    unsafe {
        let block = block_at(state, 1, ty);
        if !block.is_null() {
            ffi::lua_pushlightuserdata(state, block);
        } else if ffi::lua_type(state, 1) == ffi::LUA_TLIGHTUSERDATA {
            // A light userdata here is not one of ours (a script can hold the
            // API's markers): never let it pass as a token pointer.
            ffi::lua_pushnil(state);
        } else {
            // Anything else goes on as is, for the method's "bad self" message.
            ffi::lua_pushvalue(state, 1);
        }
    }
    1
}

/// `resolve(self)` for the wrappers of handle methods.
///
/// # Safety
/// A Lua C function: only Lua calls it, with its arguments on the stack.
pub unsafe extern "C-unwind" fn resolve_handle(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua with its arguments on the stack.
    unsafe { resolve(state, &HANDLE) }
}

/// `resolve(self)` for the wrappers of header map methods.
///
/// # Safety
/// A Lua C function: only Lua calls it, with its arguments on the stack.
pub unsafe extern "C-unwind" fn resolve_header_map(state: *mut ffi::lua_State) -> c_int {
    // SAFETY: called by Lua with its arguments on the stack.
    unsafe { resolve(state, &HEADER_MAP) }
}

/// Reads the token a resolved `self` points at.
fn resolved(this: &Value) -> Option<Token> {
    match this {
        // SAFETY: only `resolve` makes these (it never passes a light userdata
        // through), from a live object the calling wrapper still holds.
        Value::LightUserData(p) if !p.0.is_null() => Some(unsafe { *p.0.cast::<Token>() }),
        _ => None,
    }
}

/// What `self` is for an mlua method: an mlua userdata of the type, or one of
/// the objects here rebuilt from its token. Not generic over the method, so
/// each type has one instance (there are ~150 methods).
pub trait ApiSelf: Sized + 'static {
    /// `Ok(None)`: not this type ("bad self"); `Err`: its stream is gone.
    fn resolve(this: &Value) -> ApiResult<Option<SelfRef<Self>>>;
}

/// A resolved `self`.
pub enum SelfRef<T: 'static> {
    Borrowed(mlua::UserDataRef<T>),
    Owned(T),
}

impl<T> std::ops::Deref for SelfRef<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            SelfRef::Borrowed(r) => r,
            SelfRef::Owned(t) => t,
        }
    }
}

impl<T: mlua::UserData + 'static> ApiSelf for T {
    fn resolve(this: &Value) -> ApiResult<Option<SelfRef<Self>>> {
        Ok(match this {
            Value::UserData(ud) => ud.borrow::<T>().ok().map(SelfRef::Borrowed),
            _ => None,
        })
    }
}

impl ApiSelf for Handle {
    fn resolve(this: &Value) -> ApiResult<Option<SelfRef<Self>>> {
        Ok(match resolved(this) {
            Some(t @ Token { kind: Kind::Handle(dir), .. }) => Some(SelfRef::Owned(Handle::new(t.stream_rc()?, dir))),
            _ => None,
        })
    }
}

impl ApiSelf for HeaderMap {
    fn resolve(this: &Value) -> ApiResult<Option<SelfRef<Self>>> {
        Ok(match resolved(this) {
            Some(t @ Token { kind: Kind::HeaderMap { map, .. }, .. }) => {
                Some(SelfRef::Owned(HeaderMap::from_parts(t.stream_rc()?, map)))
            }
            _ => None,
        })
    }
}

/// Raises `msg` as a script error at the calling line, as the Lua wrappers'
/// `error(msg, 2)` does for mlua methods.
///
/// # Safety
/// Called from a Lua C function, with no Rust value left that needs dropping
/// (a memory error while pushing would only leak `msg`).
pub unsafe fn raise(state: *mut ffi::lua_State, msg: String) -> ! {
    // SAFETY: see above.
    unsafe {
        ffi::luaL_where(state, 1);
        ffi::lua_pushlstring(state, msg.as_ptr().cast(), msg.len());
        drop(msg);
        ffi::lua_concat(state, 2);
        ffi::lua_error(state)
    }
}

/// `self` of a Lua C method: its token, or the message mlua methods give for a
/// bad one.
///
/// # Safety
/// Called from a Lua C function.
pub unsafe fn self_token(state: *mut ffi::lua_State, ty: &Type, method: &str) -> Result<Token, String> {
    // SAFETY: index 1 is valid or none.
    unsafe {
        match token_at(state, 1, ty) {
            Some(t) => Ok(t),
            None if ffi::lua_type(state, 1) == ffi::LUA_TUSERDATA => Err(format!("calling '{method}' on bad self")),
            None => Err(format!("calling '{method}' on bad self (use ':' to call methods, e.g. handle:{method}())")),
        }
    }
}

/// Argument `n` of a Lua C method (stack index `n + 1`) as bytes: a string, or a
/// number as `values::to_bytes` prints it. The slice borrows the Lua string,
/// which stays on the stack for the whole call.
///
/// # Safety
/// Called from a Lua C function.
pub unsafe fn arg_bytes<'a>(
    state: *mut ffi::lua_State,
    n: c_int,
    method: &str,
) -> Result<std::borrow::Cow<'a, [u8]>, String> {
    let idx = n + 1;
    // SAFETY: `idx` is valid or none.
    unsafe {
        if let Some(bytes) = super::values::stack_bytes(state, idx) {
            return Ok(bytes);
        }
        let t = ffi::lua_type(state, idx);
        let got = if t == ffi::LUA_TNONE {
            "no value".into()
        } else {
            CStr::from_ptr(ffi::lua_typename(state, t)).to_string_lossy().into_owned()
        };
        Err(format!("bad argument #{n} to '{method}' (string expected, got {got})"))
    }
}

/// The bytes of the string (or number, converted in place) at `idx`; empty
/// for other types.
///
/// # Safety
/// The slice lives as long as the value stays on the stack.
pub unsafe fn lua_bytes<'a>(state: *mut ffi::lua_State, idx: c_int) -> &'a [u8] {
    let mut len = 0usize;
    // SAFETY: lua_tolstring of a string returns its bytes and length.
    unsafe {
        let p = ffi::lua_tolstring(state, idx, &mut len);
        if p.is_null() {
            return &[];
        }
        std::slice::from_raw_parts(p.cast::<u8>(), len)
    }
}
