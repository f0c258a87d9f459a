//! runtime.json `mounts` and `mkdir`: the fstab option table and applying them on the host.
//!
//! Absolute destinations are host paths (they outlive the container, as in LinuxKit);
//! relative ones resolve inside the prepared rootfs through [`crate::paths`] and go away with
//! it. Mounts come before mkdir, so a directory can be made inside a fresh mount.

use crate::paths::{self, Create, Created, Escape, PathError};
use crate::runtime_config::Mount;
use crate::undo::{Replay, Undo, UndoError};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mounts[{index}]: destination `{destination}`")]
    Destination {
        index: usize,
        destination: String,
        #[source]
        source: PathError,
    },
    #[error("mounts[{index}]: `{destination}` escapes the rootfs: {reason}")]
    Escape {
        index: usize,
        destination: String,
        reason: Escape,
    },
    #[error("mounts[{index}]: mount {what} on {target}")]
    Mount {
        index: usize,
        what: String,
        target: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("mounts[{index}]: {option}: cannot create {dir}")]
    OverlayDir {
        index: usize,
        option: &'static str,
        dir: String,
        #[source]
        source: PathError,
    },
    #[error("mkdir[{index}]: `{path}`")]
    Mkdir {
        index: usize,
        path: String,
        #[source]
        source: PathError,
    },
    #[error("mkdir[{index}]: `{path}` escapes the rootfs: {reason}")]
    MkdirEscape {
        index: usize,
        path: String,
        reason: Escape,
    },
}

/// Parsed fstab-style options: what mount(2) takes as flags, what it takes as data, and the
/// propagation changes that need calls of their own.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MountOptions {
    pub(crate) flags: MsFlags,
    pub(crate) propagation: Vec<MsFlags>,
    pub(crate) data: Vec<String>,
}

impl MountOptions {
    pub(crate) fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub(crate) fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }

    /// Flags other than the bind itself: for a bind mount they need a remount to apply.
    fn bind_remount_flags(&self) -> MsFlags {
        self.flags - (MsFlags::MS_BIND | MsFlags::MS_REC)
    }
}

/// The fstab option table (mount(8) names). `clear` options undo a flag set earlier.
fn flag_option(name: &str) -> Option<(bool, MsFlags)> {
    use MsFlags as F;
    Some(match name {
        "async" => (true, F::MS_SYNCHRONOUS),
        "atime" => (true, F::MS_NOATIME),
        "bind" => (false, F::MS_BIND),
        "defaults" => (false, F::empty()),
        "dev" => (true, F::MS_NODEV),
        "diratime" => (true, F::MS_NODIRATIME),
        "dirsync" => (false, F::MS_DIRSYNC),
        "exec" => (true, F::MS_NOEXEC),
        "mand" => (false, F::MS_MANDLOCK),
        "noatime" => (false, F::MS_NOATIME),
        "nodev" => (false, F::MS_NODEV),
        "nodiratime" => (false, F::MS_NODIRATIME),
        "noexec" => (false, F::MS_NOEXEC),
        "nomand" => (true, F::MS_MANDLOCK),
        "norelatime" => (true, F::MS_RELATIME),
        "nostrictatime" => (true, F::MS_STRICTATIME),
        "nosuid" => (false, F::MS_NOSUID),
        "rbind" => (false, F::MS_BIND | F::MS_REC),
        "relatime" => (false, F::MS_RELATIME),
        "remount" => (false, F::MS_REMOUNT),
        "ro" => (false, F::MS_RDONLY),
        "rw" => (true, F::MS_RDONLY),
        "strictatime" => (false, F::MS_STRICTATIME),
        "suid" => (true, F::MS_NOSUID),
        "sync" => (false, F::MS_SYNCHRONOUS),
        _ => return None,
    })
}

fn propagation_option(name: &str) -> Option<MsFlags> {
    use MsFlags as F;
    Some(match name {
        "private" => F::MS_PRIVATE,
        "rprivate" => F::MS_PRIVATE | F::MS_REC,
        "shared" => F::MS_SHARED,
        "rshared" => F::MS_SHARED | F::MS_REC,
        "slave" => F::MS_SLAVE,
        "rslave" => F::MS_SLAVE | F::MS_REC,
        "unbindable" => F::MS_UNBINDABLE,
        "runbindable" => F::MS_UNBINDABLE | F::MS_REC,
        _ => return None,
    })
}

/// Splits options into flags, propagation and filesystem data (everything not in the table).
pub(crate) fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
    };
    for opt in options {
        if let Some((clear, flag)) = flag_option(opt) {
            if clear {
                o.flags.remove(flag);
            } else {
                o.flags.insert(flag);
            }
        } else if let Some(p) = propagation_option(opt) {
            o.propagation.push(p);
        } else {
            o.data.push(opt.clone());
        }
    }
    o
}

/// Mount points that this container's preparation filled with a filesystem of its own,
/// one that goes when it is unmounted (a tmpfs, or an overlay whose upper layer is on
/// one). What is created below them leaves with them, so it gets no undo of its own: an
/// undo would only fail on whatever the container wrote there.
#[derive(Debug, Default, Clone)]
pub struct Scratch(Vec<PathBuf>);

impl Scratch {
    pub(crate) fn add(&mut self, mount_point: PathBuf) {
        self.0.push(mount_point);
    }

    /// Whether `path` (a real path) lies on one of these mounts.
    pub(crate) fn covers(&self, path: &Path) -> bool {
        self.0.iter().any(|m| path.starts_with(m))
    }
}

/// Whose mount it is, which decides how long it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// runtime.json's own: an absolute destination outlives the container (as in
    /// LinuxKit), a relative one goes with the rootfs.
    Runtime,
    /// The root filesystem's preparation as `linuxkit build` writes it (a bind or a tmpfs
    /// and an overlay on the bundle's own `rootfs/` and `tmp/`): it goes with the
    /// container, wherever it points.
    Root,
}

/// Everything mount-related one container was told to do.
pub(crate) fn apply(
    rootfs: &Path,
    mounts: &[Mount],
    mkdirs: &[String],
    undo: &mut Undo,
    scratch: &mut Scratch,
) -> Result<(), MountError> {
    for (index, m) in mounts.iter().enumerate() {
        apply_mount(rootfs, index, m, Role::Runtime, undo, scratch)?;
    }
    for (index, dir) in mkdirs.iter().enumerate() {
        apply_mkdir(rootfs, index, dir, undo, scratch)?;
    }
    Ok(())
}

/// Records the removal of created entries (newest last, so the undo removes them first);
/// those on a scratch mount go with it.
fn push_created(undo: &mut Undo, created: Vec<Created>, persistent: bool, scratch: &Scratch) {
    for c in created {
        if scratch.covers(&c.path) {
            continue;
        }
        let what = format!("remove {}", c.path.display());
        let replay = c.replay();
        let f = move || c.remove().map_err(UndoError::from);
        if persistent {
            undo.push_persistent(what, f);
        } else {
            undo.push_replayable(what, replay, f);
        }
    }
}

fn apply_mkdir(
    rootfs: &Path,
    index: usize,
    dir: &str,
    undo: &mut Undo,
    scratch: &Scratch,
) -> Result<(), MountError> {
    let mkdir_err = |source| MountError::Mkdir {
        index,
        path: dir.to_string(),
        source,
    };
    if dir.starts_with('/') {
        let created = paths::create_dirs_abs(Path::new(dir)).map_err(mkdir_err)?;
        push_created(undo, created, true, scratch);
    } else {
        paths::check_lexically_inside(dir).map_err(|reason| MountError::MkdirEscape {
            index,
            path: dir.to_string(),
            reason,
        })?;
        let r = paths::resolve_in_root(rootfs, dir, Create::Dirs).map_err(mkdir_err)?;
        push_created(undo, r.created, false, scratch);
    }
    Ok(())
}

/// The `upperdir=` and `workdir=` values of an overlay's options.
fn overlay_dirs(opts: &MountOptions) -> impl Iterator<Item = (&'static str, &str)> {
    opts.data.iter().filter_map(|opt| {
        ["upperdir", "workdir"].into_iter().find_map(|key| {
            opt.strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .map(|dir| (key, dir))
        })
    })
}

pub(crate) fn apply_mount(
    rootfs: &Path,
    index: usize,
    m: &Mount,
    role: Role,
    undo: &mut Undo,
    scratch: &mut Scratch,
) -> Result<(), MountError> {
    let opts = parse_options(&m.options);
    let kind = m.kind.as_deref();
    let source = m.source.as_deref();
    // A bind of a file needs a file to mount on.
    let create = match source {
        Some(src) if opts.is_bind() && Path::new(src).is_file() => Create::File,
        _ => Create::Dirs,
    };
    let absolute = m.destination.starts_with('/');
    // Outlives the container: the host's own mounts and what was made for them.
    let persistent = absolute && role == Role::Runtime;
    let dest_err = |source| MountError::Destination {
        index,
        destination: m.destination.clone(),
        source,
    };

    // Overlay upper and work dirs must exist before the mount. They hold what the
    // container wrote, so they stay after it (unless they are on a scratch mount); they
    // are removed only by a rollback, while still empty.
    if kind == Some("overlay") {
        for (key, dir) in overlay_dirs(&opts) {
            let dir_err = |source| MountError::OverlayDir {
                index,
                option: key,
                dir: dir.to_string(),
                source,
            };
            if !dir.starts_with('/') {
                return Err(dir_err(PathError::NotAbsolute {
                    path: dir.to_string(),
                }));
            }
            let created = paths::create_dirs_abs(Path::new(dir)).map_err(dir_err)?;
            push_created(undo, created, true, scratch);
        }
    }

    // The target: a host path, or a descriptor of a place inside the rootfs.
    let (target, real, created, _pin) = if absolute {
        let created = match create {
            Create::File => {
                let parent = Path::new(&m.destination).parent().unwrap_or(Path::new("/"));
                let mut c = paths::create_dirs_abs(parent).map_err(dest_err)?;
                let rel = m.destination.trim_start_matches('/');
                let r =
                    paths::resolve_in_root(Path::new("/"), rel, Create::File).map_err(dest_err)?;
                c.extend(r.created);
                c
            }
            _ => paths::create_dirs_abs(Path::new(&m.destination)).map_err(dest_err)?,
        };
        let p = PathBuf::from(&m.destination);
        if role == Role::Root {
            // The bundle's own mount points: mounted through a descriptor opened without
            // following a symlink there, so a swapped one cannot take the mount elsewhere.
            let fd = paths::open_no_follow_dir(&p).map_err(dest_err)?;
            (paths::fd_path(&fd), p, created, Some(fd))
        } else {
            (p.clone(), p, created, None)
        }
    } else {
        paths::check_lexically_inside(&m.destination).map_err(|reason| MountError::Escape {
            index,
            destination: m.destination.clone(),
            reason,
        })?;
        let r = paths::resolve_in_root(rootfs, &m.destination, create).map_err(dest_err)?;
        let real = r.real_path();
        (r.proc_path(), real, r.created, Some(r.fd))
    };
    push_created(undo, created, persistent, scratch);

    let what = format!(
        "{} ({})",
        source.unwrap_or("none"),
        kind.unwrap_or("no type")
    );
    let mount_err = |source| MountError::Mount {
        index,
        what: what.clone(),
        target: real.clone(),
        source,
    };
    let data = opts.data_string();
    if opts.is_bind() {
        mount(
            source,
            &target,
            None::<&str>,
            opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC),
            None::<&str>,
        )
        .map_err(mount_err)?;
    } else {
        mount(source, &target, kind, opts.flags, data.as_deref()).map_err(mount_err)?;
    }
    let is_remount = opts.flags.contains(MsFlags::MS_REMOUNT);
    if !is_remount {
        let label = format!("unmount {}", real.display());
        let p = real.clone();
        let f = move || {
            umount2(&p, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).map_err(UndoError::from)
        };
        if persistent {
            undo.push_persistent(label, f);
        } else {
            let replay = Replay::Unmount { path: real.clone() };
            undo.push_replayable(label, replay, f);
        }
        let fresh = match kind {
            Some("tmpfs") => true,
            Some("overlay") => overlay_dirs(&opts)
                .filter(|(k, _)| *k == "upperdir")
                .all(|(_, d)| scratch.covers(Path::new(d))),
            _ => false,
        };
        if fresh && !persistent {
            scratch.add(real.clone());
        }
    }
    // A bind ignores every other flag: they take a remount of the bind to apply. The
    // descriptor still names the directory under the new mount, so the path is used now.
    let extra = opts.bind_remount_flags();
    if opts.is_bind() && !extra.is_empty() {
        mount(
            None::<&str>,
            &real,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | extra,
            None::<&str>,
        )
        .map_err(mount_err)?;
    }
    // A remount reconfigures the mount at the target, which the descriptor opened before
    // it names; propagation likewise.
    for p in &opts.propagation {
        mount(None::<&str>, &real, None::<&str>, *p, None::<&str>).map_err(mount_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> MountOptions {
        parse_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data_are_split() {
        let o = opts(&["ro", "nosuid", "size=1m", "mode=0755"]);
        assert_eq!(o.flags, MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(o.data_string().as_deref(), Some("size=1m,mode=0755"));
        assert!(o.propagation.is_empty());
    }

    #[test]
    fn clearing_options_undo_earlier_ones() {
        let o = opts(&["ro", "nosuid", "rw", "suid", "exec"]);
        assert_eq!(o.flags, MsFlags::empty());
        let o = opts(&["noexec", "exec", "nodev"]);
        assert_eq!(o.flags, MsFlags::MS_NODEV);
    }

    #[test]
    fn bind_and_rbind() {
        let o = opts(&["bind"]);
        assert!(o.is_bind());
        assert!(!o.flags.contains(MsFlags::MS_REC));
        let o = opts(&["rbind", "ro"]);
        assert!(o.is_bind());
        assert!(o.flags.contains(MsFlags::MS_REC));
        assert_eq!(o.bind_remount_flags(), MsFlags::MS_RDONLY);
    }

    #[test]
    fn propagation_is_separate() {
        let o = opts(&["rbind", "rshared", "private"]);
        assert_eq!(
            o.propagation,
            vec![MsFlags::MS_SHARED | MsFlags::MS_REC, MsFlags::MS_PRIVATE]
        );
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(o.data.is_empty());
    }

    #[test]
    fn defaults_is_nothing_and_unknown_is_data() {
        let o = opts(&["defaults", "lowerdir=/a", "upperdir=/b"]);
        assert_eq!(o.flags, MsFlags::empty());
        assert_eq!(o.data, vec!["lowerdir=/a", "upperdir=/b"]);
    }

    #[test]
    fn every_table_entry() {
        use MsFlags as F;
        let set = [
            ("bind", F::MS_BIND),
            ("dirsync", F::MS_DIRSYNC),
            ("mand", F::MS_MANDLOCK),
            ("noatime", F::MS_NOATIME),
            ("nodev", F::MS_NODEV),
            ("nodiratime", F::MS_NODIRATIME),
            ("noexec", F::MS_NOEXEC),
            ("nosuid", F::MS_NOSUID),
            ("relatime", F::MS_RELATIME),
            ("remount", F::MS_REMOUNT),
            ("ro", F::MS_RDONLY),
            ("strictatime", F::MS_STRICTATIME),
            ("sync", F::MS_SYNCHRONOUS),
        ];
        for (name, flag) in set {
            assert_eq!(opts(&[name]).flags, flag, "{name}");
        }
        let cleared = [
            ("async", "sync"),
            ("atime", "noatime"),
            ("dev", "nodev"),
            ("diratime", "nodiratime"),
            ("nomand", "mand"),
            ("norelatime", "relatime"),
            ("nostrictatime", "strictatime"),
        ];
        for (clear, set) in cleared {
            assert_eq!(opts(&[set, clear]).flags, F::empty(), "{set},{clear}");
        }
    }
}
