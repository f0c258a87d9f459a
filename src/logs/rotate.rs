//! Log files with a size cap: `NAME.log` grows to the cap, is renamed `NAME.log.1` (the
//! older ones shift to `.2`, ...), and a fresh `NAME.log` takes over; at most `keep` old
//! files stay. A small VM image has little disk: a chatty container must not fill it.
//!
//! A file ends only where a line ends, so a line is never found cut in two across two
//! files. The cap is decided when a line starts: a line that begins below the cap is
//! finished in that file even if it runs past it (its end has not arrived yet, and holding
//! output back would hide it from `logs -f`), and a line longer than the cap is written
//! whole, into a fresh file. So a file is at most the cap plus the end of one line. Only
//! output that is no text (no newline in twice the cap: binary data, a runaway line) is
//! cut inside a line, at twice the cap, or the cap would be none.
//!
//! Renames and removals never follow a symlink (rename(2) and unlink(2) act on the link
//! itself), and the fresh file is opened through [`crate::safefile`], so a link planted at
//! a rotated name or at the log's own name turns into nothing worse than a lost log.

use crate::civil::civil_from_days;
use crate::safefile::{self, FileError};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A few MiB of the latest output per stream is what one reads to see why something
/// failed, and with the rotated files a service's two streams stay under 25 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 4 << 20;
/// Two older files: the output from before the last rotation is still there to read.
pub const DEFAULT_KEEP: u32 = 2;
/// Rotated names are `.1` to `.9`: one digit keeps them in order in `ls`.
pub const MAX_KEEP: u32 = 9;
/// Below this, a file would hold a handful of lines and rotate at every write.
pub const MIN_SIZE: u64 = 4 << 10;
/// Far beyond any small image's disk: a larger cap is surely a unit mistake.
pub const MAX_SIZE: u64 = 64 << 30;

/// How one stream's log file is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The size at which the file is rotated (at the next line that would cross it).
    pub max_size: u64,
    /// How many rotated files are kept (0: the full file is removed).
    pub keep: u32,
    /// Each line begins with its RFC 3339 UTC time.
    pub timestamps: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_size: DEFAULT_MAX_SIZE,
            keep: DEFAULT_KEEP,
            timestamps: false,
        }
    }
}

/// Reads a size: bytes, or a number with `k`, `m` or `g` (KiB, MiB, GiB), between
/// [`MIN_SIZE`] and [`MAX_SIZE`].
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || {
        format!("`{s}` is not a size: give bytes, or a number with k, m or g (such as 512k or 8m)")
    };
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_lowercase()),
        _ => (s, 'b'),
    };
    let shift = match unit {
        'b' => 0,
        'k' => 10,
        'm' => 20,
        'g' => 30,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let bytes = n.saturating_mul(1 << shift);
    check_size(bytes).map_err(|_| format!("`{s}` is not between 4k and 64g"))
}

/// A size in bytes within the allowed range.
pub fn check_size(bytes: u64) -> Result<u64, String> {
    if (MIN_SIZE..=MAX_SIZE).contains(&bytes) {
        Ok(bytes)
    } else {
        Err(format!(
            "{bytes} bytes is not between 4k ({MIN_SIZE} bytes) and 64g"
        ))
    }
}

/// A number of rotated files to keep, 0 to [`MAX_KEEP`].
pub fn check_keep(keep: u64) -> Result<u32, String> {
    u32::try_from(keep)
        .ok()
        .filter(|k| *k <= MAX_KEEP)
        .ok_or_else(|| format!("{keep} is not a number of files between 0 and {MAX_KEEP}"))
}

/// `PATH.K`: the K-th newest rotated file of the log at `path`.
pub fn rotated(path: &Path, k: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{k}"));
    PathBuf::from(s)
}

/// The rotated files of the log at `path` that are there, opened for reading (never
/// through a symlink, never a FIFO), oldest first.
pub fn open_rotated(path: &Path) -> Vec<File> {
    (1..=MAX_KEEP)
        .rev()
        .filter_map(|k| safefile::open_read(&rotated(path, k)).ok())
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The fresh file after a rotation cannot be opened: nothing is open any more.
    #[error("cannot start a fresh log after rotating {path}")]
    Reopen {
        path: PathBuf,
        #[source]
        source: FileError,
    },
}

/// One stream's log file, written a chunk at a time as output arrives.
pub struct LogFile {
    path: PathBuf,
    file: File,
    /// Bytes in the file (what was there when it was opened, and what was written since).
    size: u64,
    /// The last byte in the file is not a newline: the next byte continues that line.
    mid_line: bool,
    /// A rotation that could not keep the old file was said (once until one works).
    rename_failing: bool,
    stamped: Vec<u8>,
}

impl LogFile {
    /// Opens (or creates) the log at `path` for appending; a file left by an earlier run
    /// is continued, in the middle of its last line if it ends without a newline.
    pub fn open(path: &Path) -> Result<LogFile, FileError> {
        let file = safefile::open_append(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut last = [b'\n'];
        if size > 0 {
            // Not knowing is taken as a line boundary: the worst is one line rotated apart.
            let _ = file.read_exact_at(&mut last, size - 1);
        }
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            mid_line: last[0] != b'\n',
            rename_failing: false,
            stamped: Vec::new(),
        })
    }

    /// Appends `data` as `policy` says: rotated at line boundaries, lines stamped.
    pub fn write(&mut self, data: &[u8], policy: &Policy) -> Result<(), LogError> {
        if policy.timestamps {
            let mut out = std::mem::take(&mut self.stamped);
            out.clear();
            stamp_lines(&mut out, data, !self.mid_line, &rfc3339(SystemTime::now()));
            let r = self.put(&out, policy);
            self.stamped = out;
            r
        } else {
            self.put(data, policy)
        }
    }

    fn put(&mut self, mut data: &[u8], policy: &Policy) -> Result<(), LogError> {
        while !data.is_empty() {
            let room =
                usize::try_from(policy.max_size.saturating_sub(self.size)).unwrap_or(usize::MAX);
            if data.len() <= room {
                return self.append(data);
            }
            let hard = usize::try_from(policy.max_size.saturating_mul(2).saturating_sub(self.size))
                .unwrap_or(usize::MAX);
            let cut = match data[..room].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                // The line under way, or a line longer than a whole file, goes on here.
                None if self.mid_line || self.size == 0 => data
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(data.len(), |i| i + 1)
                    .min(hard),
                None => 0,
            };
            self.append(&data[..cut])?;
            data = &data[cut..];
            if !data.is_empty() {
                self.rotate(policy)?;
            }
        }
        Ok(())
    }

    fn append(&mut self, data: &[u8]) -> Result<(), LogError> {
        if data.is_empty() {
            return Ok(());
        }
        let r = self.file.write_all(data);
        // Counted even when the write failed part way: the file may hold part of it, and
        // an undercount could only let it grow past the cap.
        self.size += data.len() as u64;
        self.mid_line = data.last() != Some(&b'\n');
        r.map_err(|source| LogError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Shifts the old files up one name, the full file to `.1`, and opens a fresh one.
    fn rotate(&mut self, policy: &Policy) -> Result<(), LogError> {
        // The oldest kept goes before the shift, so that no rename replaces a file: ext4
        // flushes a file renamed over another one (its guard for replace-by-rename), which
        // made every rotation wait for 4 MiB to reach the disk. Older files that a lower
        // `keep` than before left behind go too.
        for k in policy.keep.max(1)..=MAX_KEEP {
            let _ = std::fs::remove_file(rotated(&self.path, k));
        }
        let kept = if policy.keep == 0 {
            Ok(())
        } else {
            for k in (1..policy.keep).rev() {
                let _ = std::fs::rename(rotated(&self.path, k), rotated(&self.path, k + 1));
            }
            match std::fs::rename(&self.path, rotated(&self.path, 1)) {
                // Someone removed it: the fresh file replaces it all the same.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        };
        match kept {
            Err(e) if !self.rename_failing => {
                // The cap holds all the same: the full file goes.
                log::warn!(
                    "cannot rename {} to {}: {e}; removing it instead",
                    self.path.display(),
                    rotated(&self.path, 1).display()
                );
                self.rename_failing = true;
            }
            Err(_) => {}
            Ok(()) => self.rename_failing = false,
        }
        if policy.keep == 0 || self.rename_failing {
            let _ = std::fs::remove_file(&self.path);
        }
        let fresh = LogFile::open(&self.path).map_err(|source| LogError::Reopen {
            path: self.path.clone(),
            source,
        })?;
        self.file = fresh.file;
        self.size = fresh.size;
        // Still inside a line that had to be cut: its rest is no new line (no stamp).
        self.mid_line = self.mid_line || fresh.mid_line;
        Ok(())
    }
}

/// Copies `data` into `out` with `stamp` and a space before each line; `at_line_start`:
/// the first byte of `data` begins a line. A line that is not finished yet is stamped when
/// it begins, and its rest (in a later call) is not.
pub fn stamp_lines(out: &mut Vec<u8>, data: &[u8], at_line_start: bool, stamp: &str) {
    let mut start = at_line_start;
    for piece in data.split_inclusive(|&b| b == b'\n') {
        if start {
            out.extend_from_slice(stamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(piece);
        start = piece.last() == Some(&b'\n');
    }
}

/// `2026-01-02T03:04:05.123456Z`: RFC 3339, UTC, microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    // Days since 1970 of a u64 of seconds fit an i64 many times over.
    let (y, m, day) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or_default());
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        s / 3600,
        (s % 3600) / 60,
        s % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(max_size: u64, keep: u32) -> Policy {
        Policy {
            max_size,
            keep,
            timestamps: false,
        }
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("65536"), Ok(65536));
        for bad in [
            "",
            "k",
            "8x",
            "8mb",
            "-1",
            "1.5m",
            " 8m",
            "0",
            "100",
            "65g",
            "99999999999g",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert!(parse_size("8x").unwrap_err().contains("`8x` is not a size"));
        assert_eq!(
            parse_size("100").unwrap_err(),
            "`100` is not between 4k and 64g"
        );
        assert_eq!(check_keep(9), Ok(9));
        assert!(check_keep(10).is_err());
    }

    #[test]
    fn dates() {
        let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000000Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59.000000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)),
            "2023-11-14T22:13:20.123456Z"
        );
    }

    #[test]
    fn stamps_mark_where_lines_begin() {
        let mut out = Vec::new();
        stamp_lines(&mut out, b"a\nb", true, "T");
        stamp_lines(&mut out, b"c\n\nd\n", false, "U");
        assert_eq!(out, b"T a\nT bc\nU \nU d\n");
    }

    #[test]
    fn rotates_at_line_boundaries_and_keeps_k_files() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.log");
        let pol = policy(10, 2);
        let mut f = LogFile::open(&p).unwrap();
        // 4-byte lines, written in pieces that end inside lines.
        let all: String = (0..20).map(|i| format!("l{i:02}\n")).collect();
        for piece in all.as_bytes().chunks(3) {
            f.write(piece, &pol).unwrap();
        }
        let files = [rotated(&p, 2), rotated(&p, 1), p.clone()];
        let kept: String = files.iter().map(|f| read(f)).collect();
        assert!(all.ends_with(&kept), "{kept:?}");
        for file in &files {
            let s = read(file);
            assert!(s.ends_with('\n') && s.len() <= 10 + 3, "{file:?}: {s:?}");
        }
        assert!(!rotated(&p, 3).exists());
        assert_eq!(read(&p), "l18\nl19\n");
    }

    #[test]
    fn a_line_longer_than_the_cap_goes_whole_into_a_fresh_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.log");
        let pol = policy(8, 1);
        let mut f = LogFile::open(&p).unwrap();
        f.write(b"ab\n", &pol).unwrap();
        f.write(b"0123456789ABC\ncd\n", &pol).unwrap();
        assert_eq!(read(&rotated(&p, 1)), "0123456789ABC\n");
        assert_eq!(read(&p), "cd\n");
        // A line under way when the cap is reached is finished in its file.
        f.write(b"efgh", &pol).unwrap();
        f.write(b"ijkl\nm\n", &pol).unwrap();
        assert_eq!(read(&rotated(&p, 1)), "cd\nefghijkl\n");
        assert_eq!(read(&p), "m\n");
    }

    #[test]
    fn output_without_newlines_is_cut_at_twice_the_cap() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.log");
        let pol = Policy {
            timestamps: true,
            ..policy(100, 9)
        };
        let mut f = LogFile::open(&p).unwrap();
        for _ in 0..10 {
            f.write(&[b'z'; 45], &pol).unwrap();
        }
        f.write(b"\nnext\n", &pol).unwrap();
        assert!(!rotated(&p, 4).exists());
        let files: Vec<PathBuf> = (1..=3)
            .rev()
            .map(|k| rotated(&p, k))
            .chain([p.clone()])
            .collect();
        let sizes: Vec<u64> = files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .collect();
        assert_eq!(sizes, [200, 200, 79, 33]);
        // One stamp for the long line: where it began, not where it was cut.
        let all: String = files.iter().map(|f| read(f)).collect();
        assert_eq!(all.len(), 28 + 450 + 1 + 28 + 5);
        assert_eq!(all.matches('Z').count(), 1 + 1, "{all}");
        assert!(read(&p).ends_with("Z next\n"), "{}", read(&p));
    }

    #[test]
    fn keep_zero_removes_and_a_file_left_mid_line_is_continued() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.log");
        std::fs::write(&p, "old\npart").unwrap();
        let pol = policy(10, 0);
        let mut f = LogFile::open(&p).unwrap();
        f.write(b"ial\nnext\n", &pol).unwrap();
        assert_eq!(read(&p), "next\n");
        assert!(!rotated(&p, 1).exists());
        // Stamps: the continued line gets none, a new one does.
        std::fs::write(&p, "part").unwrap();
        let mut f = LogFile::open(&p).unwrap();
        let pol = Policy {
            timestamps: true,
            ..policy(1 << 20, 1)
        };
        f.write(b"ial\nnew\n", &pol).unwrap();
        let s = read(&p);
        let (first, second) = s.split_once('\n').unwrap();
        assert_eq!(first, "partial");
        assert!(
            second.ends_with("Z new\n") && second.len() == 27 + 1 + 4,
            "{s:?}"
        );
    }

    #[test]
    fn a_planted_symlink_at_a_rotated_name_is_replaced_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        std::fs::write(&target, "secret\n").unwrap();
        let p = t.path().join("x.log");
        for k in 1..=3 {
            std::os::unix::fs::symlink(&target, rotated(&p, k)).unwrap();
        }
        let pol = policy(4, 2);
        let mut f = LogFile::open(&p).unwrap();
        f.write(b"aaa\nbbb\nccc\n", &pol).unwrap();
        assert_eq!(read(&target), "secret\n");
        assert_eq!(read(&rotated(&p, 1)), "bbb\n");
        assert_eq!(read(&rotated(&p, 2)), "aaa\n");
        // Beyond `keep`: removed, the link itself.
        assert!(std::fs::symlink_metadata(rotated(&p, 3)).is_err());
        assert_eq!(read(&p), "ccc\n");
        assert_eq!(open_rotated(&p).len(), 2);
    }
}
