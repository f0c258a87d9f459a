//! What a service's task does outside itself, behind two traits, as the container path keeps
//! its own side effects behind `container/host.rs`: [`Effects`] (its settings and its
//! record, a launch and its cutting short, an adoption and what is cleared when there is
//! nothing to adopt, who may notify and the checks run in the container) and [`Container`]
//! (the container behind a running service: signalled, killed, its end seen, its cleanup).
//! The state machine (restarts and their backoff, crash loops, a stop's order of signals,
//! a launch cut short, adoption, readiness) is then tested without root against a scripted
//! double (`tests/`), on tokio's paused clock. [`System`] and [`Ctl`](super::instance::Ctl)
//! are the real thing; the root integration tests drive those.
//!
//! The methods that say they block are called on tokio's blocking threads, the others on
//! the task's own.

use super::LaunchError;
use super::instance::Ctl;
use crate::bundle::{Bundle, ConfigExtra};
use crate::container::{self, AdoptError, Ctx, Handover, Mode};
use crate::logs::ContainerStdio;
use crate::oci_runtime::Cancel;
use crate::process::ExitStatus;
use crate::supervisor::checks::Probe;
use crate::supervisor::notify::Identity;
use crate::supervisor::probe;
use crate::supervisor::ready::Check;
use crate::supervisor::record::{self, Record, RecordError};
use crate::supervisor::settings::{self, Settings, SettingsError};
use crate::undo::UndoFailures;
use std::future::Future;
use std::io;
use std::path::Path;

/// What a service's task asks of the world outside it.
pub(crate) trait Effects: Clone + Send + Sync + 'static {
    /// A container of the service, launched or adopted.
    type Container: Container;

    /// The service's settings: `service.json` or `service.yml` in `dir`, or the defaults.
    /// Blocks (the task's start), or is quick enough (a record resumed).
    fn settings(&self, dir: &Path, name: &str) -> Result<Settings, SettingsError>;

    /// Writes the service's record, for a supervisor started after this one.
    fn save_record(&self, r: &Record) -> Result<(), RecordError>;

    /// Removes the service's record (the service is gone for good).
    fn remove_record(&self, name: &str);

    /// Opens the bundle in `dir` and launches its container, detached, with `extra` added
    /// to its config and `stdio` as its output; `cancel` cuts the runtime's commands short.
    /// Blocks.
    fn launch(
        &self,
        dir: &Path,
        extra: ConfigExtra,
        stdio: &ContainerStdio,
        cancel: &Cancel,
    ) -> Result<Self::Container, LaunchError>;

    /// Cuts a launch under way short (see [`Cancel::fire`]). Blocks for a moment.
    fn cut_short(&self, cancel: &Cancel);

    /// Takes over the running container an earlier supervisor recorded. Blocks.
    fn adopt(&self, h: Handover) -> Result<Self::Container, (AdoptError, Handover)>;

    /// Clears what is left of a recorded container that could not be adopted (its
    /// processes, then its recorded cleanup); returns what could not be undone. Blocks.
    fn clear(&self, h: &Handover) -> UndoFailures;

    /// Clears what a launch that an earlier supervisor did not finish left. Blocks.
    fn clear_interrupted_launch(&self, name: &str, dir: &Path) -> UndoFailures;

    /// Who counts as the service on its notify socket, whose init is `pid`.
    fn identity(&self, pid: i32) -> Identity;

    /// One readiness or health check in the namespaces of service `name`, whose init is
    /// `init` (started at `start_time`); dropped, it is killed.
    fn probe(&self, name: &str, init: i32, start_time: Option<u64>, p: Probe) -> Check;
}

/// The container behind a running service.
pub(crate) trait Container: Send + 'static {
    /// How its end is seen.
    type Exit: Exit;

    /// Its init.
    fn pid(&self) -> i32;

    /// What a later supervisor needs to take it over (None before its init's pid is known).
    fn handover(&mut self) -> Option<Handover>;

    /// Starts watching for the end of its init (on the task's runtime).
    fn exit(&self) -> io::Result<Self::Exit>;

    /// Asks it to stop: SIGTERM to its init. Blocks.
    fn terminate(&mut self);

    /// SIGKILL to every process of it. Blocks.
    fn kill(&mut self);

    /// After its init's end: nothing of it may remain, then it is deleted and what was
    /// prepared for it undone; returns what could not be. Blocks.
    fn retire(self, name: &str) -> UndoFailures;
}

/// The end of a container's init, as the task waits for it.
pub(crate) trait Exit: Send + Sync + 'static {
    /// The init's exit status once it has ended; None when it is not ours to know.
    fn exited(&self) -> impl Future<Output = Option<ExitStatus>> + Send;
}

/// The world, for real: the bundle and its settings on disk, the record under the state
/// directory, the container path and the OCI runtime, checks through `nsenter`.
#[derive(Clone)]
pub(crate) struct System {
    ctx: Ctx,
}

impl System {
    pub(crate) fn new(ctx: &Ctx) -> System {
        System { ctx: ctx.clone() }
    }
}

impl Effects for System {
    type Container = Ctl;

    fn settings(&self, dir: &Path, name: &str) -> Result<Settings, SettingsError> {
        settings::load(dir, name)
    }

    fn save_record(&self, r: &Record) -> Result<(), RecordError> {
        record::save(&self.ctx.state_dir, r)
    }

    fn remove_record(&self, name: &str) {
        record::remove(&self.ctx.state_dir, name);
    }

    fn launch(
        &self,
        dir: &Path,
        extra: ConfigExtra,
        stdio: &ContainerStdio,
        cancel: &Cancel,
    ) -> Result<Ctl, LaunchError> {
        let ctx = Ctx {
            runtime: self.ctx.runtime.cancelled_by(cancel),
            ..self.ctx.clone()
        };
        let mut bundle =
            Bundle::open(dir).map_err(|e| LaunchError::Config(crate::error_chain(&e)))?;
        bundle.extra = extra;
        let running = container::launch(&bundle, &ctx, stdio, Mode::Detached).map_err(|e| {
            if e.undo.is_empty() {
                LaunchError::Launch(e.report())
            } else {
                LaunchError::Leftovers(e.report(), e.undo.clone())
            }
        })?;
        Ok(Ctl::ours(running, &self.ctx.runtime))
    }

    fn cut_short(&self, cancel: &Cancel) {
        cancel.fire();
    }

    fn adopt(&self, h: Handover) -> Result<Ctl, (AdoptError, Handover)> {
        container::adopt(&self.ctx.runtime, h).map(|a| Ctl::adopted(a, &self.ctx.runtime))
    }

    fn clear(&self, h: &Handover) -> UndoFailures {
        let rt = &self.ctx.runtime;
        if let Err(pids) = container::kill_remaining(rt, &h.name, h.cgroup_procs.as_deref()) {
            log::error!("{}: processes {pids:?} survive SIGKILL", h.name);
        }
        container::replay(rt, &h.cleanup)
    }

    fn clear_interrupted_launch(&self, name: &str, dir: &Path) -> UndoFailures {
        container::clear_interrupted_launch(&self.ctx.runtime, name, dir)
    }

    fn identity(&self, pid: i32) -> Identity {
        Identity::of(pid)
    }

    fn probe(&self, name: &str, init: i32, start_time: Option<u64>, p: Probe) -> Check {
        Box::pin(probe::run(name.to_string(), init, start_time, p))
    }
}
