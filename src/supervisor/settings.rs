//! A service's own settings: `service.json` or `service.yml` in its bundle, both optional
//! (both present is an error). They are lkinit's, not the runtime's: runtime.json keeps
//! LinuxKit's schema. Parsed as strictly as runtime.json, with errors that name the file,
//! the line and the field.
//!
//! ```yaml
//! restart: on-failure        # always (default) | on-failure | never
//! restartDelay: 0.5          # seconds before the first restart; doubles per exit in the window
//! maxRestartDelay: 30        # the doubling stops here
//! crashLoop: {restarts: 5, within: 60}   # a 6th exit within 60 s marks the service failed
//! stopGrace: 10              # seconds between SIGTERM and SIGKILL
//! after: [dhcpcd]            # at boot, start once these are ready
//! afterTimeout: 120          # ... or once this long has passed
//! logs: {maxSize: 8m, keep: 3, timestamps: true}   # the log files (not memlogd's)
//! ready: notify              # or {fd: 3}, or {exec: [CMD, ...]} (see checks.rs)
//! readyTimeout: 60           # not ready by then: a failed start
//! health: {exec: [CMD, ...], interval: 10, timeout: 5, retries: 3, watchdog: 30}
//! ```

use super::checks::{self, Health, Ready};
use crate::bundle;
use crate::logs::{self, rotate};
use crate::runtime_config::{self, ConfigError};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What happens when a service's init exits without being asked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Whatever the exit status (services are meant to run until stopped).
    #[default]
    Always,
    /// Only after a non-zero exit or a signal; an exit 0 leaves the service `exited`.
    OnFailure,
    /// Never: the service is left `exited`.
    Never,
}

/// The crash-loop limit: more than `restarts` exits within `within` and the service is
/// marked failed instead of restarted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashLoop {
    pub restarts: u32,
    #[serde(deserialize_with = "seconds")]
    pub within: Duration,
}

impl Default for CrashLoop {
    fn default() -> Self {
        CrashLoop {
            restarts: 5,
            within: Duration::from_secs(60),
        }
    }
}

/// How the service's log files are kept (memlogd bounds its own ring).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct LogSettings {
    /// Rotated at the first line boundary at this size.
    #[serde(deserialize_with = "size")]
    pub max_size: u64,
    /// Rotated files kept.
    #[serde(deserialize_with = "keep")]
    pub keep: u32,
    /// Each line stamped with its RFC 3339 UTC time.
    pub timestamps: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        let p = logs::Policy::default();
        LogSettings {
            max_size: p.max_size,
            keep: p.keep,
            timestamps: p.timestamps,
        }
    }
}

impl LogSettings {
    pub fn policy(&self) -> logs::Policy {
        logs::Policy {
            max_size: self.max_size,
            keep: self.keep,
            timestamps: self.timestamps,
        }
    }
}

/// A size: bytes as a number, or a string such as `512k` or `8m`.
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    let r = match Size::deserialize(d).map_err(|_: D::Error| {
        serde::de::Error::custom("expected a size: bytes, or a string such as \"512k\" or \"8m\"")
    })? {
        Size::Bytes(n) => rotate::check_size(n),
        Size::Text(t) => rotate::parse_size(&t),
    };
    r.map_err(serde::de::Error::custom)
}

fn keep<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = u64::deserialize(d)?;
    rotate::check_keep(n).map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Settings {
    pub restart: Restart,
    #[serde(deserialize_with = "seconds")]
    pub restart_delay: Duration,
    #[serde(deserialize_with = "seconds")]
    pub max_restart_delay: Duration,
    pub crash_loop: CrashLoop,
    #[serde(deserialize_with = "seconds")]
    pub stop_grace: Duration,
    pub after: Vec<String>,
    /// How long to wait for the services of `after` to be ready.
    #[serde(deserialize_with = "checks::de_positive_seconds")]
    pub after_timeout: Duration,
    pub logs: LogSettings,
    /// How it tells it is ready; None: once it has started.
    pub ready: Option<Ready>,
    #[serde(deserialize_with = "checks::de_positive_seconds")]
    pub ready_timeout: Duration,
    pub health: Option<Health>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            restart: Restart::Always,
            restart_delay: Duration::from_millis(500),
            max_restart_delay: Duration::from_secs(30),
            crash_loop: CrashLoop::default(),
            stop_grace: Duration::from_secs(10),
            after: Vec::new(),
            after_timeout: Duration::from_secs(120),
            logs: LogSettings::default(),
            ready: None,
            ready_timeout: Duration::from_secs(60),
            health: None,
        }
    }
}

/// A duration written as a number of seconds (fractions allowed).
fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    checks::de_seconds_from(d, 0.0)
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("both service.json and service.yml are present in {0}: keep one")]
    Both(PathBuf),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    File(#[from] crate::safefile::FileError),
}

fn read(path: &Path) -> Result<Option<String>, SettingsError> {
    Ok(crate::safefile::read_config(
        path,
        crate::safefile::CONFIG_LIMIT,
    )?)
}

/// The settings of the service whose bundle is `dir` (named `name`): the defaults when it
/// has no settings file.
pub fn load(dir: &Path, name: &str) -> Result<Settings, SettingsError> {
    let json_path = dir.join("service.json");
    let yml_path = dir.join("service.yml");
    match (read(&json_path)?, read(&yml_path)?) {
        (Some(_), Some(_)) => Err(SettingsError::Both(dir.to_path_buf())),
        (Some(t), None) => Ok(parse(&t, false, &json_path, name)?),
        (None, Some(t)) => Ok(parse(&t, true, &yml_path, name)?),
        (None, None) => Ok(Settings::default()),
    }
}

/// Parses a settings file; `file` names it in errors.
pub fn parse(text: &str, yaml: bool, file: &Path, name: &str) -> Result<Settings, ConfigError> {
    // An empty file is no file, as with runtime.json.
    if text.trim().is_empty() {
        return Ok(Settings::default());
    }
    let s: Settings = if yaml {
        runtime_config::parse_yaml(text, file)?
    } else {
        runtime_config::parse_json(text, file)?
    };
    validate(&s, name).map_err(|e| ConfigError::invalid_field(file, e))?;
    Ok(s)
}

fn validate(s: &Settings, name: &str) -> Result<(), (String, String)> {
    if s.restart_delay > s.max_restart_delay {
        return Err((
            "restartDelay".into(),
            format!(
                "{}s is more than maxRestartDelay ({}s)",
                s.restart_delay.as_secs_f64(),
                s.max_restart_delay.as_secs_f64()
            ),
        ));
    }
    if s.crash_loop.within.is_zero() {
        return Err(("crashLoop.within".into(), "must be more than 0".into()));
    }
    for (i, a) in s.after.iter().enumerate() {
        if !bundle::valid_name(a) {
            return Err((
                format!("after[{i}]"),
                format!("`{a}` is not a service name"),
            ));
        }
        if a == name {
            return Err((
                format!("after[{i}]"),
                "a service cannot start after itself".into(),
            ));
        }
        if s.after[..i].contains(a) {
            return Err((format!("after[{i}]"), format!("`{a}` is listed twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Result<Settings, ConfigError> {
        parse(s, false, Path::new("b/service.json"), "b")
    }
    fn yaml(s: &str) -> Result<Settings, ConfigError> {
        parse(s, true, Path::new("b/service.yml"), "b")
    }

    #[test]
    fn defaults_need_no_file() {
        let d = Settings::default();
        assert_eq!(json("").unwrap(), d);
        assert_eq!(json("{}").unwrap(), d);
        assert_eq!(yaml("").unwrap(), d);
        assert_eq!(d.restart, Restart::Always);
        assert_eq!(d.stop_grace, Duration::from_secs(10));
        let t = tempfile::tempdir().unwrap();
        assert_eq!(load(t.path(), "b").unwrap(), d);
    }

    #[test]
    fn every_field() {
        let j = json(
            r#"{"restart": "on-failure", "restartDelay": 0.25, "maxRestartDelay": 4,
                "crashLoop": {"restarts": 3, "within": 10}, "stopGrace": 1.5,
                "after": ["net", "dns"]}"#,
        )
        .unwrap();
        assert_eq!(j.restart, Restart::OnFailure);
        assert_eq!(j.restart_delay, Duration::from_millis(250));
        assert_eq!(j.max_restart_delay, Duration::from_secs(4));
        assert_eq!(j.crash_loop.restarts, 3);
        assert_eq!(j.crash_loop.within, Duration::from_secs(10));
        assert_eq!(j.stop_grace, Duration::from_millis(1500));
        assert_eq!(j.after, vec!["net", "dns"]);
        let y = yaml(
            "restart: on-failure\nrestartDelay: 0.25\nmaxRestartDelay: 4\n\
             crashLoop: {restarts: 3, within: 10}\nstopGrace: 1.5\nafter: [net, dns]\n",
        )
        .unwrap();
        assert_eq!(y, j);
        assert_eq!(yaml("restart: never").unwrap().restart, Restart::Never);
    }

    #[test]
    fn errors_are_located() {
        let e = json("{\n  \"stopGrace\": 1,\n  \"grace\": 2\n}").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("unknown field `grace`"), "{e}");
        let e = yaml("restart: sometimes\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("restart"), "{e}");
        assert_eq!(e.line, Some(1), "{e}");
        let e = yaml("crashLoop:\n  restarts: 3\n  window: 5\n").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("crashLoop.window"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
        let e = json(r#"{"stopGrace": -1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("stopGrace"), "{e}");
        assert!(e.message.contains("number of seconds"), "{e}");
        let e = json(r#"{"stopGrace": "10s"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("stopGrace"), "{e}");
        assert!(e.to_string().starts_with("b/service.json: line 1"), "{e}");
    }

    #[test]
    fn validation() {
        let cases = [
            (
                r#"{"restartDelay": 5, "maxRestartDelay": 1}"#,
                "restartDelay",
            ),
            (
                r#"{"crashLoop": {"restarts": 1, "within": 0}}"#,
                "crashLoop.within",
            ),
            (r#"{"after": ["ok", "../x"]}"#, "after[1]"),
            (r#"{"after": ["b"]}"#, "after[0]"),
            (r#"{"after": ["a", "a"]}"#, "after[1]"),
        ];
        for (text, field) in cases {
            let e = json(text).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{text}: {e}");
        }
    }

    #[test]
    fn log_settings() {
        let d = json("{}").unwrap().logs;
        assert_eq!(d.policy(), logs::Policy::default());
        assert_eq!((d.max_size, d.keep, d.timestamps), (4 << 20, 2, false));
        let y = yaml("logs:\n  maxSize: 512k\n  keep: 0\n  timestamps: true\n").unwrap();
        assert_eq!(
            (y.logs.max_size, y.logs.keep, y.logs.timestamps),
            (512 << 10, 0, true)
        );
        assert_eq!(
            json(r#"{"logs": {"maxSize": 65536}}"#)
                .unwrap()
                .logs
                .max_size,
            65536
        );
        assert_eq!(
            json(r#"{"logs": {"maxSize": "8M"}}"#)
                .unwrap()
                .logs
                .max_size,
            8 << 20
        );
        // Impossible values name the file, the line and the field.
        let cases = [
            (
                "logs:\n  maxSize: 8x\n",
                "logs.maxSize",
                2,
                "`8x` is not a size",
            ),
            (
                "logs:\n  maxSize: 0\n",
                "logs.maxSize",
                2,
                "0 bytes is not between 4k",
            ),
            (
                "logs:\n  maxSize: -5\n",
                "logs.maxSize",
                2,
                "expected a size",
            ),
            (
                "logs:\n  maxSize: 1.5\n",
                "logs.maxSize",
                2,
                "expected a size",
            ),
            ("logs:\n  keep: 10\n", "logs.keep", 2, "between 0 and 9"),
            ("logs:\n  keep: -1\n", "logs.keep", 2, ""),
            ("logs:\n  timestamps: 1\n", "logs.timestamps", 2, ""),
            ("logs:\n  rotate: true\n", "logs.rotate", 2, "unknown field"),
        ];
        for (text, field, line, msg) in cases {
            let e = yaml(text).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{text}: {e}");
            assert_eq!(e.line, Some(line), "{text}: {e}");
            assert!(e.message.contains(msg), "{text}: {e}");
            assert!(!e.message.starts_with("logs: "), "{text}: {e}");
            assert!(e.to_string().starts_with("b/service.yml: line "), "{e}");
        }
        let e = json("{\"logs\": {\n \"maxSize\": \"1t\"}}").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("logs.maxSize"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
    }

    #[test]
    fn both_files_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("service.json"), "{}").unwrap();
        std::fs::write(t.path().join("service.yml"), "").unwrap();
        assert!(matches!(load(t.path(), "b"), Err(SettingsError::Both(_))));
        std::fs::remove_file(t.path().join("service.json")).unwrap();
        std::fs::write(t.path().join("service.yml"), "stopGrace: 2\n").unwrap();
        assert_eq!(
            load(t.path(), "b").unwrap().stop_grace,
            Duration::from_secs(2)
        );
    }
}
