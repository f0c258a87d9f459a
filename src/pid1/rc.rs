//! What LinuxKit's rc.init does for the system besides its mounts, so LinuxKit's packages
//! find what they expect: the standard directories of `/var`, the resource limits every
//! process inherits, a hostname, and the file a `/etc/resolv.conf` symlink points at.

use nix::sys::resource::{RLIM_INFINITY, Resource, setrlimit};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RcError {
    #[error("cannot create {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot set the mode of {path} to {mode:o}")]
    Chmod {
        path: PathBuf,
        mode: u32,
        #[source]
        source: io::Error,
    },
    #[error("cannot link {path} to {target}")]
    Symlink {
        path: PathBuf,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("setrlimit {resource}")]
    Limit {
        resource: &'static str,
        #[source]
        source: nix::Error,
    },
}

/// The directories of `/var` and their modes (`/var` is a fresh tmpfs at boot).
pub const VAR_DIRS: [(&str, u32); 9] = [
    ("cache", 0o755),
    ("empty", 0o555),
    ("lib", 0o755),
    ("local", 0o755),
    ("lock", 0o755),
    ("log", 0o755),
    ("opt", 0o755),
    ("spool", 0o755),
    ("tmp", 0o1777),
];

/// `ROOT/var/{cache,empty,lib,...}` with their modes and `ROOT/var/run -> /run`. What is
/// there already is left as it is; every failure is returned and the others still made.
pub fn var_layout(root: &Path) -> Vec<RcError> {
    let var = root.join("var");
    let mut errors = Vec::new();
    for (name, mode) in VAR_DIRS {
        let path = var.join(name);
        match std::fs::DirBuilder::new()
            .recursive(false)
            .mode(mode)
            .create(&path)
        {
            // The umask took its share of the mode.
            Ok(()) => {
                if let Err(source) =
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                {
                    errors.push(RcError::Chmod { path, mode, source });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => errors.push(RcError::Create { path, source }),
        }
    }
    let run = var.join("run");
    if std::fs::symlink_metadata(&run).is_err()
        && let Err(source) = std::os::unix::fs::symlink("/run", &run)
    {
        errors.push(RcError::Symlink {
            path: run,
            target: "/run".into(),
            source,
        });
    }
    errors
}

/// LinuxKit's limits for every process: a million open files, no cap on processes.
pub fn set_limits() -> Vec<RcError> {
    let mut errors = Vec::new();
    for (resource, name, value) in [
        (Resource::RLIMIT_NOFILE, "RLIMIT_NOFILE", 1_048_576),
        (Resource::RLIMIT_NPROC, "RLIMIT_NPROC", RLIM_INFINITY),
    ] {
        if let Err(source) = setrlimit(resource, value, value) {
            errors.push(RcError::Limit {
                resource: name,
                source,
            });
        }
    }
    errors
}

/// The name `/etc/hostname` gives (its first line), if any.
pub fn configured_hostname(text: &str) -> Option<&str> {
    Some(text.lines().next()?.trim()).filter(|n| !n.is_empty())
}

/// LinuxKit's name for a machine the image does not name: `linuxkit-` and eth0's MAC
/// address without colons. None while the kernel has a name already.
pub fn fallback_hostname(current: &str, eth0_mac: &str) -> Option<String> {
    if !current.is_empty() && current != "(none)" {
        return None;
    }
    let mac: String = eth0_mac.trim().chars().filter(|c| *c != ':').collect();
    (!mac.is_empty()).then(|| format!("linuxkit-{mac}"))
}

/// The hostname from `/etc/hostname`, else LinuxKit's name from eth0's address when the
/// kernel has none.
pub fn set_hostname() {
    if let Ok(text) = std::fs::read_to_string("/etc/hostname")
        && let Some(name) = configured_hostname(&text)
    {
        match nix::unistd::sethostname(name) {
            Ok(()) => log::info!("hostname: {name}"),
            Err(e) => log::error!("hostname `{name}` from /etc/hostname: {e}"),
        }
    }
    let current = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mac = std::fs::read_to_string("/sys/class/net/eth0/address").unwrap_or_default();
    if let Some(name) = fallback_hostname(&current, &mac) {
        match nix::unistd::sethostname(&name) {
            Ok(()) => log::info!("hostname: {name} (from eth0's address)"),
            Err(e) => log::error!("hostname `{name}`: {e}"),
        }
    }
}

/// Where a `ROOT/etc/resolv.conf` symlink points, inside ROOT (a relative target is read
/// from `etc/`).
fn resolv_target(root: &Path, link_target: &Path) -> PathBuf {
    match link_target.strip_prefix("/") {
        Ok(abs) => root.join(abs),
        Err(_) => root.join("etc").join(link_target),
    }
}

/// When `ROOT/etc/resolv.conf` is a symlink (a DHCP client in a container writes the file it
/// points at, usually under /run), its directory and an empty file there, unless the file
/// exists. Returns the file made.
pub fn resolv_conf(root: &Path) -> Result<Option<PathBuf>, RcError> {
    let Ok(target) = std::fs::read_link(root.join("etc/resolv.conf")) else {
        return Ok(None);
    };
    let file = resolv_target(root, &target);
    if std::fs::symlink_metadata(&file).is_ok() {
        return Ok(None);
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| RcError::Create {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&file)
        .map_err(|source| RcError::Create {
            path: file.clone(),
            source,
        })?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn var_has_linuxkits_directories() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("var")).unwrap();
        // What is there already stays.
        std::fs::create_dir(t.path().join("var/log")).unwrap();
        std::fs::write(t.path().join("var/log/keep"), "x").unwrap();
        assert!(var_layout(t.path()).is_empty());
        for (name, mode) in VAR_DIRS {
            let m = std::fs::metadata(t.path().join("var").join(name)).unwrap();
            assert!(m.is_dir(), "{name}");
            if name != "log" {
                assert_eq!(m.mode() & 0o7777, mode, "{name}");
            }
        }
        assert!(t.path().join("var/log/keep").exists());
        assert_eq!(
            std::fs::read_link(t.path().join("var/run")).unwrap(),
            Path::new("/run")
        );
        // Twice is once.
        assert!(var_layout(t.path()).is_empty());
    }

    #[test]
    fn a_var_that_cannot_be_written_is_reported() {
        let t = tempfile::tempdir().unwrap();
        // No var/ at all: every directory fails, each named.
        let errors = var_layout(t.path());
        assert_eq!(errors.len(), VAR_DIRS.len() + 1);
        assert!(errors[0].to_string().contains("var/cache"), "{}", errors[0]);
    }

    #[test]
    fn hostnames() {
        assert_eq!(configured_hostname("box\nrest\n"), Some("box"));
        assert_eq!(configured_hostname("  box  \n"), Some("box"));
        assert_eq!(configured_hostname("\n"), None);
        assert_eq!(configured_hostname(""), None);
        assert_eq!(
            fallback_hostname("(none)", "52:54:00:12:34:56\n").as_deref(),
            Some("linuxkit-525400123456")
        );
        assert_eq!(
            fallback_hostname("", "52:54:00:12:34:56").as_deref(),
            Some("linuxkit-525400123456")
        );
        assert_eq!(fallback_hostname("box", "52:54:00:12:34:56"), None);
        assert_eq!(fallback_hostname("(none)", ""), None);
    }

    #[test]
    fn resolv_conf_link_gets_its_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        // Not a link: nothing to do.
        assert!(resolv_conf(t.path()).unwrap().is_none());
        std::os::unix::fs::symlink(
            "/run/resolvconf/resolv.conf",
            t.path().join("etc/resolv.conf"),
        )
        .unwrap();
        let made = resolv_conf(t.path()).unwrap().unwrap();
        assert_eq!(made, t.path().join("run/resolvconf/resolv.conf"));
        assert_eq!(std::fs::read(&made).unwrap(), b"");
        // A file that is there is never emptied.
        std::fs::write(&made, "nameserver 10.0.0.1\n").unwrap();
        assert!(resolv_conf(t.path()).unwrap().is_none());
        assert_eq!(std::fs::read(&made).unwrap(), b"nameserver 10.0.0.1\n");
        // A relative target is read from etc/.
        assert_eq!(
            resolv_target(t.path(), Path::new("../run/x")),
            t.path().join("etc/../run/x")
        );
    }
}
