//! `scripts/debian-packages.txt`, the one list of Debian packages the scripts, examples and
//! tests need: one package a line, then the commands of it that scripts `require` and tests
//! `ensure_installed`, then a `#` comment. Read by `ensure_installed` (a missing command's
//! package) and by tests/setup.rs (the list against `.ci/run`, README.md and the scripts).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// One line of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub commands: Vec<String>,
}

pub fn list_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/debian-packages.txt")
}

/// The packages in the order listed.
pub fn parse(text: &str) -> Vec<Package> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("");
            let mut words = line.split_whitespace().map(str::to_string);
            let name = words.next()?;
            Some(Package {
                name,
                commands: words.collect(),
            })
        })
        .collect()
}

pub fn packages() -> Vec<Package> {
    let path = list_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse(&text)
}

/// The package the list gives for `command`.
pub fn package_of(list: &[Package], command: &str) -> Option<String> {
    list.iter()
        .find(|p| p.commands.iter().any(|c| c == command))
        .map(|p| p.name.clone())
}
