//! Many bundles in one `onboot` run: every path a bundle can take (read-only and writable
//! roots, runtime mounts and mkdirs, the create/start path with a link, a bad config, a
//! config the runtime refuses), over and over. Nothing may pile up: no mount, link,
//! runtime state, cgroup, state file or process is left, lkinit's descriptors, threads and
//! children are the same after 100 bundles and after 200, and its memory stays flat.
//!
//! `LKINIT_STRESS_BUNDLES` changes the count (scripts/stress.sh runs bigger ones).
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::*;
use serde_json::json;

fn count() -> usize {
    std::env::var("LKINIT_STRESS_BUNDLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

#[test]
fn many_bundles_in_one_run_leave_nothing_and_memory_stays_flat() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let n = count();
    let mut expected = Vec::new();
    for i in 0..n {
        let name = format!("b{i:05}");
        let outcome = match i % 10 {
            0 | 5 => {
                env.bundle(&ob, &name, &["echo", &format!("hello {i}")]);
                "exit code 0"
            }
            1 | 6 => {
                env.rw_bundle(&ob, &name, &["sh", "-c", "echo w > /w && test -s /w"]);
                "exit code 0"
            }
            2 | 7 => {
                let b = env.bundle(&ob, &name, &["test", "-d", "/made/here"]);
                write_runtime(
                    &b,
                    json!({"mkdir": ["made/here"],
                           "mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "mnt", "options": ["size=64k"]}]}),
                );
                "exit code 0"
            }
            3 | 8 => {
                // The create/start path: a link made in the container's own namespace,
                // which dies with it.
                let b = env.bundle(&ob, &name, &["sh", "-c", "exit 3"]);
                write_runtime(
                    &b,
                    json!({"interfaces": [{"name": env.lname(), "add": "ifb"}]}),
                );
                "exit code 3"
            }
            4 => {
                let b = env.bundle(&ob, &name, &["true"]);
                std::fs::write(b.join("runtime.yml"), "mkdir: [a]\nmounts: 7\n").unwrap();
                "error: "
            }
            _ => {
                let b = env.rw_bundle(&ob, &name, &["true"]);
                env.edit_config(&b, |c| c["process"]["cwd"] = json!("relative"));
                "error: run: `runc run` failed"
            }
        };
        expected.push((name, outcome));
    }
    // After the first half (b00099-probe sorts between b00099 and b00100).
    let middle = vec![format!("b{:05}-probe", n / 2 - 1)];
    let before = env.census(&[]);
    let p = env.onboot_probed_with(&ob, &[], &middle, || {});
    let r = &p.run;
    for (name, outcome) in &expected {
        let l = r.line(name);
        assert!(
            l.starts_with(&format!("{name}: {outcome}")),
            "{l} (expected {outcome})"
        );
    }
    env.census(&[]).assert_nothing_added_since(&before);
    p.assert_lkinit_clean();
    let mid = &p.middle[0];
    assert_eq!(mid.fd_kinds(), p.last.fd_kinds());
    // Flat: the second half of the bundles adds nothing lasting. A leak of one output
    // buffer (16 KiB) per bundle would add more than 1.5 MiB here.
    assert!(
        p.last.vm_rss_kb <= mid.vm_rss_kb + 1024,
        "lkinit grew from {} kB to {} kB over the second half",
        mid.vm_rss_kb,
        p.last.vm_rss_kb
    );
    eprintln!(
        "stress: {n} bundles; lkinit VmRSS {} kB at the first probe, {} kB after {} bundles, \
         {} kB after {n}; VmHWM {} kB",
        p.first.vm_rss_kb,
        mid.vm_rss_kb,
        n / 2,
        p.last.vm_rss_kb,
        p.last.vm_hwm_kb
    );
}
