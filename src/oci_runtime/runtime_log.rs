//! The runtime's JSON logs (`--log FILE --log-format json`), one per container and command:
//! the error a failed command logged, and its messages copied to the console when asked.

use super::OciRuntime;
use std::path::{Path, PathBuf};

/// Every message of a runtime's JSON log as (level, message); a line that is not JSON is
/// its own message.
pub(super) fn runtime_log_messages(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) => {
                    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
                    (field("level").to_string(), field("msg").to_string())
                }
                Err(_) => (String::new(), line.to_string()),
            },
        )
        .collect()
}

/// The last error the runtime logged, if any.
pub(super) fn runtime_log_error(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut last = None;
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            let level = v.get("level").and_then(|l| l.as_str()).unwrap_or("");
            if matches!(level, "error" | "fatal" | "panic") {
                last = v.get("msg").and_then(|m| m.as_str()).map(str::to_string);
            }
        }
    }
    last
}

impl OciRuntime {
    /// One log per container and operation: a `kill` while `run` still runs must not
    /// truncate the log `run` is writing.
    pub(super) fn log_path(&self, name: &str, op: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.{op}.json"))
    }

    /// Removes the runtime's log files of a container that is gone (the other calls remove
    /// their own as they end).
    pub fn forget_logs(&self, name: &str) {
        for op in ["create", "run"] {
            self.release_log(name, op, &self.log_path(name, op));
        }
    }

    /// A runtime call's log once it is done with: its messages onto stderr when asked, then
    /// removed, unless debugging keeps it for reading.
    pub(super) fn release_log(&self, name: &str, op: &str, log: &Path) {
        if self.log_to_console
            && let Ok(text) = std::fs::read_to_string(log)
        {
            for (level, msg) in runtime_log_messages(&text) {
                let sep = if level.is_empty() { "" } else { ": " };
                log::info!("{name}: {} {op}: {level}{sep}{msg}", self.bin);
            }
        }
        if !self.debug {
            let _ = std::fs::remove_file(log);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_error_is_the_last_error_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("l.json");
        std::fs::write(
            &p,
            "{\"level\":\"warning\",\"msg\":\"w\"}\nnot json\n{\"level\":\"error\",\"msg\":\"first\"}\n{\"msg\":\"exec: \\\"/x\\\": not found\",\"level\":\"error\"}\n",
        )
        .unwrap();
        assert_eq!(
            runtime_log_error(&p).as_deref(),
            Some("exec: \"/x\": not found")
        );
        std::fs::write(&p, "{\"level\":\"info\",\"msg\":\"fine\"}\n").unwrap();
        assert_eq!(runtime_log_error(&p), None);
    }

    #[test]
    fn log_messages_for_the_console() {
        let text = "{\"level\":\"debug\",\"msg\":\"nsexec started\"}\n\nplain text\n";
        assert_eq!(
            runtime_log_messages(text),
            [
                ("debug".to_string(), "nsexec started".to_string()),
                (String::new(), "plain text".to_string())
            ]
        );
    }
}
