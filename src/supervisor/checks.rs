//! The readiness and health settings of a service (`ready:`, `health:` in its
//! `service.yml`), parsed as strictly as the rest: an unknown key, a wrong type, an
//! impossible value or a combination that makes no sense is an error raised where the
//! parser stands, so it names the file, the line and the field.
//!
//! ```yaml
//! ready: notify                          # READY=1 on $NOTIFY_SOCKET (systemd)
//! ready: {fd: 3}                         # a line written to descriptor 3 (s6)
//! ready: {exec: [test, -e, /run/ok], interval: 1, timeout: 5}
//! health: {exec: [wget, -q, localhost], interval: 10, timeout: 5, retries: 3, watchdog: 30}
//! ```

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, de::Error as _};
use std::fmt;
use std::time::Duration;

/// How a service tells that it is ready.
#[derive(Debug, Clone, PartialEq)]
pub enum Ready {
    /// systemd's protocol: `READY=1` sent to `$NOTIFY_SOCKET`.
    Notify,
    /// s6's: a line written to this descriptor.
    Fd(i32),
    /// A command run in its namespaces until it exits 0.
    Exec(Probe),
}

impl Ready {
    /// How the service's readiness is awaited, in words (for `status`).
    pub fn describe(&self) -> String {
        match self {
            Ready::Notify => "READY=1 on its NOTIFY_SOCKET".into(),
            Ready::Fd(n) => format!("a line on its descriptor {n}"),
            Ready::Exec(p) => format!("`{}` to succeed", p.command_line()),
        }
    }
}

/// A command run in the service's namespaces, one at a time, `interval` apart, each killed
/// at `timeout`.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub cmd: Vec<String>,
    /// From the end of one run to the start of the next.
    pub interval: Duration,
    pub timeout: Duration,
}

impl Probe {
    pub fn command_line(&self) -> String {
        self.cmd.join(" ")
    }
}

/// What keeps a ready service under watch.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub exec: Option<Probe>,
    /// Failed checks in a row that restart the service.
    pub retries: u32,
    /// `WATCHDOG=1` expected at least this often (systemd's `WatchdogSec`).
    pub watchdog: Option<Duration>,
}

/// Defaults of a readiness probe: look often, a ready service should answer at once.
pub const READY_INTERVAL: Duration = Duration::from_secs(1);
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Defaults of a health check.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
pub const HEALTH_RETRIES: u32 = 3;

/// The descriptors `ready: {fd: N}` may name: not stdin, stdout or stderr, and few enough
/// that the runtime's `--preserve-fds` (which hands over every one from 3 to N) stays small.
pub const FD_RANGE: std::ops::RangeInclusive<i64> = 3..=64;

/// The shortest interval or time limit: below it, a check would keep a CPU busy.
const MIN_SECONDS: f64 = 0.1;
/// The longest duration a setting may take; longer is surely a unit mistake.
pub const MAX_SECONDS: f64 = 24.0 * 3600.0;
/// Limits on a probe's command line (it travels on the helper's command line).
const MAX_ARGS: usize = 256;
const MAX_ARG_LEN: usize = 4096;
const MAX_RETRIES: i64 = 1000;

/// A number of seconds between `min` and [`MAX_SECONDS`], checked while the parser stands
/// on the number, so an error names its line.
pub fn de_seconds_from<'de, D: Deserializer<'de>>(d: D, min: f64) -> Result<Duration, D::Error> {
    struct V(f64);
    impl V {
        fn check<E: de::Error>(&self, s: f64) -> Result<Duration, E> {
            if !s.is_finite() || !(self.0..=MAX_SECONDS).contains(&s) {
                return Err(E::custom(format!(
                    "{s} is not a number of seconds between {} and {MAX_SECONDS}",
                    self.0
                )));
            }
            Ok(Duration::from_secs_f64(s))
        }
    }
    impl<'de> Visitor<'de> for V {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number of seconds")
        }
        fn visit_f64<E: de::Error>(self, s: f64) -> Result<Duration, E> {
            self.check(s)
        }
        #[allow(clippy::cast_precision_loss)] // far beyond MAX_SECONDS either way
        fn visit_i64<E: de::Error>(self, s: i64) -> Result<Duration, E> {
            self.check(s as f64)
        }
        #[allow(clippy::cast_precision_loss)] // far beyond MAX_SECONDS either way
        fn visit_u64<E: de::Error>(self, s: u64) -> Result<Duration, E> {
            self.check(s as f64)
        }
    }
    d.deserialize_f64(V(min))
}

/// A deserializer for a duration of at least [`MIN_SECONDS`].
pub fn de_positive_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    de_seconds_from(d, MIN_SECONDS)
}

struct Seconds(Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_positive_seconds(d).map(Seconds)
    }
}

/// An integer in `range`, checked while the parser stands on it.
fn de_int_in<'de, D: Deserializer<'de>>(
    d: D,
    range: std::ops::RangeInclusive<i64>,
    why: fn(i64) -> String,
) -> Result<i64, D::Error> {
    struct V(std::ops::RangeInclusive<i64>, fn(i64) -> String);
    impl<'de> Visitor<'de> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<i64, E> {
            if self.0.contains(&n) {
                Ok(n)
            } else {
                Err(E::custom((self.1)(n)))
            }
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<i64, E> {
            match i64::try_from(n) {
                Ok(n) => self.visit_i64(n),
                Err(_) => Err(E::custom(format!("{n} is far too large"))),
            }
        }
    }
    d.deserialize_i64(V(range, why))
}

struct Command(Vec<String>);

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command as a list: [CMD, ARG, ...]")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
                let mut v = Vec::new();
                while let Some(a) = seq.next_element::<String>()? {
                    v.push(a);
                    if v.len() > MAX_ARGS {
                        return Err(A::Error::custom(format!("more than {MAX_ARGS} arguments")));
                    }
                }
                // Checked before the sequence ends, where the parser still stands in it.
                check_command(&v).map_err(A::Error::custom)?;
                Ok(v)
            }
        }
        d.deserialize_seq(V).map(Command)
    }
}

/// Why a command cannot be a check's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
enum CommandError {
    #[error("an empty command: give [CMD, ARG, ...]")]
    Empty,
    #[error("the command's name is empty")]
    NoName,
    #[error("{0} arguments: at most {MAX_ARGS}")]
    TooMany(usize),
    /// An argument of this many bytes.
    #[error("an argument of {0} bytes: at most {MAX_ARG_LEN}")]
    TooLong(usize),
    #[error("an argument holds a NUL byte")]
    Nul,
}

fn check_command(v: &[String]) -> Result<(), CommandError> {
    match v.first() {
        None => return Err(CommandError::Empty),
        Some(c) if c.is_empty() => return Err(CommandError::NoName),
        Some(_) => {}
    }
    if v.len() > MAX_ARGS {
        return Err(CommandError::TooMany(v.len()));
    }
    if let Some(a) = v.iter().find(|a| a.len() > MAX_ARG_LEN) {
        return Err(CommandError::TooLong(a.len()));
    }
    if v.iter().any(|a| a.contains('\0')) {
        return Err(CommandError::Nul);
    }
    Ok(())
}

struct Fd(i32);

impl<'de> Deserialize<'de> for Fd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = de_int_in(d, FD_RANGE, |n| {
            format!(
                "{n} is not a descriptor lkinit hands over: give {} to {} (0, 1 and 2 are \
                 stdin, stdout and stderr)",
                FD_RANGE.start(),
                FD_RANGE.end()
            )
        })?;
        i32::try_from(n).map(Fd).map_err(D::Error::custom)
    }
}

struct Retries(u32);

impl<'de> Deserialize<'de> for Retries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = de_int_in(d, 1..=MAX_RETRIES, |n| {
            format!("{n} is not between 1 and {MAX_RETRIES}")
        })?;
        u32::try_from(n).map(Retries).map_err(D::Error::custom)
    }
}

/// Sets `slot` once; a key given twice is an error.
fn once<T, E: de::Error>(slot: &mut Option<T>, v: T, key: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(key));
    }
    *slot = Some(v);
    Ok(())
}

/// A map key that must be one of `.0`, refused while the parser stands on it (so the
/// error names the key's line and field, as the derived parsers do).
struct KeyIn(&'static [&'static str]);

impl<'de> de::DeserializeSeed<'de> for KeyIn {
    type Value = &'static str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<&'static str, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for KeyIn {
    type Value = &'static str;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, k: &str) -> Result<&'static str, E> {
        self.0
            .iter()
            .find(|f| **f == k)
            .copied()
            .ok_or_else(|| E::unknown_field(k, self.0))
    }
}

const READY_FIELDS: &[&str] = &["fd", "exec", "interval", "timeout"];

impl<'de> Deserialize<'de> for Ready {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ready;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`notify`, {fd: N} or {exec: [CMD, ...], interval, timeout}")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Ready, E> {
                match s {
                    "notify" => Ok(Ready::Notify),
                    _ => Err(E::custom(format!(
                        "`{}` is no way of telling readiness: give `notify`, {{fd: N}} or \
                         {{exec: [CMD, ...]}}",
                        s.escape_default()
                    ))),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ready, A::Error> {
                let (mut fd, mut exec) = (None, None);
                let (mut interval, mut timeout) = (None, None);
                while let Some(key) = map.next_key_seed(KeyIn(READY_FIELDS))? {
                    match key {
                        "fd" => once(&mut fd, map.next_value::<Fd>()?.0, "fd")?,
                        "exec" => once(&mut exec, map.next_value::<Command>()?.0, "exec")?,
                        "interval" => {
                            once(&mut interval, map.next_value::<Seconds>()?.0, "interval")?
                        }
                        "timeout" => once(&mut timeout, map.next_value::<Seconds>()?.0, "timeout")?,
                        other => return Err(A::Error::unknown_field(other, READY_FIELDS)),
                    }
                    // Said where the second of a pair that cannot go together is.
                    if fd.is_some() && exec.is_some() {
                        return Err(A::Error::custom(
                            "`fd` and `exec` are two ways of telling readiness: give one",
                        ));
                    }
                    if fd.is_some() && (interval.is_some() || timeout.is_some()) {
                        return Err(A::Error::custom(
                            "`interval` and `timeout` go with `exec`, not with `fd`",
                        ));
                    }
                }
                match (fd, exec) {
                    (Some(n), _) => Ok(Ready::Fd(n)),
                    (None, Some(cmd)) => Ok(Ready::Exec(Probe {
                        cmd,
                        interval: interval.unwrap_or(READY_INTERVAL),
                        timeout: timeout.unwrap_or(READY_PROBE_TIMEOUT),
                    })),
                    (None, None) => Err(A::Error::custom(
                        "neither `fd` nor `exec`: give `notify`, {fd: N} or {exec: [CMD, ...]}",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

const HEALTH_FIELDS: &[&str] = &["exec", "interval", "timeout", "retries", "watchdog"];

impl<'de> Deserialize<'de> for Health {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Health;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("{exec: [CMD, ...], interval, timeout, retries} and/or {watchdog}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Health, A::Error> {
                let (mut exec, mut interval, mut timeout) = (None, None, None);
                let (mut retries, mut watchdog) = (None, None);
                while let Some(key) = map.next_key_seed(KeyIn(HEALTH_FIELDS))? {
                    match key {
                        "exec" => once(&mut exec, map.next_value::<Command>()?.0, "exec")?,
                        "interval" => {
                            once(&mut interval, map.next_value::<Seconds>()?.0, "interval")?
                        }
                        "timeout" => once(&mut timeout, map.next_value::<Seconds>()?.0, "timeout")?,
                        "retries" => once(&mut retries, map.next_value::<Retries>()?.0, "retries")?,
                        "watchdog" => {
                            once(&mut watchdog, map.next_value::<Seconds>()?.0, "watchdog")?
                        }
                        other => return Err(A::Error::unknown_field(other, HEALTH_FIELDS)),
                    }
                }
                if exec.is_none() {
                    if interval.is_some() || timeout.is_some() || retries.is_some() {
                        return Err(A::Error::custom(
                            "`interval`, `timeout` and `retries` go with `exec`, which is missing",
                        ));
                    }
                    if watchdog.is_none() {
                        return Err(A::Error::custom(
                            "nothing to check: give `exec: [CMD, ...]`, `watchdog: SECONDS` or both",
                        ));
                    }
                }
                Ok(Health {
                    exec: exec.map(|cmd| Probe {
                        cmd,
                        interval: interval.unwrap_or(HEALTH_INTERVAL),
                        timeout: timeout.unwrap_or(HEALTH_TIMEOUT),
                    }),
                    retries: retries.unwrap_or(HEALTH_RETRIES),
                    watchdog,
                })
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime_config::ConfigError;
    use crate::supervisor::ready::Plan;
    use crate::supervisor::settings::{Settings, parse};
    use std::path::Path;

    fn yaml(s: &str) -> Result<Settings, ConfigError> {
        parse(s, true, Path::new("b/service.yml"), "b")
    }
    fn json(s: &str) -> Result<Settings, ConfigError> {
        parse(s, false, Path::new("b/service.json"), "b")
    }

    #[test]
    fn defaults() {
        let d = yaml("").unwrap();
        assert_eq!(d.ready, None);
        assert_eq!(d.health, None);
        assert_eq!(d.ready_timeout, Duration::from_secs(60));
        assert_eq!(d.after_timeout, Duration::from_secs(120));
        assert!(!Plan::of(&d).wants_notify());
    }

    #[test]
    fn every_field() {
        let y = yaml(
            "ready:\n  exec: [test, -e, /run/ok]\n  interval: 0.5\n  timeout: 2\n\
             readyTimeout: 30\nafterTimeout: 15\n\
             health:\n  exec: [wget, -q, localhost]\n  interval: 3\n  timeout: 1.5\n  \
             retries: 2\n  watchdog: 20\n",
        )
        .unwrap();
        let probe = Probe {
            cmd: vec!["test".into(), "-e".into(), "/run/ok".into()],
            interval: Duration::from_millis(500),
            timeout: Duration::from_secs(2),
        };
        assert_eq!(y.ready, Some(Ready::Exec(probe)));
        assert_eq!(y.ready_timeout, Duration::from_secs(30));
        assert_eq!(y.after_timeout, Duration::from_secs(15));
        let h = y.health.clone().unwrap();
        assert_eq!(h.exec.as_ref().unwrap().cmd, ["wget", "-q", "localhost"]);
        assert_eq!(h.exec.as_ref().unwrap().interval, Duration::from_secs(3));
        assert_eq!(
            h.exec.as_ref().unwrap().timeout,
            Duration::from_millis(1500)
        );
        assert_eq!(h.retries, 2);
        assert_eq!(h.watchdog, Some(Duration::from_secs(20)));
        assert!(
            Plan::of(&y).wants_notify(),
            "a watchdog is pinged on the notify socket"
        );
        let j = json(
            r#"{"ready": {"exec": ["test", "-e", "/run/ok"], "interval": 0.5, "timeout": 2},
                "readyTimeout": 30, "afterTimeout": 15,
                "health": {"exec": ["wget", "-q", "localhost"], "interval": 3,
                           "timeout": 1.5, "retries": 2, "watchdog": 20}}"#,
        )
        .unwrap();
        assert_eq!(j, y);

        assert_eq!(yaml("ready: notify").unwrap().ready, Some(Ready::Notify));
        assert!(Plan::of(&yaml("ready: notify").unwrap()).wants_notify());
        assert_eq!(yaml("ready: {fd: 3}").unwrap().ready, Some(Ready::Fd(3)));
        assert_eq!(
            json(r#"{"ready": {"fd": 64}}"#).unwrap().ready,
            Some(Ready::Fd(64))
        );
        assert_eq!(yaml("ready: ~").unwrap().ready, None);
        // Defaults of what is left out.
        let r = yaml("ready: {exec: [true]}").unwrap().ready;
        assert_eq!(
            r,
            Some(Ready::Exec(Probe {
                cmd: vec!["true".into()],
                interval: READY_INTERVAL,
                timeout: READY_PROBE_TIMEOUT
            }))
        );
        let h = yaml("health: {exec: [true]}").unwrap().health.unwrap();
        assert_eq!(h.retries, HEALTH_RETRIES);
        assert_eq!(h.watchdog, None);
        assert_eq!(h.exec.unwrap().interval, HEALTH_INTERVAL);
        let h = yaml("health: {watchdog: 5}").unwrap().health.unwrap();
        assert_eq!((h.exec, h.watchdog), (None, Some(Duration::from_secs(5))));
    }

    /// Every impossible value names the file, the line and the field.
    #[test]
    fn bad_values_are_located() {
        let cases: &[(&str, &str, usize, &str)] = &[
            (
                "ready: sometimes\n",
                "ready",
                1,
                "`sometimes` is no way of telling",
            ),
            ("ready: 3\n", "ready", 1, "expected `notify`"),
            ("\nready:\n  fd: 3\n  exec: [x]\n", "ready", 3, "give one"),
            (
                "ready:\n  fd: 3\n  interval: 1\n",
                "ready",
                2,
                "go with `exec`",
            ),
            (
                "ready:\n  interval: 2\n",
                "ready",
                2,
                "neither `fd` nor `exec`",
            ),
            ("ready:\n  fd: 2\n", "ready.fd", 2, "2 is not a descriptor"),
            ("ready:\n  fd: 65\n", "ready.fd", 2, "give 3 to 64"),
            ("ready:\n  fd: x\n", "ready.fd", 2, "an integer"),
            (
                "ready:\n  exec: [x]\n  interval: 0\n",
                "ready.interval",
                3,
                "0.1 and 86400",
            ),
            (
                "ready:\n  exec: [x]\n  timeout: -1\n",
                "ready.timeout",
                3,
                "between",
            ),
            ("ready:\n  exec: []\n", "ready.exec", 2, "an empty command"),
            ("ready:\n  exec: [\"\"]\n", "ready.exec", 2, "name is empty"),
            (
                "ready:\n  exec: x\n",
                "ready.exec",
                2,
                "a command as a list",
            ),
            (
                "ready:\n  exec: [x]\n  retries: 3\n",
                "ready.retries",
                3,
                "unknown field",
            ),
            (
                "ready:\n  exec: [x]\n  exec: [y]\n",
                "ready",
                2,
                "duplicate",
            ),
            ("readyTimeout: 0\n", "readyTimeout", 1, "0.1 and 86400"),
            ("afterTimeout: 90000\n", "afterTimeout", 1, "0.1 and 86400"),
            (
                "health:\n  interval: 2\n",
                "health",
                2,
                "`exec`, which is missing",
            ),
            ("health: {}\n", "health", 1, "nothing to check"),
            ("health: notify\n", "health", 1, "expected {exec"),
            (
                "health:\n  exec: [x]\n  retries: 0\n",
                "health.retries",
                3,
                "between 1",
            ),
            (
                "health:\n  exec: [x]\n  watchdog: 0\n",
                "health.watchdog",
                3,
                "between",
            ),
            (
                "health:\n  exec: [x]\n  every: 3\n",
                "health.every",
                3,
                "unknown field",
            ),
        ];
        for (text, field, line, msg) in cases {
            let e = yaml(text).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(*field), "{text:?}: {e}");
            assert_eq!(e.line, Some(*line), "{text:?}: {e}");
            assert!(e.message.contains(msg), "{text:?}: {e}");
            assert!(e.to_string().starts_with("b/service.yml: line "), "{e}");
        }
        let e = json("{\"ready\": {\n\"fd\": 1}}").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("ready.fd"), "{e}");
        assert_eq!(e.line, Some(2), "{e}");
        let e = json("{\"health\": {\"exec\": [\"a\\u0000b\"]}}").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("health.exec"), "{e}");
        assert!(e.message.contains("NUL"), "{e}");
    }
}
