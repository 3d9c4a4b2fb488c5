//! Root context: one per plugin configuration; builds its own Lua state.
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use super::{abi, http::HttpStream, wasm_host::WasmHost};
use crate::config::Config;
use crate::host::LogLevel;
use crate::scripts::Scripts;

#[derive(Default)]
pub struct Root {
    scripts: Option<Rc<Scripts>>,
}

impl Context for Root {}

impl RootContext for Root {
    /// Says which build runs, once per VM.
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        abi::log(
            LogLevel::Info,
            &format!("proxy-wasm-lua {} (git {}) started", env!("CARGO_PKG_VERSION"), env!("PWL_GIT_REV")),
        );
        true
    }

    /// Returning false makes the host refuse the configuration.
    fn on_configure(&mut self, _size: usize) -> bool {
        let result = abi::plugin_configuration()
            .map_err(|e| format!("cannot read the plugin configuration: {e}"))
            .and_then(|bytes| Config::parse(&bytes))
            .and_then(|config| Scripts::new(config, Rc::new(WasmHost)));
        match result {
            Ok(scripts) => {
                self.scripts = Some(Rc::new(scripts));
                true
            }
            Err(msg) => {
                abi::log(LogLevel::Error, &format!("lua: configuration rejected: {msg}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(HttpStream::new(self.scripts.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
