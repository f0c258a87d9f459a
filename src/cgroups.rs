//! runtime.json `cgroups`: groups made ahead of the container so its config.json (or a later
//! container's) can name them in `cgroupsPath`. They outlive the container, as in LinuxKit.

use crate::paths::{self, PathError};
use crate::undo::Undo;
use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, statfs};
use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
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
pub fn apply(root: &Path, names: &[String], undo: &mut Undo) -> Result<(), CgroupError> {
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
                    c.remove().map_err(|e| e.to_string())
                });
            }
        }
    }
    Ok(())
}

/// One line of `/proc/PID/cgroup`: the hierarchy's controllers (empty for v2) and the path.
fn cgroup_lines(pid: &str) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctl.to_string(), path.to_string()))
        })
        .collect()
}

/// Mounted cgroup hierarchies: (mount point, root of the mount inside the hierarchy,
/// controllers or empty for cgroup2).
fn cgroup_mounts() -> Vec<(PathBuf, String, Vec<String>)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let ctl = match r[0] {
            "cgroup2" => Vec::new(),
            "cgroup" => r[2]
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro"))
                .map(str::to_string)
                .collect(),
            _ => continue,
        };
        out.push((PathBuf::from(unescape(l[4])), unescape(l[3]), ctl));
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `cgroup.procs` file of the cgroup that holds process `pid` (a container's init), to
/// find every process of the container later, also ones outside its pid namespace. The
/// unified hierarchy is preferred (it has `cgroup.kill`), then `pids` or `freezer`. A cgroup
/// that also holds lkinit itself (or one above it) is never returned: killing its members
/// would kill far more than the container.
pub fn procs_file(pid: i32) -> Option<PathBuf> {
    let theirs = cgroup_lines(&pid.to_string());
    let ours = cgroup_lines("self");
    let mounts = cgroup_mounts();
    let order = ["", "pids", "freezer", "memory"];
    for want in order {
        let Some((ctl, path)) = theirs
            .iter()
            .find(|(c, _)| c.split(',').any(|x| x == want) || (want.is_empty() && c.is_empty()))
        else {
            continue;
        };
        let our = ours.iter().find(|(c, _)| c == ctl).map(|(_, p)| p.as_str());
        if path == "/" || our.is_some_and(|o| o == path || o.starts_with(&format!("{path}/"))) {
            continue;
        }
        let Some((mp, root, _)) = mounts.iter().find(|(_, _, c)| {
            if want.is_empty() {
                c.is_empty()
            } else {
                c.iter().any(|x| x == want)
            }
        }) else {
            continue;
        };
        let rel = if root == "/" {
            path.trim_start_matches('/')
        } else {
            match path.strip_prefix(root.as_str()) {
                Some(r) => r.trim_start_matches('/'),
                None => continue,
            }
        };
        let f = mp.join(rel).join("cgroup.procs");
        if f.exists() {
            return Some(f);
        }
    }
    None
}

/// The pids listed in a `cgroup.procs` file (empty when the cgroup is gone).
pub fn members(procs: &Path) -> Vec<i32> {
    std::fs::read_to_string(procs)
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every member of the cgroup: `cgroup.kill` where the kernel has it (v2), otherwise
/// each listed process.
pub fn kill_members(procs: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_cgroup_is_never_a_containers() {
        // Killing the members of the cgroup lkinit is in would kill lkinit and more.
        assert_eq!(procs_file(std::process::id() as i32), None);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
