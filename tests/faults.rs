//! Faults injected on purpose: each is reported with the bundle and the cause, the other
//! bundles are unaffected, and nothing is left behind.

mod common;

use common::*;
use serde_json::json;

#[test]
fn a_rw_container_filling_its_tmpfs() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let b = env.rw_bundle(
        &ob,
        "1-fill",
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1k count=4096 2>&1; df -k / | tail -1; exit 3",
        ],
    );
    env.edit_config(&b, |c| {
        c["annotations"] = json!({"lkinit.rootfs-size": "1m"})
    });
    env.rw_bundle(&ob, "2-next", &["sh", "-c", "echo fine > /f && cat /f"]);
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.line("1-fill"), "1-fill: exit code 3");
    assert!(r.stdout.contains("No space left on device"), "{}", r.stdout);
    assert_eq!(r.line("2-next"), "2-next: exit code 0");
    assert!(r.stdout.contains("fine\n"));
    assert!(!b.join("lower/big").exists());
    assert!(env.my_mounts().is_empty(), "{:?}", env.my_mounts());
    assert!(env.containers().is_empty());
}

#[test]
fn a_bad_rootfs_size_is_refused_before_anything_is_mounted() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let b = env.rw_bundle(&ob, "size", &["true"]);
    env.edit_config(&b, |c| {
        c["annotations"] = json!({"lkinit.rootfs-size": "1m,uid=5"})
    });
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let l = r.line("size");
    assert!(
        l.contains("lkinit.rootfs-size") && l.contains("1m,uid=5"),
        "{l}"
    );
    assert!(env.my_mounts().is_empty());
    assert!(!b.join("tmp").exists());
}
