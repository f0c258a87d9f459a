//! runtime.json `cgroups`: groups made ahead of the container so its config.json (or a later
//! container's) can name them in `cgroupsPath`. They outlive the container, as in LinuxKit.

use crate::mountinfo::{self, MountEntry};
use crate::paths::{self, PathError};
use crate::undo::{Undo, UndoError};
use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, statfs};
use std::path::{Path, PathBuf};

pub(crate) const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    #[error("cgroups: no cgroup filesystem is mounted at or under {0}")]
    NoHierarchy(PathBuf),
    #[error("cgroups[{index}]: cannot create `{name}` in {hierarchy}")]
    Create {
        index: usize,
        name: String,
        hierarchy: PathBuf,
        #[source]
        source: PathError,
    },
}

fn is_cgroup2(p: &Path) -> bool {
    statfs(p).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

fn is_cgroup_fs(p: &Path) -> bool {
    statfs(p).is_ok_and(|s| {
        let t = s.filesystem_type();
        t == CGROUP_SUPER_MAGIC || t == CGROUP2_SUPER_MAGIC
    })
}

/// The directories a cgroup is created in: the root itself on a pure v2 system, otherwise
/// every hierarchy mounted below it (v1 controllers and, on hybrid systems, `unified`).
/// Symlinked aliases such as `cpu -> cpu,cpuacct` are skipped so nothing is made twice.
pub fn hierarchies(root: &Path) -> Vec<PathBuf> {
    if is_cgroup2(root) {
        return vec![root.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| is_cgroup_fs(p))
        .collect();
    out.sort();
    out
}

/// Creates each named cgroup in every hierarchy; on failure the undo removes what was made.
pub(crate) fn apply(root: &Path, names: &[String], undo: &mut Undo) -> Result<(), CgroupError> {
    if names.is_empty() {
        return Ok(());
    }
    let hier = hierarchies(root);
    if hier.is_empty() {
        return Err(CgroupError::NoHierarchy(root.to_path_buf()));
    }
    for (index, name) in names.iter().enumerate() {
        for h in &hier {
            let r = paths::resolve_in_root(h, name, paths::Create::Dirs).map_err(|source| {
                CgroupError::Create {
                    index,
                    name: name.clone(),
                    hierarchy: h.clone(),
                    source,
                }
            })?;
            for c in r.created {
                undo.push_persistent(format!("remove cgroup {}", c.path.display()), move || {
                    c.remove().map_err(UndoError::from)
                });
            }
        }
    }
    Ok(())
}

/// A cgroup hierarchy as mounted here.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CgroupMount {
    pub(crate) point: PathBuf,
    /// The directory of the hierarchy that is mounted there.
    pub(crate) root: PathBuf,
    /// v1: its controllers (and `name=`); empty for v2.
    pub(crate) controllers: Vec<String>,
    pub(crate) v2: bool,
}

/// The cgroup hierarchies in a mount table.
pub(crate) fn cgroup_mounts_in(table: &[MountEntry]) -> Vec<CgroupMount> {
    table
        .iter()
        .filter_map(|e| {
            let v2 = match e.fstype.as_str() {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let controllers = if v2 {
                Vec::new()
            } else {
                e.super_options
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro"))
                    .map(str::to_string)
                    .collect()
            };
            Some(CgroupMount {
                point: e.mount_point.clone(),
                root: e.root.clone(),
                controllers,
                v2,
            })
        })
        .collect()
}

/// The directories (one per mounted hierarchy) of the cgroups listed in `/proc/PID/cgroup`
/// text, with the controllers of their line; hierarchies not mounted here are skipped.
pub(crate) fn cgroup_dirs(proc_cgroup: &str, mounts: &[CgroupMount]) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for line in proc_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let found = mounts.iter().find(|m| {
            if id == "0" && ctrls.is_empty() {
                return m.v2;
            }
            !m.v2
                && ctrls
                    .split(',')
                    .all(|c| m.controllers.iter().any(|x| x == c))
        });
        let Some(m) = found else { continue };
        let rel = if m.root == Path::new("/") {
            Some(path)
        } else {
            // /proc/PID/cgroup is text: a root that is not is no prefix of it.
            m.root
                .to_str()
                .and_then(|root| path.strip_prefix(root))
                .filter(|r| r.is_empty() || r.starts_with('/'))
        };
        if let Some(rel) = rel {
            out.push((ctrls.to_string(), m.point.join(rel.trim_start_matches('/'))));
        }
    }
    out
}

fn proc_cgroup(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default()
}

/// The `cgroup.procs` file of the cgroup that holds process `pid` (a container's init), to
/// find every process of the container later, also ones outside its pid namespace. The
/// unified hierarchy is preferred (it has `cgroup.kill`), then `pids` or `freezer`. A cgroup
/// that also holds lkinit itself (or one above it) is never returned: killing its members
/// would kill far more than the container.
pub(crate) fn procs_file(pid: i32) -> Option<PathBuf> {
    let mounts = cgroup_mounts_in(&mountinfo::read());
    let theirs = cgroup_dirs(&proc_cgroup(&pid.to_string()), &mounts);
    let ours = cgroup_dirs(&proc_cgroup("self"), &mounts);
    for want in ["", "pids", "freezer", "memory"] {
        let Some((ctl, dir)) = theirs.iter().find(|(c, _)| {
            if want.is_empty() {
                c.is_empty()
            } else {
                c.split(',').any(|x| x == want)
            }
        }) else {
            continue;
        };
        let at_root = mounts.iter().any(|m| m.point == *dir);
        let holds_us = ours
            .iter()
            .any(|(c, ours)| c == ctl && ours.starts_with(dir));
        if at_root || holds_us {
            continue;
        }
        let f = dir.join("cgroup.procs");
        if f.exists() {
            return Some(f);
        }
    }
    None
}

/// The pids listed in a `cgroup.procs` file (empty when the cgroup is gone).
pub(crate) fn members(procs: &Path) -> Vec<i32> {
    std::fs::read_to_string(procs)
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every member of the cgroup: `cgroup.kill` where the kernel has it (v2), otherwise
/// each listed process.
pub(crate) fn kill_members(procs: &Path) {
    if let Some(dir) = procs.parent() {
        let kill = dir.join("cgroup.kill");
        if kill.exists() && std::fs::write(&kill, "1").is_ok() {
            return;
        }
    }
    for pid in members(procs) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Removes the container cgroup `cgroups_path` (config.json's `linux.cgroupsPath`, a path
/// from the cgroup root) in every hierarchy, where it exists and is empty: what a runtime
/// killed half way through `create` leaves, since only the runtime's own `delete` would
/// remove it and it has no state to delete from. Only the leaf goes (the parents are the
/// runtime's or the administrator's), and never a cgroup that still has processes (rmdir
/// refuses). Systemd-style paths (`slice:prefix:name`) and relative ones are left alone.
/// Returns what could not be removed.
pub(crate) fn remove_container_cgroup(root: &Path, cgroups_path: &str) -> Vec<String> {
    let rel = match cgroups_path.strip_prefix('/') {
        Some(r) if !r.is_empty() && !cgroups_path.contains(':') => r,
        _ => return Vec::new(),
    };
    if paths::check_lexically_inside(rel).is_err() {
        return Vec::new();
    }
    // Processes just killed leave the cgroup as they exit, a moment later.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut failed = Vec::new();
    for h in hierarchies(root) {
        let dir = h.join(rel);
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && std::time::Instant::now() < until =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => {
                    failed.push(format!("remove cgroup {}: {e}", dir.display()));
                    break;
                }
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_cgroup_is_never_a_containers() {
        // Killing the members of the cgroup lkinit is in would kill lkinit and more.
        assert_eq!(procs_file(nix::unistd::getpid().as_raw()), None);
    }

    #[test]
    fn cgroup_directories_per_hierarchy() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /sub /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let proc_cgroup = "\
9:name=systemd:/svc/web
4:memory:/sub/svc/web
3:cpu,cpuacct:/svc/web
2:pids:/svc/web
0::/svc/web
";
        let dirs: Vec<PathBuf> =
            cgroup_dirs(proc_cgroup, &cgroup_mounts_in(&mountinfo::parse(text)))
                .into_iter()
                .map(|(_, d)| d)
                .collect();
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/systemd/svc/web",
                "/sys/fs/cgroup/memory/svc/web",
                "/sys/fs/cgroup/cpu,cpuacct/svc/web",
                "/sys/fs/cgroup/unified/svc/web",
            ]
            .map(PathBuf::from)
        );
        // A pure cgroup2 host.
        let v2 = "25 20 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup_dirs("0::/a/b\n", &cgroup_mounts_in(&mountinfo::parse(v2))),
            [(String::new(), PathBuf::from("/sys/fs/cgroup/a/b"))]
        );
    }
}
