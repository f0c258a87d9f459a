//! The early file systems PID 1 mounts before anything runs, and the mount table they are
//! read back from.

use nix::mount::{MsFlags, mount};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EarlyError {
    #[error("mount {fstype} on {target}")]
    Mount {
        target: String,
        fstype: String,
        #[source]
        source: nix::Error,
    },
    #[error("create {path}")]
    Mkdir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// How much a mount matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Nothing runs without it: failing is fatal.
    Essential,
    /// Expected; a failure is reported and the boot goes on.
    Expected,
    /// Mounted when the kernel has it and the mount point exists; silent otherwise.
    Optional,
}

/// One early mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlyMount {
    pub target: String,
    pub fstype: String,
    pub flags: MsFlags,
    pub data: String,
    pub need: Need,
}

fn m(target: &str, fstype: &str, flags: MsFlags, data: &str, need: Need) -> EarlyMount {
    EarlyMount {
        target: target.to_string(),
        fstype: fstype.to_string(),
        flags,
        data: data.to_string(),
        need,
    }
}

/// The v1 controllers the kernel has enabled, from `/proc/cgroups`: one hierarchy each, as
/// LinuxKit mounts them.
pub fn v1_controllers(proc_cgroups: &str) -> Vec<String> {
    proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] == "1").then(|| f[0].to_string())
        })
        .collect()
}

const NOSUID: MsFlags = MsFlags::MS_NOSUID;
const NODEV: MsFlags = MsFlags::MS_NODEV;
const NOEXEC: MsFlags = MsFlags::MS_NOEXEC;

/// The mounts, in order (parents first). cgroups come from [`cgroup_mounts`].
pub fn table() -> Vec<EarlyMount> {
    use Need::*;
    let kernfs = NOSUID | NODEV | NOEXEC;
    vec![
        m("/proc", "proc", kernfs, "", Essential),
        m("/sys", "sysfs", kernfs, "", Essential),
        m("/dev", "devtmpfs", NOSUID | NOEXEC, "mode=0755", Essential),
        m(
            "/dev/pts",
            "devpts",
            NOSUID | NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
            Expected,
        ),
        m("/dev/shm", "tmpfs", kernfs, "mode=1777", Expected),
        m("/dev/mqueue", "mqueue", kernfs, "", Expected),
        m("/run", "tmpfs", NOSUID | NODEV, "mode=0755", Expected),
        m("/tmp", "tmpfs", NOSUID | NODEV, "mode=1777", Expected),
        m("/var", "tmpfs", NOSUID | NODEV, "mode=0755", Expected),
        m("/sys/kernel/security", "securityfs", kernfs, "", Optional),
        m("/sys/kernel/debug", "debugfs", kernfs, "", Optional),
        m("/sys/kernel/tracing", "tracefs", kernfs, "", Optional),
        m("/sys/kernel/config", "configfs", kernfs, "", Optional),
        m("/sys/fs/bpf", "bpf", kernfs, "mode=0700", Optional),
        m("/sys/fs/pstore", "pstore", kernfs, "", Optional),
        m("/sys/fs/fuse/connections", "fusectl", kernfs, "", Optional),
        m(
            "/sys/firmware/efi/efivars",
            "efivarfs",
            kernfs,
            "",
            Optional,
        ),
        m(
            "/proc/sys/fs/binfmt_misc",
            "binfmt_misc",
            kernfs,
            "",
            Optional,
        ),
    ]
}

/// cgroup2 on `/sys/fs/cgroup`, or a tmpfs there with one v1 hierarchy per controller and
/// the `name=systemd` one (many programs assume it), as LinuxKit's rc.init mounts them.
pub fn cgroup_mounts(v1: bool, proc_cgroups: &str) -> Vec<EarlyMount> {
    let kernfs = NOSUID | NODEV | NOEXEC;
    if !v1 {
        return vec![m("/sys/fs/cgroup", "cgroup2", kernfs, "", Need::Expected)];
    }
    let mut v = vec![m(
        "/sys/fs/cgroup",
        "tmpfs",
        kernfs,
        "mode=0755",
        Need::Expected,
    )];
    for c in v1_controllers(proc_cgroups) {
        v.push(m(
            &format!("/sys/fs/cgroup/{c}"),
            "cgroup",
            kernfs,
            &c,
            Need::Expected,
        ));
    }
    v.push(m(
        "/sys/fs/cgroup/systemd",
        "cgroup",
        kernfs,
        "none,name=systemd",
        Need::Expected,
    ));
    v
}

pub(crate) use crate::mountinfo::{MountEntry, mounted_at, read as read_mountinfo};

/// Mounts one entry unless something is mounted there already.
fn mount_one(e: &EarlyMount, current: &[MountEntry]) -> Result<bool, EarlyError> {
    if mounted_at(current, &e.target).is_some() {
        return Ok(false);
    }
    let target = Path::new(&e.target);
    if !target.is_dir() {
        // Kernel file systems (/sys, /proc) have their mount points or do not support the
        // feature; only our own directories are made.
        if e.need == Need::Optional {
            return Ok(false);
        }
        std::fs::create_dir_all(target).map_err(|source| EarlyError::Mkdir {
            path: e.target.clone(),
            source,
        })?;
    }
    let data = (!e.data.is_empty()).then_some(e.data.as_str());
    mount(
        Some(e.fstype.as_str()),
        target,
        Some(e.fstype.as_str()),
        e.flags,
        data,
    )
    .map_err(|source| EarlyError::Mount {
        target: e.target.clone(),
        fstype: e.fstype.clone(),
        source,
    })?;
    Ok(true)
}

fn mount_list(list: &[EarlyMount], current: &mut Vec<MountEntry>) -> Result<(), EarlyError> {
    for e in list {
        match mount_one(e, current) {
            Ok(true) if e.target == "/proc" => *current = read_mountinfo(),
            Ok(true) => current.push(MountEntry {
                mount_point: PathBuf::from(&e.target),
                fstype: e.fstype.clone(),
                ..MountEntry::default()
            }),
            Ok(false) => {}
            Err(err) => match e.need {
                Need::Essential => return Err(err),
                Need::Expected => log::error!("{}", crate::error_chain(&err)),
                Need::Optional => log::debug!("{}", crate::error_chain(&err)),
            },
        }
    }
    Ok(())
}

/// Mounts everything; an essential mount that fails is returned (the caller powers off),
/// the other failures are reported and the boot goes on.
pub fn mount_all(cgroup_v1: bool) -> Result<(), EarlyError> {
    let mut current = read_mountinfo();
    let (base, optional): (Vec<_>, Vec<_>) =
        table().into_iter().partition(|e| e.need != Need::Optional);
    mount_list(&base, &mut current)?;
    // /proc is there now, so the kernel's controllers can be read.
    let proc_cgroups = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
    mount_list(&cgroup_mounts(cgroup_v1, &proc_cgroups), &mut current)?;
    if cgroup_v1 {
        // Limits of a parent cgroup then hold for its children, as on cgroup2.
        let knob = "/sys/fs/cgroup/memory/memory.use_hierarchy";
        if let Err(e) = std::fs::write(knob, "1") {
            log::warn!("cannot write 1 to {knob}: {e}");
        }
    }
    mount_list(&optional, &mut current)?;
    after_mounts();
    Ok(())
}

/// Fix-ups that belong with the mounts: the pty multiplexer of the new devpts instance, the
/// standard /dev links, the usual /var layout, and a shared root.
fn after_mounts() {
    // A devtmpfs ptmx would open the initial devpts instance, not ours.
    if Path::new("/dev/pts/ptmx").exists() {
        let _ = std::fs::remove_file("/dev/ptmx");
        let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        if std::fs::symlink_metadata(link).is_err() {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
    let _ = std::fs::create_dir_all("/run/lkinit");
    for e in super::rc::var_layout(Path::new("/")) {
        log::warn!("/var: {e}");
    }
    // Mounts made later under / (by onboot containers, say) propagate to the containers
    // that bind them, as on LinuxKit.
    if let Err(e) = mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SHARED,
        None::<&str>,
    ) {
        log::error!("cannot make the root mount shared: {e}");
    }
}

/// The mount table in one line: `/ tmpfs shared, /proc proc, ...`.
pub fn summary(table: &[MountEntry]) -> String {
    table
        .iter()
        .map(|e| {
            let point = e.mount_point.display();
            if e.shared && e.mount_point == Path::new("/") {
                format!("{point} {} shared", e.fstype)
            } else {
                format!("{point} {}", e.fstype)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hierarchies_from_proc_cgroups() {
        let text = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                    cpuset\t0\t1\t1\ncpu\t0\t1\t1\ncpuacct\t0\t1\t1\nblkio\t0\t1\t0\n\
                    memory\t0\t1\t1\npids\t0\t1\t1\n";
        assert_eq!(
            v1_controllers(text),
            ["cpuset", "cpu", "cpuacct", "memory", "pids"]
        );
        let mounts = cgroup_mounts(true, text);
        let targets: Vec<(&str, &str, &str)> = mounts
            .iter()
            .map(|e| (e.target.as_str(), e.fstype.as_str(), e.data.as_str()))
            .collect();
        assert_eq!(
            targets,
            [
                ("/sys/fs/cgroup", "tmpfs", "mode=0755"),
                ("/sys/fs/cgroup/cpuset", "cgroup", "cpuset"),
                ("/sys/fs/cgroup/cpu", "cgroup", "cpu"),
                ("/sys/fs/cgroup/cpuacct", "cgroup", "cpuacct"),
                ("/sys/fs/cgroup/memory", "cgroup", "memory"),
                ("/sys/fs/cgroup/pids", "cgroup", "pids"),
                ("/sys/fs/cgroup/systemd", "cgroup", "none,name=systemd"),
            ]
        );
        let v2 = cgroup_mounts(false, text);
        assert_eq!(v2.len(), 1);
        assert_eq!(v2[0].fstype, "cgroup2");
    }

    #[test]
    fn mountinfo_lines() {
        let text = "1 1 0:2 / / rw - rootfs rootfs rw\n\
                    22 1 0:20 / / rw,relatime shared:1 - tmpfs rootfs rw,mode=755\n\
                    23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
                    30 22 0:25 / /with\\040space rw master:3 - tmpfs tmpfs rw\n";
        let t = crate::mountinfo::parse(text);
        assert_eq!(t.len(), 4);
        assert_eq!(mounted_at(&t, "/").unwrap().fstype, "tmpfs");
        assert!(mounted_at(&t, "/").unwrap().shared);
        assert_eq!(t[3].mount_point, Path::new("/with space"));
        assert!(!t[3].shared);
        assert!(mounted_at(&t, "/sys").is_none());
        assert_eq!(summary(&t[1..3]), "/ tmpfs shared, /proc proc".to_string());
    }

    #[test]
    fn essential_mounts_come_first_and_parents_before_children() {
        let t = table();
        let pos = |p: &str| t.iter().position(|e| e.target == p).unwrap();
        assert!(pos("/dev") < pos("/dev/pts"));
        assert!(pos("/sys") < pos("/sys/kernel/security"));
        let essential: Vec<&str> = t
            .iter()
            .filter(|e| e.need == Need::Essential)
            .map(|e| e.target.as_str())
            .collect();
        assert_eq!(essential, ["/proc", "/sys", "/dev"]);
    }
}
