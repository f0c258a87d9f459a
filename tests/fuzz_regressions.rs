//! The fuzz targets' checks (`lkinit::fuzz_checks`) over the committed seeds and the inputs
//! kept in `fuzz/regressions/`, so what a fuzzer once found stays fixed without the nightly
//! toolchain. Each input runs on its own thread: a broken property is reported with the
//! file that broke it, and every file is tried.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

use lkinit::fuzz_checks;
use std::path::{Path, PathBuf};

fn inputs(dirs: &[&str]) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for d in dirs {
        let Ok(entries) = std::fs::read_dir(fuzz.join(d)) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_file() {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Runs `check` over every input of `dirs`; fails naming each input that panicked.
fn run_all(dirs: &[&str], check: impl Fn(&[u8]) + Send + Sync + Copy + 'static) -> usize {
    let files = inputs(dirs);
    let mut broken = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        if std::thread::spawn(move || check(&data)).join().is_err() {
            broken.push(f.display().to_string());
        }
    }
    assert!(broken.is_empty(), "properties broken by: {broken:?}");
    files.len()
}

#[test]
fn runtime_config_inputs() {
    let n = run_all(
        &["seeds", "regressions/runtime_config"],
        fuzz_checks::runtime_config,
    );
    assert!(n >= 5, "only {n} inputs found");
}

#[test]
fn control_protocol_inputs() {
    let n = run_all(
        &["seeds-protocol", "regressions/control_protocol"],
        fuzz_checks::control_protocol,
    );
    assert!(n >= 8, "only {n} inputs found");
}

/// Removes the symlink tree when the test ends, also when it fails.
struct TempTree(PathBuf);

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn path_confinement_inputs() {
    let base = TempTree(
        std::env::temp_dir().join(format!("lkinit-fuzz-regressions-{}", std::process::id())),
    );
    let root: &'static Path = Box::leak(
        fuzz_checks::hostile_tree(&base.0)
            .unwrap()
            .into_boxed_path(),
    );
    let n = run_all(&["seeds-paths", "regressions/path_confinement"], move |d| {
        fuzz_checks::path_confinement(root, d)
    });
    assert!(n >= 10, "only {n} inputs found");
}
