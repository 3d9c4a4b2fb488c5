//! The benchmark's Lua floor (see Cargo.toml): `header` done in Rust, plus a
//! Lua 5.4 state per configuration whose empty `envoy_on_request` runs per
//! request.
use std::rc::Rc;

use mlua::{Function, Lua, LuaOptions, StdLib};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(Root { hook: None }));
}}

/// The Lua state and its hook; the state must outlive every handle into it.
struct State {
    _lua: Lua,
    hook: Function,
}

struct Root {
    hook: Option<Rc<State>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let libs = StdLib::STRING
            | StdLib::TABLE
            | StdLib::MATH
            | StdLib::UTF8
            | StdLib::COROUTINE
            | StdLib::OS
            | StdLib::PACKAGE;
        let Ok(lua) = Lua::new_with(libs, LuaOptions::new()) else { return false };
        let hook =
            lua.load("function envoy_on_request(h) end").exec().and_then(|()| lua.globals().get("envoy_on_request"));
        match hook {
            Ok(hook) => {
                self.hook = Some(Rc::new(State { _lua: lua, hook }));
                true
            }
            Err(_) => false,
        }
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { hook: self.hook.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    hook: Option<Rc<State>>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Some(state) = &self.hook {
            let _ = state.hook.call::<()>(());
        }
        self.add_http_request_header("x-bench", "1");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.add_http_response_header("x-bench-response", "1");
        Action::Continue
    }
}
