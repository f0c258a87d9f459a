//! `/proc/self/mountinfo`, read in one place: PID 1's early mounts and unmounts, cgroup
//! discovery, and the checks whether something is mounted.

use std::path::{Path, PathBuf};

/// One line: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id, and its parent's (the same id for the mount at the very top).
    pub id: u32,
    pub parent: u32,
    /// The directory of the filesystem that is mounted (not `/` for a bind of a subtree).
    pub root: String,
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
    /// Filesystem options (for cgroup v1: its controllers).
    pub super_options: String,
    /// A member of a shared peer group.
    pub shared: bool,
}

/// Undoes the kernel's octal escapes (`\040` for a space).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let mut r = right.split(' ');
            Some(MountEntry {
                id: l.first()?.parse().ok()?,
                parent: l.get(1)?.parse().ok()?,
                root: unescape(l.get(3)?),
                mount_point: unescape(l.get(4)?),
                shared: l.iter().skip(6).any(|o| o.starts_with("shared:")),
                fstype: r.next()?.to_string(),
                source: unescape(r.next().unwrap_or("")),
                super_options: r.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The mount table of this process's mount namespace (empty if /proc is not there).
pub fn read() -> Vec<MountEntry> {
    parse(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
}

/// The visible mount at `path` (the last one mounted there), if any.
pub fn mounted_at<'a>(table: &'a [MountEntry], path: &str) -> Option<&'a MountEntry> {
    table.iter().rev().find(|e| e.mount_point == path)
}

/// Whether `path` is a mount point now.
pub fn is_mount_point(path: &Path) -> bool {
    mounted_at(&read(), &path.to_string_lossy()).is_some()
}

/// The mount points at or below `dir`, the last mounted first (the order to unmount them
/// in).
pub fn under(table: &[MountEntry], dir: &Path) -> Vec<PathBuf> {
    table
        .iter()
        .rev()
        .map(|e| PathBuf::from(&e.mount_point))
        .filter(|p| p.starts_with(dir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
    }

    #[test]
    fn fields() {
        let t = parse(
            "22 1 0:21 / / rw,relatime shared:1 - tmpfs rootfs rw\n\
             30 22 0:26 /sub /with\\040space rw master:2 - ext4 /dev/vda rw,errors=remount-ro\n\
             31 22 0:27 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        assert_eq!(t.len(), 3);
        assert!(t[0].shared && t[0].fstype == "tmpfs" && t[0].source == "rootfs");
        assert_eq!(t[1].mount_point, "/with space");
        assert_eq!(t[1].root, "/sub");
        assert!(!t[1].shared);
        assert_eq!(t[2].super_options, "rw,cpu,cpuacct");
        assert_eq!(mounted_at(&t, "/").unwrap().fstype, "tmpfs");
        assert!(mounted_at(&t, "/sys").is_none());
        assert_eq!(
            under(&t, Path::new("/sys/fs")),
            vec![PathBuf::from("/sys/fs/cgroup/cpu")]
        );
        assert!(under(&t, Path::new("/with")).is_empty());
        assert_eq!(under(&t, Path::new("/")).len(), 3);
    }
}
