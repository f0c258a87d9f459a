//! Acting on a running service from the outside: `exec` runs a command in its namespaces,
//! `mount` and `umount` plug a host path in and out of its mount namespace.
//!
//! The service's init is found through the OCI runtime's state, so this works with or
//! without a supervisor. Only a single-threaded process may enter a mount or user
//! namespace, and lkinit is not one (the reaper thread): the work inside is done by a fresh
//! child, `/proc/self/exe nsenter-helper REQUEST`, spawned through the reaper. The helper
//! reports on a pipe: `ok` once its part is done (for exec: the command has started, so
//! every later exit status is the command's), or `error`, an exit code and one line that
//! the CLI prints.
//!
//! Exit codes of `exec`, as `docker exec` and `env` have them: 125 when lkinit cannot enter
//! the service, 126 when CMD is found but cannot be executed, 127 when CMD is not found;
//! otherwise CMD's own status, 128 + N when signal N killed it. `mount` and `umount` exit 0
//! or 1.

use crate::bundle;
use crate::container::Ctx;
use crate::mountapi;
use crate::oci_runtime::RuntimeError;
use crate::process::{self, ExitStatus, PidFd, Waiter};
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sched::CloneFlags;
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::Signal;
use nix::sys::stat::{SFlag, fstat};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod helper;
pub use helper::helper;

/// Where a bare command name is looked up inside the service's root.
const CONTAINER_DIRS: [&str; 3] = ["/bin", "/usr/sbin", "/usr/bin"];

/// `exec`: lkinit itself failed (the service could not be entered).
pub(crate) const EXIT_FAILED: i32 = 125;
/// `exec`: CMD exists but cannot be executed.
pub(crate) const EXIT_CANNOT_EXECUTE: i32 = 126;
/// `exec`: CMD was not found.
pub(crate) const EXIT_NOT_FOUND: i32 = 127;

/// A namespace kind, as named in `/proc/PID/ns/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Ns {
    // The order of joining: user first, since the others belong to it and joining it gives
    // the capabilities to join them; mnt last, since its root replaces ours.
    User,
    Cgroup,
    Ipc,
    Uts,
    Net,
    Pid,
    Mnt,
}

impl Ns {
    pub(crate) const ALL: [Ns; 7] = [
        Ns::User,
        Ns::Cgroup,
        Ns::Ipc,
        Ns::Uts,
        Ns::Net,
        Ns::Pid,
        Ns::Mnt,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Ns::User => "user",
            Ns::Cgroup => "cgroup",
            Ns::Ipc => "ipc",
            Ns::Uts => "uts",
            Ns::Net => "net",
            Ns::Pid => "pid",
            Ns::Mnt => "mnt",
        }
    }

    fn flag(self) -> CloneFlags {
        match self {
            Ns::User => CloneFlags::CLONE_NEWUSER,
            Ns::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            Ns::Ipc => CloneFlags::CLONE_NEWIPC,
            Ns::Uts => CloneFlags::CLONE_NEWUTS,
            Ns::Net => CloneFlags::CLONE_NEWNET,
            Ns::Pid => CloneFlags::CLONE_NEWPID,
            Ns::Mnt => CloneFlags::CLONE_NEWNS,
        }
    }

    /// `/proc/PID/ns/` names, plus the OCI spellings `mount` and `network`.
    pub(crate) fn parse(s: &str) -> Result<Ns, NsError> {
        let s = s.trim();
        match s {
            "mount" => return Ok(Ns::Mnt),
            "network" => return Ok(Ns::Net),
            _ => {}
        }
        Ns::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| NsError::UnknownNs(s.to_string()))
    }
}

/// The namespaces `--ns` names, in joining order; all of them when it is absent.
pub(crate) fn parse_ns_list(list: Option<&[String]>) -> Result<Vec<Ns>, NsError> {
    let Some(list) = list else {
        return Ok(Ns::ALL.to_vec());
    };
    let mut out = list
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| Ns::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    if out.is_empty() {
        return Err(NsError::UnknownNs(String::new()));
    }
    Ok(out)
}

/// What the CLI side can fail at; the helper's failures arrive as `Inside`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NsError {
    #[error("`{0}` is not a valid service name")]
    InvalidName(String),
    #[error("unknown namespace `{0}` (known: mnt, uts, ipc, net, pid, cgroup, user)")]
    UnknownNs(String),
    #[error("no service `{name}`: `{runtime}` knows no container of that name")]
    Unknown { name: String, runtime: String },
    #[error("service `{name}` is {status}, not running")]
    NotRunning { name: String, status: String },
    #[error("cannot get the state of service `{name}`")]
    State {
        name: String,
        #[source]
        source: RuntimeError,
    },
    #[error("{0}: the destination must be an absolute path inside the service, not its root")]
    BadDestination(PathBuf),
    #[error("cannot take {0} from the host")]
    Source(PathBuf, #[source] io::Error),
    #[error("cannot start the namespace helper")]
    Spawn(#[source] io::Error),
    #[error("{message}")]
    Inside { code: i32, message: String },
    #[error("the namespace helper ended without a report ({0})")]
    HelperDied(ExitStatus),
}

impl NsError {
    fn exec_code(&self) -> i32 {
        match self {
            NsError::Inside { code, .. } => *code,
            _ => EXIT_FAILED,
        }
    }
}

/// What the CLI asks the helper to do; passed as JSON on the helper's command line.
#[derive(Debug, Serialize, Deserialize)]
struct HelperRequest {
    service: String,
    pid: i32,
    /// The init's start time, when the caller knows it: a pid that names another process
    /// by now is not entered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start_time: Option<u64>,
    /// The write end of the report pipe, inherited.
    report_fd: RawFd,
    action: Action,
}

#[derive(Debug, Serialize, Deserialize)]
enum Action {
    Exec {
        ns: Vec<Ns>,
        cmd: Vec<String>,
    },
    Mount {
        /// The detached copy of SRC (open_tree), inherited.
        tree_fd: RawFd,
        src: PathBuf,
        src_is_dir: bool,
        dst: PathBuf,
    },
    Umount {
        dst: PathBuf,
    },
}

/// The init pid of a running service, from the runtime's state.
fn service_pid(ctx: &Ctx, name: &str) -> Result<i32, NsError> {
    if !bundle::valid_name(name) {
        return Err(NsError::InvalidName(name.to_string()));
    }
    let state = ctx.runtime.state(name).map_err(|source| NsError::State {
        name: name.to_string(),
        source,
    })?;
    match state {
        None => Err(NsError::Unknown {
            name: name.to_string(),
            runtime: ctx.runtime.bin.clone(),
        }),
        Some(s) if s.status == "running" && s.pid > 0 => Ok(s.pid),
        Some(s) => Err(NsError::NotRunning {
            name: name.to_string(),
            status: s.status,
        }),
    }
}

/// `service exec`: returns the exit code for the CLI (see the module comment).
pub fn exec(ctx: &Ctx, name: &str, ns: Option<&[String]>, cmd: &[String]) -> i32 {
    match exec_inner(ctx, name, ns, cmd) {
        Ok(code) => code,
        Err(e) => {
            log::error!("exec: {}", crate::error_chain(&e));
            e.exec_code()
        }
    }
}

fn exec_inner(
    ctx: &Ctx,
    name: &str,
    ns: Option<&[String]>,
    cmd: &[String],
) -> Result<i32, NsError> {
    let ns = parse_ns_list(ns)?;
    let pid = service_pid(ctx, name)?;
    // The command shares our process group, so a ^C from the terminal reaches it directly;
    // what it does with it decides the status we report. The helper ignores them likewise,
    // and the command starts with the defaults (see process::Reaper::spawn).
    ignore_terminal_signals();
    let action = Action::Exec {
        ns,
        cmd: cmd.to_vec(),
    };
    let helper = spawn_helper(name, pid, action, &[])?;
    Ok(helper.wait().code())
}

/// `service mount`: 0 or 1.
pub fn mount(ctx: &Ctx, name: &str, src: &Path, dst: &Path) -> i32 {
    match mount_inner(ctx, name, src, dst) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("mount: {}", crate::error_chain(&e));
            1
        }
    }
}

fn check_destination(dst: &Path) -> Result<(), NsError> {
    if !dst.is_absolute() || dst.parent().is_none() {
        return Err(NsError::BadDestination(dst.to_path_buf()));
    }
    Ok(())
}

fn mount_inner(ctx: &Ctx, name: &str, src: &Path, dst: &Path) -> Result<(), NsError> {
    check_destination(dst)?;
    let pid = service_pid(ctx, name)?;
    // Captured here: once inside the service's mount namespace, host paths are out of reach.
    let tree = mountapi::open_tree_clone(src).map_err(|e| NsError::Source(src.to_path_buf(), e))?;
    let st = fstat(&tree).map_err(|e| NsError::Source(src.to_path_buf(), e.into()))?;
    let src_is_dir = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
    let action = Action::Mount {
        tree_fd: tree.as_raw_fd(),
        src: src.to_path_buf(),
        src_is_dir,
        dst: dst.to_path_buf(),
    };
    let helper = spawn_helper(name, pid, action, &[tree.as_raw_fd()])?;
    helper.wait();
    // Dropping the descriptor frees the copy if it was never attached.
    drop(tree);
    Ok(())
}

/// `service umount`: 0 or 1.
pub fn umount(ctx: &Ctx, name: &str, dst: &Path) -> i32 {
    let r = check_destination(dst).and_then(|()| {
        let pid = service_pid(ctx, name)?;
        let action = Action::Umount {
            dst: dst.to_path_buf(),
        };
        spawn_helper(name, pid, action, &[]).map(|h| {
            h.wait();
        })
    });
    match r {
        Ok(()) => 0,
        Err(e) => {
            log::error!("umount: {}", crate::error_chain(&e));
            1
        }
    }
}

/// Spawns the helper for `action`, passing it `inherit` and the report pipe, and reads its
/// report. Returns the helper's waiter once it reported success.
fn spawn_helper(
    service: &str,
    pid: i32,
    action: Action,
    inherit: &[RawFd],
) -> Result<Waiter, NsError> {
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| NsError::Spawn(e.into()))?;
    let req = HelperRequest {
        service: service.to_string(),
        pid,
        start_time: None,
        report_fd: wr.as_raw_fd(),
        action,
    };
    let json = serde_json::to_string(&req).expect("a request always serializes");
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("nsenter-helper").arg(json);
    let mut fds = inherit.to_vec();
    fds.push(wr.as_raw_fd());
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl, prctl) are made,
    // on a vector allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &fds {
                // SAFETY: the caller holds these descriptors open until the spawn returns.
                let fd = BorrowedFd::borrow_raw(fd);
                fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
            }
            // Nothing of an exec outlives the CLI that started it.
            set_pdeathsig(Signal::SIGKILL)?;
            Ok(())
        });
    }
    let (_child, waiter) = process::reaper().spawn(&mut cmd).map_err(NsError::Spawn)?;
    drop(cmd);
    drop(wr);
    let mut report = String::new();
    let _ = File::from(rd).read_to_string(&mut report);
    if report == "ok\n" {
        return Ok(waiter);
    }
    let status = waiter.wait();
    match parse_report(&report) {
        Some((code, message)) => Err(NsError::Inside { code, message }),
        None => Err(NsError::HelperDied(status)),
    }
}

/// A command run by the supervisor in a service's namespaces (a readiness or health
/// check), as `service exec` runs one: every namespace, its cgroups, its root.
pub struct Check {
    pub waiter: Waiter,
    /// None only if the helper ended before it could be pinned.
    pub pidfd: Option<PidFd>,
    /// The read end of the command's stdout and stderr (one pipe), non-blocking.
    pub output: OwnedFd,
    /// The read end of the helper's report (see the module comment), non-blocking.
    pub report: OwnedFd,
}

/// Starts `cmd` in the namespaces of the service whose init is `pid` (started at
/// `start_time`). Its stdin is /dev/null; if the supervisor dies, the helper and the
/// command die with it.
pub(crate) fn spawn_check(
    service: &str,
    pid: i32,
    start_time: Option<u64>,
    cmd: &[String],
) -> Result<Check, NsError> {
    let spawn_err = |e: nix::errno::Errno| NsError::Spawn(e.into());
    let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(spawn_err)?;
    let (out_r, out_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(spawn_err)?;
    // The child's ends block, as a command expects of its stdout.
    for fd in [&wr, &out_w] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty())).map_err(spawn_err)?;
    }
    let req = HelperRequest {
        service: service.to_string(),
        pid,
        start_time,
        report_fd: wr.as_raw_fd(),
        action: Action::Exec {
            ns: Ns::ALL.to_vec(),
            cmd: cmd.to_vec(),
        },
    };
    let json = serde_json::to_string(&req).expect("a request always serializes");
    let out_w2 = out_w.try_clone().map_err(NsError::Spawn)?;
    let mut c = Command::new("/proc/self/exe");
    c.arg("nsenter-helper")
        .arg(json)
        .stdin(std::process::Stdio::null())
        .stdout(out_w)
        .stderr(out_w2);
    let report_fd = wr.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls (fcntl, prctl).
    unsafe {
        c.pre_exec(move || {
            if libc::fcntl(report_fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // A check outlives no supervisor.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (child, waiter) = process::reaper().spawn(&mut c).map_err(NsError::Spawn)?;
    drop(c);
    drop(wr);
    // Pinned now; if it has ended already its pid may have been reaped and reused, and
    // there is nothing left to kill anyway.
    let pidfd = PidFd::open(child.id().cast_signed()).ok();
    let pidfd = pidfd.filter(|_| waiter.try_status().is_none());
    Ok(Check {
        waiter,
        pidfd,
        output: out_r,
        report: rd,
    })
}

/// What a helper reported: None for `ok` (or nothing yet), else the code and message of
/// its failure.
pub fn parse_report(report: &str) -> Option<(i32, String)> {
    let mut lines = report.splitn(3, '\n');
    match (lines.next(), lines.next(), lines.next()) {
        (Some("error"), Some(code), Some(message)) => {
            Some((code.parse().unwrap_or(EXIT_FAILED), message.to_string()))
        }
        _ => None,
    }
}

fn set_cloexec(fd: &impl AsFd) -> nix::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(drop)
}

/// SIGINT and SIGQUIT from the terminal are the command's to handle, not ours.
fn ignore_terminal_signals() {
    for sig in [nix::sys::signal::SIGINT, nix::sys::signal::SIGQUIT] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigIgn) };
    }
}

fn send_error(mut report: File, code: i32, e: &(dyn std::error::Error + 'static)) {
    let _ = write!(report, "error\n{code}\n{}", crate::error_chain(e));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_lists() {
        assert_eq!(parse_ns_list(None).unwrap(), Ns::ALL.to_vec());
        let l = [
            "mnt".to_string(),
            "user".into(),
            "network".into(),
            "mnt".into(),
        ];
        assert_eq!(
            parse_ns_list(Some(&l)).unwrap(),
            vec![Ns::User, Ns::Net, Ns::Mnt]
        );
        let bad = ["uts".to_string(), "time".into()];
        let e = parse_ns_list(Some(&bad)).unwrap_err();
        assert!(e.to_string().contains("`time`"), "{e}");
    }
}
