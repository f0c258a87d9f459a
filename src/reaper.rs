//! The single place that reaps children.
//!
//! lkinit is a child subreaper (or PID 1), so besides the runtimes it spawns it inherits
//! container processes and their orphans. If two places called wait, one could steal the
//! exit status the other is waiting for. So SIGCHLD is blocked in every thread from the start
//! of `main`, one thread waits for it and reaps everything, and whoever wants a status
//! registers the pid first and gets the status handed over.
//!
//! Spawning happens under the registry lock, so a child that exits at once is still known
//! when it is reaped (and std's own reap of a child whose exec failed cannot race us).
//! Processes that become our children later (a container's init after `runtime create`)
//! are registered before they can exit: the init waits for `runtime start`.

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::stat::Mode;
use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }

    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }

    /// Reads the shell convention back (a runtime's `run` reports its container that way).
    pub fn from_code(code: i32) -> ExitStatus {
        ExitStatus::Code(code)
    }
}

/// The pid of a child std started: std hands out the kernel's pid_t (always positive) as
/// a u32, and this is the same bits back.
pub fn pid_of(child: &Child) -> i32 {
    child.id().cast_signed()
}

/// `SIGKILL` for 9; `signal N` for numbers without a name.
pub fn signal_name(sig: i32) -> String {
    Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => {
                write!(f, "exit code {} (killed by {})", 128 + s, signal_name(s))
            }
        }
    }
}

/// Where one pid's status is delivered; serves blocking and async waiters alike.
#[derive(Default)]
struct Slot {
    status: Mutex<Option<ExitStatus>>,
    cond: Condvar,
    notify: tokio::sync::Notify,
}

impl Slot {
    fn deliver(&self, st: ExitStatus) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Some(st);
        self.cond.notify_all();
        self.notify.notify_one();
    }
}

/// A claim on the exit status of one child.
#[derive(Clone)]
pub struct Waiter {
    pid: i32,
    slot: Arc<Slot>,
}

impl Waiter {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The status if the process has ended.
    pub fn try_status(&self) -> Option<ExitStatus> {
        *self.slot.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks until the process ends.
    pub fn wait(&self) -> ExitStatus {
        let mut g = self.slot.status.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(s) = *g {
                return s;
            }
            g = self.slot.cond.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Blocks until the process ends or `timeout` passes.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let mut g = self.slot.status.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(s) = *g {
                return Some(s);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            g = self
                .slot
                .cond
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits without blocking a thread (for the tokio supervisor).
    pub async fn wait_async(&self) -> ExitStatus {
        loop {
            let notified = self.slot.notify.notified();
            if let Some(s) = self.try_status() {
                return s;
            }
            notified.await;
        }
    }
}

/// What one of a child's standard streams is connected to.
pub enum Io<'a> {
    /// lkinit's own.
    Inherit,
    /// `/dev/null`.
    Null,
    /// A new pipe; the parent's end comes back in [`Spawned`].
    Piped,
    /// This descriptor (the child gets its own copy).
    Fd(BorrowedFd<'a>),
}

/// A program to start with [`Reaper::start`]: its argv and standard streams.
pub struct Spawn<'a> {
    argv: Vec<CString>,
    /// Variables of lkinit's environment the child does not get.
    env_remove: Vec<OsString>,
    stdin: Io<'a>,
    stdout: Io<'a>,
    stderr: Io<'a>,
}

impl<'a> Spawn<'a> {
    /// `program` is looked up in PATH unless it contains a `/`. Streams default to
    /// `/dev/null` for stdin and lkinit's own stdout and stderr.
    pub fn new(program: impl AsRef<OsStr>) -> Spawn<'a> {
        Spawn {
            argv: vec![cstring(program.as_ref())],
            env_remove: Vec::new(),
            stdin: Io::Null,
            stdout: Io::Inherit,
            stderr: Io::Inherit,
        }
    }

    pub fn arg(&mut self, a: impl AsRef<OsStr>) -> &mut Self {
        self.argv.push(cstring(a.as_ref()));
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(&mut self, args: I) -> &mut Self {
        for a in args {
            self.arg(a);
        }
        self
    }

    /// The child gets lkinit's environment without `key`.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.env_remove.push(key.as_ref().to_os_string());
        self
    }

    pub fn stdin(&mut self, io: Io<'a>) -> &mut Self {
        self.stdin = io;
        self
    }

    pub fn stdout(&mut self, io: Io<'a>) -> &mut Self {
        self.stdout = io;
        self
    }

    pub fn stderr(&mut self, io: Io<'a>) -> &mut Self {
        self.stderr = io;
        self
    }

    pub fn program(&self) -> &str {
        self.argv[0].to_str().unwrap_or("?")
    }
}

/// An argument with a NUL byte cannot reach a program; it is cut there (paths and names
/// lkinit passes never hold one).
fn cstring(s: &OsStr) -> CString {
    let b = s.as_bytes();
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    CString::new(&b[..end]).expect("no NUL byte before `end`")
}

/// Every signal number a disposition can be set for: all but SIGKILL and SIGSTOP. No
/// allocation, so a forked child may iterate it before exec.
fn resettable_signals() -> impl Iterator<Item = libc::c_int> {
    (1..=libc::SIGRTMAX()).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
}

/// Every signal but SIGKILL and SIGSTOP: what a child resets to its default action (an
/// ignored signal would survive the exec). Built bit by bit: the C library's sigaddset
/// refuses its own internal signals (32 and 33), which its posix_spawn would otherwise
/// leave ignored in the child of a parent that handles them (see
/// [`reset_signals_in_child`]).
fn default_signals() -> SigSet {
    const WORDS: usize = std::mem::size_of::<libc::sigset_t>() / 8;
    let mut bits = [0u64; WORDS];
    // Signal numbers start at 1.
    for n in resettable_signals().filter_map(|sig| usize::try_from(sig - 1).ok()) {
        bits[n / 64] |= 1 << (n % 64);
    }
    // SAFETY: sigset_t is a plain array of words on Linux (bit N-1 is signal N), of exactly
    // this size; every bit pattern is a valid set.
    let set: libc::sigset_t = unsafe { std::mem::transmute(bits) };
    // SAFETY: a set of real signal numbers.
    unsafe { SigSet::from_sigset_t_unchecked(set) }
}

/// A child started by [`Reaper::start`].
pub struct Spawned {
    pub waiter: Waiter,
    /// Polls readable once the child has exited (None on a kernel without pidfds).
    pub pidfd: Option<PidFd>,
    /// The parent's ends of the pipes asked for with [`Io::Piped`].
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// An ended child's raw wait status. Decoded here rather than through nix's `WaitStatus`,
/// which has no room for a real-time signal (34 and up): nix answers EINVAL after the
/// zombie is gone, so a container killed by SIGRTMIN+n would lose its status and whoever
/// waits for it would wait for ever.
fn decode_wait_status(raw: libc::c_int) -> Option<ExitStatus> {
    if libc::WIFEXITED(raw) {
        Some(ExitStatus::Code(libc::WEXITSTATUS(raw)))
    } else if libc::WIFSIGNALED(raw) {
        Some(ExitStatus::Signal(libc::WTERMSIG(raw)))
    } else {
        None
    }
}

/// Statuses of unregistered children kept for a late claim; bounded so orphans cannot grow it.
const UNCLAIMED_MAX: usize = 256;

#[derive(Default)]
struct Registry {
    waiting: HashMap<i32, Arc<Slot>>,
    unclaimed: VecDeque<(i32, ExitStatus)>,
}

pub struct Reaper {
    registry: Mutex<Registry>,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

/// Sets the calling thread's signal mask to exactly SIGCHLD; call first thing in `main`,
/// before any thread exists, so every later thread inherits the mask and only the reaper
/// thread sees it. Whatever else the parent left blocked is unblocked: a blocked SIGTERM
/// would otherwise never reach the supervisor or PID 1.
/// std's spawn does not reset the mask of a child: [`Reaper::spawn`] does.
pub fn block_sigchld() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&set), None);
}

/// Marks every descriptor above stdio that lkinit inherited close-on-exec, so none of them
/// reaches a runtime, a container or a helper (lkinit opens its own with close-on-exec;
/// these came from whoever started it). Call early in `main`, before any thread exists.
pub fn close_inherited_on_exec() -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC changes descriptor flags only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    // Kernels before 5.11: one descriptor at a time (the listing's own is close-on-exec).
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // Raw, not nix's fcntl, which takes an open descriptor: the listing's own number is
        // in the list and closed by now (EBADF, which is fine).
        // SAFETY: F_SETFD on a descriptor number; no pointers.
        let r = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        if r == -1 && Errno::last() != Errno::EBADF {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The kernel's `sigset_t` size, which rt_sigaction checks (64 signals on every
/// architecture lkinit is built for).
const KERNEL_SIGSET_SIZE: usize = 8;

/// In a freshly forked child, before exec: every signal back to its default disposition
/// and nothing blocked. exec resets handlers but keeps ignored signals, and lkinit may have
/// been started with some ignored (`nohup`, a shell's background job; glibc's own
/// `posix_spawn` leaves its internal signals 32 and 33 ignored in the children of a parent
/// that handles them); a runtime, a container or a command run in a service must not
/// inherit that. Only async-signal-safe calls.
fn reset_signals_in_child() -> io::Result<()> {
    // SAFETY: sigaction, rt_sigaction and sigprocmask are async-signal-safe; the structs
    // are zeroed locals (all zero is SIG_DFL, no flags, an empty mask, in the C library's
    // layout and in the kernel's).
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        let kernel_dfl = [0u64; 8];
        for sig in resettable_signals() {
            if libc::sigaction(sig, &dfl, std::ptr::null_mut()) != 0 {
                // The C library refuses the numbers it reserves; the kernel does not, and
                // this process is about to exec, where the C library's use of them ends.
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    kernel_dfl.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    KERNEL_SIGSET_SIZE,
                );
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The process-wide reaper. The first call makes this process a child subreaper and starts
/// the reaping thread.
pub fn global() -> &'static Reaper {
    REAPER.get_or_init(|| {
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            log::warn!("cannot become a child subreaper: {e}");
        }
        let r = Reaper {
            registry: Mutex::new(Registry::default()),
        };
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(reaper_thread)
            .expect("the reaper thread must start");
        r
    })
}

fn reaper_thread() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    loop {
        global().reap_all();
        // A SIGCHLD that arrives while reaping stays pending, so none is lost.
        let _ = set.wait();
    }
}

impl Reaper {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reap_all(&self) {
        let mut reg = self.lock();
        loop {
            let mut raw: libc::c_int = 0;
            // SAFETY: waitpid writes the status into a local. Raw, not nix's: see
            // `decode_wait_status`.
            let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
            if pid == 0 {
                return;
            }
            if pid < 0 {
                match Errno::last() {
                    Errno::ECHILD => return,
                    Errno::EINTR => continue,
                    e => {
                        log::error!("reaper: waitpid: {e}");
                        return;
                    }
                }
            }
            let Some(status) = decode_wait_status(raw) else {
                continue;
            };
            match reg.waiting.remove(&pid) {
                Some(slot) => slot.deliver(status),
                None => {
                    log::debug!("reaped orphan {pid}: {status}");
                    if reg.unclaimed.len() >= UNCLAIMED_MAX {
                        reg.unclaimed.pop_front();
                    }
                    reg.unclaimed.push_back((pid, status));
                }
            }
        }
    }

    fn register(reg: &mut Registry, pid: i32) -> Waiter {
        let slot = Arc::new(Slot::default());
        if let Some(i) = reg.unclaimed.iter().position(|(p, _)| *p == pid) {
            let (_, st) = reg.unclaimed.remove(i).expect("index is in range");
            slot.deliver(st);
        } else {
            reg.waiting.insert(pid, slot.clone());
        }
        Waiter { pid, slot }
    }

    /// Spawns `cmd` and claims its exit status. Never call `wait` on the returned `Child`.
    /// The child starts with every signal at its default disposition and none blocked
    /// (after the caller's own `pre_exec` steps): what lkinit blocks (SIGCHLD here, the
    /// shutdown signals in PID 1) or ignores is its own business, and a child that inherited
    /// it would never see its SIGTERM or SIGCHLD. A child that wants a signal ignored sets
    /// it itself.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, Waiter)> {
        // SAFETY: reset_signals_in_child makes only async-signal-safe calls.
        unsafe {
            cmd.pre_exec(reset_signals_in_child);
        }
        let mut reg = self.lock();
        let child = cmd.spawn()?;
        let w = Self::register(&mut reg, pid_of(&child));
        Ok((child, w))
    }

    /// Starts `s` with posix_spawn (a vfork: no copy of lkinit's page tables, which `spawn`'s
    /// fork path pays for and which is most of what starting a runtime costs lkinit) and
    /// claims its exit status. Like `spawn`, the child starts with no signal blocked and
    /// every signal at its default action. The returned pidfd (when the kernel has them)
    /// polls readable once the child has exited.
    pub fn start(&self, s: &Spawn<'_>) -> io::Result<Spawned> {
        let mut actions = PosixSpawnFileActions::init()?;
        let mut attr = PosixSpawnAttr::init()?;
        attr.set_sigmask(&SigSet::empty())?;
        attr.set_sigdefault(&default_signals())?;
        attr.set_flags(
            PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
        )?;
        // The parent's ends of the pipes; the child's ends close when this returns.
        let mut ours: [Option<OwnedFd>; 3] = [None, None, None];
        let mut theirs: Vec<OwnedFd> = Vec::new();
        let streams = [
            (libc::STDIN_FILENO, &s.stdin),
            (libc::STDOUT_FILENO, &s.stdout),
            (libc::STDERR_FILENO, &s.stderr),
        ];
        for (mine_slot, (target, io)) in ours.iter_mut().zip(streams) {
            let input = target == libc::STDIN_FILENO;
            match io {
                Io::Inherit => {}
                Io::Null => {
                    let flags = if input {
                        OFlag::O_RDONLY
                    } else {
                        OFlag::O_WRONLY
                    };
                    actions.add_open(target, c"/dev/null", flags, Mode::empty())?
                }
                Io::Fd(fd) => actions.add_dup2(fd.as_raw_fd(), target)?,
                Io::Piped => {
                    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
                    let (mine, child) = if input { (w, r) } else { (r, w) };
                    actions.add_dup2(child.as_raw_fd(), target)?;
                    *mine_slot = Some(mine);
                    theirs.push(child);
                }
            }
        }
        let env: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| !s.env_remove.contains(k))
            .filter_map(|(k, v)| {
                let mut kv = k.into_vec();
                kv.push(b'=');
                kv.extend(v.into_vec());
                CString::new(kv).ok()
            })
            .collect();
        let mut reg = self.lock();
        let pid = if s.argv[0].as_bytes().contains(&b'/') {
            nix::spawn::posix_spawn(s.argv[0].as_c_str(), &actions, &attr, &s.argv, &env)
        } else {
            nix::spawn::posix_spawnp(&s.argv[0], &actions, &attr, &s.argv, &env)
        }
        .map_err(io::Error::from)?
        .as_raw();
        // Under the lock the child cannot have been reaped, so the pid is still its own.
        let pidfd = PidFd::open(pid).ok();
        let waiter = Self::register(&mut reg, pid);
        drop(reg);
        drop(theirs);
        let [stdin, stdout, stderr] = ours;
        Ok(Spawned {
            waiter,
            pidfd,
            stdin,
            stdout,
            stderr,
        })
    }

    /// Claims the exit status of a process that is (or is about to become) our child by
    /// reparenting, and that cannot exit before this call returns.
    pub fn watch(&self, pid: i32) -> Waiter {
        let mut reg = self.lock();
        Self::register(&mut reg, pid)
    }

    /// Like `watch`, with a pidfd for the process opened while no reaping can happen, so it
    /// names this child: None if the child has ended and been reaped already (its pid may
    /// name another process by then), or on a kernel without pidfds.
    pub fn watch_with_pidfd(&self, pid: i32) -> (Waiter, Option<PidFd>) {
        let mut reg = self.lock();
        let w = Self::register(&mut reg, pid);
        let fd = match w.try_status() {
            Some(_) => None,
            None => PidFd::open(pid).ok(),
        };
        (w, fd)
    }

    /// Drops a claim (the process is someone else's business now); a status that arrives
    /// later is kept like an orphan's.
    pub fn forget(&self, w: &Waiter) {
        self.lock().waiting.remove(&w.pid);
    }
}

/// The start time of a process (clock ticks since boot, field 22 of `/proc/PID/stat`):
/// together with the pid it names one process for the life of the system.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after it do not.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The children of `pid` (of all its threads).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in tasks.filter_map(Result::ok) {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

/// Kills `pid` and every process below it (for a runtime that hangs: the hooks and helpers
/// it started go with it). Each is stopped first, so none can fork past the walk, then all
/// are killed, each through a pidfd. Processes that left the tree (daemonized into another
/// parent) are not found.
pub fn kill_tree(pid: i32) {
    if let Ok(fd) = PidFd::open(pid) {
        kill_tree_of(&fd);
    }
}

/// [`kill_tree`] from a process pinned by its pidfd (one that is not our child, whose pid
/// alone could name another process by now).
pub fn kill_tree_of(root: &PidFd) {
    let _ = root.signal(Signal::SIGSTOP);
    let mut stopped = Vec::new();
    let mut todo = children_of(root.pid());
    while let Some(p) = todo.pop() {
        let Ok(fd) = PidFd::open(p) else { continue };
        let _ = fd.signal(Signal::SIGSTOP);
        todo.extend(children_of(p));
        stopped.push(fd);
        if stopped.len() > 4096 {
            break;
        }
    }
    let _ = root.signal(Signal::SIGKILL);
    for fd in &stopped {
        let _ = fd.signal(Signal::SIGKILL);
    }
}

/// A pid file descriptor: signals reach exactly the process it was opened for, never a
/// later process that reused the pid.
pub struct PidFd {
    fd: OwnedFd,
    pid: i32,
}

impl PidFd {
    pub fn open(pid: i32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = RawFd::try_from(fd).map_err(|_| io::Error::from(Errno::EOVERFLOW))?;
        // SAFETY: the kernel just returned this descriptor to us; we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(PidFd { fd, pid })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// A second descriptor for the same process (close-on-exec, as every descriptor here).
    pub fn try_clone(&self) -> io::Result<PidFd> {
        Ok(PidFd {
            fd: self.fd.try_clone()?,
            pid: self.pid,
        })
    }

    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        // SAFETY: the descriptor is valid for the life of self; no siginfo is passed.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig as i32,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            // ESRCH: it has already exited, which is what a kill wants.
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Whether the process has exited (the descriptor polls readable then); works for
    /// processes that are not our children.
    pub fn has_exited(&self) -> bool {
        self.wait_exited(Duration::ZERO)
    }

    /// Waits up to `limit` for the process to exit; whether it has.
    pub fn wait_exited(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            let mut p = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            let left = end.saturating_duration_since(Instant::now());
            // A bound past poll's range waits in turns.
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut p, timeout) {
                Ok(n)
                    if n > 0
                        && p[0]
                            .revents()
                            .is_some_and(|r| r.contains(PollFlags::POLLIN)) =>
                {
                    return true;
                }
                Ok(_) | Err(Errno::EINTR) => {}
                // Only a bug gets here (a bad descriptor): the process is not seen to end.
                Err(e) => {
                    log::error!("poll on the pidfd of {}: {e}", self.pid);
                    return false;
                }
            }
            if Instant::now() >= end {
                return false;
            }
        }
    }

    /// The exit status of a child of ours that has ended, read without reaping it (the
    /// reaper still does that): the thread that saw the pidfd turn readable need not wait
    /// for the reaper thread to run. None if it has not ended, is not our child, or was
    /// reaped already.
    pub fn peek_exit(&self) -> Option<ExitStatus> {
        // Raw, not nix's waitid: its WaitStatus has no room for a real-time signal (see
        // `decode_wait_status`).
        let id = libc::id_t::try_from(self.fd.as_raw_fd()).ok()?;
        // SAFETY: an all-zero siginfo_t is valid (si_pid 0 means "nothing has ended").
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid writes into `info`; the pidfd is open for as long as `self`.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                id,
                &mut info,
                libc::WEXITED | libc::WNOWAIT | libc::WNOHANG,
            )
        };
        // SAFETY: for a child's state change the kernel fills the SIGCHLD fields.
        if r != 0 || unsafe { info.si_pid() } == 0 {
            return None;
        }
        // SAFETY: as above.
        let value = unsafe { info.si_status() };
        match info.si_code {
            libc::CLD_EXITED => Some(ExitStatus::Code(value)),
            libc::CLD_KILLED | libc::CLD_DUMPED => Some(ExitStatus::Signal(value)),
            _ => None,
        }
    }

    pub fn as_owned_fd(&self) -> &OwnedFd {
        &self.fd
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use std::io::Read;

    /// Whatever the spawning thread blocks, the child starts with an empty mask.
    #[test]
    fn children_start_with_no_signal_blocked() {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGCHLD);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
        let mut cmd = Command::new("grep");
        cmd.args(["SigBlk:", "/proc/self/status"])
            .stdout(std::process::Stdio::piped());
        // Only the output is read: a unit test's other threads do not block SIGCHLD, so the
        // reaper thread may never hear of this child's end.
        let (mut child, _w) = global().spawn(&mut cmd).unwrap();
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
        pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None).unwrap();
        assert_eq!(out.trim(), "SigBlk:\t0000000000000000");
    }

    /// The posix_spawn path too: no signal blocked and none ignored (Rust ignores SIGPIPE),
    /// whatever the spawning thread has; piped output comes back.
    #[test]
    fn started_children_have_no_blocked_or_ignored_signal() {
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGCHLD);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
        // SAFETY: ignoring a signal installs no handler; restored below.
        let old_usr1 = unsafe {
            nix::sys::signal::signal(Signal::SIGUSR1, nix::sys::signal::SigHandler::SigIgn)
        }
        .unwrap();
        let mut s = Spawn::new("grep");
        s.args(["-E", "^Sig(Blk|Ign):", "/proc/self/status"])
            .stdout(Io::Piped);
        let child = global().start(&s);
        // SAFETY: puts back the disposition taken above.
        unsafe { nix::sys::signal::signal(Signal::SIGUSR1, old_usr1) }.unwrap();
        pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None).unwrap();
        let child = child.unwrap();
        assert!(child.pidfd.is_some());
        let mut out = String::new();
        std::fs::File::from(child.stdout.unwrap())
            .read_to_string(&mut out)
            .unwrap();
        let mask = |name: &str| {
            let line = out.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.split('\t').nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(mask("SigBlk:"), 0, "{out}");
        // Also the C library's internal signals (32, 33), which its posix_spawn would leave
        // ignored here (the test harness's threads make glibc handle them).
        assert_eq!(mask("SigIgn:"), 0, "{out}");
    }

    /// Taken by the tests that reap by hand and by those that peek at a zombie, which a
    /// reap running beside them would take away.
    static REAPING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn reaping() -> std::sync::MutexGuard<'static, ()> {
        REAPING.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status is read through the pidfd once it is readable, and reading it does not
    /// reap: the child is still a zombie for the reaper.
    #[test]
    fn peek_reads_the_status_without_reaping() {
        let _g = reaping();
        let mut s = Spawn::new("sh");
        s.args(["-c", "exit 3"]);
        let child = global().start(&s).unwrap();
        let fd = child.pidfd.unwrap();
        // Held while peeking, so the reaper thread cannot reap the child meanwhile.
        let reg = global().lock();
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        nix::poll::poll(&mut p, PollTimeout::from(10_000u16)).unwrap();
        assert_eq!(fd.peek_exit(), Some(ExitStatus::Code(3)));
        // Peeking did not reap: the child is still a zombie, and its status can be read
        // again (a reaping read would leave nothing the second time).
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", fd.pid())).unwrap();
        let state = stat.rsplit_once(')').unwrap().1.split_whitespace().next();
        assert_eq!(state, Some("Z"), "{stat}");
        assert_eq!(fd.peek_exit(), Some(ExitStatus::Code(3)));
        drop(reg);
        global().reap_all();
        assert_eq!(
            child.waiter.wait_timeout(Duration::from_secs(10)),
            Some(ExitStatus::Code(3))
        );
    }

    /// A child killed by a real-time signal (here 40) is reaped with its status, through
    /// the pidfd and through the reaper, and its waiter hears of it.
    #[test]
    fn a_real_time_signal_death_is_reported() {
        let _g = reaping();
        let mut s = Spawn::new("sleep");
        s.arg("30");
        let child = global().start(&s).unwrap();
        let fd = child.pidfd.unwrap();
        // Held while peeking, so the reaper thread cannot reap the child meanwhile.
        let reg = global().lock();
        // SAFETY: a signal to our own child, which is alive until it is reaped.
        assert_eq!(unsafe { libc::kill(fd.pid(), 40) }, 0);
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        nix::poll::poll(&mut p, PollTimeout::from(10_000u16)).unwrap();
        assert_eq!(fd.peek_exit(), Some(ExitStatus::Signal(40)));
        drop(reg);
        // The reaper thread may not hear the SIGCHLD here (unit tests' threads do not
        // block it): reap as it would.
        global().reap_all();
        assert_eq!(
            child.waiter.wait_timeout(Duration::from_secs(10)),
            Some(ExitStatus::Signal(40))
        );
        assert_eq!(ExitStatus::Signal(40).code(), 168);
    }

    /// A pidfd is handed out only while the child has not been reaped: after that its pid
    /// may be another process's.
    #[test]
    // The reaper reaps them: that is what is tested.
    #[allow(clippy::zombie_processes)]
    fn watch_with_pidfd_gives_no_pidfd_for_a_reaped_child() {
        let _g = reaping();
        let alive = Command::new("sleep").arg("30").spawn().unwrap();
        let gone = Command::new("true").spawn().unwrap();
        let (alive, gone) = (pid_of(&alive), pid_of(&gone));
        // `true` has exited once its pidfd polls readable (no pidfd: another test's
        // reap_all took it already); then reap it as the reaper would.
        if let Ok(fd) = PidFd::open(gone) {
            let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            nix::poll::poll(&mut p, PollTimeout::from(10_000u16)).unwrap();
        }
        global().reap_all();
        let (w, none) = global().watch_with_pidfd(gone);
        assert_eq!(w.try_status(), Some(ExitStatus::Code(0)));
        assert!(none.is_none());
        let (w, some) = global().watch_with_pidfd(alive);
        let some = some.expect("a pidfd for a live child");
        assert_eq!(some.pid(), alive);
        assert!(w.try_status().is_none());
        some.signal(Signal::SIGKILL).unwrap();
        let mut p = [PollFd::new(some.as_fd(), PollFlags::POLLIN)];
        nix::poll::poll(&mut p, PollTimeout::from(10_000u16)).unwrap();
        global().reap_all();
        assert_eq!(
            w.wait_timeout(Duration::from_secs(10)),
            Some(ExitStatus::Signal(9))
        );
    }

    #[test]
    fn start_reports_a_missing_program() {
        let e = global()
            .start(&Spawn::new("/nonexistent/lkinit-test-program"))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = global()
            .start(&Spawn::new("lkinit-no-such-program-in-path"))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn exit_status_codes() {
        assert_eq!(ExitStatus::Code(3).code(), 3);
        assert_eq!(ExitStatus::Signal(9).code(), 137);
        assert_eq!(
            ExitStatus::Signal(9).to_string(),
            "exit code 137 (killed by SIGKILL)"
        );
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Signal(15).success());
    }
}
