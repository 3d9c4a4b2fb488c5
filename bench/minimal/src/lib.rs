//! The benchmark's reference Wasm plugin: what each benchmark script does, without
//! Lua. The plugin configuration is the mode: `noop`, `header`, `body` or
//! `httpcall` (one call to the cluster `callout` per request).
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| Box::new(Root { mode: Mode::Noop }));
}}

#[derive(Clone, Copy)]
enum Mode {
    Noop,
    Header,
    Body,
    HttpCall,
}

struct Root {
    mode: Mode,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.mode = match config.as_slice() {
            b"header" => Mode::Header,
            b"body" => Mode::Body,
            b"httpcall" => Mode::HttpCall,
            b"noop" | b"" => Mode::Noop,
            _ => return false,
        };
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { mode: self.mode }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    mode: Mode,
}

impl Context for Stream {
    fn on_http_call_response(&mut self, _: u32, _: usize, _: usize, _: usize) {
        let status = self.get_http_call_response_header(":status").unwrap_or_default();
        self.add_http_request_header("x-call-status", &status);
        self.resume_http_request();
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        match self.mode {
            Mode::Noop => Action::Continue,
            Mode::Header => {
                self.add_http_request_header("x-bench", "1");
                Action::Continue
            }
            Mode::Body if end_of_stream => Action::Continue,
            // Held until the whole body is here (Envoy's allow_on_headers_stop_iteration).
            Mode::Body => Action::Pause,
            Mode::HttpCall => {
                let headers = vec![(":method", "GET"), (":path", "/callout"), (":authority", "callout")];
                match self.dispatch_http_call("callout", headers, None, vec![], Duration::from_secs(5)) {
                    Ok(_) => Action::Pause,
                    Err(_) => Action::Continue,
                }
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !matches!(self.mode, Mode::Body) {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.add_http_request_header("x-body-length", &body_size.to_string());
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if matches!(self.mode, Mode::Header) {
            self.add_http_response_header("x-bench-response", "1");
        }
        Action::Continue
    }
}
