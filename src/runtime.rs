//! One Lua state per plugin configuration (root context): the sandboxed standard
//! library, the API objects, and the script, loaded once at configure time.
use std::cell::RefCell;
use std::rc::Rc;

use mlua::chunk::ChunkMode;
use mlua::thread::ThreadStatus;
use mlua::{Function, Lua, LuaOptions, StdLib, Table, Thread, Value};

use crate::api;
use crate::budget::Budget;
use crate::config::{Config, Script};
use crate::helpers;
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
    config: Rc<Config>,
    script: Script,
    /// The hooks, each through lua/hook.lua (which makes the handle).
    on_request: Option<Function>,
    on_response: Option<Function>,
    /// Finished coroutines kept for the next hook run: resetting one is much
    /// cheaper than creating (and later collecting) a new one per request.
    spare_threads: RefCell<Vec<Thread>>,
}

/// How many finished coroutines a state keeps; more only serve bursts of
/// streams parked at the same time.
const SPARE_THREADS: usize = 16;

impl Runtime {
    /// Builds the Lua state for `script` and runs its top level. The error says
    /// which script or module and line failed.
    pub fn new(config: Rc<Config>, script: &Script, host: Rc<dyn Host>) -> Result<Rc<Runtime>, String> {
        // Scripts can only reach downstreamRequestHeaders() by naming it; only then
        // is a copy of every request's headers worth keeping.
        let keep_request_headers = std::iter::once(&script.source)
            .chain(config.modules.values())
            .any(|src| src.contains("downstreamRequestHeaders"));
        let budget = Budget::new(config.instruction_budget);
        let env = VmEnv::new(
            host,
            config.allow_on_headers_stop_iteration,
            keep_request_headers,
            config.api.clone(),
            budget.clone(),
        );
        let libs = StdLib::STRING
            | StdLib::TABLE
            | StdLib::MATH
            | StdLib::UTF8
            | StdLib::COROUTINE
            | StdLib::OS
            | StdLib::PACKAGE;
        let lua = Lua::new_with(libs, LuaOptions::new()).map_err(|e| format!("cannot create the Lua state: {e}"))?;
        let internal = |what: &str, e: mlua::Error| format!("internal error ({what}): {}", describe_error(&e));

        let modules = compile_modules(&lua, &config)?;
        sandbox(&lua, &budget, modules, config.luajit_compat).map_err(|e| internal("sandbox", e))?;
        install_api(&lua, &env).map_err(|e| internal("api", e))?;
        // The script's top level runs under the same budget and limit as a request.
        budget.install(&lua).map_err(|e| internal("budget", e))?;
        budget.reset();
        if config.memory_limit_bytes > 0 {
            let limit = usize::try_from(config.memory_limit_bytes).unwrap_or(usize::MAX);
            lua.set_memory_limit(limit).map_err(|e| internal("memory limit", e))?;
        }

        // Per request the API makes short-lived objects (coroutine, handle,
        // header map, argument tables) next to a long-lived heap (the API and
        // the script): the case Lua 5.4's generational collector is made for.
        lua.gc_set_mode(mlua::state::GcMode::Generational(mlua::state::GcGenParams::default()));

        let name = &script.chunk_name;
        lua.load(script.source.as_str())
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
        // SAFETY: make_handle is a Lua C function following the C API's rules.
        let make_handle =
            unsafe { lua.create_c_function(api::object::make_handle) }.map_err(|e| internal("hooks", e))?;
        let runner = |f: Option<Function>| -> Result<Option<Function>, String> {
            let Some(f) = f else { return Ok(None) };
            let source = bundled("hook")?;
            let run: Function = lua
                .load(source)
                .set_name("=lua/hook.lua")
                .call((f, make_handle.clone()))
                .map_err(|e| internal("hooks", e))?;
            Ok(Some(run))
        };
        let on_request = runner(hook(Direction::Request)?)?;
        let on_response = runner(hook(Direction::Response)?)?;
        if config.strict_globals {
            lua.load(bundled("strict")?)
                .set_name("=lua/strict.lua")
                .exec()
                .map_err(|e| internal("strict_globals", e))?;
        }
        Ok(Rc::new(Runtime {
            lua,
            env,
            config,
            script: script.clone(),
            on_request,
            on_response,
            spare_threads: RefCell::new(Vec::new()),
        }))
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

    /// The script this state runs (its chunk name and failure policy).
    pub fn script(&self) -> &Script {
        &self.script
    }

    /// A coroutine ready to run `f`: a spare one reset to it, or a new one.
    pub fn thread(&self, f: &Function) -> mlua::Result<Thread> {
        let spare = self.spare_threads.borrow_mut().pop();
        match spare {
            Some(thread) => {
                thread.reset(f.clone())?;
                Ok(thread)
            }
            None => self.lua.create_thread(f.clone()),
        }
    }

    /// Takes back a coroutine whose function returned, for [`Runtime::thread`].
    pub fn recycle(&self, thread: Thread) {
        let mut spare = self.spare_threads.borrow_mut();
        if thread.status() == ThreadStatus::Finished && spare.len() < SPARE_THREADS {
            spare.push(thread);
        }
    }

    pub fn hook(&self, dir: Direction) -> Option<&Function> {
        match dir {
            Direction::Request => self.on_request.as_ref(),
            Direction::Response => self.on_response.as_ref(),
        }
    }
}

/// Compiles every `modules` entry once per Lua state; a module that does not
/// compile rejects the configuration, naming the module and line. Chunk names
/// are paths (`acme/util/json.lua`), so errors and tracebacks point into them.
fn compile_modules(lua: &Lua, config: &Config) -> Result<Table, String> {
    let internal = |e: mlua::Error| format!("internal error (modules): {}", describe_error(&e));
    let table = lua.create_table().map_err(internal)?;
    for (name, source) in &config.modules {
        let path = format!("{}.lua", name.replace('.', "/"));
        let f = lua
            .load(source.as_str())
            .set_name(format!("={path}"))
            .set_mode(ChunkMode::Text)
            .into_function()
            .map_err(|e| format!("module load error: modules.{name}: {}", describe_error(&e)))?;
        table.raw_set(name.as_str(), f).map_err(internal)?;
    }
    Ok(table)
}

/// Runs `lua/sandbox.lua`: trims the standard library, wires `require` to the
/// configured and bundled modules, and guards `pcall` against the budget.
fn sandbox(lua: &Lua, budget: &Rc<Budget>, modules: Table, luajit_compat: bool) -> mlua::Result<()> {
    let exhausted = {
        let budget = budget.clone();
        lua.create_function(move |_, ()| Ok(budget.exhausted()))?
    };
    // os.getenv reads the VM's environment: Istio `vmConfig.env`, WASI environ.
    let getenv = lua.create_function(|lua, name: mlua::LuaString| {
        Ok(match std::env::var_os(&*name.to_str()?) {
            Some(v) => Some(lua.create_string(v.as_encoded_bytes())?),
            None => None,
        })
    })?;
    let bundled_modules = lua.create_table()?;
    bundled_modules.raw_set("json", lua.create_function(|lua, ()| helpers::json_module(lua))?)?;
    bundled_modules.raw_set("base64", lua.create_function(|lua, ()| helpers::base64_module(lua))?)?;
    let bit = lua.load(bundled("bit").map_err(mlua::Error::runtime)?).set_name("=lua/bit.lua").into_function()?;
    bundled_modules.raw_set("bit", bit)?;
    lua.load(bundled("sandbox").map_err(mlua::Error::runtime)?).set_name("=lua/sandbox.lua").call::<()>((
        exhausted,
        getenv,
        modules,
        bundled_modules,
        luajit_compat,
    ))
}

/// Runs `lua/api.lua` over the raw Rust methods and registers each object
/// type's method table and `__pairs` for the userdata metatables.
fn install_api(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<()> {
    let raw = api::raw_methods(lua, env)?;
    let (resolvers, natives) = api::native_methods(lua)?;
    let objects: Table = lua.load(bundled("api").map_err(mlua::Error::runtime)?).set_name("=lua/api.lua").call((
        raw,
        api::fail_marker(),
        api::yield_marker(),
        api::wait_marker(),
        resolvers,
        natives,
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
    let methods_of = |name: &str| objects.get::<Table>(name)?.get::<Table>("methods");
    let header_pairs: Function = objects.get::<Table>("HeaderMap")?.get("pairs")?;
    api::object::install(lua, &methods_of("Handle")?, &methods_of("HeaderMap")?, &header_pairs)?;
    Ok(())
}
