//! The control protocol on the supervisor's socket: one request and one response per
//! connection, each a single line of JSON that carries the protocol version `v`.
//!
//! ```text
//! -> {"v":1,"op":"status","name":"web"}
//! <- {"v":1,"ok":true,"service":{"name":"web","state":"running","pid":4711,...}}
//! <- {"v":1,"ok":false,"error":"no service `web` in /containers/services"}
//! ```
//!
//! `op` is `list`, `status`, `start`, `stop`, `restart`, `logs` or `runtime` (the OCI
//! runtime and its root, for `exec`); all but `list` and `runtime` take
//! `name`. A `logs` response comes with two open file descriptors (SCM_RIGHTS): the
//! service's stdout log, then its stderr log, read-only; and, when its `logs` names
//! memlogd's two streams, a third: a connection to memlogd's query socket that the client
//! asks itself; then the rotated files of stdout and of stderr, oldest first, as many as
//! `logs.rotated` says. A request in another version is answered with an error in
//! version 1, so an old client learns why.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::PathBuf;

pub const VERSION: u32 = 1;

/// Longest request line the supervisor reads.
pub const MAX_REQUEST: usize = 4096;

/// The most descriptors a response carries: two logs with their rotated files, memlogd.
pub const MAX_FDS: usize = 2 * (1 + crate::logs::rotate::MAX_KEEP as usize) + 1;

/// Why a request cannot be taken: its Display is the error the client is answered.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("bad request: {0}")]
    Json(serde_json::Error),
    #[error("unsupported protocol version {0} (this supervisor speaks {VERSION})")]
    Version(u64),
    #[error("bad request: no protocol version `v`")]
    NoVersion,
    #[error("bad request: `{0}` needs a `name`")]
    NoName(String),
    #[error("bad request: unknown op `{0}`")]
    UnknownOp(String),
    /// Longer than [`MAX_REQUEST`].
    #[error("bad request: too long")]
    TooLong,
    /// The connection failed before the request was read.
    #[error("bad request: {0}")]
    Read(io::Error),
    /// Nothing (or no whole line) came within the server's time.
    #[error("bad request: nothing arrived in time")]
    TimedOut,
}

/// Why the client cannot use the supervisor's answer.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error("unreadable answer from the supervisor: {0}")]
    Json(serde_json::Error),
    #[error("the supervisor speaks protocol version {0} (this client speaks {VERSION})")]
    Version(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    List,
    Status(String),
    Start(String),
    Stop(String),
    Restart(String),
    Logs(String),
    /// The OCI runtime and runtime root the supervisor runs its services with, so that
    /// `exec`, `mount` and `umount` reach them without being told.
    Runtime,
}

/// The supervisor's OCI runtime, as an answer to [`Op::Runtime`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeInfo {
    pub bin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
}

/// The request as it is written on the wire.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

impl Op {
    pub fn encode(&self) -> String {
        let (op, name) = match self {
            Op::List => ("list", None),
            Op::Status(n) => ("status", Some(n)),
            Op::Start(n) => ("start", Some(n)),
            Op::Stop(n) => ("stop", Some(n)),
            Op::Restart(n) => ("restart", Some(n)),
            Op::Logs(n) => ("logs", Some(n)),
            Op::Runtime => ("runtime", None),
        };
        let w = Wire {
            v: VERSION,
            op: op.into(),
            name: name.cloned(),
        };
        let mut s = serde_json::to_string(&w).expect("a request always serializes");
        s.push('\n');
        s
    }

    /// Reads a request line; the error says what to answer.
    pub fn decode(line: &[u8]) -> Result<Op, RequestError> {
        let v: serde_json::Value = serde_json::from_slice(line).map_err(RequestError::Json)?;
        match v.get("v").and_then(|v| v.as_u64()) {
            Some(n) if n == u64::from(VERSION) => {}
            Some(n) => return Err(RequestError::Version(n)),
            None => return Err(RequestError::NoVersion),
        }
        let w: Wire = serde_json::from_value(v).map_err(RequestError::Json)?;
        let name = || {
            w.name
                .clone()
                .ok_or_else(|| RequestError::NoName(w.op.clone()))
        };
        Ok(match w.op.as_str() {
            "list" => Op::List,
            "status" => Op::Status(name()?),
            "start" => Op::Start(name()?),
            "stop" => Op::Stop(name()?),
            "restart" => Op::Restart(name()?),
            "logs" => Op::Logs(name()?),
            "runtime" => Op::Runtime,
            other => return Err(RequestError::UnknownOp(other.to_string())),
        })
    }
}

/// A service's state as the CLI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being prepared and created.
    Starting,
    Running,
    /// SIGTERM sent, waiting for the grace period or the end.
    Stopping,
    /// Stopped on request (or not started yet).
    Stopped,
    /// Ended and left down, as its restart policy says.
    Exited,
    /// Ended; starts again when its backoff delay has passed.
    Restarting,
    /// A crash loop, or a bundle that cannot be used: left down until started again.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Exited => "exited",
            State::Restarting => "restarting",
            State::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInfo {
    pub name: String,
    pub state: State,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Automatic restarts since it was last started on purpose.
    pub restarts: u32,
    /// The last exit as a shell would report it (128 + signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last exit in words (`exit code 137 (killed by SIGKILL)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// When it entered this state, in seconds since the Unix epoch.
    pub since: f64,
    /// Why it is failed, or when it restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Taken over from an earlier supervisor (its exit status will not be known).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopted: bool,
    /// The last `STATUS=` text it sent on its notify socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_text: Option<String>,
    /// Its last readiness or health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckInfo>,
}

/// A readiness or health check as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckInfo {
    /// `readiness` or `health`.
    pub kind: String,
    pub ok: bool,
    /// When it ended, in seconds since the Unix epoch.
    pub at: f64,
    pub took_ms: u64,
    /// `exit code 0`, `timed out after 5s and was killed`, ...
    pub result: String,
    /// The start of what it printed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Health checks failed in a row, this one included.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub failures: u32,
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogFiles {
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// memlogd's names of the stdout and stderr streams, when a connection to memlogd
    /// came along.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memlogd: Option<[String; 2]>,
    /// How many rotated files of stdout and of stderr came along.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rotated: [usize; 2],
}

fn is_zero(r: &[usize; 2]) -> bool {
    *r == [0, 0]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<ServiceInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceInfo>,
    /// What a start or stop did, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<LogFiles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeInfo>,
}

impl Response {
    pub fn ok() -> Response {
        Response {
            v: VERSION,
            ok: true,
            error: None,
            services: None,
            service: None,
            message: None,
            logs: None,
            runtime: None,
        }
    }

    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            ..Response::ok()
        }
    }

    pub fn encode(&self) -> String {
        let mut s = serde_json::to_string(self).expect("a response always serializes");
        s.push('\n');
        s
    }

    pub fn decode(line: &[u8]) -> Result<Response, ResponseError> {
        let r: Response = serde_json::from_slice(line).map_err(ResponseError::Json)?;
        if r.v != VERSION {
            return Err(ResponseError::Version(r.v));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for op in [
            Op::List,
            Op::Status("a".into()),
            Op::Start("b".into()),
            Op::Stop("c".into()),
            Op::Restart("d".into()),
            Op::Logs("e".into()),
        ] {
            let line = op.encode();
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(Op::decode(line.trim_end().as_bytes()).unwrap(), op);
        }
        assert_eq!(
            Op::Status("web".into()).encode(),
            "{\"v\":1,\"op\":\"status\",\"name\":\"web\"}\n"
        );
    }

    /// The errors go on the wire as these very words.
    #[test]
    fn errors_in_words() {
        let cases: [(RequestError, &str); 5] = [
            (
                RequestError::Version(2),
                "unsupported protocol version 2 (this supervisor speaks 1)",
            ),
            (
                RequestError::NoVersion,
                "bad request: no protocol version `v`",
            ),
            (
                RequestError::NoName("stop".into()),
                "bad request: `stop` needs a `name`",
            ),
            (RequestError::TooLong, "bad request: too long"),
            (
                RequestError::TimedOut,
                "bad request: nothing arrived in time",
            ),
        ];
        for (e, words) in cases {
            assert_eq!(e.to_string(), words);
        }
        let e = RequestError::Read(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(e.to_string(), "bad request: connection reset");
        assert_eq!(
            Op::decode(b"{").unwrap_err().to_string(),
            "bad request: EOF while parsing an object at line 1 column 1"
        );
        assert_eq!(
            ResponseError::Version(7).to_string(),
            "the supervisor speaks protocol version 7 (this client speaks 1)"
        );
        assert_eq!(
            Response::decode(b"[").unwrap_err().to_string(),
            "unreadable answer from the supervisor: EOF while parsing a list at line 1 column 1"
        );
    }

    #[test]
    fn bad_requests_say_why() {
        let e = |s: &str| Op::decode(s.as_bytes()).unwrap_err().to_string();
        assert!(e(r#"{"v":2,"op":"list"}"#).contains("unsupported protocol version 2"));
        assert!(e(r#"{"op":"list"}"#).contains("no protocol version"));
        assert!(e(r#"{"v":1,"op":"frobnicate"}"#).contains("unknown op `frobnicate`"));
        assert!(e(r#"{"v":1,"op":"stop"}"#).contains("`stop` needs a `name`"));
        assert!(e(r#"{"v":1,"op":"list","extra":1}"#).contains("unknown field `extra`"));
        assert!(e("not json").contains("bad request"));
    }

    #[test]
    fn responses_round_trip() {
        let mut r = Response::ok();
        r.service = Some(ServiceInfo {
            name: "web".into(),
            state: State::Running,
            pid: Some(42),
            restarts: 1,
            exit_code: Some(137),
            exit: Some("exit code 137 (killed by SIGKILL)".into()),
            since: 1.5,
            reason: None,
            adopted: false,
            status_text: Some("serving".into()),
            check: Some(CheckInfo {
                kind: "health".into(),
                ok: false,
                at: 2.5,
                took_ms: 12,
                result: "exit code 1".into(),
                output: "no\nanswer".into(),
                failures: 2,
            }),
        });
        let line = r.encode();
        assert!(line.contains("\"state\":\"running\""), "{line}");
        assert!(line.contains("\"exitCode\":137"), "{line}");
        assert!(!line.contains("adopted"), "{line}");
        assert!(line.contains("\"statusText\":\"serving\""), "{line}");
        assert!(line.contains("\"tookMs\":12"), "{line}");
        assert_eq!(Response::decode(line.as_bytes()).unwrap(), r);
        let e = Response::error("nope").encode();
        assert_eq!(e, "{\"v\":1,\"ok\":false,\"error\":\"nope\"}\n");
        assert!(
            Response::decode(br#"{"v":7,"ok":true}"#)
                .unwrap_err()
                .to_string()
                .contains("version 7")
        );
    }
}
