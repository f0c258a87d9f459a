//! Cutting a launch short: the commands that make and start one container, killed when
//! the container is no longer wanted.

use crate::process::{self, PidFd};
use std::sync::{Arc, Mutex};

/// Cuts short the commands that make and start one container (`create`, `start`, `run`),
/// in flight and to come: for a launch that is no longer wanted (its service is being
/// stopped) while a hook holds it up. The commands that clean up are not cut short; they
/// are bounded anyway.
#[derive(Clone, Default)]
pub struct Cancel(Arc<Mutex<CancelState>>);

#[derive(Default)]
struct CancelState {
    fired: bool,
    /// The launch commands running now, pinned by their pidfds.
    running: Vec<PidFd>,
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cancel(fired: {})", self.fired())
    }
}

impl Cancel {
    pub fn new() -> Cancel {
        Cancel::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CancelState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Kills the launch commands running now (with their hooks and the container init
    /// they were making) and refuses the ones to come. Blocks for the walk of their
    /// process trees only.
    pub fn fire(&self) {
        let running = {
            let mut st = self.state();
            st.fired = true;
            std::mem::take(&mut st.running)
        };
        for fd in &running {
            process::kill_tree_of(fd);
        }
    }

    pub fn fired(&self) -> bool {
        self.state().fired
    }

    /// Registers a launch command that has just started; false (and nothing registered)
    /// once fired: the caller kills it.
    pub(super) fn register(&self, fd: &PidFd) -> bool {
        let mut st = self.state();
        if st.fired {
            return false;
        }
        if let Ok(fd) = fd.try_clone() {
            st.running.push(fd);
        }
        true
    }

    pub(super) fn unregister(&self, pid: i32) {
        self.state().running.retain(|fd| fd.pid() != pid);
    }
}
