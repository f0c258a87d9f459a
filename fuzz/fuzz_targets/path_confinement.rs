//! `paths::resolve_in_root` with any relative path over a tree full of hostile symlinks
//! (the checks: `lkinit::fuzz_checks::path_confinement`). The tree is always made at the
//! same place, `lkinit-fuzz-paths/` in the temp dir: workers running side by side share it,
//! and a later run finds it made already. Nothing is created in it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn tree() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = std::env::temp_dir().join("lkinit-fuzz-paths");
        lkinit::fuzz_checks::hostile_tree(&base).expect("the symlink tree")
    })
}

fuzz_target!(|data: &[u8]| lkinit::fuzz_checks::path_confinement(tree(), data));
