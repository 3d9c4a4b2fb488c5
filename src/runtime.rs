//! One Lua state per plugin configuration (root context): the sandboxed standard
//! library, the API objects, and the script, loaded once at configure time.
use std::rc::Rc;

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, LuaOptions, StdLib, Table, Value};

use crate::api;
use crate::budget::Budget;
use crate::config::Config;
use crate::host::Host;
use crate::stream::{describe_error, Direction, VmEnv};

include!(concat!(env!("OUT_DIR"), "/lua_sources.rs"));

/// A bundled Lua source from `lua/`.
fn bundled(name: &str) -> Result<&'static str, String> {
    LUA_SOURCES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, src)| *src)
        .ok_or_else(|| format!("internal error: bundled Lua file lua/{name}.lua is missing"))
}

pub struct Runtime {
    lua: Lua,
    env: Rc<VmEnv>,
    config: Config,
    on_request: Option<Function>,
    on_response: Option<Function>,
}

impl Runtime {
    /// Builds the Lua state and runs the script's top level. The error says
    /// which script and line failed.
    pub fn new(config: Config, host: Rc<dyn Host>) -> Result<Rc<Runtime>, String> {
        // Scripts can only reach downstreamRequestHeaders() by naming it; only then
        // is a copy of every request's headers worth keeping.
        let keep_request_headers = config.script.contains("downstreamRequestHeaders");
        let budget = Budget::new(config.instruction_budget);
        let env = VmEnv::new(
            host,
            config.allow_on_headers_stop_iteration,
            keep_request_headers,
            config.api.clone(),
            budget.clone(),
        );
        let libs = StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE | StdLib::OS;
        let lua = Lua::new_with(libs, LuaOptions::new()).map_err(|e| format!("cannot create the Lua state: {e}"))?;
        let internal = |what: &str, e: mlua::Error| format!("internal error ({what}): {}", describe_error(&e));

        let exhausted = {
            let budget = budget.clone();
            lua.create_function(move |_, ()| Ok(budget.exhausted())).map_err(|e| internal("sandbox", e))?
        };
        lua.load(bundled("sandbox")?)
            .set_name("=lua/sandbox.lua")
            .call::<()>(exhausted)
            .map_err(|e| internal("sandbox", e))?;
        install_api(&lua, &env).map_err(|e| internal("api", e))?;
        // The script's top level runs under the same budget and limit as a request.
        budget.install(&lua).map_err(|e| internal("budget", e))?;
        budget.reset();
        if config.memory_limit_bytes > 0 {
            let limit = usize::try_from(config.memory_limit_bytes).unwrap_or(usize::MAX);
            lua.set_memory_limit(limit).map_err(|e| internal("memory limit", e))?;
        }

        let name = config.script_name;
        lua.load(config.script.as_str())
            .set_name(format!("={name}"))
            .set_mode(ChunkMode::Text)
            .exec()
            .map_err(|e| format!("script load error: {}", describe_error(&e)))?;

        let hook = |dir: Direction| -> Result<Option<Function>, String> {
            match lua.globals().raw_get::<Value>(dir.hook_name()) {
                Ok(Value::Nil) => Ok(None),
                Ok(Value::Function(f)) => Ok(Some(f)),
                Ok(other) => Err(format!(
                    "script load error: {name}: global '{}' must be a function, got {}",
                    dir.hook_name(),
                    api::lua_type_name(&other)
                )),
                Err(e) => Err(internal("hooks", e)),
            }
        };
        let on_request = hook(Direction::Request)?;
        let on_response = hook(Direction::Response)?;
        Ok(Rc::new(Runtime { lua, env, config, on_request, on_response }))
    }

    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    pub fn env(&self) -> &Rc<VmEnv> {
        &self.env
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn hook(&self, dir: Direction) -> Option<&Function> {
        match dir {
            Direction::Request => self.on_request.as_ref(),
            Direction::Response => self.on_response.as_ref(),
        }
    }
}

/// Runs `lua/api.lua` over the raw Rust methods and registers each object
/// type's method table and `__pairs` for the userdata metatables.
fn install_api(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<()> {
    let raw = api::raw_methods(lua, env)?;
    let objects: Table = lua.load(bundled("api").map_err(mlua::Error::runtime)?).set_name("=lua/api.lua").call((
        raw,
        api::fail_marker(),
        api::yield_marker(),
        api::wait_marker(),
    ))?;
    let resolution = lua.create_table()?;
    resolution.set("MILLISECOND", api::misc::MILLISECOND)?;
    resolution.set("MICROSECOND", api::misc::MICROSECOND)?;
    lua.globals().set("EnvoyTimestampResolution", resolution)?;
    for pair in objects.pairs::<String, Table>() {
        let (type_name, object) = pair?;
        lua.set_named_registry_value(&api::methods_key(&type_name), object.get::<Table>("methods")?)?;
        if let Value::Function(f) = object.get::<Value>("pairs")? {
            lua.set_named_registry_value(&api::pairs_key(&type_name), f)?;
        }
    }
    Ok(())
}
