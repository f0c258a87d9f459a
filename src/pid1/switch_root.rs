//! Leaving the initramfs.
//!
//! The kernel unpacks the initramfs into `rootfs`, the mount at the very top of the mount
//! tree: it has no parent mount, so an OCI runtime's `pivot_root` fails there ("invalid
//! argument"; the kernel wants the old root to be a mount with a parent). Rather than
//! weakening every container (a runtime's no-pivot mode), PID 1 puts a mount with a parent
//! at `/` once, then chroots into it and execs itself again:
//!
//! - first choice, no copy: a bind mount of the initramfs root onto a directory of it,
//!   moved onto `/`. The files stay where the kernel unpacked them; the bind mount is a
//!   child of `rootfs`, which is all `pivot_root` asks.
//! - fallback (a kernel that refuses the bind or the move): as LinuxKit's init and
//!   busybox `switch_root` do, a tmpfs with a copy of the root (each file deleted once
//!   copied, so the memory is not held twice) is moved onto `/`.

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, mknod};
use nix::unistd::{Gid, Uid};
use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("mount {what} on {target}")]
    Mount {
        what: &'static str,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("copy {path}")]
    Copy {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("switch to the new root")]
    Switch {
        #[source]
        source: nix::Error,
    },
    #[error("exec {path}")]
    Exec {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

/// Where the new root is assembled before it becomes `/`.
const NEW_ROOT: &str = "/.lkinit-root";

/// Whether `/` is the initramfs itself, read from mountinfo (needs /proc): the visible
/// mount at `/` is `rootfs` and has no parent (its parent id is its own id).
pub fn on_initramfs(mountinfo: &str) -> bool {
    let table = crate::mountinfo::parse(mountinfo);
    crate::mountinfo::mounted_at(&table, "/")
        .is_some_and(|e| e.fstype == "rootfs" && e.id == e.parent)
}

/// How the root was moved off the initramfs.
#[derive(Debug, Clone, Copy)]
pub enum Moved {
    /// A bind mount of the initramfs root on itself.
    Bound,
    /// A tmpfs with a copy (the bind was refused).
    Copied(Copied),
}

fn ensure_proc() -> Result<bool, SwitchError> {
    if Path::new("/proc/self/mountinfo").exists() {
        return Ok(false);
    }
    let _ = fs::create_dir_all("/proc");
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|source| SwitchError::Mount {
        what: "proc",
        target: "/proc".into(),
        source,
    })?;
    Ok(true)
}

/// What the copy did, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
}

/// If `/` is the initramfs, moves it onto a tmpfs and re-executes this binary there with
/// the same arguments: on success it does not return. Returns Ok when there is nothing to
/// do (a root on a disk, or the second run).
pub fn leave_initramfs() -> Result<(), SwitchError> {
    let mounted_proc = ensure_proc()?;
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    if !on_initramfs(&info) {
        return Ok(());
    }
    // The time since boot on this line is the kernel's share of the boot.
    log::info!("started on the initramfs; leaving it (a runtime cannot pivot_root there)");
    let exe = fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("/sbin/init"));
    let args: Vec<OsString> = std::env::args_os().collect();
    // The copy must not see /proc (another file system anyway); the new run mounts it again.
    if mounted_proc {
        let _ = umount2("/proc", MntFlags::MNT_DETACH);
    }
    let start = std::time::Instant::now();
    let moved = match bind_root() {
        Ok(()) => Moved::Bound,
        Err(e) => {
            log::warn!(
                "cannot bind the initramfs root on itself ({}); copying it to a tmpfs",
                crate::error_chain(&e)
            );
            Moved::Copied(move_root()?)
        }
    };
    enter_moved_root()?;
    if let Moved::Bound = moved {
        // The directory the bind sat on, seen through the bind: no longer a mount point.
        let _ = fs::remove_dir(NEW_ROOT);
    }
    // Said by the process that did it; the new one starts its log with the next line.
    match moved {
        Moved::Bound => log::info!(
            "made the initramfs root a bind mount of itself (no copy) in {} ms",
            start.elapsed().as_millis()
        ),
        Moved::Copied(copied) => log::info!(
            "moved the root from the initramfs to a tmpfs: {} files, {} KiB in {} ms",
            copied.files,
            copied.bytes / 1024,
            start.elapsed().as_millis()
        ),
    }
    let path = CString::new(exe.as_os_str().as_bytes()).expect("a path has no NUL byte");
    let argv: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()).expect("an argument has no NUL byte"))
        .collect();
    // The signal mask stays blocked across exec, so no signal is lost in between.
    let e = nix::unistd::execv(&path, &argv).unwrap_err();
    Err(SwitchError::Exec {
        path: exe,
        source: e,
    })
}

/// Binds the initramfs root onto `NEW_ROOT` and moves that mount onto `/`: the same files,
/// now on a mount whose parent is `rootfs`. Undone if a step fails, so the copy can follow.
fn bind_root() -> Result<(), SwitchError> {
    let new_root = Path::new(NEW_ROOT);
    let _ = fs::create_dir(new_root);
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some("/"), new_root, None::<&str>, flags, None::<&str>).map_err(|source| {
        SwitchError::Mount {
            what: "a bind of /",
            target: new_root.into(),
            source,
        }
    })?;
    if let Err(e) = move_onto_slash(new_root) {
        let _ = nix::unistd::chdir("/");
        if let Err(u) = umount2(new_root, MntFlags::MNT_DETACH) {
            log::warn!("cannot undo the bind of / on {}: {u}", new_root.display());
        }
        let _ = fs::remove_dir(new_root);
        return Err(SwitchError::Switch { source: e });
    }
    Ok(())
}

/// Moves the mount at `new_root` onto `/`; the caller then enters it with
/// [`enter_moved_root`].
fn move_onto_slash(new_root: &Path) -> nix::Result<()> {
    nix::unistd::chdir(new_root)?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
}

/// Makes the mount just moved onto `/` (the working directory) this process's root. Past
/// the move there is nothing to go back to, so a failure here is fatal, never a reason to
/// try the copy.
fn enter_moved_root() -> Result<(), SwitchError> {
    let sw = |source| SwitchError::Switch { source };
    nix::unistd::chroot(".").map_err(sw)?;
    nix::unistd::chdir("/").map_err(sw)
}

fn move_root() -> Result<Copied, SwitchError> {
    let new_root = Path::new(NEW_ROOT);
    let root_dev = fs::metadata("/")
        .map_err(|source| SwitchError::Copy {
            path: "/".into(),
            source,
        })?
        .dev();
    let _ = fs::create_dir(new_root);
    mount(
        Some("rootfs"),
        new_root,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0755"),
    )
    .map_err(|source| SwitchError::Mount {
        what: "tmpfs",
        target: new_root.into(),
        source,
    })?;
    let mut c = Copier {
        root_dev,
        skip: new_root.to_path_buf(),
        links: HashMap::new(),
        copied: Copied::default(),
    };
    c.copy_dir(Path::new("/"), new_root)?;
    let copied = c.copied;
    // Whatever is left of the old root (directories, files that could not be removed).
    remove_tree(Path::new("/"), root_dev, new_root);

    move_onto_slash(new_root).map_err(|source| SwitchError::Switch { source })?;
    Ok(copied)
}

struct Copier {
    root_dev: u64,
    skip: PathBuf,
    /// Hard links: (dev, inode) of the source -> the first copy.
    links: HashMap<(u64, u64), PathBuf>,
    copied: Copied,
}

fn cerr(path: &Path) -> impl FnOnce(io::Error) -> SwitchError + '_ {
    move |source| SwitchError::Copy {
        path: path.to_path_buf(),
        source,
    }
}

impl Copier {
    fn copy_dir(&mut self, src: &Path, dst: &Path) -> Result<(), SwitchError> {
        for entry in fs::read_dir(src).map_err(cerr(src))? {
            let entry = entry.map_err(cerr(src))?;
            let from = entry.path();
            if from == self.skip {
                continue;
            }
            let to = dst.join(entry.file_name());
            let md = fs::symlink_metadata(&from).map_err(cerr(&from))?;
            self.copy_entry(&from, &to, &md)?;
        }
        let md = fs::symlink_metadata(src).map_err(cerr(src))?;
        set_meta(dst, &md).map_err(cerr(dst))
    }

    fn copy_entry(&mut self, from: &Path, to: &Path, md: &fs::Metadata) -> Result<(), SwitchError> {
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(to).map_err(cerr(to))?;
            if md.dev() == self.root_dev {
                self.copy_dir(from, to)?;
            } else {
                // A mount point: only the directory.
                set_meta(to, md).map_err(cerr(to))?;
            }
            return Ok(());
        }
        if ft.is_file() {
            // Looked up whatever the link count says now: removing the copied names of an
            // inode lowers it.
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                fs::hard_link(first, to).map_err(cerr(to))?;
                let _ = fs::remove_file(from);
                return Ok(());
            }
            if md.nlink() > 1 {
                self.links.insert(key, to.to_path_buf());
            }
            let mut r = fs::File::open(from).map_err(cerr(from))?;
            let mut w = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(to)
                .map_err(cerr(to))?;
            self.copied.bytes += io::copy(&mut r, &mut w).map_err(cerr(to))?;
            self.copied.files += 1;
            drop(w);
            set_meta(to, md).map_err(cerr(to))?;
            // Freed at once, so the root is never held twice in memory.
            let _ = fs::remove_file(from);
            return Ok(());
        }
        if ft.is_symlink() {
            let target = fs::read_link(from).map_err(cerr(from))?;
            std::os::unix::fs::symlink(&target, to).map_err(cerr(to))?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFIFO
            };
            mknod(
                to,
                kind,
                Mode::from_bits_truncate(md.mode()),
                md.rdev() as libc::dev_t,
            )
            .map_err(|e| SwitchError::Copy {
                path: to.to_path_buf(),
                source: e.into(),
            })?;
        } else {
            // A socket in an initramfs is nobody's: nothing listens on it after the switch.
            return Ok(());
        }
        set_meta(to, md).map_err(cerr(to))
    }
}

/// Owner, mode (after chown, which clears set-id bits) and times, never following a link.
fn set_meta(path: &Path, md: &fs::Metadata) -> io::Result<()> {
    use nix::fcntl::AT_FDCWD;
    use nix::sys::stat::{UtimensatFlags, utimensat};
    use nix::sys::time::TimeSpec;
    nix::unistd::fchownat(
        AT_FDCWD,
        path,
        Some(Uid::from_raw(md.uid())),
        Some(Gid::from_raw(md.gid())),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )?;
    if !md.file_type().is_symlink() {
        fs::set_permissions(path, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    utimensat(
        AT_FDCWD,
        path,
        &TimeSpec::new(md.atime(), md.atime_nsec()),
        &TimeSpec::new(md.mtime(), md.mtime_nsec()),
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}

/// Removes what is left under `dir` on device `dev`, never entering another file system
/// or `keep`. Best effort: the old root is unreachable once the new one is in place.
fn remove_tree(dir: &Path, dev: u64, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p == keep {
            continue;
        }
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if md.dev() == dev {
                remove_tree(&p, dev, keep);
                let _ = fs::remove_dir(&p);
            }
        } else {
            let _ = fs::remove_file(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initramfs_is_told_from_a_switched_root() {
        let initramfs = "1 1 0:2 / / rw - rootfs rootfs rw\n";
        assert!(on_initramfs(initramfs));
        // After the copy the tmpfs is mounted over it and is what `/` shows.
        let switched = "1 1 0:2 / / rw - rootfs rootfs rw\n\
                        20 1 0:19 / / rw shared:1 - tmpfs rootfs rw,mode=755\n";
        assert!(!on_initramfs(switched));
        // After the bind: the same file system, on a mount whose parent is rootfs.
        let bound = "1 1 0:2 / / rw - rootfs rootfs rw\n\
                     20 1 0:2 / / rw shared:1 - rootfs rootfs rw\n";
        assert!(!on_initramfs(bound));
        // A chroot hides the mount above its root.
        assert!(!on_initramfs("20 1 0:2 / / rw - rootfs rootfs rw\n"));
        let disk = "21 1 8:1 / / rw - ext4 /dev/sda1 rw\n";
        assert!(!on_initramfs(disk));
    }

    /// The copy keeps every kind of entry, its metadata and hard links, and empties the
    /// source; a nested file system is not entered.
    #[test]
    fn copy_keeps_types_metadata_and_links() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let dst = tmp.path().join("dst");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::create_dir_all(&dst).unwrap();
        fs::write(src.join("bin/busybox"), b"binary").unwrap();
        fs::set_permissions(src.join("bin/busybox"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(src.join("bin/busybox"), src.join("bin/hardlinked")).unwrap();
        std::os::unix::fs::symlink("busybox", src.join("bin/sh")).unwrap();
        mknod(
            &src.join("fifo"),
            SFlag::S_IFIFO,
            Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        // Another owner as root; without root only one's own ids can be given.
        let (uid, gid) = if Uid::effective().is_root() {
            (12, 34)
        } else {
            (Uid::effective().as_raw(), Gid::effective().as_raw())
        };
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &src.join("bin/sh"),
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let md_root = fs::metadata(&src).unwrap();
        let mut c = Copier {
            root_dev: md_root.dev(),
            skip: src.join("skipped"),
            links: HashMap::new(),
            copied: Copied::default(),
        };
        fs::create_dir(src.join("skipped")).unwrap();
        c.copy_dir(&src, &dst).unwrap();

        assert_eq!(fs::read(dst.join("bin/busybox")).unwrap(), b"binary");
        let md = fs::metadata(dst.join("bin/busybox")).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o4755);
        let md2 = fs::metadata(dst.join("bin/hardlinked")).unwrap();
        assert_eq!(md.ino(), md2.ino(), "hard link became a copy");
        assert_eq!(
            fs::read_link(dst.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        let lmd = fs::symlink_metadata(dst.join("bin/sh")).unwrap();
        assert_eq!((lmd.uid(), lmd.gid()), (uid, gid));
        assert!(
            fs::symlink_metadata(dst.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert!(!dst.join("skipped").exists());
        assert_eq!(c.copied.files, 1);
        // Files are freed from the source as they are copied.
        assert!(!src.join("bin/busybox").exists());
        assert!(!src.join("bin/hardlinked").exists());
    }
}
