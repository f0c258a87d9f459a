//! `lkinit volumes`: the volumes of a LinuxKit YAML's top-level `volumes:`, which
//! `linuxkit build` writes as `/containers/volumes/NAME/{lower,tmp,merged}`, made ready on
//! `merged/` before onboot, where containers bind them.
//!
//! With `tmp/`: a tmpfs on `tmp/` holds `upper` and `work`, and an overlay of `lower` is
//! mounted on `merged`, writable, its writes gone at reboot (LinuxKit's `service` does the
//! same). Without `tmp/`: `lower` is bound on `merged` read-only; a one-layer read-only
//! overlay would show the same files at the cost of an overlay. `linuxkit build` writes
//! `tmp/` for every volume, read-only ones included (it checks at build time that those are
//! bound read-only), so its volumes are all overlays, as on LinuxKit.
//!
//! Paths below the volumes directory come from the image: `NAME`, `lower`, `merged` and `tmp`
//! must be real directories, and mounts are made through descriptors opened without
//! following a symlink. One bad volume is reported and the others are still prepared; a
//! volume that fails part way is undone.

use crate::paths;
use crate::rootfs::{self, RootfsError};
use crate::undo::Undo;
use nix::mount::{MsFlags, mount};
use nix::unistd::{Gid, Uid, chown};
use std::fmt;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where `linuxkit build` puts the volumes.
pub(crate) const DEFAULT_DIR: &str = "/containers/volumes";

#[derive(Debug, thiserror::Error)]
pub(crate) enum VolumeError {
    #[error("{path} is missing")]
    Missing { path: PathBuf },
    #[error("{path} is not a directory (a symlink is never followed there)")]
    NotDir { path: PathBuf },
    #[error("cannot read {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot give {path} the owner and mode of {like}")]
    Attrs {
        path: PathBuf,
        like: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot make {path} read-only")]
    ReadOnly {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error(transparent)]
    Mount(#[from] RootfsError),
}

/// What a volume's directory says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `tmp/` is there: a writable overlay.
    ReadWrite,
    /// No `tmp/`: a read-only bind.
    ReadOnly,
}

/// What was done for one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepared {
    Made(Kind),
    /// `merged/` is a mount point already (an earlier run).
    Already,
}

impl fmt::Display for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Prepared::Made(Kind::ReadWrite) => {
                "read-write: overlay of lower/ on merged/, upper and work on a tmpfs on tmp/"
            }
            Prepared::Made(Kind::ReadOnly) => "read-only: lower/ bound on merged/",
            Prepared::Already => "already prepared (merged/ is a mount point)",
        })
    }
}

/// A real directory at `path` (lstat: a symlink is not one); `Ok(false)` if there is nothing.
fn real_dir(path: &Path) -> Result<bool, VolumeError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(true),
        Ok(_) => Err(VolumeError::NotDir {
            path: path.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(VolumeError::Stat {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn required_dir(path: &Path) -> Result<(), VolumeError> {
    if real_dir(path)? {
        Ok(())
    } else {
        Err(VolumeError::Missing {
            path: path.to_path_buf(),
        })
    }
}

/// Reads the layout of the volume directory `vol`.
pub(crate) fn kind(vol: &Path) -> Result<Kind, VolumeError> {
    if !real_dir(vol)? {
        return Err(VolumeError::Missing {
            path: vol.to_path_buf(),
        });
    }
    required_dir(&vol.join("lower"))?;
    required_dir(&vol.join("merged"))?;
    Ok(if real_dir(&vol.join("tmp"))? {
        Kind::ReadWrite
    } else {
        Kind::ReadOnly
    })
}

/// Prepares the volume directory `vol` (an absolute path); on failure what was done is
/// undone.
pub(crate) fn prepare(vol: &Path) -> Result<Prepared, VolumeError> {
    let kind = kind(vol)?;
    let (lower, merged) = (vol.join("lower"), vol.join("merged"));
    if crate::mountinfo::is_mount_point(&merged) {
        return Ok(Prepared::Already);
    }
    // Dropped on an early return, it rolls back.
    let mut undo = Undo::new();
    match kind {
        Kind::ReadWrite => overlay(vol, &lower, &merged, &mut undo)?,
        Kind::ReadOnly => read_only_bind(&lower, &merged, &mut undo)?,
    }
    undo.forget();
    Ok(Prepared::Made(kind))
}

fn overlay(vol: &Path, lower: &Path, merged: &Path, undo: &mut Undo) -> Result<(), VolumeError> {
    let layers = rootfs::scratch_layers(
        &vol.join("tmp"),
        lower,
        merged,
        MsFlags::empty(),
        "mode=0755",
        undo,
    )?;
    // The merged root takes its owner and mode from upper: those of the image's root.
    let like = std::fs::metadata(lower).map_err(|source| VolumeError::Stat {
        path: lower.to_path_buf(),
        source,
    })?;
    let attrs_err = |source: io::Error| VolumeError::Attrs {
        path: layers.upper.clone(),
        like: lower.to_path_buf(),
        source,
    };
    chown(
        &layers.upper,
        Some(Uid::from_raw(like.uid())),
        Some(Gid::from_raw(like.gid())),
    )
    .map_err(|e| attrs_err(e.into()))?;
    std::fs::set_permissions(
        &layers.upper,
        std::fs::Permissions::from_mode(like.mode() & 0o7777),
    )
    .map_err(attrs_err)?;
    rootfs::mount_overlay(lower, &layers, merged, undo)?;
    Ok(())
}

fn read_only_bind(lower: &Path, merged: &Path, undo: &mut Undo) -> Result<(), VolumeError> {
    // Bound from its descriptor: what was checked is what is bound.
    let lower_fd = rootfs::open_mount_point(lower)?;
    let source = paths::fd_path(&lower_fd);
    rootfs::do_mount(
        "bind of lower",
        Some(&source.to_string_lossy()),
        merged,
        None,
        MsFlags::MS_BIND,
        None,
        undo,
    )?;
    // A bind takes its flags only from a remount; through the mount just made.
    let at = rootfs::open_mount_point(merged)?;
    mount(
        None::<&str>,
        &paths::fd_path(&at),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|source| VolumeError::ReadOnly {
        path: merged.to_path_buf(),
        source,
    })
}

/// Prepares every volume of `dir`, in name order, one line each on stdout (`volume NAME:
/// ...`); 0 if every one is ready (or there is no `dir`), 1 otherwise.
pub fn run(dir: &Path) -> i32 {
    let dir = match dir.canonicalize() {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log::info!(
                "volumes: {} does not exist, nothing to prepare",
                dir.display()
            );
            return 0;
        }
        Err(e) => {
            log::error!("volumes: cannot read {}: {e}", dir.display());
            return 1;
        }
    };
    let mut names: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect(),
        Err(e) => {
            log::error!("volumes: cannot read {}: {e}", dir.display());
            return 1;
        }
    };
    names.sort();
    let mut failed = 0;
    for name in &names {
        let shown = crate::bundle::printable_name(&name.to_string_lossy());
        match prepare(&dir.join(name)) {
            Ok(p) => println!("volume {shown}: {p}"),
            Err(e) => {
                failed += 1;
                println!("volume {shown}: error: {}", crate::error_chain(&e));
            }
        }
    }
    log::info!(
        "volumes: {} volume(s), {} ready, {failed} failed",
        names.len(),
        names.len() - failed
    );
    i32::from(failed > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(root: &Path, name: &str, subs: &[&str]) -> PathBuf {
        let v = root.join(name);
        for s in subs {
            std::fs::create_dir_all(v.join(s)).unwrap();
        }
        std::fs::create_dir_all(&v).unwrap();
        v
    }

    #[test]
    fn layouts() {
        let t = tempfile::tempdir().unwrap();
        let rw = vol(t.path(), "rw", &["lower", "merged", "tmp"]);
        assert_eq!(kind(&rw).unwrap(), Kind::ReadWrite);
        let ro = vol(t.path(), "ro", &["lower", "merged"]);
        assert_eq!(kind(&ro).unwrap(), Kind::ReadOnly);
        let e = kind(&vol(t.path(), "nomerged", &["lower", "tmp"])).unwrap_err();
        assert!(e.to_string().ends_with("nomerged/merged is missing"), "{e}");
        let e = kind(&vol(t.path(), "nolower", &["merged"])).unwrap_err();
        assert!(e.to_string().ends_with("nolower/lower is missing"), "{e}");
        // A symlink is never a directory here, wherever it points.
        let l = vol(t.path(), "linked", &["lower"]);
        std::os::unix::fs::symlink(t.path(), l.join("merged")).unwrap();
        let e = kind(&l).unwrap_err();
        assert!(matches!(e, VolumeError::NotDir { .. }), "{e}");
        let l = vol(t.path(), "linkedtmp", &["lower", "merged"]);
        std::os::unix::fs::symlink("/tmp", l.join("tmp")).unwrap();
        assert!(matches!(kind(&l), Err(VolumeError::NotDir { .. })));
        std::os::unix::fs::symlink(&rw, t.path().join("alias")).unwrap();
        assert!(matches!(
            kind(&t.path().join("alias")),
            Err(VolumeError::NotDir { .. })
        ));
        std::fs::write(t.path().join("file"), "").unwrap();
        assert!(matches!(
            kind(&t.path().join("file")),
            Err(VolumeError::NotDir { .. })
        ));
    }
}
