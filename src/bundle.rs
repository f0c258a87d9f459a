//! A bundle on disk: its name, its config.json (read, never rewritten) and its runtime config.

use crate::runtime_config::{self, ConfigError, Format, Mount, RuntimeConfig};
use crate::safefile;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "`{0}` is not a valid bundle name (letters, digits, `_`, `.`, `-`; not starting with `.`, `_` or `-`)"
    )]
    InvalidName(String),
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    File(#[from] safefile::FileError),
    #[error("{0}: no config.json: not a bundle")]
    NoConfig(PathBuf),
    #[error("both runtime.json and runtime.yml are present in {0}: keep one")]
    BothRuntimeFiles(PathBuf),
    #[error("{0}: no rootfs/ directory (and no lower/ to build one from)")]
    NoRootfs(PathBuf),
    #[error("{0} is a symlink; lkinit mounts on it and would follow it out of the bundle")]
    Symlink(PathBuf),
    #[error(
        "{0}: process.terminal is true: lkinit runs containers without a terminal, set it to false"
    )]
    Terminal(PathBuf),
    #[error("{path}: a user namespace needs linux.{which} with an entry for container id 0")]
    UserNsMappings { path: PathBuf, which: &'static str },
    #[error(
        "{path}: annotation `lkinit.rootfs-size` is `{value}`: expected a size such as 64m, 1g or 25%"
    )]
    RootfsSize { path: PathBuf, value: String },
    #[error(
        "{path}: annotation `lkinit.timeout` is `{value}`: expected whole seconds up to {max} \
         (0: no limit)",
        max = MAX_TIMEOUT_SECS
    )]
    Timeout { path: PathBuf, value: String },
    #[error(
        "{file}: mounts[{index}] mounts on the bundle's own {what}: such mounts prepare the root \
         filesystem and must come first, before every other mount"
    )]
    RootMountNotFirst {
        file: PathBuf,
        index: usize,
        what: &'static str,
    },
    #[error("cannot write the generated config {path}")]
    Generate {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The ids that container root is mapped to on the host, when the container has its own
/// user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RootOwner {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// config.json annotation: size of the tmpfs that holds a writable root's changes.
pub(crate) const ROOTFS_SIZE_ANNOTATION: &str = "lkinit.rootfs-size";

/// config.json annotation: the time limit of an onboot or onshutdown bundle, in seconds (0:
/// none); it wins over `--timeout` and the kernel command line's `lkinit.onboot_timeout`.
pub(crate) const TIMEOUT_ANNOTATION: &str = "lkinit.timeout";

/// The longest time limit lkinit takes (30 days): longer is surely a unit mistake, and a
/// deadline that far is as good as none.
pub(crate) const MAX_TIMEOUT_SECS: u64 = 30 * 86_400;

/// Whole seconds, 0 to [`MAX_TIMEOUT_SECS`].
fn parse_timeout(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n <= MAX_TIMEOUT_SECS)
}

/// What lkinit adds to a container's config.json for one launch, in the generated copy:
/// the user's file is never rewritten.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigExtra {
    /// Bind mounts after the bundle's own.
    pub binds: Vec<Bind>,
    /// `process.env` entries, each replacing any entry of the same name.
    pub env: Vec<(String, String)>,
}

impl ConfigExtra {
    pub fn is_empty(&self) -> bool {
        self.binds.is_empty() && self.env.is_empty()
    }
}

/// A host path bound into the container.
#[derive(Debug, Clone, PartialEq)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute, inside the container.
    pub destination: String,
    pub read_only: bool,
}

#[derive(Debug)]
pub struct Bundle {
    /// The container id.
    pub(crate) name: String,
    /// Absolute path of the bundle directory.
    pub(crate) dir: PathBuf,
    pub(crate) rootfs: PathBuf,
    /// Present when the rootfs is read-write (an overlay on `lower/`).
    pub(crate) lower: Option<PathBuf>,
    pub(crate) spec: Spec,
    pub(crate) config_path: PathBuf,
    pub(crate) runtime: RuntimeConfig,
    /// How many of runtime.json's first mounts prepare the root filesystem (see
    /// [`Bundle::root_form`]).
    root_mounts: usize,
    /// What the next launch adds to config.json (see [`Bundle::runtime_bundle_dir`]).
    pub extra: ConfigExtra,
}

/// How a bundle's root filesystem is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RootForm<'a> {
    /// `rootfs/` bound onto itself.
    SelfBind,
    /// A tmpfs on `tmp/` and an overlay of this `lower/` on `rootfs/`.
    Overlay(&'a Path),
    /// As `linuxkit build` writes it: runtime.json's first mounts, onto the bundle's own
    /// `rootfs/` and `tmp/` (a bind, or a tmpfs, its remount and an overlay), whose sources
    /// may lie in another bundle that holds the unpacked image.
    RuntimeMounts(&'a [Mount]),
}

/// `[A-Za-z0-9][A-Za-z0-9_.-]*`: safe as a file name, a container id and a log file name.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 200
}

/// A name as it can be printed on a console line: control characters (a newline would
/// start a line of its own) escaped. Valid names are unchanged.
pub fn printable_name(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect()
}

/// A tmpfs `size=` value: digits with an optional k/m/g or % suffix (no commas: it is
/// spliced into mount data).
pub(crate) fn valid_tmpfs_size(s: &str) -> bool {
    let digits = s.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
    !digits.is_empty() && digits.len() + 1 >= s.len() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn read(path: &Path) -> Result<Option<String>, BundleError> {
    Ok(safefile::read_config(path, safefile::CONFIG_LIMIT)?)
}

/// The bundle's own mount points, as a mount destination can name them.
fn own_mount_point(dir: &Path, destination: &str) -> Option<&'static str> {
    let dest: PathBuf = Path::new(destination).components().collect();
    if !dest.is_absolute() {
        return None;
    }
    // The bundle may have been found through a link (e.g. /containers on another disk).
    let canonical = dir.canonicalize().ok();
    ["rootfs", "tmp"].into_iter().find(|what| {
        std::iter::once(dir)
            .chain(canonical.as_deref())
            .any(|d| dest == d.join(what))
    })
}

/// The length of the leading run of mounts onto the bundle's own `rootfs/` and `tmp/`; such a
/// mount anywhere after it is an error (it would land on a root already prepared).
fn count_root_mounts(
    dir: &Path,
    mounts: &[Mount],
    file: Option<&Path>,
) -> Result<usize, BundleError> {
    let n = mounts
        .iter()
        .take_while(|m| own_mount_point(dir, &m.destination).is_some())
        .count();
    if let Some((index, what)) = mounts
        .iter()
        .enumerate()
        .skip(n)
        .find_map(|(i, m)| own_mount_point(dir, &m.destination).map(|w| (i, w)))
    {
        return Err(BundleError::RootMountNotFirst {
            file: file.map(Path::to_path_buf).unwrap_or_default(),
            index,
            what,
        });
    }
    Ok(n)
}

impl Bundle {
    /// Reads and checks everything about a bundle that can be known before touching the
    /// host, so a bad bundle fails before anything is mounted.
    pub fn open(dir: &Path) -> Result<Bundle, BundleError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !valid_name(&name) {
            return Err(BundleError::InvalidName(printable_name(&name)));
        }
        let dir = std::path::absolute(dir).map_err(|source| BundleError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if !dir.is_dir() {
            return Err(BundleError::NotADirectory(dir));
        }

        let config_path = dir.join("config.json");
        let text = read(&config_path)?.ok_or_else(|| BundleError::NoConfig(dir.clone()))?;
        let spec: Spec = runtime_config::parse_json(&text, &config_path)?;

        let json_path = dir.join("runtime.json");
        let yml_path = dir.join("runtime.yml");
        let (json, yml) = (read(&json_path)?, read(&yml_path)?);
        let (runtime, runtime_file) = match (json, yml) {
            (Some(_), Some(_)) => return Err(BundleError::BothRuntimeFiles(dir)),
            (Some(t), None) => (
                runtime_config::parse(&t, Format::Json, &json_path)?,
                Some(json_path),
            ),
            (None, Some(t)) => (
                runtime_config::parse(&t, Format::Yaml, &yml_path)?,
                Some(yml_path),
            ),
            (None, None) => (RuntimeConfig::default(), None),
        };

        let rootfs = dir.join("rootfs");
        let lower = Some(dir.join("lower")).filter(|l| l.is_dir());
        let root_mounts = count_root_mounts(&dir, &runtime.mounts, runtime_file.as_deref())?;
        // Mount points lkinit makes: a mount follows a symlink wherever it points.
        let tmp = (lower.is_some() || root_mounts > 0).then(|| dir.join("tmp"));
        for p in std::iter::once(&rootfs).chain(tmp.as_ref()) {
            if p.is_symlink() {
                return Err(BundleError::Symlink(p.clone()));
            }
        }
        if lower.is_none() && root_mounts == 0 && !rootfs.is_dir() {
            return Err(BundleError::NoRootfs(dir));
        }
        let bundle = Bundle {
            name,
            dir,
            rootfs,
            lower,
            spec,
            config_path,
            runtime,
            root_mounts,
            extra: ConfigExtra::default(),
        };
        if bundle
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false)
        {
            return Err(BundleError::Terminal(bundle.config_path));
        }
        bundle.root_owner()?;
        if let Some(size) = bundle.tmpfs_size()
            && !valid_tmpfs_size(size)
        {
            return Err(BundleError::RootfsSize {
                path: bundle.config_path.clone(),
                value: size.to_string(),
            });
        }
        if let Some(t) = bundle.annotation(TIMEOUT_ANNOTATION)
            && parse_timeout(t).is_none()
        {
            return Err(BundleError::Timeout {
                path: bundle.config_path.clone(),
                value: printable_name(t),
            });
        }
        Ok(bundle)
    }

    /// How the root filesystem is made: runtime.json's own preparation when it has one (it
    /// wins over `lower/`, which a bundle from `linuxkit build` also has), else lkinit's.
    pub(crate) fn root_form(&self) -> RootForm<'_> {
        if self.root_mounts > 0 {
            RootForm::RuntimeMounts(&self.runtime.mounts[..self.root_mounts])
        } else if let Some(lower) = &self.lower {
            RootForm::Overlay(lower)
        } else {
            RootForm::SelfBind
        }
    }

    /// runtime.json's mounts other than the root filesystem's preparation.
    pub(crate) fn runtime_mounts(&self) -> &[Mount] {
        &self.runtime.mounts[self.root_mounts..]
    }

    fn namespace(&self, typ: LinuxNamespaceType) -> Option<&oci_spec::runtime::LinuxNamespace> {
        self.spec
            .linux()
            .as_ref()?
            .namespaces()
            .as_ref()?
            .iter()
            .find(|n| n.typ() == typ)
    }

    /// The path of the network namespace the container joins, if config.json names one.
    pub(crate) fn netns_path(&self) -> Option<&Path> {
        self.namespace(LinuxNamespaceType::Network)?
            .path()
            .as_deref()
    }

    /// Host ids of container root when the container makes its own user namespace; an error
    /// when that namespace has no mapping for root (the runtime would fail less clearly).
    pub(crate) fn root_owner(&self) -> Result<Option<RootOwner>, BundleError> {
        let Some(ns) = self.namespace(LinuxNamespaceType::User) else {
            return Ok(None);
        };
        if ns.path().is_some() {
            // Joining an existing user namespace: its mappings are not ours to know.
            return Ok(None);
        }
        let linux = self.spec.linux().as_ref();
        let find = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>, which| {
            maps.and_then(|m| {
                m.iter()
                    .find(|m| m.container_id() == 0 && m.size() > 0)
                    .map(|m| m.host_id())
            })
            .ok_or(BundleError::UserNsMappings {
                path: self.config_path.clone(),
                which,
            })
        };
        let uid = find(linux.and_then(|l| l.uid_mappings().as_ref()), "uidMappings")?;
        let gid = find(linux.and_then(|l| l.gid_mappings().as_ref()), "gidMappings")?;
        Ok(Some(RootOwner { uid, gid }))
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.spec
            .annotations()
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// The size of the writable layer's tmpfs from the `lkinit.rootfs-size` annotation.
    pub(crate) fn tmpfs_size(&self) -> Option<&str> {
        self.annotation(ROOTFS_SIZE_ANNOTATION)
    }

    /// The time limit its `lkinit.timeout` annotation gives (checked when the bundle was
    /// opened): None without one, `Some(None)` for 0, no limit.
    pub(crate) fn timeout(&self) -> Option<Option<std::time::Duration>> {
        let secs = parse_timeout(self.annotation(TIMEOUT_ANNOTATION)?)?;
        Some((secs > 0).then(|| std::time::Duration::from_secs(secs)))
    }

    /// The uid and gid mappings of the user namespace the container makes, if it makes one
    /// (`root_owner` has checked them when the bundle was opened).
    pub(crate) fn id_mappings(&self) -> Option<(&[LinuxIdMapping], &[LinuxIdMapping])> {
        let ns = self.namespace(LinuxNamespaceType::User)?;
        if ns.path().is_some() {
            return None;
        }
        let linux = self.spec.linux().as_ref()?;
        Some((
            linux.uid_mappings().as_deref()?,
            linux.gid_mappings().as_deref()?,
        ))
    }

    /// Whether the runtime has to stop between `create` and `start` for lkinit to act.
    pub(crate) fn needs_create_start(&self) -> bool {
        !self.runtime.interfaces.is_empty() || !self.runtime.bind_ns.is_empty()
    }

    /// The bundle directory to hand the runtime. The user's config.json is used as it is
    /// when its `root.path` already names `rootfs` and nothing is to be added; otherwise a
    /// copy is generated under `state_dir` that differs only in `root.path` and in what
    /// [`Bundle::extra`] adds.
    pub(crate) fn runtime_bundle_dir(&self, state_dir: &Path) -> Result<PathBuf, BundleError> {
        let root_path = self.spec.root().as_ref().map(|r| r.path().clone());
        let points_at_rootfs = match &root_path {
            Some(p) if p.is_absolute() => *p == self.rootfs,
            Some(p) => self.dir.join(p) == self.rootfs || p == Path::new("rootfs"),
            None => false,
        };
        if points_at_rootfs && self.extra.is_empty() {
            return Ok(self.dir.clone());
        }
        let out_dir = generated_dir(state_dir, &self.name);
        let out = out_dir.join("config.json");
        let gen_err = |source| BundleError::Generate {
            path: out.clone(),
            source,
        };
        let text =
            read(&self.config_path)?.ok_or_else(|| BundleError::NoConfig(self.dir.clone()))?;
        // Edited as generic JSON: a typed round trip would drop fields it does not know.
        let mut value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| gen_err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        let root = value
            .as_object_mut()
            .map(|o| o.entry("root").or_insert_with(|| serde_json::json!({})));
        if let Some(serde_json::Value::Object(root)) = root {
            root.insert(
                "path".into(),
                serde_json::Value::String(self.rootfs.to_string_lossy().into_owned()),
            );
        }
        add_extra(&mut value, &self.extra);
        std::fs::create_dir_all(&out_dir).map_err(gen_err)?;
        let bytes = serde_json::to_vec_pretty(&value)
            .map_err(|e| gen_err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        std::fs::write(&out, bytes).map_err(gen_err)?;
        Ok(out_dir)
    }
}

/// Where the generated copy of bundle `name`'s config.json goes.
pub fn generated_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("bundles").join(name)
}

/// Removes the generated copy of bundle `name`'s config.json, once its container is
/// deleted (the runtime reads it at `create` only).
pub fn remove_generated(state_dir: &Path, name: &str) {
    let dir = generated_dir(state_dir, name);
    let _ = std::fs::remove_file(dir.join("config.json"));
    let _ = std::fs::remove_dir(&dir);
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}

/// Adds `extra` to a config.json as generic JSON (every other field kept as it is).
fn add_extra(config: &mut serde_json::Value, extra: &ConfigExtra) {
    use serde_json::{Value, json};
    let Some(top) = config.as_object_mut() else {
        return;
    };
    if !extra.binds.is_empty() {
        let mounts = top.entry("mounts").or_insert_with(|| json!([]));
        if !mounts.is_array() {
            *mounts = json!([]);
        }
        if let Some(list) = mounts.as_array_mut() {
            for b in &extra.binds {
                let mut options = vec!["bind", "nosuid", "nodev", "noexec"];
                if b.read_only {
                    options.push("ro");
                }
                list.push(json!({
                    "destination": b.destination,
                    "type": "bind",
                    "source": b.source.to_string_lossy(),
                    "options": options,
                }));
            }
        }
    }
    if !extra.env.is_empty() {
        let process = top.entry("process").or_insert_with(|| json!({}));
        if let Some(process) = process.as_object_mut() {
            let env = process.entry("env").or_insert_with(|| json!([]));
            if !env.is_array() {
                *env = json!([]);
            }
            if let Some(list) = env.as_array_mut() {
                for (k, v) in &extra.env {
                    let prefix = format!("{k}=");
                    list.retain(|e| !e.as_str().is_some_and(|e| e.starts_with(&prefix)));
                    list.push(Value::String(format!("{k}={v}")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
