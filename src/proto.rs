//! Protobuf messages Envoy hands out as property values.
//!
//! `get_property` returns message-typed attributes (`metadata`,
//! `xds.route_metadata`, `xds.virtual_host_metadata`, ...) serialized in the
//! protobuf wire format, so the plugin decodes them with prost.
use std::collections::HashMap;

use prost::Message;
use prost_types::{Any, Struct};

/// `envoy.config.core.v3.Metadata`.
#[derive(Clone, PartialEq, Message)]
pub struct Metadata {
    #[prost(map = "string, message", tag = "1")]
    pub filter_metadata: HashMap<String, Struct>,
    #[prost(map = "string, message", tag = "2")]
    pub typed_filter_metadata: HashMap<String, Any>,
}

impl Metadata {
    /// Decodes a property value; `what` names the property in the error.
    pub fn decode_property(bytes: &[u8], what: &str) -> Result<Metadata, String> {
        Metadata::decode(bytes).map_err(|e| format!("cannot decode {what} (envoy.config.core.v3.Metadata): {e}"))
    }
}

/// Type URL of a packed `google.protobuf.Struct`.
pub const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";

/// Arguments of Envoy's `set_envoy_filter_state` foreign function
/// (`source/extensions/common/wasm/ext/set_envoy_filter_state.proto`). `value`
/// is a proto `string` there; bytes are wire-compatible and keep binary values.
#[derive(Clone, PartialEq, Message)]
pub struct SetEnvoyFilterStateArguments {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
    /// LifeSpan: 0 FilterChain, 1 DownstreamRequest, 2 DownstreamConnection.
    #[prost(int32, tag = "3")]
    pub span: i32,
}
