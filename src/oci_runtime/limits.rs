//! How long each runtime command may take: its own bound, or what a caller's deadline leaves
//! it (see the bounds table in docs/architecture.md).

use std::time::{Duration, Instant};

/// When a bundle's time is up, and how long it had (for the message).
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Instant,
    pub limit: Duration,
}

impl Deadline {
    pub fn after(limit: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + limit,
            limit,
        }
    }

    pub fn left(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// How long a runtime command may take when the caller sets no deadline. `create` and
/// `start` run the hooks before the container's process (createRuntime, createContainer,
/// prestart, startContainer, and poststart: runc 1.1 runs those in `create`), `delete` the
/// poststop hooks; `kill` and `state` run none, so their bound only catches a wedged
/// runtime. `run` has none: it lasts as long as its container.
pub fn own_limit(op: &str) -> Option<Duration> {
    match op {
        "create" | "start" => Some(Duration::from_secs(60)),
        "delete" => Some(Duration::from_secs(10)),
        "kill" | "state" => Some(Duration::from_secs(5)),
        _ => None,
    }
}

/// The commands that clean up after a container (or look at it). Under a caller's
/// deadline they still get [`CLEANUP_FLOOR`]: a bundle whose time is up must still be
/// killed and deleted, which a deadline already past would not allow.
pub(super) fn is_cleanup(op: &str) -> bool {
    matches!(op, "kill" | "delete" | "state")
}

/// What the cleanup commands get at least, once a caller's deadline has passed.
pub const CLEANUP_FLOOR: Duration = Duration::from_secs(3);

/// The bound of command `op`: the instant it is killed at, and the limit it is reported
/// with. A caller's deadline replaces a setup command's own limit (`--timeout` is the
/// operator's word on how long a bundle may take); a cleanup command keeps its own limit
/// and gets what is left of the deadline, but never less than [`CLEANUP_FLOOR`].
pub(super) fn bound_of(
    op: &str,
    deadline: Option<Deadline>,
    now: Instant,
) -> Option<(Instant, Duration)> {
    let own = own_limit(op);
    match deadline {
        Some(d) if is_cleanup(op) => {
            let left = d.at.saturating_duration_since(now).max(CLEANUP_FLOOR);
            let limit = own.map_or(left, |o| o.min(left));
            Some((now + limit, limit))
        }
        Some(d) => Some((d.at, d.limit)),
        None => own.map(|o| (now + o, o)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a deadline each command has its own bound (`run` none); under one, the
    /// setup commands end with it, and the cleanup commands keep their own bound, cut to
    /// what is left of the deadline but never below the floor.
    #[test]
    fn bounds() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let limit = |op, d| bound_of(op, d, now).map(|(at, l)| (at - now, l));
        assert_eq!(limit("create", None), Some((s(60), s(60))));
        assert_eq!(limit("start", None), Some((s(60), s(60))));
        assert_eq!(limit("delete", None), Some((s(10), s(10))));
        assert_eq!(limit("kill", None), Some((s(5), s(5))));
        assert_eq!(limit("state", None), Some((s(5), s(5))));
        assert_eq!(limit("run", None), None);
        let d = Deadline {
            at: now + s(120),
            limit: s(120),
        };
        assert_eq!(limit("create", Some(d)), Some((s(120), s(120))));
        assert_eq!(limit("run", Some(d)), Some((s(120), s(120))));
        assert_eq!(limit("delete", Some(d)), Some((s(10), s(10))));
        let d = Deadline {
            at: now + s(4),
            limit: s(5),
        };
        assert_eq!(limit("start", Some(d)), Some((s(4), s(5))));
        assert_eq!(limit("delete", Some(d)), Some((s(4), s(4))));
        assert_eq!(limit("kill", Some(d)), Some((s(4), s(4))));
        let past = Deadline {
            at: now - s(1),
            limit: s(5),
        };
        assert_eq!(
            limit("delete", Some(past)),
            Some((CLEANUP_FLOOR, CLEANUP_FLOOR))
        );
        assert_eq!(limit("create", Some(past)).map(|b| b.1), Some(s(5)));
    }
}
