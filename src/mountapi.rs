//! The kernel's new mount API (open_tree, move_mount, mount_setattr), which nix does not
//! wrap: detached copies of mount trees that can be changed before they are attached, and
//! attached in another mount namespace than the one they were taken in.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A detached copy of the mount at `path` and the mounts below it (as `rbind` takes them),
/// attached nowhere: no mount table changes until it is moved somewhere. Closing the
/// descriptor of a copy never attached frees it.
pub fn open_tree_clone(path: &Path) -> io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // Flag bits: AT_RECURSIVE is declared as a C int, open_tree takes them as unsigned.
    let flags =
        libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE.cast_unsigned();
    // SAFETY: open_tree takes a directory fd, a NUL-terminated path and flags, and returns a
    // new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
    // SAFETY: the kernel just returned this descriptor to us; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches the detached tree `tree` on the object `target` refers to, in the caller's
/// current mount namespace.
pub fn move_mount(tree: &OwnedFd, target: &impl AsRawFd) -> io::Result<()> {
    let empty = c"";
    let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: both descriptors are valid; empty paths with the EMPTY_PATH flags mean the
    // descriptors themselves.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            flags,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the detached tree `tree` (and the mounts below it) id-mapped through the mappings
/// of the user namespace `userns`: a file owned by id N on disk shows as the host id that
/// N maps to. Fails with EINVAL when the filesystem cannot be id-mapped.
pub fn set_idmap(tree: &OwnedFd, userns: &OwnedFd) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd())
            .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
    };
    let flags = libc::AT_EMPTY_PATH | libc::AT_RECURSIVE;
    // SAFETY: a valid descriptor, an empty path (AT_EMPTY_PATH) and a mount_attr of the size
    // passed, which lives across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            // Flag bits, declared as a C int; mount_setattr takes them as unsigned.
            flags.cast_unsigned(),
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
