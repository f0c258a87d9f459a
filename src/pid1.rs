//! `lkinit init`: the system's PID 1.
//!
//! Boot: leave the initramfs (see switch_root.rs), mount the early file systems, set a
//! default PATH, the limits, Ctrl-Alt-Del as a signal, start the reaper, load the kernel
//! modules the image lists, set the hostname, bring up loopback, then run `/etc/init.d`
//! with lkinit's steps in their places (see hooks.rs): prepare the volumes, run `onboot`
//! and start the service supervisor (`system-init`), each as a child process of this binary
//! so that a bug in either can never take PID 1 down. Then wait for a signal; the
//! supervisor is started again if it dies.
//!
//! Shutdown: `/etc/shutdown.d` with `onshutdown` in its place, the supervisor stopped (it
//! stops the services, last started first), then SIGTERM to every process left, a grace
//! period, SIGKILL, sync, unmount, reboot(2).
//!
//! PID 1 never exits (the kernel panics when it does): a fatal error is said on the console
//! and the machine powers off, and so does a panic.
//!
//! Signals: SIGCHLD is blocked from main's first line and taken by the reaper thread; the
//! shutdown signals are blocked here before any thread starts and read from a signalfd.

mod children;
mod cmdline;
mod early;
mod hooks;
mod kmod;
mod rc;
mod shutdown;
mod steps;
mod switch_root;

use children::{Child, Event};
use cmdline::KernelOptions;

pub(crate) use shutdown::{Action, action_for};

use crate::cli::Global;
use crate::process;
use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::time::{ClockId, clock_gettime};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Set in the environment of the lkinit children (onboot, the supervisor) so their log
/// lines carry the time since boot, like PID 1's.
pub const UPTIME_ENV: &str = "LKINIT_LOG_UPTIME";

/// How long the supervisor may take to stop every service (their grace periods run side by
/// side) before it is killed.
const SUPERVISOR_STOP_LIMIT: Duration = Duration::from_secs(30);
/// Between SIGTERM and SIGKILL to every process left.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// Supervisor restarts: the first delay, doubled up to the last; a run this long resets it.
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);
const RESTART_RESET_AFTER: Duration = Duration::from_secs(30);
/// Time since boot (CLOCK_MONOTONIC, the clock of the kernel's own log lines).
pub(crate) fn uptime() -> Duration {
    // CLOCK_MONOTONIC cannot fail on Linux; zero would only make a log prefix wrong.
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(Duration::ZERO, Duration::from)
}

/// `[    5.123456] `, as the kernel prints it.
pub fn uptime_prefix() -> String {
    let t = uptime();
    format!("[{:5}.{:06}] ", t.as_secs(), t.subsec_micros())
}

fn signal_set() -> SigSet {
    let mut set = SigSet::empty();
    for (s, _) in shutdown::SIGNALS {
        set.add(s);
    }
    set
}

/// Says why on the console and powers off: PID 1 must not exit.
fn fatal(msg: &str) -> ! {
    log::error!("fatal: {msg}; powering off");
    shutdown::finish(Action::PowerOff, Duration::from_secs(2))
}

/// A request to end the system: a signal to PID 1, and what it asks for.
#[derive(Debug, Clone, Copy)]
struct ShutdownRequest {
    action: Action,
    signal: Signal,
    from: u32,
}

impl std::fmt::Display for ShutdownRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} from pid {}: {}",
            self.signal.as_str(),
            self.from,
            self.action.as_str()
        )
    }
}

/// PID 1. Never returns.
pub fn run(g: &Global) -> ! {
    if std::process::id() != 1 {
        // It would kill every process and reboot the machine it runs on.
        log::error!("init: must run as PID 1 (the kernel starts it); refusing");
        std::process::exit(1);
    }
    // Before any thread exists, so every thread inherits the mask and signals queue for
    // the signalfd (a blocked signal is never discarded, even for PID 1).
    let set = signal_set();
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    std::panic::set_hook(Box::new(|info| {
        eprintln!("{}lkinit: fatal: PID 1 panicked: {info}", uptime_prefix());
        nix::unistd::sync();
        shutdown::halt_now(Action::PowerOff)
    }));

    if let Err(e) = switch_root::leave_initramfs() {
        fatal(&format!(
            "cannot leave the initramfs: {}",
            crate::error_chain(&e)
        ));
    }
    log::info!("lkinit {} is PID 1", env!("CARGO_PKG_VERSION"));
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let kopts = KernelOptions::parse(&cmdline);
    if let Err(e) = early::mount_all(kopts.cgroup_v1) {
        ensure_console();
        fatal(&format!("early mounts: {}", crate::error_chain(&e)));
    }
    ensure_console();
    log::info!("early mounts: {}", early::summary(&early::read_mountinfo()));
    let g = &with_runtime(g, &kopts);
    // SAFETY: set_var with no other thread started yet.
    unsafe {
        if std::env::var_os("PATH").is_none() {
            std::env::set_var("PATH", crate::DEFAULT_PATH);
        }
        std::env::set_var(UPTIME_ENV, "1");
    }
    // Before any child: every process inherits them.
    for e in rc::set_limits() {
        log::error!("{}", crate::error_chain(&e));
    }
    match rc::resolv_conf(Path::new("/")) {
        Ok(Some(f)) => log::debug!("made {} for /etc/resolv.conf", f.display()),
        Ok(None) => {}
        Err(e) => log::error!("/etc/resolv.conf: {}", crate::error_chain(&e)),
    }
    // Ctrl-Alt-Del becomes a SIGINT to us (an orderly reboot) instead of an instant one.
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        log::warn!("cannot turn Ctrl-Alt-Del into a signal: {e}");
    }
    let sigfd = match SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK) {
        Ok(fd) => fd,
        Err(e) => fatal(&format!("signalfd: {e}")),
    };
    // From here on every orphan of the system is reaped.
    process::reaper();

    load_modules();
    // After the modules: eth0's driver may be one of them.
    rc::set_hostname();
    match crate::net::loopback_up() {
        Ok(()) => log::debug!("loopback up"),
        Err(e) => log::error!("loopback: {e}"),
    }

    let mut init = Init {
        g,
        sigfd,
        pending: None,
        hook_limit: kopts.hook_timeout,
        runner_flags: kopts.runner_flags(g.quiet),
        onboot_timeout: kopts.bundle_timeout(true),
        onshutdown_timeout: kopts.bundle_timeout(false),
    };
    let supervisor = init.run_phase(hooks::Phase::Boot);
    if let Some(req) = init.pending {
        init.shutdown(req, supervisor);
    }
    init.main_loop(supervisor)
}

/// The kernel command line's `lkinit.runtime=BIN` picks the OCI runtime of onboot, the
/// supervisor and onshutdown: an image that ships crun says so next to its kernel, as
/// LinuxKit images carry their command line.
fn with_runtime(g: &Global, kopts: &KernelOptions) -> Global {
    let mut g = g.clone();
    if let Some(rt) = &kopts.runtime {
        log::info!("OCI runtime: {rt} (lkinit.runtime on the kernel command line)");
        g.runtime = rt.clone();
    }
    g
}

/// The console on 0, 1 and 2, in case the kernel could not open it for us (an image
/// without /dev/console).
fn ensure_console() {
    if fcntl(std::io::stdout().as_fd(), FcntlArg::F_GETFD).is_ok() {
        return;
    }
    let console = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        Ok(f) => f,
        // Said to nobody, most likely: there is no console to say it on.
        Err(e) => {
            log::error!("no standard output, and /dev/console: {e}");
            return;
        }
    };
    for (name, r) in [
        ("stdin", dup2_stdin(&console)),
        ("stdout", dup2_stdout(&console)),
        ("stderr", dup2_stderr(&console)),
    ] {
        if let Err(e) = r {
            log::error!("cannot put /dev/console on {name}: {e}");
        }
    }
}

fn load_modules() {
    let list = match std::fs::read_to_string("/etc/modules") {
        Ok(l) => l,
        Err(_) => return,
    };
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let moddir = Path::new("/lib/modules").join(&release);
    let r = kmod::load_list(&list, &moddir);
    let mut line = format!("modules: loaded {}", list_or_none(&r.loaded));
    if !r.already.is_empty() {
        line.push_str(&format!("; already loaded {}", r.already.join(" ")));
    }
    if !r.builtin.is_empty() {
        line.push_str(&format!("; built in {}", r.builtin.join(" ")));
    }
    if r.failed > 0 {
        line.push_str(&format!("; {} failed", r.failed));
    }
    log::info!("{line}");
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(" ")
    }
}

struct Init<'a> {
    g: &'a Global,
    sigfd: SignalFd,
    /// A shutdown asked for while PID 1 could not act on it yet.
    pending: Option<ShutdownRequest>,
    /// The bound of each hook, when the kernel command line gives one.
    hook_limit: Option<Duration>,
    /// Options of onboot and onshutdown from the kernel command line.
    runner_flags: Vec<&'static str>,
    /// The limit of each onboot, onshutdown bundle (`--timeout`); None: no limit.
    onboot_timeout: Option<u64>,
    onshutdown_timeout: Option<u64>,
}

impl Init<'_> {
    /// Keeps the supervisor running (started again after a delay if it exits, or could not
    /// start) until a shutdown is asked for.
    fn main_loop(mut self, mut supervisor: Option<Child>) -> ! {
        let mut delay = RESTART_FIRST;
        let mut restart_at: Option<Instant> = supervisor.is_none().then(|| {
            log::error!("no supervisor runs; starting one in {}s", delay.as_secs());
            Instant::now() + delay
        });
        loop {
            match self.wait(supervisor.as_ref(), restart_at) {
                Event::Signal(req) => {
                    log::info!("{req}");
                    self.shutdown(req, supervisor.take());
                }
                Event::Exited(st) => {
                    let ran = supervisor.as_ref().map(|c| c.started.elapsed());
                    if ran.is_some_and(|r| r >= RESTART_RESET_AFTER) {
                        delay = RESTART_FIRST;
                    }
                    log::error!(
                        "supervisor exited: {st}; starting it again in {}s",
                        delay.as_secs()
                    );
                    supervisor = None;
                    restart_at = Some(Instant::now() + delay);
                    delay = (delay * 2).min(RESTART_MAX);
                }
                Event::Timeout => {
                    restart_at = None;
                    supervisor = self.start_supervisor();
                    if supervisor.is_none() {
                        restart_at = Some(Instant::now() + delay);
                        delay = (delay * 2).min(RESTART_MAX);
                    }
                }
            }
        }
    }

    /// The ordered shutdown. Further requests are noted and ignored.
    fn shutdown(&mut self, req: ShutdownRequest, supervisor: Option<Child>) -> ! {
        log::info!("shutting down to {}", req.action.as_str());
        self.run_phase(hooks::Phase::Shutdown);
        if let Some(s) = supervisor {
            if let Some(st) = s.waiter.try_status() {
                log::info!("supervisor had exited: {st}");
            } else {
                log::info!("stopping the supervisor (pid {})", s.waiter.pid());
                let st = self.stop(&s, SUPERVISOR_STOP_LIMIT);
                log::info!("supervisor stopped: {st}");
            }
        }
        shutdown::finish(req.action, KILL_GRACE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_prefix_looks_like_the_kernels() {
        let p = uptime_prefix();
        assert!(p.starts_with('[') && p.ends_with("] "), "{p}");
        let inner = p.trim_start_matches('[').trim_end_matches("] ").trim();
        let (s, us) = inner.split_once('.').unwrap();
        assert!(s.parse::<u64>().is_ok(), "{p}");
        assert_eq!(us.len(), 6, "{p}");
    }

    #[test]
    fn every_shutdown_signal_is_in_the_blocked_set() {
        let set = signal_set();
        for s in [
            Signal::SIGUSR2,
            Signal::SIGTERM,
            Signal::SIGUSR1,
            Signal::SIGINT,
        ] {
            assert!(set.contains(s), "{s:?}");
        }
        assert!(!set.contains(Signal::SIGCHLD), "SIGCHLD is the reaper's");
    }
}
