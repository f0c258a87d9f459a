//! Links seen from the host with `ip link` (iproute2 in the root namespace, or through
//! `nsenter` in a bound one), and `ip` for a test's fixtures.

use super::{QUICK_LIMIT, output_within};
use std::path::Path;
use std::process::Command;

/// A link seen by `ip link`: its index, name and flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub flags: Vec<String>,
}

/// Parses `ip link` output (iproute2's or busybox's): one `N: NAME[@PEER]: <FLAGS> ...`
/// line per link.
pub fn parse_links(out: &str) -> Vec<Link> {
    out.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ": ");
            let index = parts.next()?.trim().parse().ok()?;
            let name = parts.next()?.split('@').next()?.to_string();
            let rest = parts.next().unwrap_or("");
            let flags = rest
                .strip_prefix('<')
                .and_then(|r| r.split('>').next())
                .map(|f| f.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            Some(Link { index, name, flags })
        })
        .collect()
}

/// The links of the root network namespace (`None`) or of the one bound at `ns`, read
/// from the host with `ip link` / `nsenter --net=NS ip link`.
pub fn links(ns: Option<&Path>) -> Vec<Link> {
    let mut c = match ns {
        None => Command::new("ip"),
        Some(p) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", p.display())).arg("ip");
            c
        }
    };
    c.args(["-o", "link", "show"]);
    let out = output_within(&mut c, QUICK_LIMIT, &format!("ip link in {ns:?}"));
    assert!(
        out.status.success(),
        "ip link in {ns:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_links(&String::from_utf8_lossy(&out.stdout))
}

pub fn link(ns: Option<&Path>, name: &str) -> Option<Link> {
    links(ns).into_iter().find(|l| l.name == name)
}

pub fn has_link(ns: Option<&Path>, name: &str) -> bool {
    link(ns, name).is_some()
}

/// Names of the links listed in some `ip link` output (e.g. a container's stdout).
pub fn link_names(out: &str) -> Vec<String> {
    parse_links(out).into_iter().map(|l| l.name).collect()
}

/// Runs `ip ARGS` in the root namespace and asserts it worked (test fixtures).
pub fn ip(args: &[&str]) {
    let out = output_within(Command::new("ip").args(args), QUICK_LIMIT, "ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
