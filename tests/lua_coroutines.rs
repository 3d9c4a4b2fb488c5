//! The project's Lua (csrc/lua-patches) yields by returning, not by `longjmp`,
//! when a C function called straight from Lua code yields. That must not change
//! what Lua 5.4 does: tests/fixtures/coroutines.lua drives coroutines through
//! every kind of yield (direct, tail call, vararg, inside pcall/xpcall, from an
//! iterator, a metamethod, a `__close`, a C continuation, under hooks, from a
//! yielding C hook, ...) and
//! its output must equal coroutines.expected, which pristine Lua 5.4.9 printed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::ffi::c_int;

use mlua::{ffi, Lua};
// The Lua that mlua links is built into this crate (build.rs): link it.
use proxy_wasm_lua as _;

/// Yields its arguments; on resume its continuation returns them plus the
/// context (42) and the status it was resumed with.
unsafe extern "C-unwind" fn yield_k(state: *mut ffi::lua_State) -> c_int {
    unsafe extern "C-unwind" fn cont(state: *mut ffi::lua_State, status: c_int, ctx: ffi::lua_KContext) -> c_int {
        unsafe {
            ffi::lua_pushinteger(state, ctx as ffi::lua_Integer);
            ffi::lua_pushinteger(state, status as ffi::lua_Integer);
            ffi::lua_gettop(state)
        }
    }
    unsafe { ffi::lua_yieldk(state, ffi::lua_gettop(state), 42, Some(cont)) }
}

/// Calls its first argument with the rest through `lua_callk`, then appends
/// "yielded" or "ok" after the results: whether the callee yielded.
unsafe extern "C-unwind" fn call_k(state: *mut ffi::lua_State) -> c_int {
    unsafe extern "C-unwind" fn cont(state: *mut ffi::lua_State, status: c_int, _: ffi::lua_KContext) -> c_int {
        let word: &[u8] = if status == ffi::LUA_YIELD { b"yielded" } else { b"ok" };
        unsafe {
            ffi::lua_pushlstring(state, word.as_ptr().cast(), word.len());
            ffi::lua_gettop(state)
        }
    }
    unsafe {
        ffi::lua_callk(state, ffi::lua_gettop(state) - 1, ffi::LUA_MULTRET, 0, Some(cont));
        cont(state, ffi::LUA_OK, 0)
    }
}

/// `yield_hook(co, n)`: a count hook on coroutine `co` that yields every `n`
/// instructions (a hook may yield, with no values).
unsafe extern "C-unwind" fn yield_hook(state: *mut ffi::lua_State) -> c_int {
    unsafe extern "C-unwind" fn hook(state: *mut ffi::lua_State, _: *mut ffi::lua_Debug) {
        unsafe { ffi::lua_yield(state, 0) };
    }
    unsafe {
        let co = ffi::lua_tothread(state, 1);
        let n = ffi::lua_tointegerx(state, 2, std::ptr::null_mut()) as c_int;
        ffi::lua_sethook(co, Some(hook), ffi::LUA_MASKCOUNT, n);
    }
    0
}

#[test]
fn coroutines_behave_as_in_pristine_lua() {
    // unsafe_new: the fixture uses the debug library (hooks, tracebacks).
    let lua = unsafe { Lua::unsafe_new() };
    unsafe {
        lua.globals().set("yield_k", lua.create_c_function(yield_k).unwrap()).unwrap();
        lua.globals().set("call_k", lua.create_c_function(call_k).unwrap()).unwrap();
        lua.globals().set("yield_hook", lua.create_c_function(yield_hook).unwrap()).unwrap();
    }
    let out: String = lua
        .load(include_str!("fixtures/coroutines.lua"))
        .set_name("=coroutines.lua")
        .eval()
        .unwrap_or_else(|e| panic!("coroutines.lua failed: {e}"));
    let expected = include_str!("fixtures/coroutines.expected");
    for (n, (got, want)) in out.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, want, "line {} of coroutines.expected", n + 1);
    }
    assert_eq!(out.lines().count(), expected.lines().count());
}
