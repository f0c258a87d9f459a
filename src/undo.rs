//! A stack of inverse steps. Every mutating step of a container's preparation pushes its own
//! undo right after it succeeds, so a failure part way through undoes exactly what was done,
//! in reverse, and nothing else.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

type Action = Box<dyn FnOnce() -> Result<(), UndoError> + Send>;

/// Why one step could not be undone: the error of the module that undoes it, kept with its
/// type and its causes until the failure is written out (one line, every cause on it).
#[derive(Debug)]
pub(crate) struct UndoError(Box<dyn std::error::Error + Send + Sync>);

impl<E: std::error::Error + Send + Sync + 'static> From<E> for UndoError {
    fn from(e: E) -> Self {
        UndoError(Box::new(e))
    }
}

impl fmt::Display for UndoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::error_chain(&*self.0))
    }
}

struct Step {
    what: String,
    /// Survives a successful run (absolute mounts, cgroups, namespace binds): it is undone
    /// only when the container fails before it starts.
    persistent: bool,
    action: Action,
    replay: Option<Replay>,
}

/// A step written down as data, so a process that did not record it (a supervisor started
/// again after a crash) can still carry it out. Closures die with their process; these are
/// kept in the supervisor's state directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", deny_unknown_fields)]
pub enum Replay {
    /// `RUNTIME delete --force NAME`.
    DeleteContainer { name: String },
    /// A lazy unmount of the mount on `path`, not following a final symlink.
    Unmount { path: PathBuf },
    /// Removes an entry lkinit created, a directory only while it is empty; `path` is the
    /// real path, so any symlink met on the way means it was swapped and is refused.
    Remove { path: PathBuf, dir: bool },
}

/// One step of a cleanup as it is persisted: its description, and how to redo it, when
/// that can be said as data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedStep {
    pub what: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<Replay>,
}

/// Undo steps recorded for one container. Dropped without `rollback`/`cleanup`/`forget`, it
/// rolls back, so an early return leaves the host as it was found (a panic aborts a release
/// build: what it leaves is what a killed lkinit leaves, see
/// `container::clear_interrupted_launch`).
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

    /// Records a step that goes away with the container and that a restarted supervisor
    /// could not redo. Only tests record such steps: lkinit's own are replayable or
    /// persistent.
    #[cfg(test)]
    pub(crate) fn push<F>(&mut self, what: impl Into<String>, action: F)
    where
        F: FnOnce() -> Result<(), UndoError> + Send + 'static,
    {
        self.record(what.into(), false, None, Box::new(action));
    }

    /// Like `push`, for a step that can also be written down as data (see [`Undo::plan`]).
    pub(crate) fn push_replayable<F>(&mut self, what: impl Into<String>, replay: Replay, action: F)
    where
        F: FnOnce() -> Result<(), UndoError> + Send + 'static,
    {
        self.record(what.into(), false, Some(replay), Box::new(action));
    }

    /// Records a step whose effect outlives a successful container on purpose.
    pub(crate) fn push_persistent<F>(&mut self, what: impl Into<String>, action: F)
    where
        F: FnOnce() -> Result<(), UndoError> + Send + 'static,
    {
        self.record(what.into(), true, None, Box::new(action));
    }

    fn record(&mut self, what: String, persistent: bool, replay: Option<Replay>, action: Action) {
        self.steps.push(Step {
            what,
            persistent,
            action,
            replay,
        });
    }

    /// What `cleanup` would do, in its order (newest first), as data that can be persisted.
    /// Steps recorded without a [`Replay`] keep only their description.
    pub(crate) fn plan(&self) -> Vec<PlannedStep> {
        self.steps
            .iter()
            .rev()
            .filter(|s| !s.persistent)
            .map(|s| PlannedStep {
                what: s.what.clone(),
                replay: s.replay.clone(),
            })
            .collect()
    }

    /// Undoes everything, newest first; failures are collected, and later steps still run.
    pub fn rollback(mut self) -> UndoFailures {
        let steps = std::mem::take(&mut self.steps);
        run(steps, |_| true)
    }

    /// The end of a container that ran: undoes what belongs to it, keeps what outlives it.
    pub(crate) fn cleanup(mut self) -> UndoFailures {
        let steps = std::mem::take(&mut self.steps);
        run(steps, |s| !s.persistent)
    }

    /// Keeps everything as it is (a container handed over to another owner).
    pub(crate) fn forget(mut self) {
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
        u.push("broken", || Err(nix::errno::Errno::EBUSY.into()));
        let f = u.rollback();
        assert_eq!(
            f.0,
            vec!["broken: Device or resource busy (os error 16)".to_string()]
        );
        assert_eq!(*log.lock().unwrap(), vec!["first"]);
    }

    #[test]
    fn plan_is_the_cleanup_order_as_data() {
        let (_, make) = recorder();
        let mut u = Undo::new();
        u.push_replayable(
            "unmount /r",
            Replay::Unmount {
                path: PathBuf::from("/r"),
            },
            make("a"),
        );
        u.push_persistent("keep", make("b"));
        u.push("opaque", make("c"));
        let plan = u.plan();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].what, "opaque");
        assert_eq!(plan[0].replay, None);
        assert_eq!(
            plan[1].replay,
            Some(Replay::Unmount {
                path: PathBuf::from("/r")
            })
        );
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(
            json,
            r#"[{"what":"opaque"},{"what":"unmount /r","replay":{"op":"unmount","path":"/r"}}]"#
        );
        let back: Vec<PlannedStep> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, plan);
        u.forget();
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
