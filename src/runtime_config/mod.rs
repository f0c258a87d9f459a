//! The bundle's `runtime.json` / `runtime.yml`: LinuxKit's runtime schema, parsed strictly.
//!
//! Every error names the file, the field (as a path such as `interfaces[1].peer`) and, where
//! the parser knows it, the line and column, because a person fixing an image only has the
//! console line to go on (`located.rs`). What the types alone would take but lkinit
//! refuses is checked after the parse (`check.rs`).

mod check;
mod located;

// For the fuzz targets' checks of accepted configs.
#[cfg(feature = "fuzzing")]
pub use check::check_link_name;
pub use located::{ConfigError, parse_json, parse_yaml};

use check::validate;
use serde::Deserialize;
use std::path::Path;

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
}
