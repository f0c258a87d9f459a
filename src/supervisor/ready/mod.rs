//! Watching a running service: is it ready yet, and does it stay healthy.
//!
//! [`Tracker`] is the logic, with no clock or process of its own: what readiness waits for,
//! by when, which check is due, when a watchdog expires, and when a service has failed.
//! [`start`] drives it for one running container in a task of its own: it reads the
//! notify socket and the readiness FIFO, runs the checks one at a time, and tells the
//! service's task what happened ([`Event`]); the service's task acts on it (a failure
//! goes down the normal path: a stop, then the restart policy). Dropping the [`Monitor`]
//! ends the task, killing a check in flight.
//! The parts: [`tracker`] (the logic), [`fifo`] (the readiness FIFO), this file (the task
//! that drives them).

mod fifo;
mod tracker;

pub use fifo::{ReadyFifo, fifo_dir, remove_fifo};
pub use tracker::{Kind, Plan, Tracker, Verdict};

use super::checks::Probe;
use super::notify::{self, Identity, NotifySocket, Received, Sender};
use super::probe::Outcome;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

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
