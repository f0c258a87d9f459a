//! Kernel modules the image lists in `/etc/modules` (one name or path a line, parameters
//! after it, `#` comments), loaded with finit_module before onboot. Names are resolved
//! through `/lib/modules/$(uname -r)/modules.dep`, dependencies first.

use nix::errno::Errno;
use nix::kmod::{ModuleInitFlags, finit_module};
use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KmodError {
    #[error("{name}: not in {dep} (and not built into the kernel)")]
    NotFound { name: String, dep: PathBuf },
    #[error("{name}: dependency cycle through {at}")]
    Cycle { name: String, at: String },
    #[error("{path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: parameters `{params}` contain a NUL byte")]
    Params { path: PathBuf, params: String },
    #[error("{path}: finit_module")]
    Load {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: the kernel cannot load compressed modules (no CONFIG_MODULE_DECOMPRESS): \
         store it uncompressed in the image"
    )]
    Compressed { path: PathBuf },
}

/// One line of the module list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// A module name, or a path to a `.ko` file when it contains a `/`.
    pub target: String,
    pub params: String,
}

/// Parses `/etc/modules`: one module a line, then its parameters; `#` starts a comment.
pub fn parse_list(text: &str) -> Vec<Wanted> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("").trim();
            let mut words = line.split_whitespace();
            let target = words.next()?.to_string();
            Some(Wanted {
                target,
                params: words.collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
}

const COMPRESSED: [&str; 3] = [".xz", ".zst", ".gz"];

fn is_compressed(path: &Path) -> bool {
    let s = path.to_string_lossy();
    COMPRESSED.iter().any(|c| s.ends_with(c))
}

/// The kernel's name of a module file or module: no directory, no `.ko[.xz]`, `-` as `_`.
pub fn module_name(s: &str) -> String {
    let base = s.rsplit('/').next().unwrap_or(s);
    let mut base = base;
    for c in COMPRESSED {
        base = base.strip_suffix(c).unwrap_or(base);
    }
    base.strip_suffix(".ko").unwrap_or(base).replace('-', "_")
}

/// modules.dep (and modules.builtin) of one kernel.
#[derive(Debug, Default)]
pub struct DepDb {
    /// name -> (path relative to the modules directory, its direct dependencies' paths)
    modules: HashMap<String, (String, Vec<String>)>,
    builtin: HashSet<String>,
}

impl DepDb {
    pub fn parse(modules_dep: &str, modules_builtin: &str) -> DepDb {
        let mut modules = HashMap::new();
        for line in modules_dep.lines() {
            let Some((path, deps)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim().to_string();
            let deps = deps.split_whitespace().map(str::to_string).collect();
            modules.insert(module_name(&path), (path, deps));
        }
        let builtin = modules_builtin
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(module_name)
            .collect();
        DepDb { modules, builtin }
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&module_name(name))
    }

    /// The files to load for `name`, every dependency before the modules that need it and
    /// `name` last (paths relative to the modules directory). None if the module is not
    /// known.
    pub fn resolve(&self, name: &str) -> Result<Option<Vec<String>>, KmodError> {
        let name = module_name(name);
        if !self.modules.contains_key(&name) {
            return Ok(None);
        }
        let mut order = Vec::new();
        let mut done = HashSet::new();
        let mut path = Vec::new();
        self.visit(&name, &name, &mut order, &mut done, &mut path)?;
        Ok(Some(order))
    }

    fn visit(
        &self,
        root: &str,
        name: &str,
        order: &mut Vec<String>,
        done: &mut HashSet<String>,
        stack: &mut Vec<String>,
    ) -> Result<(), KmodError> {
        if done.contains(name) {
            return Ok(());
        }
        if stack.iter().any(|s| s == name) {
            return Err(KmodError::Cycle {
                name: root.to_string(),
                at: name.to_string(),
            });
        }
        let (path, deps) = self
            .modules
            .get(name)
            .expect("only names modules.dep lists are visited");
        stack.push(name.to_string());
        for d in deps {
            let dn = module_name(d);
            if self.modules.contains_key(&dn) {
                self.visit(root, &dn, order, done, stack)?;
            } else if done.insert(dn) {
                order.push(d.clone());
            }
        }
        stack.pop();
        done.insert(name.to_string());
        order.push(path.clone());
        Ok(())
    }
}

/// The kernel's flag for a compressed module file (Linux 5.17+, CONFIG_MODULE_DECOMPRESS),
/// which nix does not name.
const MODULE_INIT_COMPRESSED_FILE: ModuleInitFlags = ModuleInitFlags::from_bits_retain(4);

/// Loads one module file; Ok(false) when it was loaded already.
pub fn load_file(path: &Path, params: &str) -> Result<bool, KmodError> {
    let f = std::fs::File::open(path).map_err(|source| KmodError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let p = CString::new(params).map_err(|_| KmodError::Params {
        path: path.to_path_buf(),
        params: params.to_string(),
    })?;
    let flags = if is_compressed(path) {
        MODULE_INIT_COMPRESSED_FILE
    } else {
        ModuleInitFlags::empty()
    };
    match finit_module(&f, &p, flags) {
        Ok(()) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        Err(Errno::EINVAL | Errno::EOPNOTSUPP) if !flags.is_empty() => Err(KmodError::Compressed {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(KmodError::Load {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// What loading the list did.
#[derive(Debug, Default)]
pub struct Report {
    pub loaded: Vec<String>,
    pub already: Vec<String>,
    pub builtin: Vec<String>,
    pub failed: usize,
}

/// Loads every module of `list` (the contents of /etc/modules) from `moddir`
/// (`/lib/modules/RELEASE`). Failures are logged one line each and the others still load.
pub fn load_list(list: &str, moddir: &Path) -> Report {
    let dep_file = moddir.join("modules.dep");
    let db = DepDb::parse(
        &std::fs::read_to_string(&dep_file).unwrap_or_default(),
        &std::fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default(),
    );
    let mut report = Report::default();
    let mut seen = HashSet::new();
    for w in parse_list(list) {
        let files: Vec<(PathBuf, String)> = if w.target.contains('/') {
            // A path: its dependencies (when modules.dep knows the module) come first.
            let name = module_name(&w.target);
            let mut v: Vec<(PathBuf, String)> = match db.resolve(&name) {
                Ok(Some(mut deps)) => {
                    deps.pop();
                    deps.into_iter()
                        .map(|d| (moddir.join(d), String::new()))
                        .collect()
                }
                _ => Vec::new(),
            };
            v.push((PathBuf::from(&w.target), w.params.clone()));
            v
        } else if db.is_builtin(&w.target) {
            report.builtin.push(w.target.clone());
            continue;
        } else {
            match db.resolve(&w.target) {
                Ok(Some(mut deps)) => {
                    let last = deps.pop().expect("resolve ends with the module itself");
                    let mut v: Vec<(PathBuf, String)> = deps
                        .into_iter()
                        .map(|d| (moddir.join(d), String::new()))
                        .collect();
                    v.push((moddir.join(last), w.params.clone()));
                    v
                }
                Ok(None) => {
                    report.failed += 1;
                    log::error!(
                        "modules: {}",
                        KmodError::NotFound {
                            name: w.target.clone(),
                            dep: dep_file.clone(),
                        }
                    );
                    continue;
                }
                Err(e) => {
                    report.failed += 1;
                    log::error!("modules: {e}");
                    continue;
                }
            }
        };
        for (path, params) in files {
            let name = module_name(&path.to_string_lossy());
            if !seen.insert(name.clone()) {
                continue;
            }
            match load_file(&path, &params) {
                Ok(true) => report.loaded.push(name),
                Ok(false) => report.already.push(name),
                Err(e) => {
                    report.failed += 1;
                    log::error!("modules: {}: {}", w.target, crate::error_chain(&e));
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_has_names_paths_params_and_comments() {
        let text = "# modules to load\n\noverlay\ndummy numdummies=0  # no dummy0\n\
                    /lib/modules/extra/my-mod.ko debug=1 level=2\n   \n#veth\n";
        assert_eq!(
            parse_list(text),
            vec![
                Wanted {
                    target: "overlay".into(),
                    params: "".into()
                },
                Wanted {
                    target: "dummy".into(),
                    params: "numdummies=0".into()
                },
                Wanted {
                    target: "/lib/modules/extra/my-mod.ko".into(),
                    params: "debug=1 level=2".into()
                },
            ]
        );
    }

    #[test]
    fn names_of_module_files() {
        assert_eq!(module_name("kernel/net/bridge/bridge.ko"), "bridge");
        assert_eq!(module_name("kernel/fs/overlayfs/overlay.ko.xz"), "overlay");
        assert_eq!(module_name("snd-hda-intel.ko.zst"), "snd_hda_intel");
        assert_eq!(module_name("br-netfilter"), "br_netfilter");
        assert!(is_compressed(Path::new("a.ko.zst")));
        assert!(!is_compressed(Path::new("a.ko")));
    }

    const DEP: &str = "\
kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/net/802/stp.ko: kernel/net/llc/llc.ko
kernel/net/llc/llc.ko:
kernel/net/bridge/br_netfilter.ko: kernel/net/bridge/bridge.ko kernel/net/802/stp.ko kernel/net/llc/llc.ko
kernel/drivers/net/veth.ko:
kernel/fs/overlayfs/overlay.ko.xz:
";

    #[test]
    fn dependencies_come_first_each_once() {
        let db = DepDb::parse(DEP, "kernel/fs/ext4/ext4.ko\n");
        assert_eq!(
            db.resolve("bridge").unwrap().unwrap(),
            [
                "kernel/net/llc/llc.ko",
                "kernel/net/802/stp.ko",
                "kernel/net/bridge/bridge.ko"
            ]
        );
        assert_eq!(
            db.resolve("br-netfilter").unwrap().unwrap(),
            [
                "kernel/net/llc/llc.ko",
                "kernel/net/802/stp.ko",
                "kernel/net/bridge/bridge.ko",
                "kernel/net/bridge/br_netfilter.ko"
            ]
        );
        assert_eq!(
            db.resolve("veth").unwrap().unwrap(),
            ["kernel/drivers/net/veth.ko"]
        );
        assert_eq!(
            db.resolve("overlay").unwrap().unwrap(),
            ["kernel/fs/overlayfs/overlay.ko.xz"]
        );
        assert!(db.resolve("nope").unwrap().is_none());
        assert!(db.is_builtin("ext4"));
        assert!(!db.is_builtin("veth"));
    }

    #[test]
    fn a_cycle_is_an_error_not_a_hang() {
        let db = DepDb::parse("a.ko: b.ko\nb.ko: a.ko\n", "");
        assert!(matches!(db.resolve("a"), Err(KmodError::Cycle { .. })));
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let e = load_file(Path::new("/nonexistent/x.ko"), "").unwrap_err();
        assert_eq!(
            crate::error_chain(&e),
            "/nonexistent/x.ko: No such file or directory (os error 2)"
        );
    }
}
