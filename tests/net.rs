//! runtime.json `interfaces` and `bindNS` against the real kernel: veth, bridge and ifb links,
//! network namespaces, namespace binds, and the rollback of each when a later step fails.
//! Every check of the host side reads it directly (`ip link`, `nsenter --net=PATH`,
//! /proc/self/mountinfo).
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::*;
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A link name of at most 15 bytes that no other test uses.
fn lname() -> String {
    let n = unique("lk");
    assert!(n.len() <= 14, "{n}");
    n
}

/// Nothing of a failed bundle is left: no runtime container, no mount below the test dir.
fn assert_nothing_left(env: &TestEnv) {
    assert!(env.containers().is_empty(), "{:?}", env.containers());
    assert!(
        env.my_mounts().iter().all(|m| m.ends_with("ro")),
        "{:?}",
        env.my_mounts()
    );
}

fn ino(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

#[test]
fn veth_end_goes_in_and_its_peer_stays_in_root() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let (name, peer) = (lname(), lname());
    env.track_link(&peer);
    let ns = env.dir.join("ns/net");
    let b = env.bundle(&ob, "veth", &["ip", "link"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": name, "peer": peer}], "bindNS": {"net": ns}}),
    );
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    // The container saw its end, not the peer.
    let inside = link_names(&r.stdout);
    assert!(inside.contains(&name), "{inside:?}");
    assert!(!inside.contains(&peer), "{inside:?}");
    // From the host: the peer in the root namespace, the end in the bound namespace.
    assert!(has_link(None, &peer));
    assert!(!has_link(None, &name));
    let l = link(Some(&ns), &name).expect("the end is in the bound namespace");
    assert!(!has_link(Some(&ns), &peer));
    // Left as created: configuring links is the container's business.
    assert!(!l.flags.iter().any(|f| f == "UP"), "{l:?}");
}

#[test]
fn add_kind_creates_inside_even_when_root_has_the_name() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let (br, ifb) = (lname(), lname());
    // A link of the same name in the root namespace does not matter: creation is inside.
    ip(&["link", "add", &ifb, "type", "ifb"]);
    env.track_link(&ifb);
    let before = link(None, &ifb).unwrap();
    let b = env.bundle(&ob, "kinds", &["ip", "link"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": br, "add": "bridge"}, {"name": ifb, "add": "ifb"}]}),
    );
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let inside = link_names(&r.stdout);
    assert!(inside.contains(&br) && inside.contains(&ifb), "{inside:?}");
    assert!(!has_link(None, &br));
    assert_eq!(
        link(None, &ifb),
        Some(before),
        "the root's own link was touched"
    );
    assert!(env.containers().is_empty());
}

#[test]
fn create_in_root_creates_there_then_moves_in() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let taken = lname();
    ip(&["link", "add", &taken, "type", "ifb"]);
    env.track_link(&taken);
    let before = link(None, &taken).unwrap();
    // Created in the root namespace first: a name taken there is an error there...
    let b = env.bundle(&ob, "inroot", &["true"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": taken, "add": "ifb", "createInRoot": true}]}),
    );
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let line = r.line("inroot");
    assert!(
        line.contains(&format!(
            "interfaces[0] `{taken}`: the name `{taken}` is already taken in the root network namespace"
        )),
        "{line}"
    );
    // ...and the rollback did not delete the link that was there before.
    assert_eq!(link(None, &taken), Some(before));
    assert_nothing_left(&env);

    // A free name: made in the root namespace, moved in, gone from the root.
    let ob2 = env.bundles_dir("onboot2");
    let name = lname();
    env.track_link(&name);
    let ns = env.dir.join("ns2");
    let b = env.bundle(&ob2, "inroot2", &["ip", "link"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": name, "add": "ifb", "createInRoot": true}],
               "bindNS": {"net": ns}}),
    );
    let r = env.onboot(&ob2, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(link_names(&r.stdout).contains(&name));
    assert!(has_link(Some(&ns), &name));
    assert!(!has_link(None, &name));
}

#[test]
fn a_bridge_is_never_moved() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    // createInRoot for a bridge is refused before anything is done...
    let br = lname();
    let b = env.bundle(&ob, "brroot", &["true"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": br, "add": "bridge", "createInRoot": true}]}),
    );
    // ...and an existing bridge cannot be moved in: the kernel's refusal, in words.
    let existing = lname();
    ip(&["link", "add", &existing, "type", "bridge"]);
    env.track_link(&existing);
    let b2 = env.bundle(&ob, "brmove", &["true"]);
    write_runtime(&b2, json!({"interfaces": [{"name": existing}]}));
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let line = r.line("brroot");
    assert!(
        line.contains("interfaces[0].createInRoot")
            && line.contains("a bridge cannot be moved between network namespaces"),
        "{line}"
    );
    let line = r.line("brmove");
    assert!(
        line.contains(&format!(
            "the kernel does not move `{existing}` (bridge) to another namespace"
        )),
        "{line}"
    );
    assert!(!has_link(None, &br));
    assert!(
        has_link(None, &existing),
        "the bridge must stay where it was"
    );
    assert_nothing_left(&env);
}

#[test]
fn unknown_kind_is_explained_and_nothing_is_left() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    for (bundle, kind) in [("a-dummy", "dummy"), ("b-bogus", "lknosuchkind")] {
        let (name, peer, other) = (lname(), lname(), lname());
        env.track_link(&peer);
        let ns = env.dir.join(format!("ns-{bundle}"));
        let b = env.bundle(&ob, bundle, &["true"]);
        write_runtime(
            &b,
            json!({"interfaces": [{"name": name, "peer": peer}, {"name": other, "add": kind}],
                   "bindNS": {"net": ns}}),
        );
        let r = env.onboot(&ob, &[]);
        assert_eq!(r.code, 1);
        let line = r.line(bundle);
        assert!(
            line.contains(&format!(
                "{bundle}: error: interfaces: interfaces[1] `{other}`: the kernel has no `{kind}` link kind (module not loaded?)"
            )),
            "{line}"
        );
        // The veth made before it is gone, peer and all; the bind never happened.
        assert!(!has_link(None, &peer));
        assert!(!has_link(None, &name));
        assert!(!ns.exists());
        assert_nothing_left(&env);
        std::fs::remove_dir_all(&b).unwrap();
    }
}

#[test]
fn missing_link_name_and_peer_are_reported() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let missing = lname();
    let cases = [
        ("a-notfound", json!({"interfaces": [{"name": missing}]})),
        ("b-noname", json!({"interfaces": [{"add": "ifb"}]})),
        (
            "c-nopeer",
            json!({"interfaces": [{"name": "x", "add": "veth"}]}),
        ),
    ];
    for (name, rt) in &cases {
        let b = env.bundle(&ob, name, &["true"]);
        write_runtime(&b, rt.clone());
    }
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let line = r.line("a-notfound");
    assert!(
        line.contains(&format!(
            "interfaces[0] `{missing}`: no link named `{missing}` in the root network namespace"
        )),
        "{line}"
    );
    let line = r.line("b-noname");
    assert!(
        line.contains("interfaces[0].name") && line.contains("missing interface name"),
        "{line}"
    );
    let line = r.line("c-nopeer");
    assert!(
        line.contains("interfaces[0].peer") && line.contains("needs a `peer` name"),
        "{line}"
    );
    assert_nothing_left(&env);
}

#[test]
fn a_moved_link_goes_back_when_a_later_interface_fails() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let (moved, moved_peer, clash) = (lname(), lname(), lname());
    ip(&[
        "link",
        "add",
        &moved,
        "type",
        "veth",
        "peer",
        "name",
        &moved_peer,
    ]);
    env.track_link(&moved_peer);
    env.track_link(&clash);
    let b = env.bundle(&ob, "clash", &["true"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": moved}, {"name": clash, "add": "ifb"},
                              {"name": clash, "add": "bridge"}]}),
    );
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let line = r.line("clash");
    assert!(
        line.contains(&format!(
            "interfaces[2] `{clash}`: the name `{clash}` is already taken in the container's network namespace"
        )),
        "{line}"
    );
    // Moved back (a virtual link would otherwise have died with the namespace).
    assert!(has_link(None, &moved), "{:?}", links(None));
    assert!(has_link(None, &moved_peer));
    assert!(!has_link(None, &clash));
    assert_nothing_left(&env);

    // Without the clash it is moved in, and the container sees it.
    let ob2 = env.bundles_dir("onboot2");
    let b = env.bundle(&ob2, "move", &["ip", "link"]);
    write_runtime(&b, json!({"interfaces": [{"name": moved}]}));
    let r = env.onboot(&ob2, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(link_names(&r.stdout).contains(&moved));
    assert!(!has_link(None, &moved));
}

#[test]
fn a_later_bundle_joins_the_bound_namespaces_and_sees_the_links() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let (veth, peer, ifb, joined) = (lname(), lname(), lname(), lname());
    env.track_link(&peer);
    let net = env.dir.join("bound/net");
    let uts = env.dir.join("bound/uts");
    let host = unique("prep");

    let prep = env.bundle(&ob, "010-prep", &["true"]);
    env.edit_config(&prep, |c| c["hostname"] = json!(host));
    write_runtime(
        &prep,
        json!({"interfaces": [{"name": veth, "peer": peer}, {"name": ifb, "add": "ifb"}],
               "bindNS": {"net": net, "uts": uts}}),
    );
    let join = env.bundle(&ob, "020-join", &["sh", "-c", "ip link; hostname"]);
    env.edit_config(&join, |c| {
        c.as_object_mut().unwrap().remove("hostname");
        join_namespace(c, "network", &net);
        join_namespace(c, "uts", &uts);
    });
    // It adds a link of its own to the joined namespace, which outlives it.
    write_runtime(
        &join,
        json!({"interfaces": [{"name": joined, "add": "ifb"}]}),
    );

    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.line("020-join"), "020-join: exit code 0");
    let seen = link_names(&r.stdout);
    for l in [&veth, &ifb, &joined] {
        assert!(seen.contains(l), "{l} not in {seen:?}");
    }
    assert!(r.stdout.contains(&format!("\n{host}\n")), "{}", r.stdout);
    assert!(is_mounted(&net) && is_mounted(&uts));
    assert_ne!(ino(&net), ino(Path::new("/proc/self/ns/net")));
    let bound = links(Some(&net));
    for l in [&veth, &ifb, &joined] {
        assert!(bound.iter().any(|b| &b.name == l), "{l} not in {bound:?}");
    }

    // A bundle that joins it, adds a link, then fails: its link is deleted from the
    // namespace that outlives it; the others stay.
    let ob2 = env.bundles_dir("onboot2");
    let ro = env.read_only_dir();
    env.track_mount(&ro);
    let late = lname();
    let fail = env.bundle(&ob2, "030-fail", &["true"]);
    env.edit_config(&fail, |c| join_namespace(c, "network", &net));
    write_runtime(
        &fail,
        json!({"interfaces": [{"name": late, "add": "ifb"}],
               "bindNS": {"uts": ro.join("x/uts")}}),
    );
    let r = env.onboot(&ob2, &[]);
    assert_eq!(r.code, 1);
    let line = r.line("030-fail");
    assert!(
        line.contains("bindNS.uts: cannot create the directories above"),
        "{line}"
    );
    let bound = links(Some(&net));
    assert!(!bound.iter().any(|b| b.name == late), "{bound:?}");
    for l in [&veth, &ifb, &joined] {
        assert!(bound.iter().any(|b| &b.name == l), "{l} not in {bound:?}");
    }
    assert!(env.containers().is_empty());
}

#[test]
fn every_namespace_kind_is_bound() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let marker = unique("lkmarker");
    let b = env.bundle(&ob, "all", &["true"]);
    std::fs::write(b.join("rootfs").join(&marker), "").unwrap();
    let d = env.dir.join("ns");
    let kinds = ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"];
    let bind: serde_json::Map<String, serde_json::Value> = kinds
        .iter()
        .map(|k| (k.to_string(), json!(d.join(k))))
        .collect();
    write_runtime(&b, json!({ "bindNS": bind }));
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    for k in kinds {
        let p = d.join(k);
        assert!(is_mounted(&p), "{k}");
        let ours = ino(Path::new(&format!("/proc/self/ns/{k}")));
        // The container unshares ipc, mnt, net, pid, uts; cgroup and user are the host's.
        if matches!(k, "cgroup" | "user") {
            assert_eq!(ino(&p), ours, "{k}");
        } else {
            assert_ne!(ino(&p), ours, "{k}");
        }
    }
    // The bound mount namespace is the container's: its root holds the marker.
    let st = std::process::Command::new("nsenter")
        .arg(format!("--mount={}", d.join("mnt").display()))
        .args(["/bin/busybox", "test", "-e", &format!("/{marker}")])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn a_symlink_at_the_target_is_refused() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let real = env.dir.join("real");
    std::fs::write(&real, "untouched").unwrap();
    let link_path = env.dir.join("ns-link");
    std::os::unix::fs::symlink(&real, &link_path).unwrap();
    let b = env.bundle(&ob, "sym", &["true"]);
    write_runtime(&b, json!({"bindNS": {"net": link_path}}));
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let line = r.line("sym");
    assert!(
        line.contains(&format!("bindNS.net: {} is a symlink", link_path.display())),
        "{line}"
    );
    assert!(!is_mounted(&real));
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "untouched");
    assert!(std::fs::symlink_metadata(&link_path).unwrap().is_symlink());
    // A directory is no target either.
    let dir = env.dir.join("a-dir");
    std::fs::create_dir(&dir).unwrap();
    write_runtime(&b, json!({"bindNS": {"uts": dir}}));
    let r = env.onboot(&ob, &[]);
    assert!(
        r.line("sym").contains("is a directory, not a file"),
        "{}",
        r.stdout
    );
    assert_nothing_left(&env);
}

#[test]
fn a_failed_bind_undoes_binds_links_files_and_dirs() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let ro = env.read_only_dir();
    env.track_mount(&ro);
    let (veth, peer, ifb) = (lname(), lname(), lname());
    env.track_link(&peer);
    let made = env.dir.join("made");
    let net = made.join("sub/net");
    let b = env.bundle(&ob, "rollback", &["true"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": veth, "peer": peer}, {"name": ifb, "add": "ifb", "createInRoot": true}],
               "bindNS": {"net": net, "uts": ro.join("deep/uts")}}),
    );
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 1);
    let line = r.line("rollback");
    assert!(
        line.contains(&format!(
            "bindNS.uts: cannot create the directories above {}",
            ro.join("deep/uts").display()
        )),
        "{line}"
    );
    assert!(!line.contains("undo failed"), "{line}");
    // The net bind made before it is gone, and so are the file and dirs made for it.
    assert!(!is_mounted(&net));
    assert!(!made.exists());
    assert!(!has_link(None, &peer));
    assert!(!has_link(None, &veth));
    assert!(!has_link(None, &ifb));
    assert_nothing_left(&env);
}

#[test]
fn an_earlier_bind_is_replaced_and_restored_on_failure() {
    let env = TestEnv::new();
    let p = env.dir.join("netns/shared-name");
    let run = |dir: &str, bundle: &str, link: &str, extra: serde_json::Value| {
        let ob = env.bundles_dir(dir);
        let b = env.bundle(&ob, bundle, &["true"]);
        let mut rt = json!({"interfaces": [{"name": link, "add": "ifb"}], "bindNS": {"net": p}});
        if let Some(uts) = extra.as_str() {
            rt["bindNS"]["uts"] = json!(uts);
        }
        write_runtime(&b, rt);
        env.onboot(&ob, &[])
    };
    let (a, b, c) = (lname(), lname(), lname());
    assert_eq!(run("one", "a", &a, json!(null)).code, 0);
    assert!(has_link(Some(&p), &a));
    // A second bundle binding the same path re-points it; one mount, not a stack.
    assert_eq!(run("two", "b", &b, json!(null)).code, 0);
    assert_eq!(mount_count(&p), 1);
    assert!(has_link(Some(&p), &b));
    assert!(!has_link(Some(&p), &a));
    // A third one fails after its bind: the second bundle's namespace is back.
    let ro = env.read_only_dir();
    env.track_mount(&ro);
    let r = run("three", "c", &c, json!(ro.join("x/uts").to_string_lossy()));
    assert_eq!(r.code, 1);
    assert_eq!(mount_count(&p), 1);
    assert!(has_link(Some(&p), &b), "{:?}", links(Some(&p)));
    assert!(!has_link(Some(&p), &c));
    assert!(env.containers().is_empty());
}

#[test]
fn binds_on_a_shared_mount_propagate_and_are_undone_everywhere() {
    let env = TestEnv::new();
    // A shared tmpfs and a second mount in its peer group, like /run/netns after `ip netns`.
    let shared = env.dir.join("shared");
    let peer = env.dir.join("peer");
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::create_dir_all(&peer).unwrap();
    use nix::mount::{MsFlags, mount};
    mount(
        Some("tmpfs"),
        &shared,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=64k"),
    )
    .unwrap();
    env.track_mount(&shared);
    env.track_mount(&peer);
    mount(
        None::<&str>,
        &shared,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .unwrap();
    mount(
        Some(&shared),
        &peer,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();

    let ob = env.bundles_dir("onboot");
    let name = lname();
    let b = env.bundle(&ob, "ok", &["true"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": name, "add": "ifb"}], "bindNS": {"net": shared.join("x")}}),
    );
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(is_mounted(&shared.join("x")));
    assert!(is_mounted(&peer.join("x")), "the bind did not propagate");
    assert!(has_link(Some(&peer.join("x")), &name));

    // A failing bundle's bind on the shared mount is gone from both places.
    let ro = env.read_only_dir();
    env.track_mount(&ro);
    let ob2 = env.bundles_dir("onboot2");
    let b = env.bundle(&ob2, "fails", &["true"]);
    write_runtime(
        &b,
        json!({"bindNS": {"net": shared.join("y"), "uts": ro.join("x/uts")}}),
    );
    let r = env.onboot(&ob2, &[]);
    assert_eq!(r.code, 1);
    assert!(!r.line("fails").contains("undo failed"), "{}", r.stdout);
    for p in [shared.join("y"), peer.join("y")] {
        assert!(!is_mounted(&p), "{}", p.display());
        assert!(!p.exists(), "{}", p.display());
    }
    assert!(is_mounted(&shared.join("x")));
}

#[test]
fn run_netns_works_with_ip_netns() {
    let env = TestEnv::new();
    let nsname = unique("lkt");
    let path = Path::new("/run/netns").join(&nsname);
    env.track_mount(&path);
    env.track_path(&path);
    env.track_empty_dir(Path::new("/run/netns"));
    let ob = env.bundles_dir("onboot");
    let (name, peer) = (lname(), lname());
    env.track_link(&peer);
    let b = env.bundle(&ob, "netns", &["true"]);
    write_runtime(
        &b,
        json!({"interfaces": [{"name": name, "peer": peer}], "bindNS": {"net": path}}),
    );
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let out = std::process::Command::new("ip")
        .args(["-n", &nsname, "-o", "link", "show"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(link_names(&String::from_utf8_lossy(&out.stdout)).contains(&name));
}

#[test]
fn a_container_on_the_host_network_creates_links_there() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let (made, existing) = (lname(), lname());
    env.track_link(&made);
    ip(&["link", "add", &existing, "type", "ifb"]);
    env.track_link(&existing);
    let b = env.bundle(&ob, "hostnet", &["ip", "link"]);
    env.edit_config(&b, |c| share_namespace(c, "network"));
    write_runtime(
        &b,
        json!({"interfaces": [{"name": made, "add": "ifb"}, {"name": existing}]}),
    );
    let r = env.onboot(&ob, &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let seen = link_names(&r.stdout);
    assert!(seen.contains(&made) && seen.contains(&existing), "{seen:?}");
    // The host's namespace is the container's: the link outlives the container there.
    assert!(has_link(None, &made));
    assert!(has_link(None, &existing));
}

#[test]
fn a_link_made_in_root_is_deleted_when_moving_it_in_fails() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let taken = lname();
    let net = env.dir.join("ns/net");
    let prep = env.bundle(&ob, "prep", &["true"]);
    write_runtime(
        &prep,
        json!({"interfaces": [{"name": taken, "add": "ifb"}], "bindNS": {"net": net}}),
    );
    assert_eq!(env.onboot(&ob, &[]).code, 0);
    env.track_link(&taken);

    // Joining that namespace, a link of the same name is made in the root namespace, then
    // cannot go in: the one made in the root namespace is deleted again.
    let ob2 = env.bundles_dir("onboot2");
    let peer = lname();
    env.track_link(&peer);
    let cases = [
        (
            "a-ifb",
            json!({"name": taken, "add": "ifb", "createInRoot": true}),
        ),
        ("b-veth", json!({"name": taken, "peer": peer})),
    ];
    for (name, itf) in &cases {
        let b = env.bundle(&ob2, name, &["true"]);
        env.edit_config(&b, |c| join_namespace(c, "network", &net));
        write_runtime(&b, json!({ "interfaces": [itf] }));
    }
    let r = env.onboot(&ob2, &[]);
    assert_eq!(r.code, 1);
    for (name, _) in &cases {
        let line = r.line(name);
        assert!(
            line.contains(&format!(
                "cannot move `{taken}` in: the name is already taken in the network namespace {}",
                net.display()
            )),
            "{line}"
        );
        assert!(!line.contains("undo failed"), "{line}");
    }
    assert!(!has_link(None, &taken), "{:?}", links(None));
    assert!(!has_link(None, &peer));
    // The namespace's own link is untouched.
    assert!(has_link(Some(&net), &taken));
    assert!(env.containers().is_empty());
}

#[test]
fn crun_sets_up_the_same_interfaces_and_binds() {
    let env = TestEnv::with_runtime("crun");
    let ob = env.bundles_dir("onboot");
    let (veth, peer, ifb) = (lname(), lname(), lname());
    env.track_link(&peer);
    let net = env.dir.join("ns/net");
    let ok = env.bundle(&ob, "a-ok", &["ip", "link"]);
    write_runtime(
        &ok,
        json!({"interfaces": [{"name": veth, "peer": peer}, {"name": ifb, "add": "ifb"}],
               "bindNS": {"net": net}}),
    );
    let (veth2, peer2) = (lname(), lname());
    env.track_link(&peer2);
    let bad = env.bundle(&ob, "b-bad", &["true"]);
    write_runtime(
        &bad,
        json!({"interfaces": [{"name": veth2, "peer": peer2}, {"name": lname(), "add": "lknosuchkind"}]}),
    );
    let r = crun_onboot(&env, &ob);
    assert_eq!(r.line("a-ok"), "a-ok: exit code 0");
    let seen = link_names(&r.stdout);
    assert!(seen.contains(&veth) && seen.contains(&ifb), "{seen:?}");
    assert!(!seen.contains(&peer));
    assert!(
        r.line("b-bad")
            .contains("the kernel has no `lknosuchkind` link kind"),
        "{}",
        r.stdout
    );
    assert!(
        !has_link(None, &peer2),
        "the failed bundle's veth is still there"
    );
    // The bind lived in lkinit's private mount namespace: with it went the network
    // namespace, and the veth's host end with it.
    assert!(!is_mounted(&net));
    assert!(eventually(|| !has_link(None, &peer)), "{:?}", links(None));
    assert!(env.containers().is_empty(), "{:?}", env.containers());
}
