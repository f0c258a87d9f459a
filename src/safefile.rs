//! Opening files on paths that a container or a config can influence.
//!
//! A bundle's files come from its image, and a container that can see a directory lkinit
//! writes in (its log directory bound inside, say) can put anything there: a symlink that
//! turns lkinit's next append into a write to any host file, a FIFO whose open never
//! returns, `/dev/zero` where a config file should be. So every such file is opened without
//! following a symlink at its last component and non-blocking, then checked to be a regular
//! file before a byte is read or written, and reads are bounded.

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag, fstat};
use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The most lkinit reads of a config file (config.json, runtime.json/yml, service
/// settings): far beyond any real one, small enough that a hostile one cannot exhaust memory.
pub const CONFIG_LIMIT: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is a symlink: lkinit does not follow one there")]
    Symlink { path: PathBuf },
    #[error("{path} is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a directory")]
    NotDir { path: PathBuf },
    #[error(
        "{path} is writable by others (mode {mode:04o}, owner uid {uid}): lkinit does not write \
         there; make it owned by root and not group or world writable"
    )]
    Unsafe { path: PathBuf, mode: u32, uid: u32 },
    #[error("cannot create {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FileError {
    /// The file is not there at all.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Open { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

fn kind_of(mode: u32) -> &'static str {
    match SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFLNK => "a symlink",
        _ => "not a regular file",
    }
}

/// Opens `path` with `flags`, not following a final symlink and without blocking on a
/// FIFO, and checks that it is a regular file.
fn open_regular(path: &Path, flags: OFlag, mode: Mode) -> Result<File, FileError> {
    let fd: OwnedFd = nix::fcntl::open(
        path,
        flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY,
        mode,
    )
    .map_err(|source| match source {
        Errno::ELOOP => FileError::Symlink {
            path: path.to_path_buf(),
        },
        // A FIFO nobody reads (a write-only, non-blocking open), or a device without its
        // driver: either way not a file.
        Errno::ENXIO => FileError::NotRegular {
            path: path.to_path_buf(),
            kind: nix::sys::stat::lstat(path)
                .map_or("not a regular file", |st| kind_of(st.st_mode)),
        },
        source => FileError::Open {
            path: path.to_path_buf(),
            source: source.into(),
        },
    })?;
    let st = fstat(&fd).map_err(|source| FileError::Open {
        path: path.to_path_buf(),
        source: source.into(),
    })?;
    if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFREG.bits() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(st.st_mode),
        });
    }
    Ok(File::from(fd))
}

/// Reads a config file of at most `limit` bytes; None when there is no such file.
pub fn read_config(path: &Path, limit: u64) -> Result<Option<String>, FileError> {
    let file = match open_regular(path, OFlag::O_RDONLY, Mode::empty()) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    let read_err = |source| FileError::Read {
        path: path.to_path_buf(),
        source,
    };
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(Some(text))
}

/// Opens a regular file for reading (a log handed to a reader).
pub fn open_read(path: &Path) -> Result<File, FileError> {
    open_regular(path, OFlag::O_RDONLY, Mode::empty())
}

/// Opens a log file for appending, creating it (mode 0644, as LinuxKit does) if needed.
/// Readable too: the writer looks at how the file ends to go on with a line left unfinished.
pub fn open_append(path: &Path) -> Result<File, FileError> {
    open_regular(
        path,
        OFlag::O_RDWR | OFlag::O_APPEND | OFlag::O_CREAT,
        Mode::from_bits_truncate(0o644),
    )
}

/// Makes `dir` (and its parents) if missing, and checks that nobody but its owner, root or
/// lkinit's own user, can change what is in it: a directory others may write in is one
/// where they can put the file lkinit is about to open.
pub fn ensure_private_dir(dir: &Path) -> Result<(), FileError> {
    std::fs::create_dir_all(dir).map_err(|source| FileError::Create {
        path: dir.to_path_buf(),
        source,
    })?;
    check_dir(dir)
}

/// See [`ensure_private_dir`]: the check alone.
pub fn check_dir(dir: &Path) -> Result<(), FileError> {
    let st = nix::sys::stat::stat(dir).map_err(|source| FileError::Open {
        path: dir.to_path_buf(),
        source: source.into(),
    })?;
    if st.st_mode & SFlag::S_IFMT.bits() != SFlag::S_IFDIR.bits() {
        return Err(FileError::NotDir {
            path: dir.to_path_buf(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    let writable_by_others = st.st_mode & 0o022 != 0;
    if (st.st_uid != me && st.st_uid != 0) || writable_by_others {
        return Err(FileError::Unsafe {
            path: dir.to_path_buf(),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn reads_a_regular_file_and_says_none_when_missing() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.json");
        assert!(read_config(&p, 100).unwrap().is_none());
        std::fs::write(&p, "{}").unwrap();
        assert_eq!(read_config(&p, 100).unwrap().as_deref(), Some("{}"));
    }

    #[test]
    fn refuses_links_fifos_devices_and_big_files() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        std::fs::write(&target, "secret").unwrap();
        let link = t.path().join("link");
        symlink(&target, &link).unwrap();
        let e = read_config(&link, 100).unwrap_err();
        assert!(matches!(e, FileError::Symlink { .. }), "{e}");
        let e = open_append(&link).unwrap_err();
        assert!(matches!(e, FileError::Symlink { .. }), "{e}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "secret");

        let fifo = t.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        // Neither open waits for a peer.
        let e = read_config(&fifo, 100).unwrap_err();
        assert!(
            e.to_string().ends_with("is a FIFO, not a regular file"),
            "{e}"
        );
        let e = open_append(&fifo).unwrap_err();
        assert!(
            e.to_string().ends_with("is a FIFO, not a regular file"),
            "{e}"
        );

        let e = read_config(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");

        let big = t.path().join("big");
        std::fs::write(&big, vec![b' '; 101]).unwrap();
        let e = read_config(&big, 100).unwrap_err();
        assert!(matches!(e, FileError::TooLarge { limit: 100, .. }), "{e}");
    }

    #[test]
    fn a_dir_others_can_write_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("logs");
        ensure_private_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_private_dir(&d).unwrap_err();
        assert!(e.to_string().contains("mode 0777"), "{e}");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&d).unwrap();
        let f = t.path().join("file");
        std::fs::write(&f, "").unwrap();
        assert!(matches!(check_dir(&f), Err(FileError::NotDir { .. })));
    }
}
