//! The in-namespace half of `exec`, `mount` and `umount`: the hidden `nsenter-helper`
//! command, a fresh single-threaded child of the CLI that enters the service's namespaces,
//! does its part and reports back on the pipe (see the parent module).

use super::{
    Action, CONTAINER_DIRS, EXIT_CANNOT_EXECUTE, EXIT_FAILED, EXIT_NOT_FOUND, HelperRequest, Ns,
    ignore_terminal_signals, send_error, set_cloexec,
};
use crate::paths::{self, Create, PathError};
use crate::process::{self, PidFd, Waiter};
use crate::{cgroups, mountapi};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, umount2};
use nix::sched::setns;
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::unistd::{Gid, Uid, chroot, fchdir, setgroups, setresgid, setresuid};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Failures inside the service's namespaces, reported back to the CLI as one line.
#[derive(Debug, thiserror::Error)]
enum InsideError {
    #[error("the init of service {service} (pid {pid}) is gone")]
    Gone { service: String, pid: i32 },
    #[error("cannot open {path}")]
    Open {
        path: String,
        #[source]
        source: Errno,
    },
    #[error("cannot join the {ns} namespace of service {service}")]
    Setns {
        ns: &'static str,
        service: String,
        #[source]
        source: Errno,
    },
    #[error("cannot join the cgroup {path} of service {service}")]
    Cgroup {
        path: PathBuf,
        service: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot become root in the user namespace of service {service}")]
    Creds {
        service: String,
        #[source]
        source: Errno,
    },
    #[error("cannot enter the root of service {service}")]
    Root {
        service: String,
        #[source]
        source: Errno,
    },
    #[error("`{cmd}` not found in {place}")]
    NotFound { cmd: String, place: String },
    #[error("cannot execute `{cmd}` in service {service}")]
    CannotExecute {
        cmd: String,
        service: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot reach {dst} in service {service}")]
    Destination {
        dst: PathBuf,
        service: String,
        #[source]
        source: PathError,
    },
    #[error("{dst} in service {service} is a {dst_kind} but {src} is a {src_kind}")]
    KindMismatch {
        dst: PathBuf,
        service: String,
        dst_kind: &'static str,
        src: PathBuf,
        src_kind: &'static str,
    },
    #[error("cannot mount {src} on {dst} in service {service}")]
    Move {
        src: PathBuf,
        dst: PathBuf,
        service: String,
        #[source]
        source: io::Error,
    },
    #[error("{dst} is not a mount point in service {service}")]
    NotMounted { dst: PathBuf, service: String },
    #[error("cannot unmount {dst} in service {service}")]
    Umount {
        dst: PathBuf,
        service: String,
        #[source]
        source: Errno,
    },
}

impl InsideError {
    fn exec_code(&self) -> i32 {
        match self {
            InsideError::NotFound { .. } => EXIT_NOT_FOUND,
            InsideError::CannotExecute { .. } => EXIT_CANNOT_EXECUTE,
            _ => EXIT_FAILED,
        }
    }
}

/// The hidden `nsenter-helper` command: runs in a fresh, single-threaded process.
pub fn helper(request: &str) -> i32 {
    let req: HelperRequest = match serde_json::from_str(request) {
        Ok(r) => r,
        Err(e) => {
            log::error!("nsenter-helper: unreadable request: {e}");
            return EXIT_FAILED;
        }
    };
    // SAFETY: the CLI passed this descriptor to us alone; nothing else owns it here.
    let report = unsafe { OwnedFd::from_raw_fd(req.report_fd) };
    // The command must not hold the report pipe open: the CLI reads it to its end.
    if let Err(e) = set_cloexec(&report) {
        log::warn!("the command may hold the report pipe open: {e}");
    }
    let report = File::from(report);
    match &req.action {
        Action::Exec { ns, cmd } => helper_exec(&req, ns, cmd, report),
        Action::Mount {
            tree_fd,
            src,
            src_is_dir,
            dst,
        } => {
            // SAFETY: as the report descriptor: passed to us alone.
            let tree = unsafe { OwnedFd::from_raw_fd(*tree_fd) };
            if let Err(e) = set_cloexec(&tree) {
                log::warn!("the command may hold the mount's descriptor: {e}");
            }
            match helper_mount(&req, &tree, src, *src_is_dir, dst) {
                Ok(()) => report_ok(report, 0),
                Err(e) => {
                    send_error(report, 1, &e);
                    1
                }
            }
        }
        Action::Umount { dst } => match helper_umount(&req, dst) {
            Ok(()) => report_ok(report, 0),
            Err(e) => {
                send_error(report, 1, &e);
                1
            }
        },
    }
}

fn report_ok(mut report: File, code: i32) -> i32 {
    let _ = report.write_all(b"ok\n");
    code
}

fn helper_exec(req: &HelperRequest, ns: &[Ns], cmd: &[String], report: File) -> i32 {
    ignore_terminal_signals();
    let started = enter(req, ns).and_then(|entered| start(&entered, cmd));
    match started {
        Ok(waiter) => {
            let mut report = report;
            let _ = report.write_all(b"ok\n");
            drop(report);
            waiter.wait().code()
        }
        Err(e) => {
            let code = e.exec_code();
            send_error(report, code, &e);
            code
        }
    }
}

/// What `enter` leaves for starting the command.
struct Entered {
    service: String,
    /// In the service's mount namespace and root.
    mnt: bool,
    /// The environment of the service's init (when its root is ours now).
    env: Option<Vec<(OsString, OsString)>>,
    /// The pid namespace, joined last of all: once a process's children go to another pid
    /// namespace, the kernel refuses it new threads (EINVAL), and the reaper is one.
    pid_ns: Option<OwnedFd>,
}

fn open_proc(path: &str, flags: OFlag) -> Result<OwnedFd, InsideError> {
    nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(|source| {
        InsideError::Open {
            path: path.to_string(),
            source,
        }
    })
}

fn same_object(a: &impl AsFd, b: &impl AsFd) -> bool {
    match (fstat(a), fstat(b)) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    }
}

/// Joins the namespaces `ns` of the service's init (skipping the ones we share already),
/// its cgroups with `cgroup`, and its root and working directory with `mnt`; all but the
/// pid namespace, which `start` joins.
fn enter(req: &HelperRequest, ns: &[Ns]) -> Result<Entered, InsideError> {
    let (pid, service) = (req.pid, req.service.clone());
    let gone = || InsideError::Gone {
        service: service.clone(),
        pid,
    };
    let pidfd = PidFd::open(pid).map_err(|_| gone())?;
    if req.start_time.is_some() && process::start_time(pid) != req.start_time {
        return Err(gone());
    }
    let mut join = Vec::new();
    for &n in ns {
        let theirs = open_proc(&format!("/proc/{pid}/ns/{}", n.name()), OFlag::O_RDONLY)?;
        let ours = open_proc(&format!("/proc/self/ns/{}", n.name()), OFlag::O_RDONLY)?;
        // Joining one's own user namespace is an error, and the others a no-op.
        if !same_object(&theirs, &ours) {
            join.push((n, theirs));
        }
    }
    let mnt = ns.contains(&Ns::Mnt);
    let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    let (root, cwd, env) = if mnt {
        let root = open_proc(&format!("/proc/{pid}/root"), dir_flags)?;
        let cwd = open_proc(&format!("/proc/{pid}/cwd"), dir_flags).ok();
        let env = std::fs::read(format!("/proc/{pid}/environ"))
            .map(|b| parse_environ(&b))
            .ok();
        (Some(root), cwd, env)
    } else {
        (None, None, None)
    };
    // Everything above was opened through the pid; the pidfd tells whether it still
    // belonged to the same process when we were done.
    if pidfd.has_exited() {
        return Err(gone());
    }
    if ns.contains(&Ns::Cgroup) {
        // Before any setns: the cgroup filesystems are reached through the host's mounts,
        // with the host's privileges.
        join_cgroups(pid, &service)?;
    }
    let mut pid_ns = None;
    for (n, fd) in join {
        if n == Ns::Pid {
            pid_ns = Some(fd);
            continue;
        }
        join_one(n, &fd, &service)?;
        if n == Ns::User {
            become_root(&service)?;
        }
    }
    if let Some(root) = root {
        let root_err = |source| InsideError::Root {
            service: service.clone(),
            source,
        };
        // Its root as the init sees it, whatever the runtime did (pivot_root or chroot).
        fchdir(&root).map_err(root_err)?;
        chroot(".").map_err(root_err)?;
        match cwd {
            Some(cwd) if fchdir(&cwd).is_ok() => {}
            _ => nix::unistd::chdir("/").map_err(root_err)?,
        }
    }
    Ok(Entered {
        service,
        mnt,
        env,
        pid_ns,
    })
}

fn join_one(n: Ns, fd: &OwnedFd, service: &str) -> Result<(), InsideError> {
    setns(fd, n.flag()).map_err(|source| InsideError::Setns {
        ns: n.name(),
        service: service.to_string(),
        source,
    })
}

/// Uid and gid 0 of the user namespace just joined (its root, not an unmapped nobody).
fn become_root(service: &str) -> Result<(), InsideError> {
    let err = |source| InsideError::Creds {
        service: service.to_string(),
        source,
    };
    // Refused when the namespace denies setgroups; the supplementary groups are then the
    // ones the kernel shows as unmapped, which grant nothing.
    match setgroups(&[]) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(e) => return Err(err(e)),
    }
    let (g, u) = (Gid::from_raw(0), Uid::from_raw(0));
    setresgid(g, g, g).map_err(err)?;
    setresuid(u, u, u).map_err(err)
}

fn parse_environ(bytes: &[u8]) -> Vec<(OsString, OsString)> {
    bytes
        .split(|b| *b == 0)
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let eq = kv.iter().position(|b| *b == b'=')?;
            Some((
                OsStr::from_bytes(&kv[..eq]).to_os_string(),
                OsStr::from_bytes(&kv[eq + 1..]).to_os_string(),
            ))
        })
        .collect()
}

/// Moves this process into the cgroups of `pid`, so the command counts against the
/// service's limits and goes with it when the service is killed.
fn join_cgroups(pid: i32, service: &str) -> Result<(), InsideError> {
    let theirs =
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|e| InsideError::Open {
            path: format!("/proc/{pid}/cgroup"),
            source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
    let mounts = cgroups::cgroup_mounts_in(&crate::mountinfo::read());
    let me = std::process::id().to_string();
    for (_, dir) in cgroups::cgroup_dirs(&theirs, &mounts) {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, &me).map_err(|source| InsideError::Cgroup {
            path: dir.clone(),
            service: service.to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Where a bare command name is looked up: the service's directories when its root is
/// ours, otherwise lkinit's PATH.
fn find_command(cmd: &str, entered: &Entered, service: &str) -> Result<PathBuf, InsideError> {
    if cmd.contains('/') {
        return Ok(PathBuf::from(cmd));
    }
    let (dirs, place): (Vec<PathBuf>, String) = if entered.mnt {
        (
            CONTAINER_DIRS.iter().map(PathBuf::from).collect(),
            format!("{} of service {service}", CONTAINER_DIRS.join(", ")),
        )
    } else {
        let path = std::env::var("PATH").unwrap_or_else(|_| crate::DEFAULT_PATH.to_string());
        (
            std::env::split_paths(&path).collect(),
            format!("lkinit's PATH ({path})"),
        )
    };
    dirs.iter()
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
        .ok_or_else(|| InsideError::NotFound {
            cmd: cmd.to_string(),
            place,
        })
}

/// Starts the command as a child of this helper; after `setns(pid)` only children enter
/// the pid namespace, so the command really is in it.
fn start(entered: &Entered, cmd: &[String]) -> Result<Waiter, InsideError> {
    let service = entered.service.as_str();
    let Some((name, args)) = cmd.split_first() else {
        return Err(InsideError::NotFound {
            cmd: String::new(),
            place: format!("service {service}"),
        });
    };
    let path = find_command(name, entered, service)?;
    let mut c = Command::new(&path);
    c.arg0(name).args(args);
    if let Some(env) = &entered.env {
        c.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    // SAFETY: only an async-signal-safe call (prctl) between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The reaper thread starts now: the mount and user namespaces, which want a
    // single-threaded caller, are joined already, and the pid namespace, after which no
    // thread can start, is not yet.
    let reaper = process::reaper();
    if let Some(fd) = &entered.pid_ns {
        join_one(Ns::Pid, fd, service)?;
    }
    match reaper.spawn(&mut c) {
        Ok((_child, waiter)) => Ok(waiter),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(InsideError::NotFound {
            cmd: name.clone(),
            place: format!("service {service}"),
        }),
        Err(source) => Err(InsideError::CannotExecute {
            cmd: name.clone(),
            service: service.to_string(),
            source,
        }),
    }
}

fn kind_name(is_dir: bool) -> &'static str {
    if is_dir { "directory" } else { "file" }
}

fn helper_mount(
    req: &HelperRequest,
    tree: &OwnedFd,
    src: &Path,
    src_is_dir: bool,
    dst: &Path,
) -> Result<(), InsideError> {
    let service = req.service.clone();
    // The user namespace is left alone: the host's root may mount in a namespace owned by
    // any user namespace, while the service's root may not hold the rights to.
    enter(req, &[Ns::Mnt])?;
    let rel = dst.strip_prefix("/").unwrap_or(dst).to_string_lossy();
    let create = if src_is_dir {
        Create::Dirs
    } else {
        Create::File
    };
    // Chrooted into the service's root, so `/` below is its root: symlinks and `..` in DST
    // resolve inside it.
    let target = paths::resolve_in_root(Path::new("/"), &rel, create).map_err(|source| {
        InsideError::Destination {
            dst: dst.to_path_buf(),
            service: service.clone(),
            source,
        }
    })?;
    let undo_created = || {
        for c in target.created.iter().rev() {
            let _ = c.remove();
        }
    };
    let dst_is_dir = fstat(&target.fd)
        .map(|st| SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR)
        .unwrap_or(false);
    if dst_is_dir != src_is_dir {
        undo_created();
        return Err(InsideError::KindMismatch {
            dst: dst.to_path_buf(),
            service,
            dst_kind: kind_name(dst_is_dir),
            src: src.to_path_buf(),
            src_kind: kind_name(src_is_dir),
        });
    }
    mountapi::move_mount(tree, &target.fd).map_err(|source| {
        undo_created();
        InsideError::Move {
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
            service,
            source,
        }
    })
}

fn helper_umount(req: &HelperRequest, dst: &Path) -> Result<(), InsideError> {
    enter(req, &[Ns::Mnt])?;
    // Detached: the service's processes that still use it keep it until they let go, and
    // the path is free at once.
    umount2(dst, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).map_err(|source| {
        let (dst, service) = (dst.to_path_buf(), req.service.clone());
        match source {
            Errno::EINVAL => InsideError::NotMounted { dst, service },
            source => InsideError::Umount {
                dst,
                service,
                source,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environ() {
        let env = parse_environ(b"PATH=/bin\0A=b=c\0junk\0\0");
        assert_eq!(
            env,
            vec![
                (OsString::from("PATH"), OsString::from("/bin")),
                (OsString::from("A"), OsString::from("b=c")),
            ]
        );
    }
}
