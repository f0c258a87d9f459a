//! A stack of inverse steps. Every mutating step of a container's preparation pushes its own
//! undo right after it succeeds, so a failure part way through undoes exactly what was done,
//! in reverse, and nothing else.

use std::fmt;

type Action = Box<dyn FnOnce() -> Result<(), String> + Send>;

struct Step {
    what: String,
    /// Survives a successful run (absolute mounts, cgroups, namespace binds): it is undone
    /// only when the container fails before it starts.
    persistent: bool,
    action: Action,
}

/// Undo steps recorded for one container. Dropped without `rollback`/`cleanup`/`forget`, it
/// rolls back, so an early return or a panic still leaves the host as it was found.
#[derive(Default)]
pub struct Undo {
    steps: Vec<Step>,
}

/// What could not be undone; each entry names the step and the reason.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct UndoFailures(pub Vec<String>);

impl fmt::Display for UndoFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.join("; "))
    }
}

impl UndoFailures {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Undo {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a step that goes away with the container.
    pub fn push<F>(&mut self, what: impl Into<String>, action: F)
    where
        F: FnOnce() -> Result<(), String> + Send + 'static,
    {
        self.steps.push(Step {
            what: what.into(),
            persistent: false,
            action: Box::new(action),
        });
    }

    /// Records a step whose effect outlives a successful container on purpose.
    pub fn push_persistent<F>(&mut self, what: impl Into<String>, action: F)
    where
        F: FnOnce() -> Result<(), String> + Send + 'static,
    {
        self.steps.push(Step {
            what: what.into(),
            persistent: true,
            action: Box::new(action),
        });
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Descriptions of the recorded steps, oldest first (for logs and tests).
    pub fn descriptions(&self) -> Vec<&str> {
        self.steps.iter().map(|s| s.what.as_str()).collect()
    }

    /// Moves the steps of `other` on top of these (they were done after ours).
    pub fn append(&mut self, mut other: Undo) {
        self.steps.append(&mut other.steps);
    }

    /// Undoes everything, newest first; failures are collected, and later steps still run.
    pub fn rollback(mut self) -> UndoFailures {
        let steps = std::mem::take(&mut self.steps);
        run(steps, |_| true)
    }

    /// The end of a container that ran: undoes what belongs to it, keeps what outlives it.
    pub fn cleanup(mut self) -> UndoFailures {
        let steps = std::mem::take(&mut self.steps);
        run(steps, |s| !s.persistent)
    }

    /// Keeps everything as it is (a container handed over to another owner).
    pub fn forget(mut self) {
        self.steps.clear();
    }
}

fn run(steps: Vec<Step>, select: impl Fn(&Step) -> bool) -> UndoFailures {
    let mut failures = Vec::new();
    for step in steps.into_iter().rev() {
        if !select(&step) {
            continue;
        }
        log::debug!("undo: {}", step.what);
        if let Err(e) = (step.action)() {
            log::warn!("undo: {}: {e}", step.what);
            failures.push(format!("{}: {e}", step.what));
        }
    }
    UndoFailures(failures)
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.steps.is_empty() {
            let steps = std::mem::take(&mut self.steps);
            let _ = run(steps, |_| true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn recorder() -> (Arc<Mutex<Vec<String>>>, impl Fn(&str) -> Action) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let make = move |name: &str| -> Action {
            let l = l.clone();
            let name = name.to_string();
            Box::new(move || {
                l.lock().unwrap().push(name);
                Ok(())
            })
        };
        (log, make)
    }

    #[test]
    fn rollback_is_reverse_and_complete() {
        let (log, make) = recorder();
        let mut u = Undo::new();
        u.push("a", make("a"));
        u.push_persistent("b", make("b"));
        u.push("c", make("c"));
        assert!(u.rollback().is_empty());
        assert_eq!(*log.lock().unwrap(), vec!["c", "b", "a"]);
    }

    #[test]
    fn cleanup_keeps_persistent_steps() {
        let (log, make) = recorder();
        let mut u = Undo::new();
        u.push("a", make("a"));
        u.push_persistent("b", make("b"));
        u.push("c", make("c"));
        u.cleanup();
        assert_eq!(*log.lock().unwrap(), vec!["c", "a"]);
    }

    #[test]
    fn failures_are_collected_and_later_steps_still_run() {
        let (log, make) = recorder();
        let mut u = Undo::new();
        u.push("first", make("first"));
        u.push("broken", || Err("EBUSY".to_string()));
        let f = u.rollback();
        assert_eq!(f.0, vec!["broken: EBUSY".to_string()]);
        assert_eq!(*log.lock().unwrap(), vec!["first"]);
    }

    #[test]
    fn drop_rolls_back_forget_does_not() {
        let (log, make) = recorder();
        {
            let mut u = Undo::new();
            u.push("dropped", make("dropped"));
        }
        let mut u = Undo::new();
        u.push("forgotten", make("forgotten"));
        u.forget();
        assert_eq!(*log.lock().unwrap(), vec!["dropped"]);
    }
}
