//! The early file systems PID 1 mounts before anything runs, and the mount table they are
//! read back from.

use nix::mount::{MsFlags, mount};
use std::path::Path;

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

/// What the kernel command line asks of cgroups: v2 (one unified hierarchy) unless
/// `linuxkit.unified_cgroup_hierarchy=0` (LinuxKit's switch) or
/// `systemd.unified_cgroup_hierarchy=0` asks for v1. The last word that says wins.
pub fn wants_cgroup_v1(cmdline: &str) -> bool {
    let mut v1 = false;
    for word in cmdline.split_whitespace() {
        if let Some((key, value)) = word.split_once('=')
            && matches!(
                key,
                "linuxkit.unified_cgroup_hierarchy" | "systemd.unified_cgroup_hierarchy"
            )
        {
            v1 = matches!(value, "0" | "false" | "no" | "off");
        }
    }
    v1
}

/// The v1 controllers the kernel has enabled, from `/proc/cgroups`, grouped the way hosts
/// usually co-mount them (`cpu,cpuacct` and `net_cls,net_prio` share a hierarchy).
pub fn v1_hierarchies(proc_cgroups: &str) -> Vec<Vec<String>> {
    let enabled: Vec<String> = proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && f[3] == "1").then(|| f[0].to_string())
        })
        .collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for pair in [["cpu", "cpuacct"], ["net_cls", "net_prio"]] {
        if pair.iter().all(|c| enabled.iter().any(|e| e == c)) {
            out.push(pair.iter().map(|s| s.to_string()).collect());
            taken.extend(pair.iter().map(|s| s.to_string()));
        }
    }
    for c in enabled {
        if !taken.contains(&c) {
            out.push(vec![c]);
        }
    }
    out.sort();
    out
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

/// cgroup2 on `/sys/fs/cgroup`, or a tmpfs there with one v1 hierarchy per controller group.
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
    for h in v1_hierarchies(proc_cgroups) {
        let joined = h.join(",");
        v.push(m(
            &format!("/sys/fs/cgroup/{joined}"),
            "cgroup",
            kernfs,
            &joined,
            Need::Expected,
        ));
    }
    v
}

pub use crate::mountinfo::{MountEntry, mounted_at, read as read_mountinfo};

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
                mount_point: e.target.clone(),
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
pub fn mount_all(cmdline: &str) -> Result<(), EarlyError> {
    let mut current = read_mountinfo();
    let (base, optional): (Vec<_>, Vec<_>) =
        table().into_iter().partition(|e| e.need != Need::Optional);
    mount_list(&base, &mut current)?;
    // /proc is there now, so the kernel's controllers can be read.
    let proc_cgroups = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
    mount_list(
        &cgroup_mounts(wants_cgroup_v1(cmdline), &proc_cgroups),
        &mut current,
    )?;
    mount_list(&optional, &mut current)?;
    after_mounts();
    Ok(())
}

/// Fix-ups that belong with the mounts: the pty multiplexer of the new devpts instance, the
/// usual /var layout, the standard /dev links, and a shared root.
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
        ("/var/run", "/run"),
    ] {
        if std::fs::symlink_metadata(link).is_err() {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
    for d in ["/var/log", "/var/lib", "/run/lkinit"] {
        let _ = std::fs::create_dir_all(d);
    }
    let _ = std::fs::create_dir_all("/var/tmp");
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions("/var/tmp", std::fs::Permissions::from_mode(0o1777));
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
            if e.shared && e.mount_point == "/" {
                format!("{} {} shared", e.mount_point, e.fstype)
            } else {
                format!("{} {}", e.mount_point, e.fstype)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_version_from_the_command_line() {
        assert!(!wants_cgroup_v1("console=ttyS0 quiet"));
        assert!(wants_cgroup_v1(
            "console=ttyS0 linuxkit.unified_cgroup_hierarchy=0"
        ));
        assert!(wants_cgroup_v1("systemd.unified_cgroup_hierarchy=false"));
        assert!(!wants_cgroup_v1("linuxkit.unified_cgroup_hierarchy=1"));
        // The last word wins, as the kernel's own parameters do.
        assert!(!wants_cgroup_v1(
            "linuxkit.unified_cgroup_hierarchy=0 linuxkit.unified_cgroup_hierarchy=1"
        ));
        assert!(!wants_cgroup_v1("xlinuxkit.unified_cgroup_hierarchy=0"));
    }

    #[test]
    fn v1_hierarchies_from_proc_cgroups() {
        let text = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                    cpuset\t0\t1\t1\ncpu\t0\t1\t1\ncpuacct\t0\t1\t1\nblkio\t0\t1\t0\n\
                    memory\t0\t1\t1\nnet_cls\t0\t1\t1\nnet_prio\t0\t1\t1\npids\t0\t1\t1\n";
        let h = v1_hierarchies(text);
        let names: Vec<String> = h.iter().map(|g| g.join(",")).collect();
        assert_eq!(
            names,
            [
                "cpu,cpuacct",
                "cpuset",
                "memory",
                "net_cls,net_prio",
                "pids"
            ]
        );
        let mounts = cgroup_mounts(true, text);
        assert_eq!(mounts[0].fstype, "tmpfs");
        assert_eq!(mounts[1].target, "/sys/fs/cgroup/cpu,cpuacct");
        assert_eq!(mounts[1].data, "cpu,cpuacct");
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
        assert_eq!(t[3].mount_point, "/with space");
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
