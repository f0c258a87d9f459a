//! What the supervisor, its socket and each service's task share: the supervisor's state,
//! a service's handle, its commands and status, and how its task begins.

use super::protocol::{CheckInfo, ServiceInfo, State};
use super::ready::CheckReport;
use super::record::Record;
use crate::container::Ctx;
use crate::logs::Memlogd;
use crate::process::ExitStatus;
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
pub type Reply = oneshot::Sender<Result<String, String>>;

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
