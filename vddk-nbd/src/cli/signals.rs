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
        let term = Termination {
            state: Arc::default(),
        };
        let state = term.state.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let first = Termination {
                        state: state.clone(),
                    }
                    .fire();
                    if !first {
                        log::warn!("signal {sig} during shutdown: exiting without cleaning up");
                        std::process::exit(1);
                    }
                    log::debug!("signal {sig}: shutting down (flushing and closing the disk)");
                }
            })
            .map_err(|e| format!("cannot start the signal thread: {e}"))?;
        Ok(term)
    }

    /// Starts the shutdown as a signal would; false if it already began.
    pub fn fire(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.signalled {
            return false;
        }
        s.signalled = true;
        let action = s.action.take();
        drop(s);
        if let Some(f) = action {
            f();
        }
        true
    }

    /// Shuts down when the process that started us goes away (its
    /// children are then re-parented, which changes our parent id).
    pub fn exit_with_parent(&self) -> Result<(), String> {
        let parent = std::os::unix::process::parent_id();
        let term = self.clone();
        std::thread::Builder::new()
            .name("parent-watch".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_millis(250));
                if std::os::unix::process::parent_id() != parent {
                    log::debug!("parent process {parent} exited: shutting down");
                    term.fire();
                    return;
                }
            })
            .map(drop)
            .map_err(|e| format!("--exit-with-parent: cannot start the watching thread: {e}"))
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
