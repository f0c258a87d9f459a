//! A supervisor (`lkinit system-init`) per test, on the test's own socket, state dir,
//! runtime root and log dir, and a guard that stops it (SIGTERM, then SIGKILL) when the
//! test ends, also when it fails. Declare it after the TestEnv, so it is dropped first and
//! the env's guard then removes whatever is left.

use super::{LKINIT, Run, TestEnv};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `lkinit status NAME`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub code: i32,
    pub state: String,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub exit: String,
    pub adopted: bool,
    pub reason: String,
    /// The `STATUS=` text a service sent on its notify socket.
    pub text: String,
    /// Its last readiness or health check, and the start of what that printed.
    pub check: String,
    pub output: String,
}

impl TestEnv {
    /// The control socket of this test's supervisor.
    pub fn sock(&self) -> PathBuf {
        self.dir.join("run/service.sock")
    }

    /// The service CLI against this test's socket.
    pub fn cli(&self) -> Command {
        let mut c = self.lkinit();
        c.arg("--sock").arg(self.sock());
        c
    }

    pub fn service(&self, args: &[&str]) -> Run {
        let mut c = self.cli();
        c.args(args);
        Run::of(c)
    }

    /// Starts `lkinit system-init --path services` and waits until it answers.
    pub fn system_init(&self, services: &Path) -> Supervisor {
        self.system_init_args(services, &[])
    }

    /// Like `system_init`, with more arguments (such as `-v`).
    pub fn system_init_args(&self, services: &Path, extra: &[&str]) -> Supervisor {
        let s = self.system_init_nowait_args(services, extra);
        s.wait_until("the supervisor answers", Duration::from_secs(20), || {
            let mut c = s.command(&["list"]);
            super::output_or_kill(&mut c, super::QUICK_LIMIT)
                .filter(|o| o.status.success())
                .map(|_| ())
        });
        s
    }

    /// Starts `lkinit system-init --path services` without waiting for anything.
    pub fn system_init_nowait(&self, services: &Path) -> Supervisor {
        self.system_init_nowait_args(services, &[])
    }

    fn system_init_nowait_args(&self, services: &Path, extra: &[&str]) -> Supervisor {
        self.system_init_under(services, extra, &[])
    }

    /// Starts `lkinit system-init --path services` through `wrapper` (a command that
    /// execs the rest, such as `prlimit --nofile=64`) without waiting for anything.
    pub fn system_init_under(
        &self,
        services: &Path,
        extra: &[&str],
        wrapper: &[&str],
    ) -> Supervisor {
        let n = std::fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        let stderr = self.dir.join(format!("supervisor-{n}.log"));
        let mut c = self.supervisor_command();
        if let Some((first, rest)) = wrapper.split_first() {
            let inner = c;
            c = Command::new(first);
            c.args(rest).arg(inner.get_program()).args(inner.get_args());
        }
        c.arg("system-init")
            .arg("--path")
            .arg(services)
            .arg("--log-dir")
            .arg(&self.log_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.join(format!("supervisor-{n}.out"))).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        let child = c.spawn().expect("lkinit system-init starts");
        Supervisor {
            child: Some(child),
            stderr,
            cli: {
                let mut c = self.cli();
                c.stdout(Stdio::piped()).stderr(Stdio::piped());
                c
            },
        }
    }
}

impl TestEnv {
    /// lkinit with this test's options and socket, as a supervisor runs: for crun, in a
    /// private mount namespace without the cgroup2 part of this host's hybrid layout (crun
    /// 1.8 refuses hybrid hosts). The CLI needs no such thing: it never runs the runtime.
    fn supervisor_command(&self) -> Command {
        if self.runtime != "crun" {
            return self.cli();
        }
        let cli = self.cli();
        let mut c = Command::new("unshare");
        c.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$@\"")
            .arg("sh")
            .arg(LKINIT)
            .args(cli.get_args());
        c
    }
}

pub struct Supervisor {
    child: Option<Child>,
    /// The supervisor's own log (its stderr).
    pub stderr: PathBuf,
    cli: Command,
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

impl Supervisor {
    pub fn pid(&self) -> i32 {
        super::pid_of(self.child.as_ref().expect("running"))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(LKINIT);
        c.args(self.cli.get_args()).args(args);
        c.envs(self.cli.get_envs().filter_map(|(k, v)| Some((k, v?))));
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    /// A CLI command, with its output echoed for the test log.
    pub fn cli(&self, args: &[&str]) -> Run {
        Run::of(self.command(args))
    }

    /// `status NAME`, quietly (it is polled).
    pub fn status(&self, name: &str) -> Status {
        let o = super::output_within(
            &mut self.command(&["status", name]),
            super::QUICK_LIMIT,
            &format!("status {name}"),
        );
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let field = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}:")))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        Status {
            code: o.status.code().unwrap_or(-1),
            state: field("state"),
            pid: field("pid").parse().ok(),
            restarts: field("restarts").parse().unwrap_or(0),
            exit: field("exit"),
            adopted: field("adopted").starts_with("yes"),
            reason: field("reason"),
            text: field("status"),
            check: field("check"),
            output: field("output"),
        }
    }

    /// Polls `status NAME` until `ok` holds.
    pub fn wait_status(&self, name: &str, what: &str, ok: impl Fn(&Status) -> bool) -> Status {
        let mut last = None;
        self.wait_until(what, Duration::from_secs(30), || {
            let s = self.status(name);
            let r = ok(&s).then(|| s.clone());
            last = Some(s);
            r
        })
        .unwrap_or_else(|| panic!("{name}: {what}: last status {last:?}"))
    }

    pub fn wait_running(&self, name: &str) -> Status {
        self.wait_status(name, "running", |s| s.state == "running" && s.pid.is_some())
    }

    /// Polls `f` until it returns Some, or panics with the supervisor's log.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(v) = f() {
                return Some(v);
            }
            if Instant::now() > end {
                panic!(
                    "timed out waiting for {what}; supervisor log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGKILL, as a crash would; its services keep running.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns the exit code.
    pub fn terminate(&mut self) -> i32 {
        let mut c = self.child.take().expect("running");
        signal(super::pid_of(&c), libc::SIGTERM);
        let st = wait_timeout(&mut c, Duration::from_secs(60)).unwrap_or_else(|| {
            let _ = c.kill();
            panic!("the supervisor did not exit after SIGTERM:\n{}", self.log())
        });
        st.code().unwrap_or(-1)
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) with a pid we started.
    unsafe {
        libc::kill(pid, sig);
    }
}

fn wait_timeout(c: &mut Child, t: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + t;
    loop {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(super::pid_of(&c), libc::SIGTERM);
            if wait_timeout(&mut c, Duration::from_secs(30)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Reads what a child wrote to its piped stdout so far, without blocking past `timeout`.
pub fn read_for(child: &mut Child, timeout: Duration, until: impl Fn(&str) -> bool) -> String {
    let mut out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let end = Instant::now() + timeout;
    let mut s = String::new();
    while Instant::now() < end && !until(&s) {
        if let Ok(b) = rx.recv_timeout(Duration::from_millis(100)) {
            s.push_str(&String::from_utf8_lossy(&b));
        }
    }
    s
}
