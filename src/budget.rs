//! The instruction budget: how many Lua VM instructions one callback (the
//! script's top level at configure time, or one resume of a request hook) may
//! run before it is stopped. Envoy's V8 has no CPU limit, so without it
//! `while true do end` would hold a worker thread forever.
//!
//! A count hook runs every [`STEP`] instructions. Once the budget is spent the
//! hook raises an error at every step; `lua/sandbox.lua` makes `pcall`,
//! `xpcall` and `coroutine.resume` re-raise while the budget is spent, so a
//! script cannot catch the error and carry on.
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use mlua::{HookTriggers, Lua, VmState};

/// Instructions between two hook calls: small enough to stop a loop promptly,
/// large enough that the hook costs nothing measurable.
pub const STEP: u32 = 10_000;

pub struct Budget {
    /// Instructions per callback; 0 = unlimited.
    limit: u64,
    remaining: Cell<u64>,
    exhausted: Cell<bool>,
    /// The error raised when the budget ran out (with the script position).
    message: RefCell<String>,
}

impl Budget {
    pub fn new(limit: u64) -> Rc<Budget> {
        Rc::new(Budget { limit, remaining: Cell::new(limit), exhausted: Cell::new(false), message: RefCell::default() })
    }

    /// A new callback starts with the whole budget.
    pub fn reset(&self) {
        self.remaining.set(self.limit);
        self.exhausted.set(false);
    }

    /// The budget error's message once the budget is spent, for the sandbox's
    /// `pcall` wrappers to raise again (an `xpcall` handler may have replaced
    /// the error value by then).
    pub fn exhausted(&self) -> Option<String> {
        self.exhausted.get().then(|| self.message.borrow().clone())
    }

    /// Installs the count hook on `lua`; threads created later inherit it.
    pub fn install(self: &Rc<Budget>, lua: &Lua) -> mlua::Result<()> {
        if self.limit == 0 {
            return Ok(());
        }
        let budget = self.clone();
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(STEP), move |_, debug| {
            let left = budget.remaining.get().saturating_sub(u64::from(STEP));
            budget.remaining.set(left);
            if left > 0 && !budget.exhausted.get() {
                return Ok(VmState::Continue);
            }
            if !budget.exhausted.replace(true) {
                let source = debug.source();
                let at = match (source.short_src.as_deref(), debug.current_line()) {
                    (Some(src), Some(line)) => format!("{src}:{line}: "),
                    _ => String::new(),
                };
                *budget.message.borrow_mut() = format!(
                    "{at}instruction budget exceeded: more than {} Lua instructions in one callback (instruction_budget)",
                    budget.limit
                );
            }
            Err(mlua::Error::runtime(budget.message.borrow().clone()))
        })
    }
}
