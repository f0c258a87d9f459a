//! Starting children: std's `Command` through the fork path (for helpers that need work
//! between fork and exec), and [`Spawn`] through posix_spawn (a vfork: lkinit's page tables
//! are not copied) for the runtimes. Either way the child starts with a clean signal state
//! (see `inherit.rs`) and under the reaper's lock, so its status cannot be missed.

use super::inherit::{default_signals, reset_signals_in_child};
use super::pidfd::PidFd;
use super::reaper::{Reaper, Waiter};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::SigSet;
use nix::sys::stat::Mode;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// The pid of a child std started: std hands out the kernel's pid_t (always positive) as
/// a u32, and this is the same bits back.
pub fn pid_of(child: &Child) -> i32 {
    child.id().cast_signed()
}

/// What one of a child's standard streams is connected to.
pub enum Io<'a> {
    /// lkinit's own.
    Inherit,
    /// `/dev/null`.
    Null,
    /// A new pipe; the parent's end comes back in [`Spawned`] (stdout and stderr: no
    /// child is given its input through lkinit).
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
    /// The child's descriptors 3, 4, ... in this order.
    fds: Vec<BorrowedFd<'a>>,
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
            fds: Vec::new(),
        }
    }

    /// Hands `fd` to the child as its next descriptor from 3 on (each child gets its own
    /// copy, without close-on-exec).
    pub fn pass_fd(&mut self, fd: BorrowedFd<'a>) -> &mut Self {
        self.fds.push(fd);
        self
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
}

/// An argument with a NUL byte cannot reach a program; it is cut there (paths and names
/// lkinit passes never hold one).
fn cstring(s: &OsStr) -> CString {
    let b = s.as_bytes();
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    CString::new(&b[..end]).expect("no NUL byte before `end`")
}

/// A child started by [`Reaper::start`].
pub struct Spawned {
    pub waiter: Waiter,
    /// Polls readable once the child has exited (None on a kernel without pidfds).
    pub pidfd: Option<PidFd>,
    /// The parent's ends of the pipes asked for with [`Io::Piped`].
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Reaper {
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
                Io::Piped if input => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a child's stdin is never a pipe from lkinit",
                    ));
                }
                Io::Piped => {
                    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
                    actions.add_dup2(w.as_raw_fd(), target)?;
                    *mine_slot = Some(r);
                    theirs.push(w);
                }
            }
        }
        // Each passed descriptor is first copied above every target, so no dup2 below
        // lands on a source that is still to be copied.
        let first_free =
            RawFd::try_from(3 + s.fds.len()).map_err(|_| io::Error::from(Errno::EMFILE))?;
        let mut passed: Vec<OwnedFd> = Vec::with_capacity(s.fds.len());
        for (target, fd) in (3..).zip(&s.fds) {
            let high = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(first_free))?;
            // SAFETY: fcntl just made this descriptor; nothing else owns it.
            let high = unsafe { OwnedFd::from_raw_fd(high) };
            actions.add_dup2(high.as_raw_fd(), target)?;
            passed.push(high);
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
        drop(passed);
        let [_, stdout, stderr] = ours;
        Ok(Spawned {
            waiter,
            pidfd,
            stdout,
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::reaper;
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
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
        let (mut child, _w) = reaper().spawn(&mut cmd).unwrap();
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
        let child = reaper().start(&s);
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

    #[test]
    fn start_reports_a_missing_program() {
        let e = reaper()
            .start(&Spawn::new("/nonexistent/lkinit-test-program"))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // As execvp does, the search says EACCES when a directory of PATH could not be
        // searched (e.g. root's own directories, for a test run as another user).
        let path = std::env::var_os("PATH").unwrap_or_default();
        let barred = std::env::split_paths(&path).any(|d| {
            nix::unistd::access(&d, nix::unistd::AccessFlags::X_OK)
                == Err(nix::errno::Errno::EACCES)
        });
        let e = reaper()
            .start(&Spawn::new("lkinit-no-such-program-in-path"))
            .err()
            .unwrap();
        let expected = if barred {
            io::ErrorKind::PermissionDenied
        } else {
            io::ErrorKind::NotFound
        };
        assert_eq!(e.kind(), expected);
    }
}
