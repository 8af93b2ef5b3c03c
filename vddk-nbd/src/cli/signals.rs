//! SIGINT, SIGTERM and SIGQUIT start an orderly shutdown; a second one
//! while that is under way exits at once. SIGPIPE is already ignored by
//! the Rust runtime, so a vanished client shows up as a write error.
//!
//! The handlers go in before VDDK starts, so a signal during a slow
//! start-up (a remote connection) is not fatal: it is remembered, and the
//! server shuts down as soon as it exists, closing what was opened.

use std::sync::{Arc, Mutex, PoisonError};

use signal_hook::consts::{SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::Signals;

type Action = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    signalled: bool,
    action: Option<Action>,
}

/// The installed handlers.
#[derive(Clone)]
pub struct Termination {
    state: Arc<Mutex<State>>,
}

impl Termination {
    /// Installs the handlers and the thread that acts on them.
    pub fn install() -> Result<Termination, String> {
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGQUIT])
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let term = Termination { state: Arc::default() };
        let state = term.state.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let mut s = state.lock().unwrap_or_else(PoisonError::into_inner);
                    if s.signalled {
                        log::warn!("signal {sig} during shutdown: exiting without cleaning up");
                        std::process::exit(1);
                    }
                    s.signalled = true;
                    let action = s.action.take();
                    drop(s);
                    log::debug!("signal {sig}: shutting down (flushing and closing the disk)");
                    if let Some(f) = action {
                        f();
                    }
                }
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
        Ok(term)
    }

    /// Sets what a signal does; runs it now if a signal already came.
    pub fn on_signal<F: FnOnce() + Send + 'static>(&self, f: F) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.signalled {
            drop(s);
            f();
        } else {
            s.action = Some(Box::new(f));
        }
    }
}
