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
