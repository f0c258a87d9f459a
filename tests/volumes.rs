//! `lkinit volumes`: the volumes `linuxkit build` writes (`NAME/{lower,tmp,merged}`), made
//! ready on `merged/` with real mounts; bad ones reported while the others are prepared.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::{LKINIT, Run, TestEnv, is_mounted};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn volume(dir: &Path, name: &str, subs: &[&str]) -> PathBuf {
    let v = dir.join(name);
    std::fs::create_dir_all(&v).unwrap();
    for s in subs {
        std::fs::create_dir_all(v.join(s)).unwrap();
    }
    v
}

fn volumes(path: &Path) -> Run {
    let mut c = Command::new(LKINIT);
    c.arg("volumes").arg("--path").arg(path);
    Run::of(c)
}

fn fstype(p: &Path) -> String {
    let table = lkinit::mountinfo::read();
    lkinit::mountinfo::mounted_at(&table, p)
        .map(|e| e.fstype.clone())
        .unwrap_or_default()
}

#[test]
fn volumes_are_prepared_and_bad_ones_reported() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("volumes");
    // Read-write, as linuxkit build writes every volume: lower, tmp, merged.
    let rw = volume(&dir, "data", &["lower/sub", "tmp", "merged"]);
    std::fs::write(rw.join("lower/hello"), "from the image\n").unwrap();
    // The root of the volume keeps the image's mode.
    std::fs::set_permissions(rw.join("lower"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    // Read-only: no tmp.
    let ro = volume(&dir, "config", &["lower", "merged"]);
    std::fs::write(ro.join("lower/setting"), "x=1\n").unwrap();
    // Bad ones: no merged/; merged/ a symlink out of the volume; the volume itself a symlink.
    volume(&dir, "empty", &["lower", "tmp"]);
    let outside = env.bundles_dir("outside");
    let escape = volume(&dir, "escape", &["lower", "tmp"]);
    std::os::unix::fs::symlink(&outside, escape.join("merged")).unwrap();
    std::os::unix::fs::symlink(&rw, dir.join("alias")).unwrap();

    let r = volumes(&dir);
    assert_eq!(r.code, 1, "bad volumes make the exit status 1");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    // Name order, one line each.
    assert!(
        lines[0].starts_with("volume alias: error: "),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("not a directory"), "{}", lines[0]);
    assert!(
        lines[1].starts_with("volume config: read-only"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("volume data: read-write"),
        "{}",
        lines[2]
    );
    assert_eq!(
        lines[3],
        format!(
            "volume empty: error: {}/empty/merged is missing",
            dir.display()
        )
    );
    assert!(
        lines[4].starts_with("volume escape: error: "),
        "{}",
        lines[4]
    );
    assert!(
        lines[4].contains("escape/merged is not a directory"),
        "{}",
        lines[4]
    );

    // Read-write: an overlay on merged, its layers on a tmpfs; writes never reach lower.
    assert_eq!(fstype(&rw.join("merged")), "overlay");
    assert_eq!(fstype(&rw.join("tmp")), "tmpfs");
    assert_eq!(
        std::fs::read_to_string(rw.join("merged/hello")).unwrap(),
        "from the image\n"
    );
    std::fs::write(rw.join("merged/new"), "written").unwrap();
    std::fs::write(rw.join("merged/hello"), "changed").unwrap();
    assert!(!rw.join("lower/new").exists());
    assert_eq!(
        std::fs::read_to_string(rw.join("lower/hello")).unwrap(),
        "from the image\n"
    );
    assert!(rw.join("merged/sub").is_dir());
    let mode = std::fs::metadata(rw.join("merged"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o1777, "merged/ has the image root's mode");

    // Read-only: lower bound on merged, and nothing can be written there.
    assert!(is_mounted(&ro.join("merged")));
    assert!(!is_mounted(&ro.join("tmp")) && !ro.join("tmp").exists());
    assert_eq!(
        std::fs::read_to_string(ro.join("merged/setting")).unwrap(),
        "x=1\n"
    );
    let e = std::fs::write(ro.join("merged/new"), "no").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");

    // Nothing was mounted through the symlinks, nor left of the bad ones.
    assert!(TestEnv::mounts_under(&outside).is_empty());
    assert!(!is_mounted(&dir.join("empty/tmp")));
    assert!(!is_mounted(&escape.join("tmp")));

    // Again: what is ready stays as it is, with its data.
    let r = volumes(&dir);
    assert!(
        r.stdout
            .contains("volume data: already prepared (merged/ is a mount point)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("volume config: already prepared"));
    assert_eq!(
        std::fs::read_to_string(rw.join("merged/new")).unwrap(),
        "written"
    );
    assert_eq!(
        lkinit::mountinfo::under(&lkinit::mountinfo::read(), &rw.join("merged")).len(),
        1
    );
}

/// LinuxKit's init package links `/usr/bin/service` as `/etc/init.d/005-volumes`; called by
/// such a name, lkinit prepares the volumes. Only good volumes: exit status 0; no volumes
/// directory at all is not an error.
#[test]
fn called_by_a_linuxkit_link_name() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("volumes");
    let v = volume(&dir, "vol", &["lower", "tmp", "merged"]);
    std::fs::write(v.join("lower/f"), "f").unwrap();
    let link = env.dir.join("005-volumes");
    std::os::unix::fs::symlink(LKINIT, &link).unwrap();
    let mut c = Command::new(&link);
    c.arg("--path").arg(&dir);
    let r = Run::of(c);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.starts_with("volume vol: read-write"),
        "{}",
        r.stdout
    );
    assert_eq!(fstype(&v.join("merged")), "overlay");

    let r = volumes(&env.dir.join("missing"));
    assert_eq!(r.code, 0);
    assert!(
        r.stderr.contains("does not exist, nothing to prepare"),
        "{}",
        r.stderr
    );
}
