//! What a runtime or an lkinit killed half way left behind: the runtime's state directory
//! of a container it was making or deleting, and runtime commands still running, noted in
//! a directory so that whoever comes next can end them.

use super::command::write_making_dir;
use super::{OciRuntime, RuntimeError};
use crate::process::{self, PidFd};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

impl OciRuntime {
    /// Notes every runtime command in flight in `dir`, so that whoever takes over after
    /// lkinit is killed can end them with [`OciRuntime::end_leftover_calls`]: an orphaned
    /// `create` would otherwise go on beside the next attempt at the same container (and
    /// write the same pid file).
    pub fn note_calls_in(&mut self, dir: PathBuf) {
        self.calls_dir = Some(dir);
    }

    pub(super) fn note_call(&self, pid: i32) -> Option<PathBuf> {
        let dir = self.calls_dir.as_ref()?;
        // A command that has ended (and been reaped) already needs no note.
        let start = process::start_time(pid)?;
        let path = dir.join(pid.to_string());
        match write_making_dir(dir, &path, start.to_string().as_bytes()) {
            Ok(()) => Some(path),
            Err((p, e)) => {
                log::warn!("cannot note runtime command {pid}: {}: {e}", p.display());
                None
            }
        }
    }

    /// Kills the runtime commands a killed predecessor left running (each with the hooks
    /// and container processes it started) and waits for them to end, before anything
    /// is done again to their containers.
    pub fn end_leftover_calls(&self) {
        let Some(dir) = &self.calls_dir else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            if let Some(fd) = leftover(&path) {
                let pid = fd.pid();
                // Empty for a command that is ending.
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .unwrap_or_default();
                let cmd = cmd.trim_end();
                let sep = if cmd.is_empty() { "" } else { ": " };
                log::warn!(
                    "a runtime command of the last supervisor was still running \
                     (pid {pid}{sep}{cmd}); killing it and what it started"
                );
                process::kill_tree_of(&fd);
                if !fd.wait_exited(LEFTOVER_WAIT) {
                    log::error!("runtime command {pid} survives SIGKILL");
                }
            }
            let _ = std::fs::remove_file(&path);
        }
    }

    /// The runtime's state directory: `--root`, or the default of the runtimes lkinit knows.
    pub fn state_root(&self) -> Option<PathBuf> {
        if let Some(r) = &self.root {
            return Some(r.clone());
        }
        let base = Path::new(&self.bin)
            .file_name()?
            .to_string_lossy()
            .into_owned();
        match base.as_str() {
            "runc" => Some(PathBuf::from("/run/runc")),
            "crun" => Some(PathBuf::from("/run/crun")),
            _ => None,
        }
    }

    /// Removes what a runtime killed during `create` left of `name` in its state directory
    /// (mounts included), once the runtime has said it does not know the container (it was
    /// killed before saving its state): runc refuses every later `create` of the name
    /// while the directory is there.
    pub fn clear_half_made(&self, name: &str) -> Result<(), RuntimeError> {
        self.remove_state_dir(name, "left half made by a runtime that was killed")
    }

    /// Removes the runtime's state directory of `name`, and any mount in it, behind the
    /// runtime's back: only for a container whose processes are gone (see the callers).
    /// `why` says where it comes from, in the warning.
    pub(super) fn remove_state_dir(&self, name: &str, why: &str) -> Result<(), RuntimeError> {
        let Some(dir) = self.state_root().map(|r| r.join(name)) else {
            return Ok(());
        };
        // runc mounts a copy of itself there for a moment (cloned_binary.c); a runc killed
        // meanwhile leaves the mount, and the directory cannot go while it is there.
        for m in crate::mountinfo::under(&crate::mountinfo::read(), &dir) {
            let flags = nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW;
            if let Err(e) = nix::mount::umount2(&m, flags) {
                log::debug!("{name}: cannot unmount {}: {e}", m.display());
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                log::warn!("{name}: removing {}, {why}", dir.display());
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RuntimeError::Io { path: dir, source }),
        }
    }

    /// Whether a container of that name may exist already (one stat, no process): `run`
    /// reports a clash only when it has ended, too late to clear it and retry.
    pub fn may_exist(&self, name: &str) -> bool {
        self.state_root().is_some_and(|r| r.join(name).exists())
    }
}

/// How long a leftover runtime command may take to die after SIGKILL.
pub(super) const LEFTOVER_WAIT: Duration = Duration::from_secs(5);

/// The process a note names, pinned by a pidfd, if it still runs: the pid alone may have
/// been reused since, the start time tells.
fn leftover(note: &Path) -> Option<PidFd> {
    let pid: i32 = note.file_name()?.to_str()?.parse().ok()?;
    let start: u64 = std::fs::read_to_string(note).ok()?.trim().parse().ok()?;
    let fd = PidFd::open(pid).ok()?;
    // Checked once the pidfd is open: from then on the pid cannot change hands.
    (process::start_time(pid) == Some(start) && !fd.has_exited()).then_some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A note names its process by pid and start time: a pid that names another process
    /// now (another start time), or none, is not a leftover.
    #[test]
    fn a_note_names_one_process() {
        let d = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = process::pid_of(&child);
        let note = d.path().join(pid.to_string());
        let start = process::start_time(pid).unwrap();
        std::fs::write(&note, (start + 1).to_string()).unwrap();
        assert!(leftover(&note).is_none());
        std::fs::write(&note, start.to_string()).unwrap();
        assert_eq!(leftover(&note).map(|fd| fd.pid()), Some(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(leftover(&note).is_none());
        std::fs::write(d.path().join("not-a-pid"), "1").unwrap();
        assert!(leftover(&d.path().join("not-a-pid")).is_none());
    }
}
