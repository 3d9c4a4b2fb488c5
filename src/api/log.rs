//! `logTrace` … `logCritical`: registered on every API object, as in Envoy.
use std::rc::Rc;

use mlua::{IntoLuaMulti, Lua, MultiValue, Table};

use super::{fail_marker, lua_type_name, values};
use crate::host::LogLevel;
use crate::stream::VmEnv;

pub const METHODS: [(&str, LogLevel); 6] = [
    ("logTrace", LogLevel::Trace),
    ("logDebug", LogLevel::Debug),
    ("logInfo", LogLevel::Info),
    ("logWarn", LogLevel::Warn),
    ("logErr", LogLevel::Error),
    ("logCritical", LogLevel::Critical),
];

/// Adds the six log methods to a raw method table.
pub fn add_methods(lua: &Lua, env: &Rc<VmEnv>, table: &Table) -> mlua::Result<()> {
    for (name, level) in METHODS {
        let env = env.clone();
        let f = lua.create_function(move |lua, args: MultiValue| {
            // args: self, message
            let msg = args.get(1).cloned().unwrap_or(mlua::Value::Nil);
            match values::to_bytes(lua, &msg) {
                Ok(Some(bytes)) => {
                    env.host.log(level, &format!("script log: {}", String::from_utf8_lossy(&bytes)));
                    ().into_lua_multi(lua)
                }
                _ => {
                    let got = if args.len() >= 2 { lua_type_name(&msg) } else { "no value" };
                    let err = format!("bad argument #1 to '{name}' (string expected, got {got})");
                    (fail_marker(), err).into_lua_multi(lua)
                }
            }
        })?;
        table.set(name, f)?;
    }
    Ok(())
}
