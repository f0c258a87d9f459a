//! What the supervisor, its socket and each service's task share: the supervisor's state,
//! a service's handle, its commands and status, and how its task begins.

use super::protocol::{CheckInfo, ServiceInfo, State};
use super::ready::CheckReport;
use super::record::Record;
use crate::container::Ctx;
use crate::logs::Memlogd;
use crate::process::ExitStatus;
use crate::undo::UndoFailures;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};

/// What the whole supervisor shares with its services and its socket.
pub struct Sup {
    pub ctx: Ctx,
    /// The directory of service bundles.
    pub path: PathBuf,
    pub log_dir: PathBuf,
    /// Where service output goes while memlogd runs.
    pub memlogd: Memlogd,
    pub services: Mutex<BTreeMap<String, Handle>>,
    /// Orders starts, for "last started first" at shutdown.
    pub(super) seq: AtomicU64,
}

impl Sup {
    pub fn new(ctx: Ctx, path: PathBuf, log_dir: PathBuf, memlogd: Memlogd) -> Sup {
        Sup {
            ctx,
            path,
            log_dir,
            memlogd,
            services: Mutex::new(BTreeMap::new()),
            seq: AtomicU64::new(0),
        }
    }

    pub fn services(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Handle>> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn state_dir(&self) -> &Path {
        &self.ctx.state_dir
    }
}

/// The supervisor's hold on one service task.
#[derive(Clone)]
pub struct Handle {
    pub tx: mpsc::UnboundedSender<Cmd>,
    pub status: watch::Receiver<Status>,
    pub out_log: PathBuf,
    pub err_log: PathBuf,
}

/// The answer to a command: what was done, in words, or why not.
pub type Reply = oneshot::Sender<Result<String, ServiceError>>;

/// Why a service's task did not do what it was asked; its Display is what the client is
/// told.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    #[error("{name} is already running (pid {pid})")]
    Running { name: String, pid: i32 },
    #[error("{name} is being started already")]
    Starting { name: String },
    /// Its launch failed (the reason says where and why).
    #[error("{name}: {reason}")]
    Launch { name: String, reason: String },
    /// A stop, restart or shutdown came first.
    #[error("{name}: its start was cut short: {reason}")]
    CutShort { name: String, reason: String },
    /// Its processes ended but its cleanup left `left` behind: it is failed.
    #[error(
        "{name}: its processes are gone ({}), but it is not stopped: cleanup failed: {left}",
        exit_words(*.exit)
    )]
    NotCleanedUp {
        name: String,
        exit: Option<ExitStatus>,
        left: UndoFailures,
    },
    /// A launch cut short whose rollback left `left` behind: it is failed.
    #[error("{name}: it is not stopped: cleanup failed: {left}")]
    LeftBehind { name: String, left: UndoFailures },
}

/// An exit in words, `exit status unknown` when it is not ours to know.
pub(super) fn exit_words(st: Option<ExitStatus>) -> String {
    match st {
        Some(st) => st.to_string(),
        None => "exit status unknown".into(),
    }
}

pub enum Cmd {
    Start(Reply),
    Stop(Reply),
    Restart(Reply),
    /// Stop for good: `signalled` once SIGTERM is sent, `done` once it is all gone.
    Shutdown {
        signalled: oneshot::Sender<()>,
        done: oneshot::Sender<()>,
    },
}

/// What the task publishes about itself.
#[derive(Debug, Clone)]
pub struct Status {
    pub name: String,
    pub state: State,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub exit: Option<ExitStatus>,
    /// The last exit of an adopted init, whose status is not ours to know.
    pub exit_unknown: bool,
    pub since: SystemTime,
    pub reason: Option<String>,
    pub adopted: bool,
    /// Start time and order of the current container, while there is one.
    pub started: Option<(SystemTime, u64)>,
    /// Ready at least once, or down: services that start `after` it may go.
    pub settled: bool,
    /// The last `STATUS=` text it sent (this run).
    pub notify_status: Option<String>,
    /// Its last readiness or health check (this run).
    pub check: Option<CheckReport>,
}

impl Status {
    pub fn info(&self) -> ServiceInfo {
        let (exit_code, exit) = match (self.exit, self.exit_unknown) {
            (_, true) => (
                None,
                Some(
                    "exit status unknown (the init was adopted from an earlier supervisor)".into(),
                ),
            ),
            (Some(st), false) => (Some(st.code()), Some(st.to_string())),
            (None, false) => (None, None),
        };
        ServiceInfo {
            name: self.name.clone(),
            state: self.state,
            pid: self.pid,
            restarts: self.restarts,
            exit_code,
            exit,
            since: unix_secs(self.since),
            reason: self.reason.clone(),
            adopted: self.adopted,
            status_text: self.notify_status.clone(),
            check: self.check.as_ref().map(|c| CheckInfo {
                kind: c.kind.as_str().to_string(),
                ok: c.ok,
                at: unix_secs(c.at),
                took_ms: u64::try_from(c.took.as_millis()).unwrap_or(u64::MAX),
                result: c.summary.clone(),
                output: c.output.clone(),
                failures: c.failures,
            }),
        }
    }
}

pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

pub(super) fn from_unix_secs(s: f64) -> SystemTime {
    Duration::try_from_secs_f64(s)
        .ok()
        .and_then(|d| SystemTime::UNIX_EPOCH.checked_add(d))
        .unwrap_or_else(SystemTime::now)
}

/// How a service task begins.
pub enum Boot {
    /// Start it, once the services it starts `after` are ready, or `within` has passed.
    Start {
        after: Vec<watch::Receiver<Status>>,
        within: Duration,
    },
    /// Take over from what an earlier supervisor recorded.
    Record(Box<Record>),
    /// Leave it down until started (a bundle added after the supervisor started).
    Idle,
    /// It cannot be started as it is (its start order is broken).
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client is told, in these very words.
    #[test]
    fn service_errors_in_words() {
        let name = || "web".to_string();
        let left = UndoFailures(vec!["unmount /x: EBUSY".into(), "delete web: busy".into()]);
        let cases = [
            (
                ServiceError::Running {
                    name: name(),
                    pid: 42,
                },
                "web is already running (pid 42)",
            ),
            (
                ServiceError::Starting { name: name() },
                "web is being started already",
            ),
            (
                ServiceError::Launch {
                    name: name(),
                    reason: "mounts: EPERM".into(),
                },
                "web: mounts: EPERM",
            ),
            (
                ServiceError::CutShort {
                    name: name(),
                    reason: "create: killed".into(),
                },
                "web: its start was cut short: create: killed",
            ),
            (
                ServiceError::NotCleanedUp {
                    name: name(),
                    exit: Some(ExitStatus::Signal(9)),
                    left: left.clone(),
                },
                "web: its processes are gone (exit code 137 (killed by SIGKILL)), but it is not \
                 stopped: cleanup failed: unmount /x: EBUSY; delete web: busy",
            ),
            (
                ServiceError::NotCleanedUp {
                    name: name(),
                    exit: None,
                    left: left.clone(),
                },
                "web: its processes are gone (exit status unknown), but it is not stopped: \
                 cleanup failed: unmount /x: EBUSY; delete web: busy",
            ),
            (
                ServiceError::LeftBehind { name: name(), left },
                "web: it is not stopped: cleanup failed: unmount /x: EBUSY; delete web: busy",
            ),
        ];
        for (e, words) in cases {
            assert_eq!(e.to_string(), words);
        }
    }
}
