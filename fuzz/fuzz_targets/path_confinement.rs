//! `paths::resolve_in_root` with any relative path over a tree full of hostile symlinks:
//! whatever resolves must be inside the root. Nothing is created (Create::Nothing), so the
//! tree made at the start (in the temp dir, `lkinit-fuzz-paths/`) stays as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lkinit::paths::{Create, resolve_in_root};
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::sync::OnceLock;

/// `BASE/root` with the tree, `BASE/outside` beside it (so an escape lands somewhere real).
/// Always the same tree at the same place: workers running side by side share it, and a
/// later run finds it made already.
fn tree() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = std::env::temp_dir().join("lkinit-fuzz-paths");
        let root = base.join("root");
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        std::fs::create_dir_all(base.join("outside/secret")).unwrap();
        std::fs::write(root.join("file"), b"").unwrap();
        for (link, target) in [
            ("up", "../.."),
            ("out", "../outside"),
            ("abs", "/"),
            ("abs-out", "/../outside"),
            ("etc", "/etc"),
            ("host-a", "/a/b"),
            ("loop1", "loop2"),
            ("loop2", "/loop1"),
            ("chain", "a/../up"),
            ("deep", "a/b/c/../../../.."),
            ("self", "."),
            ("dd", ".."),
            ("a/b/back", "../../.."),
            ("a/b/c/top", "/a/b/c/../../../out"),
            ("a/in", "b/c"),
        ] {
            match symlink(target, root.join(link)) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => panic!("{link}: {e}"),
                _ => {}
            }
        }
        root.canonicalize().unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(rel) = std::str::from_utf8(data) else {
        return;
    };
    if rel.len() > 512 || rel.contains('\0') {
        return;
    }
    let root = tree();
    if let Ok(r) = resolve_in_root(root, rel, Create::Nothing) {
        let real = r.real_path();
        assert!(
            real.starts_with(root),
            "`{rel}` resolved to {} outside {}",
            real.display(),
            root.display()
        );
        assert!(r.created.is_empty());
    }
});
