//! The set-up a newcomer follows must work without guessing: one package list
//! (`scripts/debian-packages.txt`) that CI installs, README.md repeats and every script's
//! and test's prerequisites come from; README.md's test command is `cargo test`; every
//! relative link of README.md and `docs/` reaches its file and heading; the module map
//! names every file of `src/`. Reads files only: no root, no network, milliseconds.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

#[path = "common/packages.rs"]
mod packages;

use packages::Package;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn names(list: &[Package]) -> Vec<String> {
    list.iter().map(|p| p.name.clone()).collect()
}

/// The files of `dir` (relative to the repository) whose names end in `ext`, sorted.
fn files(dir: &str, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ext))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    v.sort();
    v
}

/// The shell scripts that may `require` something.
fn scripts() -> Vec<String> {
    let mut v = files("scripts", ".sh");
    v.extend(files("scripts/lib", ".sh"));
    v.extend(files("examples", ".sh"));
    v
}

/// The words after each `require` command of a shell script (not `require_*`), with
/// comments left out; words that are variables are the script's business at run time.
fn required_commands(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with('#') {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("require ") {
            let at_word_start = i == 0
                || rest[..i]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_whitespace() || matches!(c, ';' | '&' | '|'));
            let after = &rest[i + "require ".len()..];
            if at_word_start {
                let end = after.find([';', '&', '|', '#']).unwrap_or(after.len());
                found.extend(
                    after[..end]
                        .split_whitespace()
                        .filter(|w| !w.starts_with('$') && !w.starts_with("\"$"))
                        .map(str::to_string),
                );
            }
            rest = after;
        }
    }
    found
}

/// The string literals of every `ensure_installed(&[...])` call of a test source.
fn ensured_commands(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("ensure_installed(&[") {
        rest = &rest[i + "ensure_installed(&[".len()..];
        let end = rest
            .find("])")
            .expect("ensure_installed(&[ ... ]) is closed");
        let mut args = &rest[..end];
        while let Some(q) = args.find('"') {
            let close = args[q + 1..].find('"').expect("a closed string literal");
            found.push(args[q + 1..q + 1 + close].to_string());
            args = &args[q + 1 + close + 1..];
        }
    }
    found
}

#[test]
fn every_command_a_script_requires_is_in_the_package_list() {
    let list = packages::packages();
    let mut checked = 0;
    for script in scripts() {
        for cmd in required_commands(&read(&script)) {
            assert!(
                packages::package_of(&list, &cmd).is_some(),
                "{script} requires `{cmd}`, which scripts/debian-packages.txt does not list \
                 under any package"
            );
            checked += 1;
        }
    }
    // The parser must see the scripts' checks at all (run-vm.sh's QEMU among them).
    assert!(checked > 20, "only {checked} required commands found");
    assert!(required_commands(&read("scripts/run-vm.sh")).contains(&"qemu-system-x86_64".into()));
    // Packages require.sh names itself (the linker's C library files).
    for line in read("scripts/lib/require.sh").lines() {
        if let Some(rest) = line.trim_start().strip_prefix("_req_add \"")
            && let Some(pkg) = rest.split_whitespace().next()
            && pkg != "-"
            && !pkg.starts_with('$')
        {
            assert!(
                names(&list).contains(&pkg.to_string()),
                "scripts/lib/require.sh names package {pkg}, which the list lacks"
            );
        }
    }
}

#[test]
fn every_command_a_test_ensures_is_in_the_package_list() {
    let list = packages::packages();
    // This file names the call in its own strings.
    let mut sources: Vec<String> = files("tests", ".rs")
        .into_iter()
        .filter(|f| f != "tests/setup.rs")
        .collect();
    sources.extend(files("tests/common", ".rs"));
    let mut checked = 0;
    for src in sources {
        for cmd in ensured_commands(&read(&src)) {
            assert!(
                packages::package_of(&list, &cmd).is_some(),
                "{src}: ensure_installed asks for `{cmd}`, which scripts/debian-packages.txt \
                 does not list under any package"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} ensured commands found");
}

#[test]
fn the_package_list_is_well_formed() {
    let list = packages::packages();
    assert!(!list.is_empty());
    let mut seen = Vec::new();
    for p in &list {
        assert!(
            p.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)),
            "`{}` is not a Debian package name",
            p.name
        );
        assert!(!seen.contains(&p.name), "{} is listed twice", p.name);
        seen.push(p.name.clone());
    }
    for line in read("scripts/debian-packages.txt").lines() {
        let code = line.split('#').next().unwrap();
        assert!(
            code.trim().is_empty() || line.contains('#'),
            "`{line}`: every package line says who needs it after `#`"
        );
    }
}

/// The packages of README.md's install block: the `apt-get install` line and its
/// continuation lines, the words after the options.
fn readme_install_packages(readme: &str) -> Vec<String> {
    let mut lines = readme.lines();
    let first = lines
        .find(|l| l.contains("apt-get install -y --no-install-recommends"))
        .expect("README.md has an `apt-get install -y --no-install-recommends` line");
    let mut command = first.trim_end().to_string();
    while command.ends_with('\\') {
        command.pop();
        command.push(' ');
        command.push_str(lines.next().expect("a continuation line").trim_end());
    }
    let (_, after) = command.split_once("--no-install-recommends").unwrap();
    after.split_whitespace().map(str::to_string).collect()
}

#[test]
fn readme_installs_exactly_the_package_list() {
    let list = names(&packages::packages());
    let readme = readme_install_packages(&read("README.md"));
    assert_eq!(
        readme, list,
        "README.md's install block must name the packages of scripts/debian-packages.txt, \
         in its order"
    );
}

#[test]
fn ci_installs_the_package_list() {
    let ci = read(".ci/run");
    let line = ci
        .lines()
        .find(|l| l.trim_start().starts_with("packages=$("))
        .expect(".ci/run sets `packages` from the list");
    let command = line
        .trim()
        .strip_prefix("packages=$(")
        .and_then(|c| c.strip_suffix(')'))
        .expect("packages=$(COMMAND)");
    assert!(command.contains("scripts/debian-packages.txt"), "{command}");
    // What CI computes, computed the same way.
    let out = Command::new("sh")
        .args(["-c", command])
        .current_dir(repo())
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{command}: {:?}", out.status);
    let installed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(installed, names(&packages::packages()));
    let installs: Vec<&str> = ci
        .lines()
        .filter(|l| l.contains("apt-get install"))
        .collect();
    assert_eq!(
        installs.len(),
        1,
        ".ci/run installs in one place: {installs:?}"
    );
    assert!(
        installs[0].contains("$packages"),
        ".ci/run installs the list: {}",
        installs[0]
    );
}

#[test]
fn the_test_command_is_cargo_test() {
    let readme = read("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Two commands"))
        .expect("README.md has a `Two commands` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block in `Two commands`");
    let commands: Vec<&str> = block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(commands, ["scripts/run-vm.sh", "cargo test"]);
    assert!(
        read(".ci/run").lines().any(|l| l.trim() == "cargo test"),
        ".ci/run runs the README's test command"
    );
}

#[test]
fn readme_installs_the_pinned_toolchain() {
    let toolchain = read("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .expect("rust-toolchain.toml has a channel")
        .trim_matches('"');
    assert!(
        read("README.md").contains(&format!("--default-toolchain {channel}")),
        "README.md's set-up installs the toolchain rust-toolchain.toml pins ({channel})"
    );
}

/// A heading's anchor as GitHub makes it: lower case, spaces to `-`, punctuation other
/// than `-` and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The text of a Markdown file outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

fn anchors(text: &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for line in prose(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let base = slug(&line[hashes..]);
            let n = seen.iter().filter(|s| **s == base).count();
            seen.push(base.clone());
            out.push(if n == 0 { base } else { format!("{base}-{n}") });
        }
    }
    out
}

/// The targets of the inline links `[text](target)` of a Markdown file (outside code).
fn link_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_reaches_its_file_and_heading() {
    let mut docs = vec!["README.md".to_string()];
    docs.extend(files("docs", ".md"));
    assert!(docs.len() > 5, "docs/ has its files: {docs:?}");
    let mut checked = 0;
    for doc in &docs {
        let text = read(doc);
        let dir = Path::new(doc).parent().unwrap();
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                repo().join(doc)
            } else {
                repo().join(dir).join(path)
            };
            assert!(
                file.exists(),
                "{doc}: link `{target}`: no {}",
                file.display()
            );
            if !anchor.is_empty() {
                let linked = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("{doc}: link `{target}`: {e}"));
                assert!(
                    anchors(&linked).iter().any(|a| a == anchor),
                    "{doc}: link `{target}`: no heading `#{anchor}` in {}",
                    file.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} links found");
}

#[test]
fn the_module_map_names_every_file_of_src() {
    let map = read("docs/architecture.md");
    let mut stack = vec![repo().join("src")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    map.contains(&format!("`{name}`")) || map.contains(&format!("/{name}`")),
                    "docs/architecture.md does not name {}",
                    p.strip_prefix(repo()).unwrap().display()
                );
            }
        }
    }
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(slug("`lkinit init`"), "lkinit-init");
    assert_eq!(
        slug("LinuxKit's init.d and shutdown.d"),
        "linuxkits-initd-and-shutdownd"
    );
    assert_eq!(
        slug("Per-service settings: `service.json` or `service.yml`"),
        "per-service-settings-servicejson-or-serviceyml"
    );
    assert_eq!(
        anchors("# A\n```\n# not a heading\n```\n## A\n"),
        ["a", "a-1"]
    );
}
