//! The readiness FIFO of `ready: {fd: N}`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A service's readiness FIFO (`ready: {fd: N}`): the container holds it as descriptor N
/// and writes a line when it is ready. A FIFO rather than a pipe, held read-write on both
/// sides: a container that writes while no supervisor runs neither blocks on a reader
/// that is gone nor dies of SIGPIPE, and the next supervisor finds the line waiting.
pub struct ReadyFifo {
    fd: AsyncFd<File>,
    path: PathBuf,
    made: (u64, u64),
}

pub fn fifo_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("ready")
}

/// Removes the readiness FIFO of service `name`, once its container is gone.
pub fn remove_fifo(state_dir: &Path, name: &str) {
    let _ = std::fs::remove_file(fifo_dir(state_dir).join(name));
}

fn open_fifo(path: &Path, nonblock: bool) -> io::Result<File> {
    let mut flags = libc::O_NOFOLLOW;
    if nonblock {
        flags |= libc::O_NONBLOCK;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
}

impl ReadyFifo {
    /// Makes a fresh FIFO for service `name`; returns it and the container's end.
    pub fn create(state_dir: &Path, name: &str) -> io::Result<(ReadyFifo, OwnedFd)> {
        let dir = fifo_dir(state_dir);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(io::Error::from)?;
        let fifo = Self::open(path)?;
        let theirs = open_fifo(&fifo.path, false)?;
        Ok((fifo, theirs.into()))
    }

    /// The FIFO an earlier supervisor made for service `name` (it still runs).
    pub fn reopen(state_dir: &Path, name: &str) -> io::Result<ReadyFifo> {
        let path = fifo_dir(state_dir).join(name);
        let meta = std::fs::symlink_metadata(&path)?;
        if !meta.file_type().is_fifo() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a FIFO", path.display()),
            ));
        }
        Self::open(path)
    }

    fn open(path: PathBuf) -> io::Result<ReadyFifo> {
        let f = open_fifo(&path, true)?;
        let meta = f.metadata()?;
        // SAFETY: the File owns a valid descriptor for as long as the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register_with_interest(f, Interest::READABLE) }
            .map_err(io::Error::from)?;
        Ok(ReadyFifo {
            fd,
            path,
            made: (meta.dev(), meta.ino()),
        })
    }

    /// Returns once a newline has been written (what comes before it says nothing).
    pub async fn line(&mut self) -> io::Result<()> {
        let mut buf = [0u8; 512];
        loop {
            let mut guard = self.fd.readable_mut().await?;
            match guard.try_io(|f| f.get_mut().read(&mut buf)) {
                Ok(Ok(n)) if buf[..n].contains(&b'\n') => return Ok(()),
                // Held read-write here, so there is always a writer: no end of file.
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

impl Drop for ReadyFifo {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.made) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
