//! One readiness or health check: a command run in the service's namespaces (through the
//! same helper as `service exec`), its output kept within a bound, killed with everything
//! it started once its time is up, or when the check is dropped (the service is stopping).

use super::checks::Probe;
use crate::nsenter;
use crate::process::{self, PidFd};
use std::fs::File;
use std::io::{self, Read};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// What a check prints that is kept (for `status`); the rest is read and dropped, so a
/// check that prints much never blocks on a full pipe.
pub const KEEP: usize = 1024;

/// How long a killed check may take to end.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a check went.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    /// `exit code 0`, `timed out after 5s and was killed`, or why it could not run.
    pub summary: String,
    /// The start of what it printed (stdout and stderr), at most [`KEEP`] bytes.
    pub output: String,
    pub took: Duration,
}

/// Kills the check's helper and what it started, unless the check ended by itself.
struct Guard(Option<PidFd>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            process::kill_tree_of(&fd);
        }
    }
}

/// Reads what is there without waiting; keeps up to [`KEEP`] bytes in `kept`. Returns
/// false at the end of the pipe.
fn read_available(f: &mut File, kept: &mut Vec<u8>) -> io::Result<bool> {
    let mut buf = [0u8; 4096];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                let room = KEEP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Keeps reading `out` until it ends; never returns otherwise.
async fn drain(out: &mut AsyncFd<File>, kept: &mut Vec<u8>) {
    loop {
        let Ok(mut guard) = out.readable_mut().await else {
            return std::future::pending().await;
        };
        match guard.try_io(|f| read_available(f.get_mut(), kept)) {
            Ok(Ok(true)) | Err(_) => {}
            Ok(Ok(false)) | Ok(Err(_)) => return std::future::pending().await,
        }
    }
}

fn text(kept: &[u8]) -> String {
    String::from_utf8_lossy(kept).trim_end().to_string()
}

impl Outcome {
    fn failed(summary: String, begun: Instant) -> Outcome {
        Outcome {
            ok: false,
            summary,
            output: String::new(),
            took: begun.elapsed(),
        }
    }
}

/// Runs `probe` in the namespaces of service `service`, whose init is `pid` (started at
/// `start_time`), within its timeout.
pub async fn run(service: String, pid: i32, start_time: Option<u64>, probe: Probe) -> Outcome {
    let begun = Instant::now();
    let cmd = probe.cmd.clone();
    // Forks the supervisor and waits for the exec: off the runtime's thread.
    let spawned =
        tokio::task::spawn_blocking(move || nsenter::spawn_check(&service, pid, start_time, &cmd))
            .await;
    let check = match spawned {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Outcome::failed(format!("cannot run it: {}", crate::error_chain(&e)), begun);
        }
        Err(e) => return Outcome::failed(format!("cannot run it: {e}"), begun),
    };
    let mut guard = Guard(check.pidfd);
    let (waiter, report) = (check.waiter, File::from(check.report));
    // SAFETY: the File owns a valid descriptor for as long as the AsyncFd holds it.
    let out =
        unsafe { AsyncFd::register_with_interest(File::from(check.output), Interest::READABLE) };
    let mut out = match out {
        Ok(o) => Some(o),
        Err(e) => {
            log::debug!("cannot watch a check's output: {e}");
            None
        }
    };
    let mut kept = Vec::new();
    let ended = tokio::time::timeout(probe.timeout, async {
        tokio::select! {
            st = waiter.wait_async() => st,
            () = async {
                match out.as_mut() {
                    Some(o) => drain(o, &mut kept).await,
                    None => std::future::pending().await,
                }
            } => unreachable!("a drain never returns"),
        }
    })
    .await;
    let status = match ended {
        Ok(st) => st,
        Err(_) => {
            drop(guard);
            if tokio::time::timeout(KILL_WAIT, waiter.wait_async())
                .await
                .is_err()
            {
                log::error!("a check (pid {}) survives SIGKILL", waiter.pid());
            }
            return Outcome {
                ok: false,
                summary: format!(
                    "timed out after {} and was killed",
                    super::service::secs(probe.timeout)
                ),
                output: text(&kept),
                took: begun.elapsed(),
            };
        }
    };
    // It ended by itself: what it left running in the service is the service's.
    guard.0 = None;
    if let Some(o) = out.as_mut() {
        let _ = read_available(o.get_mut(), &mut kept);
    }
    let mut said = Vec::new();
    let _ = (&report).take(4096).read_to_end(&mut said);
    let said = String::from_utf8_lossy(&said);
    match nsenter::parse_report(&said) {
        Some((_, message)) => Outcome {
            ok: false,
            summary: message,
            output: text(&kept),
            took: begun.elapsed(),
        },
        None => Outcome {
            ok: status.success(),
            summary: status.to_string(),
            output: text(&kept),
            took: begun.elapsed(),
        },
    }
}
