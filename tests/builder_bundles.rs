//! Bundles laid out the way `linuxkit build` lays them out: the root filesystem prepared by
//! runtime.json's first mounts (a bind for a read-only image; a tmpfs on `tmp/`, its
//! `remount,private` and an overlay for a read-write one), an image used by several entries
//! unpacked once with the later bundles pointing into the first, and every runtime key
//! written with `""`/`[]` for unset. These pin the mechanics at the level of single steps
//! (what is mounted, what is left, what a restart does); tests/linuxkit.rs runs what the
//! real builder writes.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::supervisor::Status;
use common::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An image entry of a LinuxKit YAML.
struct Entry<'a> {
    name: &'a str,
    args: &'a [&'a str],
    readonly: bool,
    /// The bundle that holds the unpacked image, when an earlier entry used it.
    image_in: Option<&'a Path>,
    /// runtime.json's own mounts, after the root filesystem's.
    mounts: Vec<Value>,
}

impl<'a> Entry<'a> {
    fn new(name: &'a str, args: &'a [&'a str], readonly: bool) -> Self {
        Entry {
            name,
            args,
            readonly,
            image_in: None,
            mounts: Vec::new(),
        }
    }

    fn reusing(mut self, first: &'a Path) -> Self {
        self.image_in = Some(first);
        self
    }
}

/// Where the builder unpacks an image: `rootfs/` for a read-only entry, `lower/` for a
/// read-write one.
fn unpacked(bundle: &Path) -> PathBuf {
    if bundle.join("lower").is_dir() {
        bundle.join("lower")
    } else {
        bundle.join("rootfs")
    }
}

/// Writes the bundle as the builder does and returns its directory.
fn builder_bundle(env: &TestEnv, parent: &Path, e: Entry) -> PathBuf {
    let b = parent.join(e.name);
    std::fs::create_dir_all(b.join("rootfs")).unwrap();
    let image = match e.image_in {
        Some(first) => unpacked(first),
        None => {
            let at = b.join(if e.readonly { "rootfs" } else { "lower" });
            make_rootfs(&at);
            at
        }
    };
    let mut c = config(e.args, &env.cgroups_path(e.name));
    c["root"] = if e.readonly {
        json!({"path": "rootfs", "readonly": true})
    } else {
        json!({"path": "rootfs"})
    };
    env.write_config(&b, c);
    let rootfs = b.join("rootfs");
    let mut mounts = if e.readonly {
        vec![json!({"source": image, "destination": rootfs, "options": ["bind"]})]
    } else {
        let tmp = b.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        vec![
            json!({"destination": tmp, "type": "tmpfs", "source": "tmpfs"}),
            json!({"destination": tmp, "options": ["remount", "private"]}),
            json!({"destination": rootfs, "type": "overlay", "source": "overlay", "options": [
                format!("lowerdir={}", image.display()),
                format!("upperdir={}", tmp.join("upper").display()),
                format!("workdir={}", tmp.join("work").display()),
            ]}),
        ]
    };
    mounts.extend(e.mounts);
    std::fs::write(
        b.join("runtime.json"),
        serde_json::to_vec_pretty(&json!({
            "cgroups": [],
            "mounts": mounts,
            "mkdir": [],
            "interfaces": [],
            "bindNS": {"cgroup": "", "ipc": "", "mnt": "", "net": "", "pid": "", "user": "", "uts": ""},
            "namespace": ""
        }))
        .unwrap(),
    )
    .unwrap();
    b
}

#[test]
fn builder_bundles_run_once_each_and_leave_no_mount() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let ro = builder_bundle(
        &env,
        &ob,
        Entry::new(
            "000-ro",
            &["sh", "-c", "echo ro; ! touch /x 2>/dev/null"],
            true,
        ),
    );
    builder_bundle(
        &env,
        &ob,
        Entry::new(
            "001-ro-again",
            &["sh", "-c", "echo ro-again; test -x /bin/sh"],
            true,
        )
        .reusing(&ro),
    );
    let rw = builder_bundle(
        &env,
        &ob,
        Entry::new(
            "002-rw",
            &["sh", "-c", "echo rw > /written; cat /written"],
            false,
        ),
    );
    builder_bundle(
        &env,
        &ob,
        Entry::new(
            "003-rw-again",
            &[
                "sh",
                "-c",
                "test ! -e /written && echo fresh > /w2 && cat /w2",
            ],
            false,
        )
        .reusing(&rw),
    );
    // A read-write entry whose image a read-only entry unpacked first: the overlay's lower
    // layer is the other bundle's rootfs.
    builder_bundle(
        &env,
        &ob,
        Entry::new(
            "004-rw-on-ro",
            &["sh", "-c", "echo x > /y && cat /y"],
            false,
        )
        .reusing(&ro),
    );
    let r = env.onboot(&ob, &[]);
    for name in [
        "000-ro",
        "001-ro-again",
        "002-rw",
        "003-rw-again",
        "004-rw-on-ro",
    ] {
        assert_eq!(r.line(name), format!("{name}: exit code 0"), "{}", r.stdout);
    }
    assert!(r.code == 0, "{}", r.stdout);
    for out in ["ro", "ro-again", "rw", "fresh", "x"] {
        assert!(r.stdout.lines().any(|l| l == out), "{out}: {}", r.stdout);
    }
    // Each mount the builder asked for was made once and undone: nothing is left under
    // the bundles, and the unpacked images were never written.
    assert_eq!(TestEnv::mounts_under(&ob), Vec::<PathBuf>::new());
    assert!(!rw.join("lower/written").exists());
    assert!(!ro.join("rootfs/x").exists());
    // The overlay's upper and work dirs were made in the tmpfs and went with it.
    assert_eq!(std::fs::read_dir(rw.join("tmp")).unwrap().count(), 0);
    // A second boot's onboot runs them the same way.
    let r = env.onboot(&ob, &[]);
    assert!(r.code == 0, "{}", r.stdout);
    assert_eq!(TestEnv::mounts_under(&ob), Vec::<PathBuf>::new());
}

#[test]
fn a_failed_builder_bundle_is_rolled_back() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let rw = builder_bundle(
        &env,
        &ob,
        Entry::new("000-rw", &["/no/such/program"], false),
    );
    let ro = builder_bundle(
        &env,
        &ob,
        Entry::new("001-ro", &["/no/such/program"], true).reusing(&rw),
    );
    let r = env.onboot(&ob, &[]);
    assert_ne!(r.code, 0);
    assert!(r.line("000-rw").starts_with("000-rw: "), "{}", r.stdout);
    assert!(!r.line("000-rw").contains("exit code 0"), "{}", r.stdout);
    assert!(!r.line("001-ro").contains("exit code 0"), "{}", r.stdout);
    assert_eq!(TestEnv::mounts_under(&ob), Vec::<PathBuf>::new());
    assert!(
        ro.join("rootfs").is_dir(),
        "the builder's mount point stays"
    );
    assert_eq!(std::fs::read_dir(ro.join("rootfs")).unwrap().count(), 0);
}

#[test]
fn a_root_mount_after_another_mount_is_refused() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let b = env.bundle(&ob, "late", &["true"]);
    let rootfs = b.join("rootfs");
    write_runtime(
        &b,
        json!({"mounts": [
            {"destination": env.dir.join("x"), "type": "tmpfs", "source": "tmpfs"},
            {"destination": rootfs, "source": rootfs, "options": ["bind"]}
        ]}),
    );
    let r = env.onboot(&ob, &[]);
    let line = r.line("late");
    assert!(
        line.contains("mounts[1] mounts on the bundle's own rootfs")
            && line.contains("must come first"),
        "{line}"
    );
    // Refused when the bundle was read: nothing was mounted or made.
    assert!(!env.dir.join("x").exists());
    assert_eq!(TestEnv::mounts_under(&ob), Vec::<PathBuf>::new());
}

/// LinuxKit's `hostmount-writeable-overlay` example: an overlay with a relative destination
/// whose upper and work directories are on the host. What the container wrote stays in the
/// upper directory (that is its point), so ending the container must neither try to remove
/// it nor report a failure; the next run sees the writes.
#[test]
fn a_runtime_overlay_with_host_upper_dirs_keeps_them() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let host = env.dir.join("hostetc");
    let lower = host.join("lower");
    std::fs::create_dir_all(&lower).unwrap();
    std::fs::write(lower.join("motd"), "from the host\n").unwrap();
    let (upper, work) = (host.join("upper"), host.join("work"));
    let mut e = Entry::new(
        "000-getty",
        &[
            "sh",
            "-c",
            "cat /hostetc/motd; cat /hostetc/mine 2>/dev/null; echo mine > /hostetc/mine",
        ],
        true,
    );
    e.mounts.push(json!({
        "destination": "hostetc", "type": "overlay", "source": "overlay",
        "options": [
            format!("lowerdir={}", lower.display()),
            format!("upperdir={}", upper.display()),
            format!("workdir={}", work.display()),
        ]
    }));
    builder_bundle(&env, &ob, e);
    let r = env.onboot(&ob, &[]);
    assert_eq!(
        r.line("000-getty"),
        "000-getty: exit code 0",
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("mine"), "{}", r.stdout);
    assert_eq!(
        std::fs::read_to_string(upper.join("mine")).unwrap(),
        "mine\n"
    );
    assert!(!lower.join("mine").exists());
    let r = env.onboot(&ob, &[]);
    assert_eq!(
        r.line("000-getty"),
        "000-getty: exit code 0",
        "{}",
        r.stdout
    );
    assert!(r.stdout.lines().any(|l| l == "mine"), "{}", r.stdout);
    assert_eq!(TestEnv::mounts_under(&ob), Vec::<PathBuf>::new());
    assert_eq!(TestEnv::mounts_under(&host), Vec::<PathBuf>::new());
}

/// A service is started again and again; each run mounts its root once and unmounts it
/// when it ends, so restarts never stack mounts.
#[test]
fn a_restarted_builder_service_does_not_stack_mounts() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let first = builder_bundle(
        &env,
        &dir,
        Entry::new("a-first", &["sh", "-c", "echo up; exec sleep 1000"], true),
    );
    let rw = builder_bundle(
        &env,
        &dir,
        Entry::new(
            "b-crashy",
            &["sh", "-c", "echo run >> /count; sleep 0.3; exit 3"],
            false,
        )
        .reusing(&first),
    );
    std::fs::write(rw.join("service.json"), r#"{"restartDelay": 0.1}"#).unwrap();
    let sup = env.system_init(&dir);
    sup.wait_running("a-first");
    sup.wait_status("b-crashy", "three restarts", |s: &Status| s.restarts >= 3);
    // At any moment a service has at most its own root mounts: 1 for the read-only one,
    // 2 (tmpfs and overlay) for the read-write one.
    for _ in 0..20 {
        let n = mount_count(&rw.join("rootfs")) + mount_count(&rw.join("tmp"));
        assert!(n <= 2, "{n} mounts on b-crashy's rootfs and tmp");
        assert!(mount_count(&first.join("rootfs")) <= 1);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sup.cli(&["stop", "b-crashy"]).code, 0);
    assert_eq!(sup.cli(&["stop", "a-first"]).code, 0);
    assert_eq!(TestEnv::mounts_under(&dir), Vec::<PathBuf>::new());
    assert!(!first.join("rootfs/count").exists());
}
