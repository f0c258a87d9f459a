//! What the supervisor keeps under its state directory so that, killed and started again,
//! it finds its services as they were: `STATE_DIR/services/NAME.json`, one per service,
//! replaced atomically (write, then rename) at every change that matters.

use crate::container::Handover;
use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase", deny_unknown_fields)]
pub enum Persisted {
    /// Being launched: a supervisor killed now leaves a half-made container behind.
    Launching,
    /// Running: everything needed to take it over, and whether it was ready (a record
    /// written before readiness existed says nothing, and the service was running then).
    Running {
        container: Handover,
        #[serde(default = "was_ready")]
        ready: bool,
    },
    /// Being stopped: a new supervisor finishes the stop.
    Stopping { container: Handover },
    /// Wanted up, nothing running (between a crash and its restart).
    Restarting,
    /// Stopped on request: a new supervisor leaves it down.
    Stopped,
    /// Ended and left down by its restart policy; a new supervisor leaves it down.
    Exited,
    /// Failed: a new supervisor leaves it down, and says why.
    Failed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Record {
    pub v: u32,
    pub name: String,
    pub bundle: PathBuf,
    pub restarts: u32,
    /// Seconds since the Unix epoch when it entered this state.
    pub since: f64,
    pub service: Persisted,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn was_ready() -> bool {
    true
}

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("services")
}

fn path(state_dir: &Path, name: &str) -> PathBuf {
    dir(state_dir).join(format!("{name}.json"))
}

/// Writes the record atomically: a reader (or a crash) sees the old one or the new one.
pub fn save(state_dir: &Path, r: &Record) -> Result<(), RecordError> {
    let d = dir(state_dir);
    let p = path(state_dir, &r.name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecordError::Io { path, source }
    };
    std::fs::create_dir_all(&d).map_err(io(&d))?;
    let tmp = d.join(format!(".{}.tmp", r.name));
    let bytes = serde_json::to_vec(r).expect("a record always serializes");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &p).map_err(io(&p))
}

pub fn remove(state_dir: &Path, name: &str) {
    let _ = std::fs::remove_file(path(state_dir, name));
}

/// Every record, by service name; unreadable ones are reported and left out.
pub fn load_all(state_dir: &Path) -> (Vec<Record>, Vec<RecordError>) {
    let d = dir(state_dir);
    let mut records = Vec::new();
    let mut errors = Vec::new();
    let Ok(entries) = std::fs::read_dir(&d) else {
        return (records, errors);
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        if stem.starts_with('.') {
            let _ = std::fs::remove_file(&p);
            continue;
        }
        let r = std::fs::read(&p)
            .map_err(|source| RecordError::Io {
                path: p.clone(),
                source,
            })
            .and_then(|b| {
                serde_json::from_slice::<Record>(&b).map_err(|e| RecordError::Invalid {
                    path: p.clone(),
                    message: e.to_string(),
                })
            })
            .and_then(|r| {
                if r.v != VERSION || r.name != stem {
                    Err(RecordError::Invalid {
                        path: p.clone(),
                        message: format!("version {} record of `{}`", r.v, r.name),
                    })
                } else {
                    Ok(r)
                }
            });
        match r {
            Ok(r) => records.push(r),
            Err(e) => errors.push(e),
        }
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    (records, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::undo::{PlannedStep, Replay};

    #[test]
    fn save_and_load() {
        let t = tempfile::tempdir().unwrap();
        let r = Record {
            v: VERSION,
            name: "web".into(),
            bundle: "/containers/services/web".into(),
            restarts: 2,
            since: 12.5,
            service: Persisted::Running {
                container: Handover {
                    name: "web".into(),
                    pid: 42,
                    start_time: Some(99),
                    cgroup_procs: None,
                    pid_file: None,
                    cleanup: vec![PlannedStep {
                        what: "unmount /x".into(),
                        replay: Some(Replay::Unmount { path: "/x".into() }),
                    }],
                },
                ready: false,
            },
        };
        save(t.path(), &r).unwrap();
        let f = Record {
            name: "db".into(),
            service: Persisted::Failed {
                reason: "crash loop".into(),
            },
            ..r.clone()
        };
        save(t.path(), &f).unwrap();
        std::fs::write(dir(t.path()).join("bad.json"), "{").unwrap();
        let (all, errors) = load_all(t.path());
        assert_eq!(all, vec![f, r]);
        assert_eq!(errors.len(), 1);
        remove(t.path(), "web");
        assert_eq!(load_all(t.path()).0.len(), 1);
    }

    /// A record of a running service written before readiness was recorded: it was
    /// running, which meant ready.
    #[test]
    fn older_records_were_ready() {
        let p: Persisted = serde_json::from_str(
            r#"{"state": "running", "container": {"name": "web", "pid": 4, "startTime": 9,
                "cgroupProcs": null, "cleanup": []}}"#,
        )
        .unwrap();
        assert!(matches!(p, Persisted::Running { ready: true, .. }), "{p:?}");
    }
}
