//! runtime.json `mounts` and `mkdir`: the fstab option table and applying them on the host.
//!
//! Absolute destinations are host paths (they outlive the container, as in LinuxKit);
//! relative ones resolve inside the prepared rootfs through [`crate::paths`] and go away with
//! it. Mounts come before mkdir, so a directory can be made inside a fresh mount.

use crate::paths::{self, Create, Created, PathError};
use crate::runtime_config::Mount;
use crate::undo::{Replay, Undo};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        reason: String,
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
        reason: String,
    },
}

/// Parsed fstab-style options: what mount(2) takes as flags, what it takes as data, and the
/// propagation changes that need calls of their own.
#[derive(Debug, Clone, PartialEq)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
}

impl MountOptions {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub fn data_string(&self) -> Option<String> {
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
pub fn parse_options(options: &[String]) -> MountOptions {
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

/// Everything mount-related one container was told to do.
pub fn apply(
    rootfs: &Path,
    mounts: &[Mount],
    mkdirs: &[String],
    undo: &mut Undo,
) -> Result<(), MountError> {
    for (index, m) in mounts.iter().enumerate() {
        apply_mount(rootfs, index, m, undo)?;
    }
    for (index, dir) in mkdirs.iter().enumerate() {
        apply_mkdir(rootfs, index, dir, undo)?;
    }
    Ok(())
}

/// Records the removal of created entries (newest last, so the undo removes them first).
fn push_created(undo: &mut Undo, created: Vec<Created>, persistent: bool) {
    for c in created {
        let what = format!("remove {}", c.path.display());
        let replay = c.replay();
        let f = move || c.remove().map_err(|e| e.to_string());
        if persistent {
            undo.push_persistent(what, f);
        } else {
            undo.push_replayable(what, replay, f);
        }
    }
}

fn apply_mkdir(rootfs: &Path, index: usize, dir: &str, undo: &mut Undo) -> Result<(), MountError> {
    let mkdir_err = |source| MountError::Mkdir {
        index,
        path: dir.to_string(),
        source,
    };
    if dir.starts_with('/') {
        let created = paths::create_dirs_abs(Path::new(dir)).map_err(mkdir_err)?;
        push_created(undo, created, true);
    } else {
        paths::check_lexically_inside(dir).map_err(|reason| MountError::MkdirEscape {
            index,
            path: dir.to_string(),
            reason,
        })?;
        let r = paths::resolve_in_root(rootfs, dir, Create::Dirs).map_err(mkdir_err)?;
        push_created(undo, r.created, false);
    }
    Ok(())
}

fn apply_mount(rootfs: &Path, index: usize, m: &Mount, undo: &mut Undo) -> Result<(), MountError> {
    let opts = parse_options(&m.options);
    let kind = m.kind.as_deref().filter(|k| !k.is_empty());
    let source = m.source.as_deref().filter(|s| !s.is_empty());
    // A bind of a file needs a file to mount on.
    let create = match source {
        Some(src) if opts.is_bind() && Path::new(src).is_file() => Create::File,
        _ => Create::Dirs,
    };
    let absolute = m.destination.starts_with('/');
    let dest_err = |source| MountError::Destination {
        index,
        destination: m.destination.clone(),
        source,
    };

    // Overlay upper and work dirs must exist before the mount.
    if kind == Some("overlay") {
        for opt in &opts.data {
            for key in ["upperdir", "workdir"] {
                if let Some(dir) = opt.strip_prefix(key).and_then(|r| r.strip_prefix('=')) {
                    let key: &'static str = key;
                    let created = paths::create_dirs_abs(Path::new(dir)).map_err(|source| {
                        MountError::OverlayDir {
                            index,
                            option: key,
                            dir: dir.to_string(),
                            source,
                        }
                    })?;
                    push_created(undo, created, absolute);
                }
            }
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
        (p.clone(), p, created, None)
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
    push_created(undo, created, absolute);

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
        let unmount_path = Arc::new(real.clone());
        let p = unmount_path.clone();
        let f = move || {
            umount2(
                p.as_path(),
                MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW,
            )
            .map_err(|e| e.to_string())
        };
        let label = format!("unmount {}", unmount_path.display());
        if absolute {
            undo.push_persistent(label, f);
        } else {
            let replay = Replay::Unmount { path: real.clone() };
            undo.push_replayable(label, replay, f);
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
