//! `/proc/self/mountinfo`, read in one place: PID 1's early mounts and unmounts, cgroup
//! discovery, and the checks whether something is mounted.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One line: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER`.
/// Paths are kept as the kernel gives them, bytes and all (a mount point need not be UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id, and its parent's (the same id for the mount at the very top).
    pub id: u32,
    pub parent: u32,
    /// The directory of the filesystem that is mounted (not `/` for a bind of a subtree).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub fstype: String,
    /// A device, a path, or any word (`tmpfs`, `overlay`).
    pub source: OsString,
    /// Filesystem options (for cgroup v1: its controllers).
    pub super_options: String,
    /// A member of a shared peer group.
    pub shared: bool,
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\011` a tab, `\012` a newline,
/// `\134` a backslash); a backslash not followed by three octal digits stays as it is.
pub(crate) fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\'
            && let Some(v) = s.get(i + 1..i + 4).and_then(octal_byte)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Three octal digits as one byte (none above `\377`).
fn octal_byte(digits: &[u8]) -> Option<u8> {
    digits.iter().try_fold(0u8, |v, &d| {
        let d = (b'0'..=b'7').contains(&d).then(|| d - b'0')?;
        v.checked_mul(8)?.checked_add(d)
    })
}

fn path(field: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape(field)))
}

fn lossy(field: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

/// Every line of a mountinfo file.
pub(crate) fn parse(table: impl AsRef<[u8]>) -> Vec<MountEntry> {
    table
        .as_ref()
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let sep = line.windows(3).position(|w| w == b" - ")?;
            let (left, right) = (&line[..sep], &line[sep + 3..]);
            let l: Vec<&[u8]> = left.split(|&b| b == b' ').collect();
            let mut r = right.split(|&b| b == b' ');
            let number = |f: Option<&&[u8]>| std::str::from_utf8(f?).ok()?.parse().ok();
            Some(MountEntry {
                id: number(l.first())?,
                parent: number(l.get(1))?,
                root: path(l.get(3)?),
                mount_point: path(l.get(4)?),
                shared: l.iter().skip(6).any(|o| o.starts_with(b"shared:")),
                fstype: lossy(r.next()?),
                source: OsString::from_vec(unescape(r.next().unwrap_or_default())),
                super_options: lossy(r.next().unwrap_or_default()),
            })
        })
        .collect()
}

/// The mount table of this process's mount namespace (empty if /proc is not there).
pub fn read() -> Vec<MountEntry> {
    parse(std::fs::read("/proc/self/mountinfo").unwrap_or_default())
}

/// The visible mount at `path` (the last one mounted there), if any.
pub fn mounted_at(table: &[MountEntry], path: impl AsRef<Path>) -> Option<&MountEntry> {
    let path = path.as_ref();
    table.iter().rev().find(|e| e.mount_point == path)
}

/// Whether `path` is a mount point now.
pub fn is_mount_point(path: &Path) -> bool {
    mounted_at(&read(), path).is_some()
}

/// The mount points at or below `dir`, the last mounted first (the order to unmount them
/// in).
pub fn under(table: &[MountEntry], dir: &Path) -> Vec<PathBuf> {
    table
        .iter()
        .rev()
        .filter(|e| e.mount_point.starts_with(dir))
        .map(|e| e.mount_point.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape(b"/a\\040b\\134c"), b"/a b\\c");
        assert_eq!(unescape(b"/plain"), b"/plain");
        assert_eq!(unescape(b"/trailing\\04"), b"/trailing\\04");
        assert_eq!(unescape(b"/not\\08x"), b"/not\\08x");
        assert_eq!(unescape(b"/big\\777"), b"/big\\777");
        // Bytes that are not UTF-8 stay as they are.
        assert_eq!(unescape(b"/\\377\\040"), b"/\xff ");
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
        assert_eq!(t[1].mount_point, Path::new("/with space"));
        assert_eq!(t[1].root, Path::new("/sub"));
        assert!(!t[1].shared);
        assert_eq!(t[2].super_options, "rw,cpu,cpuacct");
        assert_eq!(mounted_at(&t, "/").unwrap().fstype, "tmpfs");
        assert!(mounted_at(&t, "/sys").is_none());
        assert_eq!(t[1].source, "/dev/vda");
        assert_eq!(
            under(&t, Path::new("/sys/fs")),
            vec![PathBuf::from("/sys/fs/cgroup/cpu")]
        );
        assert!(under(&t, Path::new("/with")).is_empty());
        assert_eq!(under(&t, Path::new("/")).len(), 3);
    }

    /// A mount point that is not UTF-8 keeps its bytes: it can be found and unmounted.
    #[test]
    fn paths_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let t = parse(b"40 22 0:30 / /m/\\377\\011x rw - tmpfs t\\040mp rw\n");
        let want = std::ffi::OsStr::from_bytes(b"/m/\xff\tx");
        assert_eq!(t[0].mount_point.as_os_str(), want);
        assert_eq!(t[0].source, "t mp");
        assert!(mounted_at(&t, Path::new(want)).is_some());
    }
}
