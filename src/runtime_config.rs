//! The bundle's `runtime.json` / `runtime.yml`: LinuxKit's runtime schema, parsed strictly.
//!
//! Every error names the file, the field (as a path such as `interfaces[1].peer`) and, where
//! the parser knows it, the line and column, because a person fixing an image only has the
//! console line to go on.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The whole runtime configuration of one bundle. Field names follow LinuxKit's `runtime`
/// section exactly, so existing images keep working.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    #[serde(default)]
    pub mkdir: Vec<String>,
    #[serde(default)]
    pub mounts: Vec<Mount>,
    #[serde(default)]
    pub cgroups: Vec<String>,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default, rename = "bindNS")]
    pub bind_ns: BindNs,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub namespace: Option<String>,
}

/// `""` (and null) read as unset: `linuxkit build` writes every field of the schema, with
/// an empty string for what the YAML left out, and LinuxKit's init treats it so.
fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()))
}

/// An OCI-style mount, as in config.json, applied by lkinit before the container is created.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    pub destination: String,
    #[serde(default, rename = "type", deserialize_with = "empty_as_none")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub source: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    #[serde(default)]
    pub name: String,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub add: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub peer: Option<String>,
    #[serde(default, rename = "createInRoot")]
    pub create_in_root: bool,
}

/// Paths on which `/proc/PID/ns/KIND` is bound after `create`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindNs {
    #[serde(default, deserialize_with = "empty_as_none")]
    pub cgroup: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub ipc: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub mnt: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub net: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub pid: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub user: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub uts: Option<String>,
}

impl BindNs {
    /// The kinds in the order they are bound (the order LinuxKit documents), with their paths.
    pub fn entries(&self) -> Vec<(&'static str, &str)> {
        [
            ("cgroup", &self.cgroup),
            ("ipc", &self.ipc),
            ("mnt", &self.mnt),
            ("net", &self.net),
            ("pid", &self.pid),
            ("user", &self.user),
            ("uts", &self.uts),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|p| (k, p)))
        .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

impl Interface {
    /// The link kind to create, if any: `peer` implies `veth`.
    pub fn kind(&self) -> Option<&str> {
        match (&self.add, &self.peer) {
            (Some(k), _) => Some(k.as_str()),
            (None, Some(_)) => Some("veth"),
            (None, None) => None,
        }
    }
}

/// A runtime config file that cannot be used, located as precisely as the parser allows.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Path of the offending field, e.g. `interfaces[0].createInRoot`.
    pub field: Option<String>,
    pub message: String,
}

impl ConfigError {
    /// A value that parsed but is not allowed: no line to point at, the field says where.
    pub fn invalid_field(file: &Path, (field, message): (String, String)) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: Some(field),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ": line {l}")?;
            if let Some(c) = self.column {
                write!(f, " column {c}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Which syntax a runtime config file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// Parses a runtime config; `file` is only used to name the file in errors.
pub fn parse(text: &str, format: Format, file: &Path) -> Result<RuntimeConfig, ConfigError> {
    // An empty file is the same as no file: image builders write empty runtime files.
    if text.trim().is_empty() {
        return Ok(RuntimeConfig::default());
    }
    let config = match format {
        Format::Json => parse_json(text, file)?,
        Format::Yaml => parse_yaml(text, file)?,
    };
    validate(&config)
        .map_err(|(field, e)| ConfigError::invalid_field(file, (field, e.to_string())))?;
    Ok(config)
}

/// The path of the field an error is in; where the parser could not tell the last step (a
/// syntax error inside an object: `?`), up to the last step it knows.
fn field_path(path: &serde_path_to_error::Path) -> Option<String> {
    let s = path.to_string();
    let known = match s.find('?') {
        Some(i) => s[..i].trim_end_matches('.'),
        None => &s,
    };
    (known != "." && !known.is_empty()).then(|| known.to_string())
}

/// Parses any JSON document with errors located by line and field path (also used for
/// config.json).
pub fn parse_json<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &Path,
) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let config = result.map_err(|e| {
        let field = field_path(e.path());
        let inner = e.into_inner();
        let (line, column) = (inner.line(), inner.column());
        let full = inner.to_string();
        // serde_json appends the location to its message; it is reported separately.
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        ConfigError {
            file: file.to_path_buf(),
            line: (line > 0).then_some(line),
            column: (line > 0).then_some(column),
            field,
            message,
        }
    })?;
    // serde_json stops at the end of the value; trailing garbage is caught here.
    de.end().map_err(|e| ConfigError {
        file: file.to_path_buf(),
        line: Some(e.line()),
        column: Some(e.column()),
        field: None,
        message: "trailing characters after the JSON document".into(),
    })?;
    Ok(config)
}

/// Parses any YAML document with errors located by line and field path.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &Path,
) -> Result<T, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    result.map_err(|e| {
        let field = field_path(e.path());
        let inner = e.into_inner();
        let location = inner.location();
        let mut message = inner.to_string();
        // The YAML parser prefixes its own path and appends the location: both are
        // reported in their own slots. Its path stops at the parent of a value whose own
        // check failed (`logs: ...` for `logs.maxSize`): any leading part of ours is it.
        if let Some(f) = &field {
            let cuts = f.match_indices(['.', '[']).map(|(i, _)| i).rev();
            if let Some(rest) = std::iter::once(f.len())
                .chain(cuts)
                .find_map(|i| message.strip_prefix(&format!("{}: ", &f[..i])))
            {
                message = rest.to_string();
            }
        }
        if let Some(loc) = &location {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(rest) = message.strip_suffix(&suffix) {
                message = rest.to_string();
            }
        }
        ConfigError {
            file: file.to_path_buf(),
            line: location.as_ref().map(|l| l.line()),
            column: location.as_ref().map(|l| l.column()),
            field,
            message,
        }
    })
}

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
fn validate(c: &RuntimeConfig) -> Result<(), (String, Invalid)> {
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
    use super::*;

    fn json(s: &str) -> Result<RuntimeConfig, ConfigError> {
        parse(s, Format::Json, Path::new("b/runtime.json"))
    }
    fn yaml(s: &str) -> Result<RuntimeConfig, ConfigError> {
        parse(s, Format::Yaml, Path::new("b/runtime.yml"))
    }

    const FULL: &str = r#"{
      "mkdir": ["/run/abs", "rel/dir"],
      "mounts": [{"type": "tmpfs", "source": "tmpfs", "destination": "/run/x", "options": ["size=1m"]}],
      "cgroups": ["mygroup"],
      "interfaces": [{"name": "eth1", "add": "veth", "peer": "veth-eth1", "createInRoot": false},
                     {"name": "dummy0", "add": "dummy"},
                     {"name": "ens5"}],
      "bindNS": {"net": "/run/netns/mynet", "uts": "/run/uts/x"},
      "namespace": "services.example"
    }"#;

    #[test]
    fn full_schema_json() {
        let c = json(FULL).unwrap();
        assert_eq!(c.mkdir, vec!["/run/abs", "rel/dir"]);
        assert_eq!(c.mounts[0].kind.as_deref(), Some("tmpfs"));
        assert_eq!(c.mounts[0].options, vec!["size=1m"]);
        assert_eq!(c.cgroups, vec!["mygroup"]);
        assert_eq!(c.interfaces.len(), 3);
        assert_eq!(c.interfaces[0].kind(), Some("veth"));
        assert_eq!(c.interfaces[2].kind(), None);
        assert_eq!(
            c.bind_ns.entries(),
            vec![("net", "/run/netns/mynet"), ("uts", "/run/uts/x")]
        );
        assert_eq!(c.namespace.as_deref(), Some("services.example"));
    }

    #[test]
    fn yaml_equals_json() {
        let y = yaml(
            "mkdir: [/run/abs, rel/dir]\n\
             mounts:\n  - type: tmpfs\n    source: tmpfs\n    destination: /run/x\n    options: [size=1m]\n\
             cgroups: [mygroup]\n\
             interfaces:\n  - {name: eth1, add: veth, peer: veth-eth1, createInRoot: false}\n  - {name: dummy0, add: dummy}\n  - name: ens5\n\
             bindNS:\n  net: /run/netns/mynet\n  uts: /run/uts/x\n\
             namespace: services.example\n",
        )
        .unwrap();
        assert_eq!(y, json(FULL).unwrap());
    }

    #[test]
    fn peer_implies_veth() {
        let c = json(r#"{"interfaces":[{"name":"a","peer":"b"}]}"#).unwrap();
        assert_eq!(c.interfaces[0].kind(), Some("veth"));
    }

    #[test]
    fn empty_file_is_empty_config() {
        assert_eq!(json("  \n").unwrap(), RuntimeConfig::default());
        assert_eq!(json("{}").unwrap(), RuntimeConfig::default());
        assert_eq!(yaml("").unwrap(), RuntimeConfig::default());
    }

    #[test]
    fn unknown_field_named_with_line() {
        let e = json("{\n  \"mkdir\": [],\n  \"mkdirs\": [\"/x\"]\n}").unwrap_err();
        assert!(e.message.contains("unknown field `mkdirs`"), "{e}");
        assert_eq!(e.line, Some(3));
        let s = e.to_string();
        assert!(s.starts_with("b/runtime.json: line 3"), "{s}");
    }

    #[test]
    fn nested_unknown_field_has_path() {
        let e = json(r#"{"interfaces":[{"name":"a"},{"name":"b","kind":"x"}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("interfaces[1].kind"), "{e}");
        assert!(e.message.contains("unknown field `kind`"));
    }

    #[test]
    fn wrong_type_json() {
        let e = json("{\"interfaces\": [\n {\"name\": \"a\", \"createInRoot\": \"yes\"}]}")
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("interfaces[0].createInRoot"));
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("expected a boolean"), "{e}");
        assert!(!e.message.contains("at line"), "{e}");
    }

    #[test]
    fn wrong_type_yaml() {
        let e = yaml("mkdir: /not/a/list\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("mkdir"), "{e}");
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("expected a sequence"), "{e}");
    }

    #[test]
    fn unknown_field_yaml_line() {
        let e = yaml("mkdir: [/a]\nbindNS:\n  net: /x\n  time: /y\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("bindNS.time"), "{e}");
        assert_eq!(e.line, Some(4), "{e}");
    }

    #[test]
    fn syntax_error_located() {
        let e = json("{\"mkdir\": [\"/a\",]}").unwrap_err();
        assert_eq!(e.line, Some(1));
        // Inside an object the parser cannot name the field; the error names its parent.
        let e = json("{\"bindNS\": {\"net\": \"/x\",, }}").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("bindNS"), "{e}");
        assert!(!e.to_string().contains('?'), "{e}");
        let e = json("{,}").unwrap_err();
        assert_eq!(e.field, None, "{e}");
        let e = json("{\"mkdir\": []} x").unwrap_err();
        assert!(e.message.contains("trailing"), "{e}");
        let e = yaml("mkdir: [a\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
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

    /// What `linuxkit build` writes for an entry that sets none of the runtime fields but
    /// has a read-write image: every key, empty values for unset.
    const BUILDER: &str = r#"{
    "cgroups": [],
    "mounts": [
        {"destination": "/containers/onboot/001-writable/tmp", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/containers/onboot/001-writable/tmp", "options": ["remount", "private"]},
        {"destination": "/containers/onboot/001-writable/rootfs", "type": "overlay", "source": "overlay",
         "options": ["lowerdir=/containers/onboot/000-netns/lower",
                     "upperdir=/containers/onboot/001-writable/tmp/upper",
                     "workdir=/containers/onboot/001-writable/tmp/work"]}
    ],
    "mkdir": [],
    "interfaces": [],
    "bindNS": {"cgroup": "", "ipc": "", "mnt": "", "net": "", "pid": "", "user": "", "uts": ""},
    "namespace": ""
}"#;

    #[test]
    fn builder_output_reads_empty_as_unset() {
        let c = json(BUILDER).unwrap();
        assert!(c.bind_ns.is_empty(), "{:?}", c.bind_ns);
        assert_eq!(c.namespace, None);
        assert_eq!(c.mounts.len(), 3);
        assert_eq!(c.mounts[1].kind, None);
        assert_eq!(c.mounts[1].source, None);
        assert_eq!(c.mounts[1].options, vec!["remount", "private"]);
        // One key set among empty ones.
        let c = json(r#"{"bindNS": {"net": "/run/netns/x", "uts": "", "pid": null}}"#).unwrap();
        assert_eq!(c.bind_ns.entries(), vec![("net", "/run/netns/x")]);
        let c = json(
            r#"{"interfaces": [{"name": "eth1", "add": "", "peer": "", "createInRoot": false}]}"#,
        )
        .unwrap();
        assert_eq!(c.interfaces[0].kind(), None);
        // Strict still: an unknown key among the empty ones.
        let e = json(r#"{"bindNS": {"net": "", "time": ""}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("bindNS.time"), "{e}");
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
