//! runtime.json `bindNS`: the container's namespaces bound on paths so later containers can
//! join them (`"path"` of a namespace in their config.json) and tools can enter them
//! (`ip netns`, `nsenter --net=PATH`).
//!
//! The binds outlive the container on purpose; they are undone only when the bundle fails
//! before it starts. The target's parents are created like `mkdir -p`; the target itself is
//! opened with `O_NOFOLLOW` from its parent's descriptor and mounted on through
//! `/proc/self/fd/N`, so a symlink at the target is refused rather than followed and nothing
//! can be swapped in between. A target that already carries a namespace bind (an earlier
//! bundle, an earlier boot, the same service before a restart) is re-pointed: the old bind
//! is unmounted, and put back if the bundle fails before it starts.
//!
//! Propagation: the bind is made in lkinit's mount namespace. When the target's mount is
//! shared (`/run/netns` usually is, `ip netns` makes it so), the bind propagates to its
//! peers like any mount, and its unmount propagates the same way, so the undo removes
//! every copy.

use crate::bundle::Bundle;
use crate::paths::{self, Create, Created, PathError};
use crate::undo::{Undo, UndoError};
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, fstat};
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// Namespace binds stacked on one target that are taken off before giving up: a target
/// buried under more than this was not made by a sane boot.
const MAX_STACKED: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum NsBindError {
    #[error("bindNS.{kind}: `{path}` does not name a file")]
    NotAFilePath { kind: &'static str, path: PathBuf },
    #[error("bindNS.{kind}: cannot create the directories above {path}")]
    Parent {
        kind: &'static str,
        path: PathBuf,
        #[source]
        source: PathError,
    },
    #[error(
        "bindNS.{kind}: {path} is a symlink; a namespace is never bound through a symlink, name the real path"
    )]
    Symlink { kind: &'static str, path: PathBuf },
    #[error("bindNS.{kind}: {path} is a {what}, not a file a namespace can be bound on")]
    NotAFile {
        kind: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("bindNS.{kind}: cannot {op} {path}")]
    Target {
        kind: &'static str,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("bindNS.{kind}: {path} has more than {MAX_STACKED} namespace binds stacked on it")]
    Stacked { kind: &'static str, path: PathBuf },
    #[error("bindNS.{kind}: cannot bind {from} on {path}")]
    Mount {
        kind: &'static str,
        from: String,
        path: PathBuf,
        #[source]
        source: Errno,
    },
}

/// Binds `/proc/PID/ns/KIND` on each configured path, in the documented order.
pub fn apply(bundle: &Bundle, pid: i32, undo: &mut Undo) -> Result<(), NsBindError> {
    for (kind, path) in bundle.runtime.bind_ns.entries() {
        let from = format!("/proc/{pid}/ns/{kind}");
        bind(&bundle.name, kind, Path::new(path), &from, undo)?;
    }
    Ok(())
}

fn file_kind(mode: u32) -> SFlag {
    SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits())
}

fn kind_name(k: SFlag) -> &'static str {
    match k {
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        SFlag::S_IFIFO => "fifo",
        SFlag::S_IFSOCK => "socket",
        _ => "special file",
    }
}

/// Binds the namespace file `from` on `path` (see the module comment).
fn bind(
    bundle: &str,
    kind: &'static str,
    path: &Path,
    from: &str,
    undo: &mut Undo,
) -> Result<(), NsBindError> {
    let (parent, name) = match (path.parent(), path.components().next_back()) {
        (Some(p), Some(Component::Normal(n))) if path.is_absolute() => (p, n.to_os_string()),
        _ => {
            return Err(NsBindError::NotAFilePath {
                kind,
                path: path.to_path_buf(),
            });
        }
    };
    let parent_err = |source| NsBindError::Parent {
        kind,
        path: path.to_path_buf(),
        source,
    };
    for c in paths::create_dirs_abs(parent).map_err(parent_err)? {
        push_remove(undo, c);
    }
    let rel = parent.strip_prefix("/").unwrap_or(parent).to_string_lossy();
    let dir = if rel.is_empty() {
        paths::open_root(Path::new("/")).map_err(parent_err)?
    } else {
        paths::resolve_in_root(Path::new("/"), &rel, Create::Nothing)
            .map_err(parent_err)?
            .fd
    };
    let target_err = |op, source| NsBindError::Target {
        kind,
        op,
        path: path.to_path_buf(),
        source,
    };

    // What is at the target now: nothing (create a file), a file (use it), a namespace
    // bound earlier (take it off, keep it to put back), or something to refuse.
    let mut replaced = 0usize;
    let target = loop {
        let fd = match open_nofollow(&dir, &name) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if replaced == 0 => {
                openat(
                    &dir,
                    name.as_os_str(),
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_RDONLY
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o444),
                )
                .map_err(|e| target_err("create", e))?;
                let parent_fd = dir
                    .try_clone()
                    .map_err(|e| target_err("create", io_errno(e)))?;
                push_remove(
                    undo,
                    Created::file(parent_fd, name.clone(), path.to_path_buf()),
                );
                open_nofollow(&dir, &name).map_err(|e| target_err("open", e))?
            }
            Err(e) => return Err(target_err("open", e)),
        };
        let st = fstat(&fd).map_err(|e| target_err("stat", e))?;
        match file_kind(st.st_mode) {
            SFlag::S_IFREG => {}
            SFlag::S_IFLNK => {
                return Err(NsBindError::Symlink {
                    kind,
                    path: path.to_path_buf(),
                });
            }
            other => {
                return Err(NsBindError::NotAFile {
                    kind,
                    path: path.to_path_buf(),
                    what: kind_name(other),
                });
            }
        }
        let fs = fstatfs(&fd).map_err(|e| target_err("statfs", e))?;
        if fs.filesystem_type() != NSFS_MAGIC {
            break fd;
        }
        if replaced >= MAX_STACKED {
            return Err(NsBindError::Stacked {
                kind,
                path: path.to_path_buf(),
            });
        }
        // Exactly the mount this descriptor is on, whatever happened to the path.
        umount2(&paths::fd_path(&fd), MntFlags::MNT_DETACH)
            .map_err(|e| target_err("unmount the namespace bound earlier on", e))?;
        log::info!(
            "{bundle}: bindNS.{kind}: {} carried a namespace bound earlier; it now names this container's",
            path.display()
        );
        // The descriptor keeps the old namespace alive, so the undo can bind it back.
        replaced += 1;
        let p = path.to_path_buf();
        undo.push_persistent(
            format!("bind the earlier namespace back on {}", p.display()),
            move || {
                mount(
                    Some(&paths::fd_path(&fd)),
                    &p,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(UndoError::from)
            },
        );
    };

    mount(
        Some(from),
        &paths::fd_path(&target),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| NsBindError::Mount {
        kind,
        from: from.to_string(),
        path: path.to_path_buf(),
        source,
    })?;
    let p = path.to_path_buf();
    undo.push_persistent(format!("unmount {}", p.display()), move || {
        umount2(&p, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).map_err(UndoError::from)
    });
    Ok(())
}

fn open_nofollow(dir: &OwnedFd, name: &OsString) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name.as_os_str(),
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

fn push_remove(undo: &mut Undo, c: Created) {
    undo.push_persistent(format!("remove {}", c.path.display()), move || {
        c.remove().map_err(UndoError::from)
    });
}
