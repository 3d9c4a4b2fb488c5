//! Per-stream state and the coroutine driver that maps Envoy's Lua execution
//! model onto Proxy-Wasm callbacks.
//!
//! `state` holds what the Lua objects of a stream share (which parts of the
//! message arrived, were held or passed on, what a coroutine waits for);
//! `driver` runs the coroutines from the host's callbacks and decides, after
//! each run, whether the host continues or holds each direction.
mod driver;
mod state;

pub use driver::{describe_error, Stream, Verdict, SCRIPT_ERROR_BODY, SCRIPT_ERROR_DETAILS};
pub use state::{ApiSettings, CallResult, Direction, Flow, PerDirection, StreamState, Trailers, VmEnv, Wait};
