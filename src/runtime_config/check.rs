//! What the types of runtime.json alone would take but lkinit refuses: names the kernel
//! would refuse or cut, paths that cannot be, combinations that make no sense.

use super::RuntimeConfig;

/// Why a value of runtime.json is refused, where its type alone would take it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("empty path")]
    EmptyPath,
    #[error(transparent)]
    Cgroup(#[from] CgroupNameError),
    #[error(transparent)]
    Link(#[from] LinkNameError),
    #[error("a veth peer needs a name of its own")]
    PeerSameName,
    #[error("`add: veth` needs a `peer` name")]
    VethWithoutPeer,
    #[error("`peer` is only for veth links, but add is `{0}`")]
    PeerNotVeth(String),
    #[error(
        "a bridge cannot be moved between network namespaces (the kernel keeps it where \
         it was created): drop createInRoot to create it inside the container's"
    )]
    BridgeInRoot,
    #[error("`{0}` is not an absolute path")]
    NotAbsolute(String),
}

/// Checks what the types alone cannot: names the kernel would refuse, combinations that make
/// no sense. Returns the field path and the reason.
pub(super) fn validate(c: &RuntimeConfig) -> Result<(), (String, Invalid)> {
    for (i, d) in c.mkdir.iter().enumerate() {
        if d.is_empty() {
            return Err((format!("mkdir[{i}]"), Invalid::EmptyPath));
        }
    }
    for (i, m) in c.mounts.iter().enumerate() {
        if m.destination.is_empty() {
            return Err((format!("mounts[{i}].destination"), Invalid::EmptyPath));
        }
    }
    for (i, g) in c.cgroups.iter().enumerate() {
        check_cgroup_name(g).map_err(|e| (format!("cgroups[{i}]"), e.into()))?;
    }
    for (i, itf) in c.interfaces.iter().enumerate() {
        let at = |f: &str| format!("interfaces[{i}].{f}");
        check_link_name(&itf.name).map_err(|e| (at("name"), e.into()))?;
        if let Some(peer) = &itf.peer {
            check_link_name(peer).map_err(|e| (at("peer"), e.into()))?;
            if peer == &itf.name {
                return Err((at("peer"), Invalid::PeerSameName));
            }
        }
        match (itf.add.as_deref(), &itf.peer) {
            (Some("veth"), None) => {
                return Err((at("peer"), Invalid::VethWithoutPeer));
            }
            (Some(kind), Some(_)) if kind != "veth" => {
                return Err((at("add"), Invalid::PeerNotVeth(kind.to_string())));
            }
            _ => {}
        }
        if itf.create_in_root && itf.add.as_deref() == Some("bridge") {
            return Err((at("createInRoot"), Invalid::BridgeInRoot));
        }
    }
    for (kind, path) in c.bind_ns.entries() {
        if !path.starts_with('/') {
            return Err((
                format!("bindNS.{kind}"),
                Invalid::NotAbsolute(path.to_string()),
            ));
        }
    }
    Ok(())
}

/// Why a link name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkNameError {
    #[error("missing interface name")]
    Missing,
    #[error("`{0}` is longer than 15 bytes")]
    TooLong(String),
    #[error("`{}` is not a valid interface name", .0.escape_default())]
    Invalid(String),
}

/// Link names as the kernel accepts them (dev_valid_name): 1 to 15 bytes, no `/`, `:` or
/// whitespace, not `.` or `..`. A NUL or other control character is refused too: the kernel
/// would store the name cut at a NUL, and lkinit would then undo a link of another name.
pub fn check_link_name(name: &str) -> Result<(), LinkNameError> {
    if name.is_empty() {
        return Err(LinkNameError::Missing);
    }
    if name.len() > 15 {
        return Err(LinkNameError::TooLong(name.to_string()));
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
        || name.contains(char::is_control)
    {
        return Err(LinkNameError::Invalid(name.to_string()));
    }
    Ok(())
}

/// Why a cgroup name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgroupNameError {
    #[error("empty cgroup name")]
    Empty,
    #[error("`{}` has a control character", .0.escape_default())]
    Control(String),
    #[error("`{0}` must be relative to the cgroup root")]
    Absolute(String),
    #[error("`{0}` has an empty, `.` or `..` component")]
    Component(String),
}

/// A cgroup name is a relative path below each hierarchy's root; it must stay below it.
pub fn check_cgroup_name(name: &str) -> Result<(), CgroupNameError> {
    if name.is_empty() {
        return Err(CgroupNameError::Empty);
    }
    if name.contains(char::is_control) {
        return Err(CgroupNameError::Control(name.to_string()));
    }
    if name.starts_with('/') {
        return Err(CgroupNameError::Absolute(name.to_string()));
    }
    if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(CgroupNameError::Component(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{ConfigError, Format, RuntimeConfig, parse};
    use std::path::Path;

    fn json(s: &str) -> Result<RuntimeConfig, ConfigError> {
        parse(s, Format::Json, Path::new("b/runtime.json"))
    }

    #[test]
    fn validation_errors() {
        let cases = [
            (r#"{"interfaces":[{"add":"bridge"}]}"#, "interfaces[0].name"),
            (
                r#"{"interfaces":[{"name":"a","add":"veth"}]}"#,
                "interfaces[0].peer",
            ),
            (
                r#"{"interfaces":[{"name":"a","add":"bridge","peer":"b"}]}"#,
                "interfaces[0].add",
            ),
            (
                r#"{"interfaces":[{"name":"this-name-is-too-long"}]}"#,
                "interfaces[0].name",
            ),
            (r#"{"interfaces":[{"name":"a/b"}]}"#, "interfaces[0].name"),
            (
                r#"{"interfaces":[{"name":"a","peer":"a"}]}"#,
                "interfaces[0].peer",
            ),
            (
                r#"{"interfaces":[{"name":"br0","add":"bridge","createInRoot":true}]}"#,
                "interfaces[0].createInRoot",
            ),
            (r#"{"bindNS":{"net":"relative/path"}}"#, "bindNS.net"),
            (r#"{"cgroups":["../escape"]}"#, "cgroups[0]"),
            (r#"{"cgroups":["/abs"]}"#, "cgroups[0]"),
            (r#"{"cgroups":["a\nb: exit code 0"]}"#, "cgroups[0]"),
            (r#"{"mkdir":[""]}"#, "mkdir[0]"),
            (
                r#"{"mounts":[{"destination":""}]}"#,
                "mounts[0].destination",
            ),
        ];
        for (text, field) in cases {
            let e = json(text).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{text}: {e}");
        }
    }

    #[test]
    fn link_names_the_kernel_would_cut_are_refused() {
        for bad in [r"eth\u0000x", r"a\nb", r"a\u0007"] {
            let text = format!(r#"{{"interfaces":[{{"name":"{bad}"}}]}}"#);
            let e = json(&text).unwrap_err();
            assert_eq!(
                e.field.as_deref(),
                Some("interfaces[0].name"),
                "{text}: {e}"
            );
            assert!(!e.to_string().contains(['\0', '\n', '\u{7}']), "{e}");
        }
    }

    #[test]
    fn nested_cgroup_name_ok() {
        assert!(json(r#"{"cgroups":["a/b"]}"#).is_ok());
    }
}
