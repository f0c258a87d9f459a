//! Resolving untrusted relative paths inside a root directory without leaving it.
//!
//! Paths in runtime.json come from the image, and so do the symlinks inside its rootfs. A
//! path is walked one component at a time with `O_NOFOLLOW` from a directory file
//! descriptor, so nothing on the way can be swapped for a link after it was checked. A
//! symlink is followed as the container would see it (an absolute target starts again at
//! the root), and any `..` that would climb above the root, whether written in the config
//! or in a link target, is refused. The result is an `O_PATH` descriptor; callers mount on
//! `/proc/self/fd/N`, never on the path string.

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up, as the kernel's own limit.
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("`{path}` escapes {root} (through `..`{via})")]
    Escape {
        path: String,
        root: PathBuf,
        via: String,
    },
    #[error("`{path}`: too many levels of symbolic links")]
    Loop { path: String },
    #[error("`{path}`: `{component}` is not a directory")]
    NotDir { path: String, component: String },
    #[error("`{path}`: {op} `{component}`")]
    Sys {
        path: String,
        op: &'static str,
        component: String,
        #[source]
        source: Errno,
    },
    #[error("`{path}` is not an absolute path")]
    NotAbsolute { path: String },
    #[error("cannot open {path} (a symlink is never followed there)")]
    Open {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("cannot open {root}")]
    Root {
        root: PathBuf,
        #[source]
        source: Errno,
    },
}

/// What to do when a component does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Fail with ENOENT.
    Nothing,
    /// Make every missing component a directory (mode 0755), like `mkdir -p`.
    Dirs,
    /// Make the missing parents directories and the last component an empty file (the
    /// target of a bind mount of a file).
    File,
}

/// Something the walk created, held by its parent directory's descriptor so the undo removes
/// exactly that entry even if paths change in between.
pub struct Created {
    parent: OwnedFd,
    name: OsString,
    is_dir: bool,
    /// For messages only.
    pub path: PathBuf,
}

impl Created {
    /// Records a file `name` that the caller created in the directory `parent`.
    pub fn file(parent: OwnedFd, name: OsString, path: PathBuf) -> Created {
        Created {
            parent,
            name,
            is_dir: false,
            path,
        }
    }

    /// How a later process can remove the same entry (see [`remove_created`]).
    pub fn replay(&self) -> crate::undo::Replay {
        crate::undo::Replay::Remove {
            path: self.path.clone(),
            dir: self.is_dir,
        }
    }

    /// Removes the entry if it is still empty.
    pub fn remove(&self) -> Result<(), Errno> {
        let flag = if self.is_dir {
            UnlinkatFlags::RemoveDir
        } else {
            UnlinkatFlags::NoRemoveDir
        };
        match unlinkat(&self.parent, self.name.as_os_str(), flag) {
            Err(Errno::ENOENT) => Ok(()),
            r => r,
        }
    }
}

/// A resolved path: an `O_PATH` descriptor of the target and what was created to reach it.
pub struct Resolved {
    pub fd: OwnedFd,
    /// Oldest first; undo in reverse.
    pub created: Vec<Created>,
}

impl Resolved {
    /// A path through which the kernel reaches exactly this object (for mount(2)).
    pub fn proc_path(&self) -> PathBuf {
        fd_path(&self.fd)
    }

    /// The real location of the object, for messages and later unmounts.
    pub fn real_path(&self) -> PathBuf {
        std::fs::read_link(self.proc_path()).unwrap_or_else(|_| self.proc_path())
    }
}

pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The directory `path`, opened without following a symlink at its last component: a
/// mount point lkinit makes is mounted on through this descriptor, so a symlink put there
/// never takes the mount somewhere else.
pub fn open_no_follow_dir(path: &Path) -> Result<OwnedFd, PathError> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| PathError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// Opens `root` as the anchor of a walk.
pub fn open_root(root: &Path) -> Result<OwnedFd, PathError> {
    nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| PathError::Root {
        root: root.to_path_buf(),
        source,
    })
}

/// Why a relative path from a config is refused before any walk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Escape {
    #[error("`{0}` climbs out through `..`")]
    ClimbsOut(String),
    #[error("`{0}` is not a relative path")]
    NotRelative(String),
}

/// Refuses a relative path whose own `..` components climb above its start. Symlinks are
/// the walk's business; this catches what the config says by itself.
pub fn check_lexically_inside(rel: &str) -> Result<(), Escape> {
    let mut depth: usize = 0;
    for c in Path::new(rel).components() {
        match c {
            Component::ParentDir => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| Escape::ClimbsOut(rel.to_string()))?;
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(Escape::NotRelative(rel.to_string()));
            }
        }
    }
    Ok(())
}

fn split(p: &OsStr) -> impl Iterator<Item = OsString> + '_ {
    p.as_bytes()
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, Errno> {
    fd.as_fd()
        .try_clone_to_owned()
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)))
}

/// Resolves `rel` inside the directory `root` (see the module comment), creating what is
/// missing as `create` says. On error, whatever the walk created is removed again.
pub fn resolve_in_root(root: &Path, rel: &str, create: Create) -> Result<Resolved, PathError> {
    let root_fd = open_root(root)?;
    let mut created: Vec<Created> = Vec::new();
    let result = walk(root, &root_fd, rel, create, &mut created);
    match result {
        Ok(fd) => Ok(Resolved { fd, created }),
        Err(e) => {
            for c in created.iter().rev() {
                let _ = c.remove();
            }
            Err(e)
        }
    }
}

fn walk(
    root: &Path,
    root_fd: &OwnedFd,
    rel: &str,
    create: Create,
    created: &mut Vec<Created>,
) -> Result<OwnedFd, PathError> {
    let sys = |op: &'static str, component: &OsStr, source: Errno| PathError::Sys {
        path: rel.to_string(),
        op,
        component: component.to_string_lossy().into_owned(),
        source,
    };
    if rel.starts_with('/') {
        return Err(sys("not relative:", OsStr::new(rel), Errno::EINVAL));
    }
    // Directories from the root down to where the walk is: `..` pops, links to `/` truncate.
    let mut stack: Vec<OwnedFd> = vec![dup(root_fd).map_err(|e| sys("dup", OsStr::new("."), e))?];
    let mut queue: VecDeque<OsString> = split(OsStr::new(rel)).collect();
    let mut links = 0usize;
    let mut via = String::new();
    // The last component that was opened, and its name: a file may only come last.
    let mut last_file: Option<(OwnedFd, OsString)> = None;

    while let Some(comp) = queue.pop_front() {
        if let Some((_, file)) = last_file.take() {
            return Err(PathError::NotDir {
                path: rel.to_string(),
                component: file.to_string_lossy().into_owned(),
            });
        }
        if comp == ".." {
            if stack.len() == 1 {
                return Err(PathError::Escape {
                    path: rel.to_string(),
                    root: root.to_path_buf(),
                    via,
                });
            }
            stack.pop();
            continue;
        }
        let cur = stack.last().expect("the stack always holds the root");
        let opened = openat(
            cur,
            comp.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        let fd = match opened {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create != Create::Nothing => {
                let is_last = queue.is_empty();
                let as_file = is_last && create == Create::File;
                if as_file {
                    openat(
                        cur,
                        comp.as_os_str(),
                        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .map_err(|e| sys("create", &comp, e))?;
                } else {
                    match mkdirat(cur, comp.as_os_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(sys("mkdir", &comp, e)),
                    }
                }
                let parent = dup(cur).map_err(|e| sys("dup", &comp, e))?;
                let path = fd_real_path(cur).join(&comp);
                created.push(Created {
                    parent,
                    name: comp.clone(),
                    is_dir: !as_file,
                    path,
                });
                // Opened again through the same checks: what was made could have been raced.
                queue.push_front(comp);
                continue;
            }
            Err(e) => return Err(sys("open", &comp, e)),
        };
        let st = fstat(&fd).map_err(|e| sys("stat", &comp, e))?;
        let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
        if kind == SFlag::S_IFLNK {
            links += 1;
            if links > MAX_LINKS {
                return Err(PathError::Loop {
                    path: rel.to_string(),
                });
            }
            let target =
                readlinkat(cur, comp.as_os_str()).map_err(|e| sys("readlink", &comp, e))?;
            via = format!(
                " in the symlink `{}` -> `{}`",
                comp.to_string_lossy(),
                target.to_string_lossy()
            );
            if target.as_bytes().starts_with(b"/") {
                stack.truncate(1);
            }
            for (i, c) in split(&target).enumerate() {
                queue.insert(i, c);
            }
            continue;
        }
        if kind == SFlag::S_IFDIR {
            stack.push(fd);
        } else {
            last_file = Some((fd, comp));
        }
    }
    match last_file {
        Some((fd, _)) => Ok(fd),
        None => {
            let top = stack.pop().expect("the stack always holds the root");
            Ok(top)
        }
    }
}

fn fd_real_path(fd: &OwnedFd) -> PathBuf {
    std::fs::read_link(fd_path(fd)).unwrap_or_default()
}

/// Removes `path` (a directory only while it is empty), as [`Created::remove`] would, for a
/// process that holds no descriptor of its parent any more. `path` is a real path, as
/// recorded: a symlink on the way means something was swapped in, and nothing is removed.
pub fn remove_created(path: &Path, dir: bool) -> Result<(), Errno> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Errno::EINVAL);
    };
    let parent_fd = match open_no_symlinks(parent) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let flag = if dir {
        UnlinkatFlags::RemoveDir
    } else {
        UnlinkatFlags::NoRemoveDir
    };
    match unlinkat(&parent_fd, name, flag) {
        Err(Errno::ENOENT) => Ok(()),
        r => r,
    }
}

/// Opens a directory with `openat2(RESOLVE_NO_SYMLINKS)`: every component must be what it
/// was when the path was recorded.
fn open_no_symlinks(dir: &Path) -> Result<OwnedFd, Errno> {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: open_how is plain data; every field is set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: a valid C string and a valid open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    let fd = std::os::fd::RawFd::try_from(fd).map_err(|_| Errno::EOVERFLOW)?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// `mkdir -p` for an absolute host path, returning what it created (for the undo).
pub fn create_dirs_abs(path: &Path) -> Result<Vec<Created>, PathError> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = rel.to_string_lossy();
    if rel.is_empty() {
        return Ok(Vec::new());
    }
    // The host's own paths are trusted, and its symlinks (e.g. /var/run) are meant to be
    // followed; walking from `/` gives the same undo records as inside a rootfs.
    let r = resolve_in_root(Path::new("/"), &rel, Create::Dirs)?;
    Ok(r.created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn lexical_check() {
        assert!(check_lexically_inside("a/b/../c").is_ok());
        assert!(check_lexically_inside("a/../..").is_err());
        assert!(check_lexically_inside("../x").is_err());
        assert!(check_lexically_inside("/abs").is_err());
        assert!(check_lexically_inside("./a/./b").is_ok());
    }

    #[test]
    fn creates_and_resolves_inside() {
        let t = tmp();
        let r = resolve_in_root(t.path(), "a/b/c", Create::Dirs).unwrap();
        assert!(t.path().join("a/b/c").is_dir());
        assert_eq!(
            r.real_path(),
            t.path().canonicalize().unwrap().join("a/b/c")
        );
        assert_eq!(r.created.len(), 3);
        drop(r.fd);
        for c in r.created.iter().rev() {
            c.remove().unwrap();
        }
        assert!(!t.path().join("a").exists());
    }

    #[test]
    fn dotdot_escape_refused() {
        let t = tmp();
        std::fs::create_dir(t.path().join("a")).unwrap();
        let e = resolve_in_root(t.path(), "a/../../x", Create::Dirs)
            .err()
            .unwrap();
        assert!(matches!(e, PathError::Escape { .. }), "{e}");
        assert!(!t.path().parent().unwrap().join("x").exists());
    }

    #[test]
    fn relative_symlink_escape_refused_and_nothing_left() {
        let t = tmp();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        symlink("../../../../../../../..", root.join("up")).unwrap();
        let e = resolve_in_root(&root, "new/../up/etc/x", Create::Dirs)
            .err()
            .unwrap();
        assert!(matches!(e, PathError::Escape { .. }), "{e}");
        assert!(e.to_string().contains("symlink `up`"), "{e}");
        // What the walk created on the way was removed again.
        assert!(!root.join("new").exists());
    }

    #[test]
    fn absolute_symlink_stays_inside() {
        let t = tmp();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        symlink("/real", root.join("abs")).unwrap();
        let r = resolve_in_root(&root, "abs/sub", Create::Dirs).unwrap();
        assert!(root.join("real/sub").is_dir());
        assert_eq!(r.real_path(), root.canonicalize().unwrap().join("real/sub"));
    }

    #[test]
    fn symlink_loop_detected() {
        let t = tmp();
        symlink("b", t.path().join("a")).unwrap();
        symlink("a", t.path().join("b")).unwrap();
        let e = resolve_in_root(t.path(), "a/x", Create::Dirs)
            .err()
            .unwrap();
        assert!(matches!(e, PathError::Loop { .. }), "{e}");
    }

    #[test]
    fn file_in_the_middle_is_not_a_dir() {
        let t = tmp();
        std::fs::write(t.path().join("f"), b"").unwrap();
        let e = resolve_in_root(t.path(), "f/x", Create::Dirs)
            .err()
            .unwrap();
        assert!(matches!(e, PathError::NotDir { .. }), "{e}");
        assert!(e.to_string().ends_with("`f` is not a directory"), "{e}");
    }

    #[test]
    fn create_file_target() {
        let t = tmp();
        let r = resolve_in_root(t.path(), "d/file", Create::File).unwrap();
        assert!(t.path().join("d/file").is_file());
        assert_eq!(r.created.len(), 2);
    }

    #[test]
    fn remove_created_by_path_refuses_symlinks() {
        let t = tmp();
        let root = t.path().canonicalize().unwrap();
        let r = resolve_in_root(&root, "a/b", Create::Dirs).unwrap();
        let plan: Vec<_> = r.created.iter().rev().map(|c| c.replay()).collect();
        drop(r);
        // A directory that is not empty stays, as with Created::remove.
        std::fs::write(root.join("a/b/f"), b"").unwrap();
        let crate::undo::Replay::Remove { path, dir } = &plan[0] else {
            panic!("{plan:?}")
        };
        assert_eq!(remove_created(path, *dir), Err(Errno::ENOTEMPTY));
        std::fs::remove_file(root.join("a/b/f")).unwrap();
        // `a` swapped for a symlink to a directory that also has a `b`: refused.
        std::fs::create_dir_all(root.join("elsewhere/b")).unwrap();
        std::fs::rename(root.join("a"), root.join("a.moved")).unwrap();
        symlink(root.join("elsewhere"), root.join("a")).unwrap();
        assert_eq!(remove_created(path, *dir), Err(Errno::ELOOP));
        assert!(root.join("elsewhere/b").is_dir());
        std::fs::remove_file(root.join("a")).unwrap();
        std::fs::rename(root.join("a.moved"), root.join("a")).unwrap();
        for step in &plan {
            let crate::undo::Replay::Remove { path, dir } = step else {
                panic!("{step:?}")
            };
            remove_created(path, *dir).unwrap();
        }
        assert!(!root.join("a").exists());
        // Already gone is fine.
        remove_created(&root.join("a"), true).unwrap();
    }

    #[test]
    fn missing_without_create() {
        let t = tmp();
        let e = resolve_in_root(t.path(), "nope", Create::Nothing)
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                PathError::Sys {
                    source: Errno::ENOENT,
                    ..
                }
            ),
            "{e}"
        );
    }
}
