//! Buffer objects: the whole body from `body()`, one data frame from the
//! `bodyChunks()` iterator, or the empty body `body(true)` gives a message that
//! has none.
use std::rc::Rc;

use mlua::{Lua, Table, UserData, UserDataFields, Value};

use super::{log, method, script_error, ApiResult};
use crate::stream::{Direction, StreamState, VmEnv};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The complete buffered body (a copy kept by the stream; writes also go to
    /// the host while the body is held).
    Whole,
    /// One data frame, readable only inside the callback that delivered it.
    Chunk(u64),
    /// `body(true)` on a message without a body.
    Injected,
}

pub struct Buffer {
    state: Rc<StreamState>,
    dir: Direction,
    kind: Kind,
}

impl Buffer {
    pub fn new(state: Rc<StreamState>, dir: Direction, kind: Kind) -> Buffer {
        Buffer { state, dir, kind }
    }

    fn check_chunk(&self, seq: u64) -> ApiResult<()> {
        if self.state.flow(self.dir).frame.get() != Some(seq) {
            return script_error(
                "body chunk is no longer available: it was passed on when the loop moved to the next chunk",
            );
        }
        Ok(())
    }

    fn length(&self) -> ApiResult<usize> {
        self.state.check_active()?;
        let flow = self.state.flow(self.dir);
        Ok(match self.kind {
            Kind::Whole => flow.body.borrow().as_ref().map_or(0, Vec::len),
            Kind::Chunk(seq) => {
                self.check_chunk(seq)?;
                flow.frame_len.get()
            }
            Kind::Injected => flow.injected.borrow().as_ref().map_or(0, Vec::len),
        })
    }

    fn bytes(&self, start: usize, len: usize) -> ApiResult<Vec<u8>> {
        let flow = self.state.flow(self.dir);
        let slice = |data: Option<&Vec<u8>>| {
            data.and_then(|d| d.get(start..start.saturating_add(len))).map(<[u8]>::to_vec).unwrap_or_default()
        };
        Ok(match self.kind {
            Kind::Whole => slice(flow.body.borrow().as_ref()),
            Kind::Injected => slice(flow.injected.borrow().as_ref()),
            Kind::Chunk(_) => {
                if len == 0 {
                    return Ok(Vec::new());
                }
                self.state.host().buffer(self.dir.body_buffer(), start, len)?
            }
        })
    }

    fn set_bytes(&self, data: Vec<u8>) -> ApiResult<usize> {
        self.state.check_active()?;
        let flow = self.state.flow(self.dir);
        let new_len = data.len();
        match self.kind {
            Kind::Whole => {
                if flow.body_forwarded.get() {
                    return script_error(format!(
                        "cannot change the {} body: it was already passed on",
                        self.dir.noun()
                    ));
                }
                let old_len = flow.body.borrow().as_ref().map_or(0, Vec::len);
                self.check_length_change(old_len, new_len)?;
                self.state.host().set_buffer(self.dir.body_buffer(), 0, old_len, &data)?;
                flow.body.replace(Some(data));
                self.set_content_length(new_len)?;
            }
            Kind::Chunk(seq) => {
                self.check_chunk(seq)?;
                let old_len = flow.frame_len.get();
                self.check_length_change(old_len, new_len)?;
                self.state.host().set_buffer(self.dir.body_buffer(), 0, old_len, &data)?;
                flow.frame_len.set(new_len);
            }
            Kind::Injected => {
                if self.dir == Direction::Request {
                    return script_error(
                        "unsupported on Proxy-Wasm: a body cannot be added to a request that has none \
                         (the ABI has no call to add body data to a headers-only message)",
                    );
                }
                if flow.forwarded.get() {
                    return script_error("cannot add a body: the response headers were already forwarded");
                }
                flow.injected.replace(Some(data));
            }
        }
        Ok(new_len)
    }

    /// Once headers with a content-length were passed on, a body of another
    /// length would break the message framing; Envoy's native filter lets that
    /// happen, this refuses it with the reason.
    fn check_length_change(&self, old_len: usize, new_len: usize) -> ApiResult<()> {
        if old_len == new_len || !self.state.forwarded(self.dir) {
            return Ok(());
        }
        let map = self.dir.headers_map();
        if let Some(cl) = self.state.header_value(map, "content-length")? {
            return script_error(format!(
                "cannot change the {noun} body length from {old_len} to {new_len}: the {noun} headers were already \
                 forwarded with content-length: {}; remove content-length before reading the body, or let the \
                 plugin hold headers (allow_on_headers_stop_iteration)",
                String::from_utf8_lossy(&cl),
                noun = self.dir.noun(),
            ));
        }
        Ok(())
    }

    /// Envoy's native filter sets the message's content-length on setBytes.
    fn set_content_length(&self, len: usize) -> ApiResult<()> {
        if self.state.forwarded(self.dir) {
            return Ok(());
        }
        let map = self.dir.headers_map();
        let value = len.to_string();
        self.state.modify_headers(map, |host| Ok(host.replace_header(map, "content-length", value.as_bytes())?))
    }
}

impl UserData for Buffer {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "Buffer", false);
    }
}

pub fn raw_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("length", method(lua, "length", |_, b: &Buffer, _| Ok(b.length()? as i64))?)?;
    t.set(
        "getBytes",
        method(lua, "getBytes", |lua, b: &Buffer, args| {
            let index = args.integer(1)?;
            let len = args.integer(2)?;
            let size = b.length()? as i64;
            if index < 0 || len < 0 || index.saturating_add(len) > size {
                return script_error("index/length must be >= 0 and (index + length) must be <= buffer size");
            }
            let bytes = b.bytes(index as usize, len as usize)?;
            Ok(Value::String(lua.create_string(bytes)?))
        })?,
    )?;
    t.set(
        "setBytes",
        method(lua, "setBytes", |lua, b: &Buffer, args| {
            let data = args.bytes(lua, 1)?;
            Ok(b.set_bytes(data)? as i64)
        })?,
    )?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}
