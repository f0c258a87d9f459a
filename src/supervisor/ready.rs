//! Watching a running service: is it ready yet, and does it stay healthy.
//!
//! [`Tracker`] is the logic, with no clock or process of its own: what readiness waits for,
//! by when, which check is due, when a watchdog expires, and when a service has failed.
//! [`start`] drives it for one running container in a task of its own: it reads the
//! notify socket and the readiness FIFO, runs the checks one at a time, and tells the
//! service's task what happened ([`Event`]); the service's task acts on it (a failure
//! goes down the normal path: a stop, then the restart policy). Dropping the [`Monitor`]
//! ends the task, killing a check in flight.

use super::checks::{Health, Probe, Ready};
use super::notify::{self, Identity, NotifySocket, Received, Sender};
use super::probe::Outcome;
use super::service::secs;
use super::settings::Settings;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// What is watched, from the service's settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub ready: Option<Ready>,
    pub ready_timeout: Duration,
    pub health: Option<Health>,
}

impl Plan {
    pub fn of(s: &Settings) -> Plan {
        Plan {
            ready: s.ready.clone(),
            ready_timeout: s.ready_timeout,
            health: s.health.clone(),
        }
    }

    /// Whether the container gets a `NOTIFY_SOCKET`.
    pub fn wants_notify(&self) -> bool {
        self.ready == Some(Ready::Notify) || self.watchdog().is_some()
    }

    pub fn watchdog(&self) -> Option<Duration> {
        self.health.as_ref().and_then(|h| h.watchdog)
    }

    /// Whether anything is watched at all (no task is needed otherwise).
    pub fn watches(&self) -> bool {
        self.ready.is_some() || self.health.is_some()
    }

    /// What `status` says while the service is not ready.
    pub fn waiting(&self) -> String {
        match &self.ready {
            Some(r) => format!(
                "not ready yet: waiting for {} (at most {})",
                r.describe(),
                secs(self.ready_timeout)
            ),
            None => "not ready yet".into(),
        }
    }
}

/// Which check a probe is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ready,
    Health,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ready => "readiness",
            Kind::Health => "health",
        }
    }
}

/// What the tracker concludes.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Ready,
    /// The service has failed (not ready in time, unhealthy, its watchdog expired): why.
    Fail(String),
}

/// The readiness and health of one running container.
#[derive(Debug)]
pub struct Tracker {
    plan: Plan,
    ready: bool,
    /// While not ready: when the wait ends.
    ready_by: Instant,
    /// It said it is stopping: no more checks, no watchdog.
    stopping: bool,
    /// Health checks failed in a row.
    failures: u32,
    /// What the last failed check said.
    last: Option<String>,
    /// When the next check starts; None while one runs, or when none is due.
    next_probe: Option<Instant>,
    watchdog_by: Option<Instant>,
}

impl Tracker {
    /// A container started at `now`; `ready` when it is known to be ready already (it has
    /// nothing to wait for, or an earlier supervisor saw it ready).
    pub fn new(plan: Plan, now: Instant, ready: bool) -> Tracker {
        let ready_by = now + plan.ready_timeout;
        let first_probe = matches!(plan.ready, Some(Ready::Exec(_))).then_some(now);
        let mut t = Tracker {
            plan,
            ready: false,
            ready_by,
            stopping: false,
            failures: 0,
            last: None,
            next_probe: first_probe,
            watchdog_by: None,
        };
        if ready || t.plan.ready.is_none() {
            t.become_ready(now);
        }
        t
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    fn become_ready(&mut self, now: Instant) {
        self.ready = true;
        let health = self.plan.health.as_ref();
        self.next_probe = health
            .and_then(|h| h.exec.as_ref())
            .map(|p| now + p.interval);
        self.watchdog_by = health.and_then(|h| h.watchdog).map(|w| now + w);
    }

    /// `READY=1`, or a line on the readiness descriptor: counts when that is what
    /// readiness waits for.
    pub fn on_signal(&mut self, now: Instant) -> Option<Verdict> {
        if self.ready || !matches!(self.plan.ready, Some(Ready::Notify | Ready::Fd(_))) {
            return None;
        }
        self.become_ready(now);
        Some(Verdict::Ready)
    }

    /// `EXTEND_TIMEOUT_USEC`: the wait for readiness lasts at least `by` from now.
    pub fn on_extend(&mut self, now: Instant, by: Duration) {
        if !self.ready {
            let by = by.min(Duration::from_secs_f64(super::checks::MAX_SECONDS));
            self.ready_by = self.ready_by.max(now + by);
        }
    }

    /// `STOPPING=1`: it is on its way out; its end is an exit like any other.
    pub fn on_stopping(&mut self) {
        self.stopping = true;
        self.next_probe = None;
        self.watchdog_by = None;
    }

    /// `WATCHDOG=1`.
    pub fn on_watchdog(&mut self, now: Instant) {
        if let (Some(w), Some(_)) = (self.plan.watchdog(), self.watchdog_by) {
            self.watchdog_by = Some(now + w);
        }
    }

    /// `WATCHDOG=trigger`: the service asks to be handled as hung (when a watchdog is set).
    pub fn on_watchdog_trigger(&mut self) -> Option<Verdict> {
        if self.plan.watchdog().is_none() || self.stopping {
            return None;
        }
        Some(Verdict::Fail(
            "watchdog: it asked to be restarted (WATCHDOG=trigger)".into(),
        ))
    }

    /// The check to start now, if one is due; it runs until [`Tracker::on_probe`].
    pub fn probe_due(&mut self, now: Instant) -> Option<(Kind, Probe)> {
        if self.stopping || self.next_probe.is_none_or(|t| t > now) {
            return None;
        }
        let (kind, probe) = if self.ready {
            (Kind::Health, self.plan.health.as_ref()?.exec.clone()?)
        } else {
            match &self.plan.ready {
                Some(Ready::Exec(p)) => (Kind::Ready, p.clone()),
                _ => return None,
            }
        };
        self.next_probe = None;
        Some((kind, probe))
    }

    /// A check of `kind` ended at `now`.
    pub fn on_probe(
        &mut self,
        kind: Kind,
        now: Instant,
        ok: bool,
        summary: &str,
    ) -> Option<Verdict> {
        match kind {
            Kind::Ready => {
                if self.ready {
                    return None;
                }
                if ok {
                    self.become_ready(now);
                    return Some(Verdict::Ready);
                }
                self.last = Some(summary.to_string());
                if let Some(Ready::Exec(p)) = &self.plan.ready {
                    self.next_probe = Some(now + p.interval);
                }
                None
            }
            Kind::Health => {
                let health = self.plan.health.as_ref()?;
                let probe = health.exec.as_ref()?;
                if !self.ready || self.stopping {
                    return None;
                }
                if ok {
                    self.failures = 0;
                } else {
                    self.failures += 1;
                    self.last = Some(summary.to_string());
                    if self.failures >= health.retries {
                        return Some(Verdict::Fail(format!(
                            "health check failed {} time{} in a row: {summary}",
                            self.failures,
                            if self.failures == 1 { "" } else { "s" }
                        )));
                    }
                }
                self.next_probe = Some(now + probe.interval);
                None
            }
        }
    }

    /// Health checks failed in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The next instant at which [`Tracker::on_time`] or [`Tracker::probe_due`] has
    /// something to say.
    pub fn deadline(&self) -> Option<Instant> {
        let ready_by = (!self.ready).then_some(self.ready_by);
        [ready_by, self.next_probe, self.watchdog_by]
            .into_iter()
            .flatten()
            .min()
    }

    /// What time alone decides at `now`: readiness not reached in time, a watchdog
    /// without its ping.
    pub fn on_time(&mut self, now: Instant) -> Option<Verdict> {
        if !self.ready && now >= self.ready_by {
            let waited = secs(self.plan.ready_timeout);
            let why = match (&self.plan.ready, &self.last) {
                (Some(Ready::Notify), _) => "no READY=1 on its NOTIFY_SOCKET".to_string(),
                (Some(Ready::Fd(n)), _) => format!("no line on its descriptor {n}"),
                (Some(Ready::Exec(p)), Some(last)) => {
                    format!("`{}` did not succeed; last: {last}", p.command_line())
                }
                (Some(Ready::Exec(p)), None) => format!("`{}` never ended", p.command_line()),
                (None, _) => String::new(),
            };
            return Some(Verdict::Fail(format!("not ready within {waited} ({why})")));
        }
        if let (Some(by), Some(w)) = (self.watchdog_by, self.plan.watchdog())
            && now >= by
            && !self.stopping
        {
            return Some(Verdict::Fail(format!(
                "watchdog: no WATCHDOG=1 within {}",
                secs(w)
            )));
        }
        None
    }
}

/// The last check, for `status`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub kind: Kind,
    pub ok: bool,
    /// When it ended.
    pub at: SystemTime,
    pub took: Duration,
    pub summary: String,
    pub output: String,
    /// Health checks failed in a row, this one included.
    pub failures: u32,
}

/// What the monitor tells the service's task.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Ready,
    /// `STATUS=` text.
    Text(String),
    /// `STOPPING=1`.
    Stopping,
    Check(CheckReport),
    /// It failed (why); the monitor has ended.
    Fail(String),
}

/// A service's readiness FIFO (`ready: {fd: N}`): the container holds it as descriptor N
/// and writes a line when it is ready. A FIFO rather than a pipe, held read-write on both
/// sides: a container that writes while no supervisor runs neither blocks on a reader
/// that is gone nor dies of SIGPIPE, and the next supervisor finds the line waiting.
pub struct ReadyFifo {
    fd: AsyncFd<File>,
    path: PathBuf,
    made: (u64, u64),
}

pub fn fifo_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ready")
}

/// Removes the readiness FIFO of service `name`, once its container is gone.
pub fn remove_fifo(state_dir: &Path, name: &str) {
    let _ = std::fs::remove_file(fifo_dir(state_dir).join(name));
}

fn open_fifo(path: &Path, nonblock: bool) -> io::Result<File> {
    let mut flags = libc::O_NOFOLLOW;
    if nonblock {
        flags |= libc::O_NONBLOCK;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
}

impl ReadyFifo {
    /// Makes a fresh FIFO for service `name`; returns it and the container's end.
    pub fn create(state_dir: &Path, name: &str) -> io::Result<(ReadyFifo, OwnedFd)> {
        let dir = fifo_dir(state_dir);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(io::Error::from)?;
        let fifo = Self::open(path)?;
        let theirs = open_fifo(&fifo.path, false)?;
        Ok((fifo, theirs.into()))
    }

    /// The FIFO an earlier supervisor made for service `name` (it still runs).
    pub fn reopen(state_dir: &Path, name: &str) -> io::Result<ReadyFifo> {
        let path = fifo_dir(state_dir).join(name);
        let meta = std::fs::symlink_metadata(&path)?;
        if !meta.file_type().is_fifo() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a FIFO", path.display()),
            ));
        }
        Self::open(path)
    }

    fn open(path: PathBuf) -> io::Result<ReadyFifo> {
        let f = open_fifo(&path, true)?;
        let meta = f.metadata()?;
        // SAFETY: the File owns a valid descriptor for as long as the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register_with_interest(f, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(ReadyFifo {
            fd,
            path,
            made: (meta.dev(), meta.ino()),
        })
    }

    /// Returns once a newline has been written (what comes before it says nothing).
    pub async fn line(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 512];
        loop {
            let mut guard = self.fd.readable_mut().await?;
            match guard.try_io(|f| f.get_mut().read(&mut buf)) {
                Ok(Ok(n)) if buf[..n].contains(&b'\n') => return Ok(()),
                // Held read-write here, so there is always a writer: no end of file.
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

impl Drop for ReadyFifo {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.made) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What a monitor reads besides running checks.
#[derive(Default)]
pub struct Inputs {
    pub notify: Option<NotifySocket>,
    pub fifo: Option<ReadyFifo>,
}

/// Events a monitor may have queued for the service's task: past this it waits, and so
/// stops reading the notify socket, whose senders then wait in turn.
const QUEUE: usize = 16;

/// The monitor of one running container; dropping it ends it.
pub struct Monitor {
    pub events: mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A check under way (see [`probe::run`](super::probe::run)); dropped, it is killed.
pub type Check = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// What starts a check in the container watched.
pub type Prober = Box<dyn Fn(Probe) -> Check + Send + Sync>;

/// Now, on tokio's clock: the real one, or the paused one of a test.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Starts watching the container of service `name` whose init `ident` names, its checks
/// started by `prober`, ready already or not.
pub fn start(
    name: &str,
    plan: Plan,
    ident: Identity,
    prober: Prober,
    inputs: Inputs,
    ready: bool,
) -> Monitor {
    let (tx, events) = mpsc::channel(QUEUE);
    let tracker = Tracker::new(plan, now(), ready);
    let w = Watch {
        name: name.to_string(),
        tracker,
        ident,
        prober,
        inputs,
        tx,
    };
    Monitor {
        events,
        task: tokio::spawn(w.run()),
    }
}

struct Watch {
    name: String,
    tracker: Tracker,
    ident: Identity,
    prober: Prober,
    inputs: Inputs,
    tx: mpsc::Sender<Event>,
}

enum Input {
    Notify(io::Result<Received>),
    Line(io::Result<()>),
    Probe(Outcome),
    Time,
}

impl Watch {
    /// Sends `ev`; false once the service's task no longer listens.
    async fn send(&self, ev: Event) -> bool {
        self.tx.send(ev).await.is_ok()
    }

    async fn run(mut self) {
        let mut check: Option<(Kind, Check)> = None;
        loop {
            if check.is_none()
                && let Some((kind, p)) = self.tracker.probe_due(now())
            {
                check = Some((kind, (self.prober)(p)));
            }
            let deadline = self.tracker.deadline();
            let input = {
                let Inputs { notify, fifo } = &mut self.inputs;
                tokio::select! {
                    r = async {
                        match notify.as_ref() {
                            Some(n) => n.recv().await,
                            None => std::future::pending().await,
                        }
                    } => Input::Notify(r),
                    r = async {
                        match fifo.as_mut() {
                            // Drained also once ready: a service that writes again must not
                            // block on a full pipe.
                            Some(f) => f.line().await,
                            None => std::future::pending().await,
                        }
                    } => Input::Line(r),
                    o = async {
                        match check.as_mut() {
                            Some((_, fut)) => fut.await,
                            None => std::future::pending().await,
                        }
                    } => Input::Probe(o),
                    () = async {
                        match deadline {
                            Some(at) => tokio::time::sleep_until(at.into()).await,
                            None => std::future::pending().await,
                        }
                    } => Input::Time,
                }
            };
            let now = now();
            let verdict = match input {
                Input::Notify(Ok(r)) => self.received(r, now).await,
                Input::Notify(Err(e)) => {
                    log::error!(
                        "{}: its notify socket failed: {e}; notifications are no longer read",
                        self.name
                    );
                    self.inputs.notify = None;
                    None
                }
                Input::Line(Ok(())) => self.tracker.on_signal(now),
                Input::Line(Err(e)) => {
                    log::error!("{}: its readiness FIFO failed: {e}", self.name);
                    self.inputs.fifo = None;
                    None
                }
                Input::Probe(o) => {
                    let Some((kind, _)) = check.take() else {
                        continue;
                    };
                    let v = self.tracker.on_probe(kind, now, o.ok, &o.summary);
                    let report = CheckReport {
                        kind,
                        ok: o.ok,
                        at: SystemTime::now(),
                        took: o.took,
                        summary: o.summary,
                        output: o.output,
                        failures: self.tracker.failures(),
                    };
                    if !self.send(Event::Check(report)).await {
                        return;
                    }
                    v
                }
                Input::Time => self.tracker.on_time(now),
            };
            let (ev, last) = match verdict {
                None => continue,
                Some(Verdict::Ready) => (Event::Ready, false),
                Some(Verdict::Fail(why)) => (Event::Fail(why), true),
            };
            if !self.send(ev).await || last {
                return;
            }
        }
    }

    /// A datagram on the notify socket: acted on if its sender is the service's.
    async fn received(&mut self, r: Received, now: Instant) -> Option<Verdict> {
        let fault = format!("notify {}", self.name);
        let (pid, data) = match r {
            Received::Message { pid, data } => (pid, data),
            Received::TooLong { pid, len } => {
                super::throttle::log(
                    log::Level::Warn,
                    &fault,
                    format_args!(
                        "{}: ignoring a notification of {len} bytes from pid {} (at most {})",
                        self.name,
                        pid.map_or_else(|| "?".into(), |p| p.to_string()),
                        notify::MAX_MESSAGE
                    ),
                );
                return None;
            }
        };
        let sender = match pid {
            Some(p) => self.ident.sender(p),
            None => Sender::Other,
        };
        if sender != Sender::Service {
            let who = match (pid, sender) {
                (None, _) => "a sender the kernel did not name".to_string(),
                (Some(p), Sender::Gone) => {
                    format!("pid {p}, which ended before it could be looked at")
                }
                (Some(p), _) => format!("pid {p}, which is not one of its processes"),
            };
            super::throttle::log(
                log::Level::Warn,
                &fault,
                format_args!(
                    "{}: ignoring a notification from {who}: {}",
                    self.name,
                    notify::printable(&data)
                ),
            );
            return None;
        }
        let m = match notify::parse(&data) {
            Ok(m) => m,
            Err(why) => {
                super::throttle::log(
                    log::Level::Warn,
                    &fault,
                    format_args!("{}: ignoring a notification: {why}", self.name),
                );
                return None;
            }
        };
        if let Some(text) = m.status {
            self.send(Event::Text(text)).await;
        }
        if let Some(by) = m.extend {
            self.tracker.on_extend(now, by);
        }
        if m.watchdog {
            self.tracker.on_watchdog(now);
        }
        if m.stopping {
            self.tracker.on_stopping();
            self.send(Event::Stopping).await;
        }
        if m.watchdog_trigger
            && let Some(v) = self.tracker.on_watchdog_trigger()
        {
            return Some(v);
        }
        if m.ready {
            return self.tracker.on_signal(now);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(interval: u64) -> Probe {
        Probe {
            cmd: vec!["check".into()],
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(1),
        }
    }

    fn plan(ready: Option<Ready>, health: Option<Health>) -> Plan {
        Plan {
            ready,
            ready_timeout: Duration::from_secs(10),
            health,
        }
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Without `ready:` a service is ready when it starts; with one it waits.
    #[test]
    fn ready_at_once_or_not() {
        let t0 = Instant::now();
        let t = Tracker::new(plan(None, None), t0, false);
        assert!(t.is_ready());
        assert_eq!(t.deadline(), None);
        let t = Tracker::new(plan(Some(Ready::Notify), None), t0, false);
        assert!(!t.is_ready());
        assert_eq!(t.deadline(), Some(t0 + s(10)));
        // An adopted service seen ready before.
        assert!(Tracker::new(plan(Some(Ready::Notify), None), t0, true).is_ready());
    }

    #[test]
    fn notify_and_fd_readiness() {
        let t0 = Instant::now();
        for r in [Ready::Notify, Ready::Fd(3)] {
            let mut t = Tracker::new(plan(Some(r), None), t0, false);
            assert_eq!(t.on_time(t0 + s(9)), None);
            assert_eq!(t.on_signal(t0 + s(2)), Some(Verdict::Ready));
            assert!(t.is_ready());
            // Once is enough; later ones say nothing.
            assert_eq!(t.on_signal(t0 + s(3)), None);
            assert_eq!(t.on_time(t0 + s(60)), None);
        }
        // READY=1 means nothing to a service whose readiness is a probe's.
        let mut t = Tracker::new(plan(Some(Ready::Exec(probe(1))), None), t0, false);
        assert_eq!(t.on_signal(t0), None);
        assert!(!t.is_ready());
    }

    #[test]
    fn readiness_times_out_with_a_reason() {
        let t0 = Instant::now();
        let mut t = Tracker::new(plan(Some(Ready::Notify), None), t0, false);
        match t.on_time(t0 + s(10)) {
            Some(Verdict::Fail(why)) => {
                assert_eq!(
                    why,
                    "not ready within 10s (no READY=1 on its NOTIFY_SOCKET)"
                );
            }
            v => panic!("{v:?}"),
        }
        // EXTEND_TIMEOUT_USEC pushes the end out, never in.
        let mut t = Tracker::new(plan(Some(Ready::Fd(4)), None), t0, false);
        t.on_extend(t0 + s(5), s(20));
        assert_eq!(t.deadline(), Some(t0 + s(25)));
        t.on_extend(t0 + s(6), s(1));
        assert_eq!(t.deadline(), Some(t0 + s(25)));
        assert_eq!(t.on_time(t0 + s(24)), None);
        match t.on_time(t0 + s(25)) {
            Some(Verdict::Fail(why)) => assert!(why.contains("no line on its descriptor 4")),
            v => panic!("{v:?}"),
        }
    }

    /// A readiness probe runs at once, then `interval` after each end, one at a time,
    /// until one succeeds; its failures count for nothing but the last word.
    #[test]
    fn readiness_probe() {
        let t0 = Instant::now();
        let mut t = Tracker::new(plan(Some(Ready::Exec(probe(2))), None), t0, false);
        assert_eq!(t.probe_due(t0).map(|p| p.0), Some(Kind::Ready));
        // One at a time: nothing more is due while it runs.
        assert_eq!(t.probe_due(t0 + s(5)), None);
        assert_eq!(
            t.on_probe(Kind::Ready, t0 + s(1), false, "exit code 1"),
            None
        );
        assert_eq!(t.deadline(), Some(t0 + s(3)));
        assert_eq!(t.probe_due(t0 + s(2)), None);
        assert!(t.probe_due(t0 + s(3)).is_some());
        assert_eq!(
            t.on_probe(Kind::Ready, t0 + s(4), false, "exit code 2"),
            None
        );
        match t.on_time(t0 + s(10)) {
            Some(Verdict::Fail(why)) => {
                assert!(
                    why.contains("`check` did not succeed; last: exit code 2"),
                    "{why}"
                );
            }
            v => panic!("{v:?}"),
        }
        let mut t = Tracker::new(plan(Some(Ready::Exec(probe(2))), None), t0, false);
        t.probe_due(t0);
        assert_eq!(
            t.on_probe(Kind::Ready, t0 + s(1), true, "exit code 0"),
            Some(Verdict::Ready)
        );
        assert_eq!(t.deadline(), None, "no health check: nothing more to do");
    }

    fn health(retries: u32, watchdog: Option<u64>) -> Health {
        Health {
            exec: Some(probe(3)),
            retries,
            watchdog: watchdog.map(s),
        }
    }

    /// Health checks start once ready, `interval` apart; `retries` failures in a row fail
    /// the service, a success in between starts the count again.
    #[test]
    fn health_checks_count_failures_in_a_row() {
        let t0 = Instant::now();
        let mut t = Tracker::new(plan(Some(Ready::Notify), Some(health(3, None))), t0, false);
        assert_eq!(
            t.probe_due(t0 + s(100)),
            None,
            "no health check before ready"
        );
        t.on_signal(t0 + s(1));
        assert_eq!(t.deadline(), Some(t0 + s(4)));
        let mut at = t0 + s(4);
        let mut run = |t: &mut Tracker, ok: bool| {
            let (kind, _) = t.probe_due(at).expect("due");
            assert_eq!(kind, Kind::Health);
            at += s(1);
            let v = t.on_probe(kind, at, ok, if ok { "exit code 0" } else { "exit code 1" });
            at += s(3);
            v
        };
        assert_eq!(run(&mut t, false), None);
        assert_eq!(run(&mut t, false), None);
        assert_eq!(t.failures(), 2);
        assert_eq!(run(&mut t, true), None);
        assert_eq!(t.failures(), 0);
        assert_eq!(run(&mut t, false), None);
        assert_eq!(run(&mut t, false), None);
        assert_eq!(
            run(&mut t, false),
            Some(Verdict::Fail(
                "health check failed 3 times in a row: exit code 1".into()
            ))
        );
    }

    #[test]
    fn watchdog() {
        let t0 = Instant::now();
        let h = Health {
            exec: None,
            retries: 3,
            watchdog: Some(s(5)),
        };
        let mut t = Tracker::new(plan(Some(Ready::Notify), Some(h.clone())), t0, false);
        // Pings before ready do not start it; it runs from readiness.
        t.on_watchdog(t0);
        assert_eq!(t.deadline(), Some(t0 + s(10)));
        t.on_signal(t0 + s(2));
        assert_eq!(t.deadline(), Some(t0 + s(7)));
        t.on_watchdog(t0 + s(6));
        assert_eq!(t.on_time(t0 + s(10)), None);
        assert_eq!(
            t.on_time(t0 + s(11)),
            Some(Verdict::Fail("watchdog: no WATCHDOG=1 within 5s".into()))
        );
        assert!(matches!(t.on_watchdog_trigger(), Some(Verdict::Fail(_))));
        // STOPPING=1: no more watchdog nor checks.
        let mut t = Tracker::new(plan(None, Some(h)), t0, false);
        t.on_stopping();
        assert_eq!(t.on_time(t0 + s(100)), None);
        assert_eq!(t.on_watchdog_trigger(), None);
        assert_eq!(t.deadline(), None);
        // No watchdog set: a trigger means nothing.
        let mut t = Tracker::new(plan(None, Some(health(1, None))), t0, false);
        assert_eq!(t.on_watchdog_trigger(), None);
    }
}
