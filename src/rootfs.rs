//! The container's root filesystem, made a mount point the runtime can pivot into.
//!
//! Without `lower/`: `rootfs` is bind-mounted onto itself (the runtime makes it read-only when
//! config.json says so). With `lower/`: a tmpfs on `tmp/` holds the overlay's upper and work
//! directories, and an overlay of `lower` + `tmp/upper` is mounted on `rootfs`, so the
//! container can write while `lower/` stays untouched. The tmpfs holds `size=10%` of RAM
//! unless config.json's annotation `lkinit.rootfs-size` gives a tmpfs size (`64m`, `25%`).
//!
//! A bundle made by `linuxkit build` carries its preparation instead, as the first mounts of
//! runtime.json (see [`Bundle::root_form`]): those are made here, in their order, and only
//! they, so nothing is mounted twice; they go with the container like lkinit's own.

use crate::bundle::{Bundle, RootForm, RootOwner};
use crate::mounts::{self, MountError, Role, Scratch};
use crate::paths::{self, PathError};
use crate::undo::{Replay, Undo, UndoError};
use crate::{mountapi, userns};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::unistd::{Gid, Uid, chown};
use oci_spec::runtime::LinuxIdMapping;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("cannot create {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: PathError,
    },
    #[error("mount {what} on {target}")]
    Mount {
        what: &'static str,
        target: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("chown {path} to {uid}:{gid} for the user namespace")]
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
        #[source]
        source: Errno,
    },
    #[error("cannot open {path} to mount on it (a symlink is never followed there)")]
    MountPoint {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("{0}: overlay paths must not contain `,` or `:`")]
    OverlayPath(PathBuf),
    #[error(transparent)]
    Bundle(#[from] crate::bundle::BundleError),
    #[error("runtime.json: {0}")]
    RuntimeMount(#[from] MountError),
    #[error("cannot make a user namespace with the bundle's id mappings")]
    Userns(#[from] userns::UsernsError),
    #[error("cannot id-map {path} for the user namespace")]
    Idmap {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The writable layer's size when the bundle does not say (LinuxKit's choice: a tenth of
/// RAM, so one runaway container cannot take all memory).
pub(crate) const DEFAULT_TMPFS_SIZE: &str = "10%";

fn unmount_step(undo: &mut Undo, target: &Path) {
    let t = target.to_path_buf();
    let replay = Replay::Unmount { path: t.clone() };
    undo.push_replayable(format!("unmount {}", t.display()), replay, move || {
        umount2(&t, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW).map_err(UndoError::from)
    });
}

fn mkdir(path: &Path, undo: &mut Undo) -> Result<(), RootfsError> {
    let created = paths::create_dirs_abs(path).map_err(|source| RootfsError::Create {
        path: path.to_path_buf(),
        source,
    })?;
    for c in created {
        undo.push_replayable(
            format!("remove {}", c.path.display()),
            c.replay(),
            move || c.remove().map_err(UndoError::from),
        );
    }
    Ok(())
}

/// The directory `path` as a mount point: see [`paths::open_no_follow_dir`].
pub(crate) fn open_mount_point(path: &Path) -> Result<OwnedFd, RootfsError> {
    paths::open_no_follow_dir(path).map_err(|e| match e {
        PathError::Open { path, source } => RootfsError::MountPoint { path, source },
        other => RootfsError::Create {
            path: path.to_path_buf(),
            source: other,
        },
    })
}

/// Mounts `source` on the directory `target` (through a descriptor, see
/// [`paths::open_no_follow_dir`]); a `source` of None binds the target onto itself.
pub(crate) fn do_mount(
    what: &'static str,
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    undo: &mut Undo,
) -> Result<(), RootfsError> {
    let fd = open_mount_point(target)?;
    let at = paths::fd_path(&fd);
    let source = source.map(Path::new).unwrap_or(&at);
    mount(Some(source), &at, fstype, flags, data).map_err(|source| RootfsError::Mount {
        what,
        target: target.to_path_buf(),
        source,
    })?;
    unmount_step(undo, target);
    Ok(())
}

/// Prepares `bundle.rootfs`; each step pushes its undo, and mounts whose contents go with
/// them are noted in `scratch`.
pub fn prepare(bundle: &Bundle, undo: &mut Undo, scratch: &mut Scratch) -> Result<(), RootfsError> {
    let owner = bundle.root_owner()?;
    match bundle.root_form() {
        RootForm::SelfBind => do_mount(
            "bind of the rootfs",
            None,
            &bundle.rootfs,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
            undo,
        ),
        RootForm::Overlay(lower) => {
            prepare_overlay(bundle, lower, owner, undo)?;
            scratch.add(bundle.dir.join("tmp"));
            scratch.add(bundle.rootfs.clone());
            Ok(())
        }
        RootForm::RuntimeMounts(mounts) => {
            for (index, m) in mounts.iter().enumerate() {
                mounts::apply_mount(&bundle.rootfs, index, m, Role::Root, undo, scratch)?;
            }
            Ok(())
        }
    }
}

/// The upper and work directories of an overlay, on a tmpfs of their own.
pub(crate) struct Layers {
    pub upper: PathBuf,
    pub work: PathBuf,
}

/// A writable layer for an overlay of `lower` on `target`: a tmpfs on `tmp` (mounted with
/// `flags` and `tmpfs_data`, made private: nothing else has any business seeing it,
/// wherever the mount peers are) holding fresh `upper` and `work` directories, which go
/// away with it.
pub(crate) fn scratch_layers(
    tmp: &Path,
    lower: &Path,
    target: &Path,
    flags: MsFlags,
    tmpfs_data: &str,
    undo: &mut Undo,
) -> Result<Layers, RootfsError> {
    let (upper, work) = (tmp.join("upper"), tmp.join("work"));
    for p in [lower, &upper, &work, target] {
        if p.to_string_lossy().contains([',', ':']) {
            return Err(RootfsError::OverlayPath(p.to_path_buf()));
        }
    }
    do_mount(
        "tmpfs for the overlay",
        Some("tmpfs"),
        tmp,
        Some("tmpfs"),
        flags,
        Some(tmpfs_data),
        undo,
    )?;
    mount(
        None::<&str>,
        tmp,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|source| RootfsError::Mount {
        what: "tmpfs (making it private)",
        target: tmp.to_path_buf(),
        source,
    })?;
    for d in [&upper, &work] {
        std::fs::create_dir(d).map_err(|e| RootfsError::Create {
            path: d.to_path_buf(),
            source: PathError::Sys {
                path: d.to_string_lossy().into_owned(),
                op: "mkdir",
                component: String::new(),
                source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            },
        })?;
    }
    Ok(Layers { upper, work })
}

/// The overlay of `lower` and `layers` on `target`.
pub(crate) fn mount_overlay(
    lower: &Path,
    layers: &Layers,
    target: &Path,
    undo: &mut Undo,
) -> Result<(), RootfsError> {
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        layers.upper.display(),
        layers.work.display()
    );
    do_mount(
        "overlay",
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(&data),
        undo,
    )
}

fn prepare_overlay(
    bundle: &Bundle,
    lower: &Path,
    owner: Option<RootOwner>,
    undo: &mut Undo,
) -> Result<(), RootfsError> {
    let tmp = bundle.dir.join("tmp");
    mkdir(&tmp, undo)?;
    let size = bundle.tmpfs_size().unwrap_or(DEFAULT_TMPFS_SIZE);
    let mut tmpfs_data = format!("mode=0755,size={size}");
    if let Some(o) = owner {
        tmpfs_data.push_str(&format!(",uid={},gid={}", o.uid, o.gid));
    }
    let layers = scratch_layers(
        &tmp,
        lower,
        &bundle.rootfs,
        MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        &tmpfs_data,
        undo,
    )?;
    if let Some(o) = owner {
        for d in [&layers.upper, &layers.work] {
            chown(
                d.as_path(),
                Some(Uid::from_raw(o.uid)),
                Some(Gid::from_raw(o.gid)),
            )
            .map_err(|source| RootfsError::Chown {
                path: d.to_path_buf(),
                uid: o.uid,
                gid: o.gid,
                source,
            })?;
        }
    }
    let lower = match bundle.id_mappings() {
        Some((uid, gid)) => idmapped_lower(bundle, lower, &tmp, uid, gid, undo)?,
        None => lower.to_path_buf(),
    };
    mkdir(&bundle.rootfs, undo)?;
    mount_overlay(&lower, &layers, &bundle.rootfs, undo)
}

/// `lower/` seen through the container's id mappings, attached on `tmp/lower` (inside the
/// tmpfs, so it goes with it): a file that root owns in the image shows as owned by the
/// host id that container root maps to, so root inside can change it (overlayfs copies it
/// up into `upper`; `lower/` itself is never written). Where the filesystem of `lower/`
/// cannot be id-mapped, `lower/` is used as it is, with a warning.
fn idmapped_lower(
    bundle: &Bundle,
    lower: &Path,
    tmp: &Path,
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
    undo: &mut Undo,
) -> Result<PathBuf, RootfsError> {
    let idmap_err = |source| RootfsError::Idmap {
        path: lower.to_path_buf(),
        source,
    };
    let userns = userns::with_mappings(uid, gid)?;
    let tree = mountapi::open_tree_clone(lower).map_err(idmap_err)?;
    match mountapi::set_idmap(&tree, &userns) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS)
            ) =>
        {
            log::warn!(
                "{}: {} cannot be id-mapped ({e}): its files keep their host owners, and root in \
                 the container can change only what its mapped ids own",
                bundle.name,
                lower.display()
            );
            return Ok(lower.to_path_buf());
        }
        Err(e) => return Err(idmap_err(e)),
    }
    let target = tmp.join("lower");
    let create_err = |e: std::io::Error| RootfsError::Create {
        path: target.clone(),
        source: PathError::Sys {
            path: target.to_string_lossy().into_owned(),
            op: "mkdir",
            component: String::new(),
            source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        },
    };
    std::fs::create_dir(&target).map_err(create_err)?;
    let dir = std::fs::File::open(&target).map_err(create_err)?;
    mountapi::move_mount(&tree, &dir).map_err(idmap_err)?;
    unmount_step(undo, &target);
    Ok(target)
}
