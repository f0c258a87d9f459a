use super::*;

/// What lkinit adds goes into the copy, after the bundle's own mounts and replacing an
/// env entry of the same name; every other field stays, unknown ones too.
#[test]
fn extra_goes_into_the_copy() {
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("b");
    std::fs::create_dir_all(b.join("rootfs")).unwrap();
    let c = serde_json::json!({
        "ociVersion": "1.0.2", "root": {"path": "rootfs"}, "x-vendor": {"keep": 1},
        "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                    "env": ["PATH=/bin", "NOTIFY_SOCKET=/old"]},
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}]
    });
    std::fs::write(b.join("config.json"), c.to_string()).unwrap();
    let mut bundle = Bundle::open(&b).unwrap();
    let state = t.path().join("state");
    assert_eq!(bundle.runtime_bundle_dir(&state).unwrap(), bundle.dir);
    bundle.extra = ConfigExtra {
        binds: vec![Bind {
            source: PathBuf::from("/run/x"),
            destination: "/run/y".into(),
            read_only: true,
        }],
        env: vec![("NOTIFY_SOCKET".into(), "/run/y/s".into())],
    };
    let dir = bundle.runtime_bundle_dir(&state).unwrap();
    assert_eq!(dir, state.join("bundles/b"));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(v["x-vendor"]["keep"], 1);
    assert_eq!(
        v["root"]["path"],
        b.join("rootfs").to_string_lossy().as_ref()
    );
    assert_eq!(
        v["process"]["env"],
        serde_json::json!(["PATH=/bin", "NOTIFY_SOCKET=/run/y/s"])
    );
    let mounts = v["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 2);
    assert_eq!(mounts[0]["destination"], "/proc");
    assert_eq!(mounts[1]["source"], "/run/x");
    assert_eq!(mounts[1]["destination"], "/run/y");
    assert!(
        mounts[1]["options"]
            .as_array()
            .unwrap()
            .contains(&"ro".into())
    );
}

#[test]
fn tmpfs_sizes() {
    for ok in ["64m", "1G", "25%", "4096", "10k"] {
        assert!(valid_tmpfs_size(ok), "{ok}");
    }
    for bad in ["", "m", "1mm", "10%,uid=0", "-1", "1.5g", "12 m"] {
        assert!(!valid_tmpfs_size(bad), "{bad}");
    }
}

#[test]
fn names() {
    for ok in ["a", "000-init", "svc.example", "A_b-c.d", "9"] {
        assert!(valid_name(ok), "{ok}");
    }
    for bad in [
        "", ".", "..", ".hidden", "-x", "_x", "a/b", "a b", "é", "a:b",
    ] {
        assert!(!valid_name(bad), "{bad}");
    }
}

#[test]
fn timeout_annotation() {
    let t = tempfile::tempdir().unwrap();
    let b = t.path().join("b");
    std::fs::create_dir_all(b.join("rootfs")).unwrap();
    let open = |v: Option<&str>| {
        let mut c = serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}});
        if let Some(v) = v {
            c["annotations"] = serde_json::json!({ TIMEOUT_ANNOTATION: v });
        }
        std::fs::write(b.join("config.json"), c.to_string()).unwrap();
        Bundle::open(&b)
    };
    let secs = std::time::Duration::from_secs;
    assert_eq!(open(None).unwrap().timeout(), None);
    assert_eq!(open(Some("0")).unwrap().timeout(), Some(None));
    assert_eq!(open(Some("90")).unwrap().timeout(), Some(Some(secs(90))));
    assert_eq!(
        open(Some("2592000")).unwrap().timeout(),
        Some(Some(secs(MAX_TIMEOUT_SECS)))
    );
    for bad in [
        "",
        "-1",
        "1.5",
        "10s",
        "2592001",
        "99999999999999999999",
        "a\nb",
    ] {
        let e = open(Some(bad)).unwrap_err().to_string();
        assert!(
            e.contains("config.json: annotation `lkinit.timeout` is `")
                && e.contains("expected whole seconds"),
            "{bad}: {e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn printable_names() {
    assert_eq!(printable_name("web-1.x"), "web-1.x");
    assert_eq!(printable_name("a\nb:\t\u{1b}é"), "a\\nb:\\t\\u{1b}é");
}
