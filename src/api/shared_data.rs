//! `handle:sharedData()`: Proxy-Wasm shared data, visible to every worker's VM
//! of the same `vm_id` (Envoy's native filter has no way to share state between
//! workers). Values are strings; writes can be made conditional on the CAS
//! token a read returned, so read-modify-write loops are safe across workers.
use std::rc::Rc;

use mlua::{Lua, MultiValue, Table, UserData, UserDataFields, Value};

use super::{log, method, script_error, ApiResult};
use crate::stream::{StreamState, VmEnv};

pub struct SharedData {
    state: Rc<StreamState>,
}

impl SharedData {
    pub fn new(state: Rc<StreamState>) -> SharedData {
        SharedData { state }
    }
}

impl UserData for SharedData {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "SharedData", false);
    }
}

/// Envoy's status for a CAS token that no longer matches.
const CAS_MISMATCH: u32 = 7;

pub fn raw_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        method(lua, "get", |lua, d: &SharedData, args| -> ApiResult<MultiValue> {
            d.state.check_active()?;
            let key = String::from_utf8_lossy(&args.bytes(lua, 1)?).into_owned();
            // (value, cas), or (nil, 0) when the key is not set.
            Ok(match d.state.host().get_shared_data(&key)? {
                Some((value, cas)) => {
                    MultiValue::from_vec(vec![Value::String(lua.create_string(value)?), Value::Integer(cas.into())])
                }
                None => MultiValue::from_vec(vec![Value::Nil, Value::Integer(0)]),
            })
        })?,
    )?;
    t.set(
        "set",
        method(lua, "set", |lua, d: &SharedData, args| -> ApiResult<MultiValue> {
            d.state.check_active()?;
            let key = String::from_utf8_lossy(&args.bytes(lua, 1)?).into_owned();
            let value = args.bytes(lua, 2)?;
            let cas = match args.get(3) {
                Value::Nil => 0,
                _ => match u32::try_from(args.integer(3)?) {
                    Ok(c) => c,
                    Err(_) => return script_error("bad argument #3 to 'set' (cas must be a token from get())"),
                },
            };
            // true, or false and the reason when another writer came first.
            Ok(match d.state.host().set_shared_data(&key, &value, cas) {
                Ok(()) => MultiValue::from_vec(vec![Value::Boolean(true)]),
                Err(e) if e.status == CAS_MISMATCH => {
                    MultiValue::from_vec(vec![Value::Boolean(false), Value::String(lua.create_string("cas mismatch")?)])
                }
                Err(e) => return Err(e.into()),
            })
        })?,
    )?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}
