//! Log lines about a fault that repeats (descriptors exhausted, a full state directory) at
//! most once per [`WINDOW`] for each fault: one is enough to say what is wrong, and a
//! supervisor that keeps failing the same way must not fill its log. The lines held back
//! are counted and said with the next one let through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line per fault in this time.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Faults remembered at most (they are few: a place in the code and an error kind).
const FAULTS: usize = 256;

struct Seen {
    /// When the last line was let through.
    logged: Instant,
    /// Lines held back since.
    held: u64,
}

static SEEN: Mutex<Option<HashMap<String, Seen>>> = Mutex::new(None);

/// Whether a line about `fault` goes out at `now`, and how many were held back before it.
fn pass(seen: &mut HashMap<String, Seen>, fault: &str, now: Instant) -> Option<u64> {
    match seen.get_mut(fault) {
        Some(s) if now.saturating_duration_since(s.logged) < WINDOW => {
            s.held += 1;
            None
        }
        Some(s) => {
            let held = s.held;
            *s = Seen {
                logged: now,
                held: 0,
            };
            Some(held)
        }
        None => {
            if seen.len() >= FAULTS {
                seen.retain(|_, s| now.saturating_duration_since(s.logged) < WINDOW);
            }
            seen.insert(
                fault.to_string(),
                Seen {
                    logged: now,
                    held: 0,
                },
            );
            Some(0)
        }
    }
}

/// Logs `msg` at `level` unless a line about the same `fault` (a short key: where, and
/// which error) went out less than [`WINDOW`] ago.
pub fn log(level: log::Level, fault: &str, msg: impl std::fmt::Display) {
    let held = {
        let mut g = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        pass(g.get_or_insert_with(HashMap::new), fault, Instant::now())
    };
    match held {
        None => {}
        Some(0) => log::log!(level, "{msg}"),
        Some(n) => log::log!(
            level,
            "{msg} ({n} more like it in the last {}s were not logged)",
            WINDOW.as_secs()
        ),
    }
}

/// The key of an I/O fault at `place`: the error's kind, not its details.
pub fn io_fault(place: &str, e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("{place}: errno {n}"),
        None => format!("{place}: {:?}", e.kind()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_fault_and_window() {
        let mut seen = HashMap::new();
        let t = Instant::now();
        assert_eq!(pass(&mut seen, "a", t), Some(0));
        assert_eq!(pass(&mut seen, "b", t), Some(0));
        for i in 1..=5 {
            assert_eq!(pass(&mut seen, "a", t + Duration::from_secs(i)), None);
        }
        assert_eq!(pass(&mut seen, "a", t + WINDOW), Some(5));
        assert_eq!(pass(&mut seen, "a", t + WINDOW), None);
        assert_eq!(pass(&mut seen, "b", t + WINDOW * 2), Some(0));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut seen = HashMap::new();
        let t = Instant::now();
        for i in 0..10 * FAULTS {
            pass(
                &mut seen,
                &i.to_string(),
                t + WINDOW * u32::try_from(i).unwrap(),
            );
        }
        assert!(seen.len() <= FAULTS);
    }
}
