//! A service's state machine without root, in milliseconds: its task runs against a double
//! of its world (`double.rs`) on tokio's paused clock, so backoffs, grace periods and
//! timeouts pass at once and to the millisecond. What these show the root tests show again
//! against runc and the kernel (tests/supervisor.rs, tests/supervisor_faults.rs,
//! tests/ready.rs). Its output and its notify socket and readiness FIFO are the real ones,
//! under a temporary state directory.

mod double;
mod lifecycle;
mod watched;

use super::spawn_with;
use crate::container::Ctx;
use crate::logs::Memlogd;
use crate::process::ExitStatus;
use crate::supervisor::protocol::State;
use crate::supervisor::types::{Boot, Cmd, Handle, Reply, Status, Sup};
use double::Double;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// One test's supervisor: its directories, and the double every service's task goes
/// through.
struct Rig {
    _tmp: tempfile::TempDir,
    sup: Arc<Sup>,
    d: Double,
}

fn rig() -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let (services, logs) = (tmp.path().join("services"), tmp.path().join("logs"));
    std::fs::create_dir_all(&logs).unwrap();
    let ctx = Ctx::new("rt-unit", None, tmp.path().join("state"));
    let memlogd = Memlogd::new(tmp.path().join("memlogd"), tmp.path().join("memlogdq"));
    let sup = Arc::new(Sup::new(ctx, services, logs, memlogd));
    Rig {
        _tmp: tmp,
        sup,
        d: Double::new(),
    }
}

impl Rig {
    fn spawn(&self, name: &str, boot: Boot) -> Handle {
        let dir = self.sup.path.join(name);
        spawn_with(&self.sup, self.d.clone(), name, dir, boot)
    }

    /// A service started at once, as a boot starts one that waits for nothing.
    fn start(&self, name: &str) -> Handle {
        let boot = Boot::Start {
            after: Vec::new(),
            within: Duration::ZERO,
        };
        self.spawn(name, boot)
    }

    fn state_dir(&self) -> &std::path::Path {
        self.sup.state_dir()
    }
}

/// Sends the command `make` builds and waits for its answer, an error as the client
/// reads it.
async fn ask(h: Handle, make: fn(Reply) -> Cmd) -> Result<String, String> {
    let (tx, rx) = oneshot::channel();
    assert!(h.tx.send(make(tx)).is_ok(), "the task takes commands");
    let answer = bounded(rx).await.expect("the task answers");
    answer.map_err(|e| e.to_string())
}

/// `f` within an hour of the paused clock, which passes at once when nothing else is due:
/// a test that waits for what never comes fails instead of hanging.
async fn bounded<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(3600), f)
        .await
        .expect("it came within the hour")
}

/// Waits until the service's status is as `f` wants, and returns it.
async fn until(h: &Handle, f: impl FnMut(&Status) -> bool) -> Status {
    let mut rx = h.status.clone();
    bounded(rx.wait_for(f))
        .await
        .expect("the task runs")
        .clone()
}

/// Waits until the service is in `state`.
async fn until_in(h: &Handle, state: State) -> Status {
    until(h, |s| s.state == state).await
}

/// Lets `d` of the paused clock pass.
async fn pass(d: f64) {
    tokio::time::sleep(Duration::from_secs_f64(d)).await;
}

/// The durations in milliseconds, rounded.
fn ms(ds: &[Duration]) -> Vec<u128> {
    ds.iter().map(|d| (d.as_micros() + 500) / 1000).collect()
}

/// The gaps between the durations, in milliseconds.
fn gaps(ds: &[Duration]) -> Vec<u128> {
    ds.windows(2).map(|w| ms(&[w[1] - w[0]])[0]).collect()
}

fn code(c: i32) -> ExitStatus {
    ExitStatus::Code(c)
}
