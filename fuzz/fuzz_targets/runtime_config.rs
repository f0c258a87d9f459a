//! runtime.json / runtime.yml parsing, and the other parsers of untrusted bundle input: no
//! input may panic, and what is accepted must keep the invariants the rest relies on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lkinit::runtime_config::{Format, parse, parse_json};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Json, Format::Yaml] {
        match parse(text, format, Path::new("fuzz/runtime.json")) {
            Ok(c) => {
                for i in &c.interfaces {
                    assert!(lkinit::runtime_config::check_link_name(&i.name).is_ok());
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
    if lkinit::paths::check_lexically_inside(text).is_ok() {
        assert!(!text.starts_with('/'));
    }
    // config.json goes through the same located-error path into oci-spec's types.
    if let Err(e) = parse_json::<oci_spec::runtime::Spec>(text, Path::new("fuzz/config.json")) {
        let _ = e.to_string();
    }
    if lkinit::bundle::valid_name(text) {
        assert!(!text.contains('/') && text != "." && text != "..");
    }
    // A printed name is one line of printable characters, whatever the directory is called.
    assert!(!lkinit::bundle::printable_name(text).contains(char::is_control));
    let _ = lkinit::bundle::valid_tmpfs_size(text);
    let opts: Vec<String> = text.split(',').map(str::to_string).collect();
    let _ = lkinit::mounts::parse_options(&opts);
});
