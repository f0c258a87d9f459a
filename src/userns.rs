//! A user namespace with given id mappings, as a descriptor: what an id-mapped mount needs.
//!
//! The kernel makes user namespaces only for processes, and only a single-threaded process
//! may unshare one: a fresh child (`/proc/self/exe userns-hold`, spawned through the
//! reaper) unshares it and waits; lkinit writes the mappings, keeps a descriptor of the
//! namespace and lets the child go. The namespace lives as long as the descriptor.

use crate::process;
use nix::sched::{CloneFlags, unshare};
use oci_spec::runtime::LinuxIdMapping;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("cannot start the user namespace helper")]
    Spawn(#[source] io::Error),
    #[error("the user namespace helper failed ({0})")]
    Helper(String),
    #[error("cannot write {path}")]
    Map {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `/proc/PID/uid_map` text: one `inside outside count` line per mapping.
pub(crate) fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A new user namespace with these mappings.
pub(crate) fn with_mappings(
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<OwnedFd, UsernsError> {
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg("userns-hold")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, waiter) = process::reaper()
        .spawn(&mut cmd)
        .map_err(UsernsError::Spawn)?;
    let pid = waiter.pid();
    let stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let result = (|| {
        let mut ready = [0u8; 1];
        if let Some(out) = stdout.as_mut()
            && out.read_exact(&mut ready).is_ok()
        {
            for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
                let path = PathBuf::from(format!("/proc/{pid}/{file}"));
                std::fs::write(&path, map_text(maps))
                    .map_err(|source| UsernsError::Map { path, source })?;
            }
            let path = PathBuf::from(format!("/proc/{pid}/ns/user"));
            return std::fs::File::open(&path)
                .map(OwnedFd::from)
                .map_err(|source| UsernsError::Open { path, source });
        }
        Err(UsernsError::Helper(String::new()))
    })();
    // Its stdin closing is the child's signal to go.
    drop(stdin);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = waiter.wait();
    match result {
        Err(UsernsError::Helper(_)) => {
            let why = err.trim();
            Err(UsernsError::Helper(if why.is_empty() {
                status.to_string()
            } else {
                why.to_string()
            }))
        }
        r => r,
    }
}

/// The hidden `userns-hold` command: unshares a user namespace, says so on stdout, and
/// waits for stdin to close.
pub fn hold() -> i32 {
    if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
        eprintln!("unshare(CLONE_NEWUSER): {e}");
        return 1;
    }
    let mut out = io::stdout();
    if out.write_all(b"r").and_then(|()| out.flush()).is_err() {
        return 1;
    }
    let mut sink = Vec::new();
    let _ = io::stdin().read_to_end(&mut sink);
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lines() {
        let m: Vec<LinuxIdMapping> = serde_json::from_str(
            r#"[{"containerID":0,"hostID":100000,"size":1000},{"containerID":1000,"hostID":5000,"size":1}]"#,
        )
        .unwrap();
        assert_eq!(map_text(&m), "0 100000 1000\n1000 5000 1\n");
    }
}
