//! Running commands from a test so that none can hang it. Every run has a bound: past it
//! the command is killed with its process group, and the test fails naming what it waited
//! for; the panic unwinds through the test's guards, which clean up as on any failure.
//! Output is drained by threads as it comes (a full pipe would stop the command), and is
//! waited for within the same bound (a process the command left may hold it open).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The longest any one lkinit command of a test may take before the test fails: far beyond
/// what any takes here, so only a hang reaches it.
pub const RUN_LIMIT: Duration = Duration::from_secs(300);

/// The longest a quick command may take (`ip`, `logread`, the service CLI polled for a
/// status): far beyond its milliseconds.
pub const QUICK_LIMIT: Duration = Duration::from_secs(60);

/// A finished lkinit run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `c` to its end, within [`RUN_LIMIT`].
    pub fn of(c: Command) -> Run {
        Self::within(c, RUN_LIMIT)
    }

    /// Runs `c` to its end; past `limit` it is killed (with its process group) and the test
    /// fails, naming the command.
    pub fn within(mut c: Command, limit: Duration) -> Run {
        let what = format!("{c:?}");
        let r = Run::of_output(output_within(&mut c, limit, &what));
        eprintln!(
            "--- lkinit exit {}\n--- stdout\n{}--- stderr\n{}",
            r.code, r.stdout, r.stderr
        );
        r
    }

    /// The report line of bundle `name`.
    pub fn line(&self, name: &str) -> String {
        let prefix = format!("{name}: ");
        self.stdout
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{}", self.stdout))
            .to_string()
    }

    fn of_output(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `c` to its end within `limit` and says how long it took; past the limit it is
/// killed and the test fails naming `what` (a hang must fail a test, not stall it).
pub fn run_within(mut c: Command, limit: Duration, what: &str) -> (Run, Duration) {
    let begun = Instant::now();
    let o = output_within(&mut c, limit, what);
    let took = begun.elapsed();
    let r = Run::of_output(o);
    eprintln!(
        "--- {what}: exit {} after {took:?}\n--- stdout\n{}--- stderr\n{}",
        r.code, r.stdout, r.stderr
    );
    (r, took)
}

/// Runs `c` to its end, quietly, within `limit`; past it the test fails naming `what`.
pub fn output_within(c: &mut Command, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    match Drained::spawn(c).finish_by(deadline) {
        Ok(o) => o,
        Err(unfinished) => panic!("{what}: {unfinished} did not end within {limit:?}; killed"),
    }
}

/// Like [`output_within`], for a guard that must go on whatever happens: None past `limit`
/// (the command killed) or when it cannot start.
pub fn output_or_kill(c: &mut Command, limit: Duration) -> Option<Output> {
    let d = Drained::try_spawn(c).ok()?;
    d.finish_by(Instant::now() + limit).ok()
}

/// Runs `c` to its end with the standard streams it was given, within `limit`; past it the
/// command is killed with its process group and the test fails naming `what`.
pub fn status_within(c: &mut Command, limit: Duration, what: &str) -> ExitStatus {
    status_or_kill(c, limit)
        .unwrap_or_else(|| panic!("{what}: no end within {limit:?} (or no start); killed"))
}

/// Like [`status_within`], for a guard or a probe that goes on whatever happens: None past
/// `limit` (the command killed) or when it cannot start.
pub fn status_or_kill(c: &mut Command, limit: Duration) -> Option<ExitStatus> {
    let mut child = c.process_group(0).spawn().ok()?;
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() > deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(super::pid_of(&child)),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child in a process group of its own, its stdout and stderr drained by threads, each
/// handing over what it read once its pipe has ended. Dropped before its end, it is killed.
struct Drained {
    child: Child,
    out: Receiver<Vec<u8>>,
    err: Receiver<Vec<u8>>,
    ended: bool,
}

fn drain(mut r: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        let _ = tx.send(v);
    });
    rx
}

impl Drained {
    fn try_spawn(c: &mut Command) -> std::io::Result<Drained> {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        let out = drain(child.stdout.take().expect("piped"));
        let err = drain(child.stderr.take().expect("piped"));
        Ok(Drained {
            child,
            out,
            err,
            ended: false,
        })
    }

    fn spawn(c: &mut Command) -> Drained {
        Self::try_spawn(c).unwrap_or_else(|e| panic!("cannot start {c:?}: {e}"))
    }

    fn pid(&self) -> i32 {
        super::pid_of(&self.child)
    }

    /// Whether the command has ended (its status is kept for `finish_by`).
    fn has_ended(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The end and the whole output, by `deadline`. Past it the process group is killed and
    /// the error says what did not end: the command, or its output.
    fn finish_by(mut self, deadline: Instant) -> Result<Output, &'static str> {
        let status = loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                break st;
            }
            if Instant::now() > deadline {
                self.kill();
                return Err("the command");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        self.ended = true;
        let take = |rx: &Receiver<Vec<u8>>| {
            rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .map_err(|_| {
                    // Something the command left holds its output open.
                    self.kill_group();
                    "its output"
                })
        };
        let stdout = take(&self.out)?;
        let stderr = take(&self.err)?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    fn kill_group(&self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    fn kill(&mut self) {
        self.kill_group();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.ended = true;
    }
}

impl Drop for Drained {
    fn drop(&mut self) {
        if !self.ended && !self.has_ended() {
            self.kill();
        }
    }
}

/// lkinit running in the background, its output drained as it comes; dropped before its
/// end (a failed test), it is killed.
pub struct Background {
    run: Drained,
    what: String,
}

impl Background {
    pub fn spawn(mut c: Command) -> Background {
        let what = format!("{c:?}");
        Background {
            run: Drained::spawn(&mut c),
            what,
        }
    }

    pub fn pid(&self) -> i32 {
        self.run.pid()
    }

    /// Whether it has ended already.
    pub fn has_ended(&mut self) -> bool {
        self.run.has_ended()
    }

    /// Waits for the end, within [`RUN_LIMIT`]; the same report as a foreground run.
    pub fn finish(self) -> Run {
        self.finish_within(RUN_LIMIT)
    }

    /// Waits for the end, within `limit`; past it lkinit is killed and the test fails,
    /// naming the command.
    pub fn finish_within(self, limit: Duration) -> Run {
        let Background { run, what } = self;
        let o = run
            .finish_by(Instant::now() + limit)
            .unwrap_or_else(|unfinished| {
                panic!("{what}: {unfinished} did not end within {limit:?}; killed")
            });
        let r = Run::of_output(o);
        eprintln!(
            "--- lkinit exit {}\n--- stdout\n{}--- stderr\n{}",
            r.code, r.stdout, r.stderr
        );
        r
    }
}
