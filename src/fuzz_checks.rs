//! The properties the fuzz targets (`fuzz/`) check, one function per target, kept here so
//! that `tests/fuzz_regressions.rs` runs the very same checks over the committed seeds and
//! over every input a fuzzer once found failing (`fuzz/regressions/TARGET/`), in the
//! ordinary test suite on the stable toolchain. Each function panics when a property is
//! broken, which is what a fuzzer reports as a crash.

use crate::paths::{Create, resolve_in_root};
use crate::runtime_config::{Format, parse, parse_json};
use crate::supervisor::protocol::{MAX_REQUEST, Op, Response};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// runtime.json / runtime.yml parsing and the other parsers of untrusted bundle input: no
/// input may panic, and what is accepted must keep the invariants the rest relies on.
pub fn runtime_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Json, Format::Yaml] {
        match parse(text, format, Path::new("fuzz/runtime.json")) {
            Ok(c) => {
                for i in &c.interfaces {
                    assert!(crate::runtime_config::check_link_name(&i.name).is_ok());
                    if i.peer.is_some() {
                        assert_eq!(i.kind(), Some("veth"));
                    }
                }
                for (_, p) in c.bind_ns.entries() {
                    assert!(p.starts_with('/'));
                }
                for g in &c.cgroups {
                    assert!(!g.starts_with('/') && !g.split('/').any(|s| s == ".."));
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    if crate::paths::check_lexically_inside(text).is_ok() {
        assert!(!text.starts_with('/'));
    }
    // config.json goes through the same located-error path into oci-spec's types.
    if let Err(e) = parse_json::<oci_spec::runtime::Spec>(text, Path::new("fuzz/config.json")) {
        let _ = e.to_string();
    }
    if crate::bundle::valid_name(text) {
        assert!(!text.contains('/') && text != "." && text != "..");
    }
    // A printed name is one line of printable characters, whatever the directory is called.
    assert!(!crate::bundle::printable_name(text).contains(char::is_control));
    let _ = crate::bundle::valid_tmpfs_size(text);
    let opts: Vec<String> = text.split(',').map(str::to_string).collect();
    let _ = crate::mounts::parse_options(&opts);
}

/// The supervisor's control protocol decoder, fed what any client of the socket can send
/// (and the CLI's decoder, fed what a supervisor answers): no input may panic, a request
/// that decodes encodes back to one line that decodes the same, and an error goes back to
/// the client as one line.
pub fn control_protocol(data: &[u8]) {
    if data.len() > MAX_REQUEST {
        return;
    }
    match Op::decode(data) {
        Ok(op) => {
            let line = op.encode();
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(Op::decode(line.trim_end().as_bytes()).ok(), Some(op));
        }
        Err(e) => {
            let answer = Response::error(e.to_string()).encode();
            assert!(!answer[..answer.len() - 1].contains('\n'));
        }
    }
    let _ = Response::decode(data);
}

/// Makes (or finds made) under `base` a root full of hostile symlinks, with `outside/`
/// beside it so that an escape lands somewhere real, and returns the root's real path.
pub fn hostile_tree(base: &Path) -> std::io::Result<PathBuf> {
    let root = base.join("root");
    std::fs::create_dir_all(root.join("a/b/c"))?;
    std::fs::create_dir_all(base.join("outside/secret"))?;
    std::fs::write(root.join("file"), b"")?;
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
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    root.canonicalize()
}

/// `paths::resolve_in_root` with any relative path over `root` (made by [`hostile_tree`]):
/// whatever resolves must be inside the root, and nothing is created.
pub fn path_confinement(root: &Path, data: &[u8]) {
    let Ok(rel) = std::str::from_utf8(data) else {
        return;
    };
    if rel.len() > 512 || rel.contains('\0') {
        return;
    }
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
}
