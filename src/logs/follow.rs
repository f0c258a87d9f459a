//! Reading one stream's log for `service logs`: its rotated files, oldest first, then the
//! current one; and, following, what is appended, across rotations as `tail -F` does.
//!
//! The supervisor hands the client open descriptors (it never needs the path), but a
//! rotation makes a new file that no descriptor of ours names: for that, the client looks
//! at the log's path. It does so only when the path names the very file it was handed (the
//! same host view of the log directory), so a client in another mount namespace follows
//! its descriptor as before instead of a stranger's file.

use super::rotate::{self, MAX_KEEP};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub struct Stream {
    /// The current file's path, when it is known to name the file read here.
    path: Option<PathBuf>,
    file: File,
    pos: u64,
    /// Files to print whole before the current one, oldest first.
    before: VecDeque<File>,
}

fn id(f: &File) -> Option<(u64, u64)> {
    f.metadata().ok().map(|m| (m.dev(), m.ino()))
}

fn path_id(p: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(p)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Stream {
    /// `rotated` (oldest first) and `current` as the supervisor opened them; `path` is
    /// where the current file lives.
    pub fn new(rotated: Vec<File>, current: File, path: &Path) -> Stream {
        let path =
            (path_id(path).is_some() && path_id(path) == id(&current)).then(|| path.to_path_buf());
        Stream {
            path,
            file: current,
            pos: 0,
            before: rotated.into(),
        }
    }

    /// Prints what has not been printed yet (all of a file that was truncated since).
    pub fn copy_new(&mut self, out: &mut impl Write) -> io::Result<()> {
        while let Some(mut f) = self.before.pop_front() {
            let mut pos = 0;
            copy_from(&mut f, &mut pos, out)?;
        }
        copy_from(&mut self.file, &mut self.pos, out)
    }

    /// Following: when the log's path names another file than the one read here, that
    /// one was rotated away. It is finished, then come the files rotated after it (those
    /// still kept), then the new file.
    pub fn follow_rotation(&mut self, out: &mut impl Write) -> io::Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let now = path_id(&path);
        // Not there: between the rename and the fresh file, or removed; looked at again.
        if now.is_none() || now == id(&self.file) {
            return Ok(());
        }
        let Ok(fresh) = crate::safefile::open_read(&path) else {
            return Ok(());
        };
        // Opened before the old file is finished: once the fresh file exists, nothing
        // more is written to the old one.
        self.copy_new(out)?;
        let mine = id(&self.file);
        let mut newer = Vec::new();
        for k in 1..=MAX_KEEP {
            let Ok(f) = crate::safefile::open_read(&rotate::rotated(&path, k)) else {
                break;
            };
            if id(&f) == mine {
                // The files rotated after ours are .1 .. .k-1, the newest first.
                self.before.extend(newer.drain(..).rev());
                break;
            }
            newer.push(f);
        }
        self.file = fresh;
        self.pos = 0;
        self.copy_new(out)
    }
}

fn copy_from(f: &mut File, pos: &mut u64, out: &mut impl Write) -> io::Result<()> {
    let len = f.metadata()?.len();
    if len < *pos {
        *pos = 0;
    }
    f.seek(SeekFrom::Start(*pos))?;
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        *pos += n as u64;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::rotate::{LogFile, Policy};

    #[test]
    fn prints_rotated_files_first_and_follows_across_rotations() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.log");
        let pol = Policy {
            max_size: 8,
            keep: 3,
            timestamps: false,
        };
        let mut w = LogFile::open(&p).unwrap();
        w.write(b"a1\na2\na3\nb1\n", &pol).unwrap();
        let open = || crate::safefile::open_read(&p).unwrap();
        let mut s = Stream::new(rotate::open_rotated(&p), open(), &p);
        let mut out = Vec::new();
        s.copy_new(&mut out).unwrap();
        assert_eq!(out, b"a1\na2\na3\nb1\n");
        // Two rotations while the reader looks away: both files come, in order.
        w.write(b"b2\nc1\nc2\nc3\nd1\n", &pol).unwrap();
        s.follow_rotation(&mut out).unwrap();
        s.copy_new(&mut out).unwrap();
        assert_eq!(out, b"a1\na2\na3\nb1\nb2\nc1\nc2\nc3\nd1\n");
        w.write(b"d2\n", &pol).unwrap();
        s.follow_rotation(&mut out).unwrap();
        s.copy_new(&mut out).unwrap();
        assert!(out.ends_with(b"d1\nd2\n"));
    }

    #[test]
    fn a_path_that_names_another_file_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.log");
        let other = t.path().join("other.log");
        std::fs::write(&p, "here\n").unwrap();
        std::fs::write(&other, "elsewhere\n").unwrap();
        let mut s = Stream::new(Vec::new(), File::open(&other).unwrap(), &p);
        assert!(s.path.is_none());
        let mut out = Vec::new();
        s.follow_rotation(&mut out).unwrap();
        s.copy_new(&mut out).unwrap();
        assert_eq!(out, b"elsewhere\n");
    }
}
