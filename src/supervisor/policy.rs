//! Restart decisions and start order: pure logic, no processes, no clocks of its own.
//!
//! One sliding window drives both backoff and the crash-loop limit: the delay before a
//! restart doubles with every exit inside the window, and one exit more than the limit
//! allows marks the service failed. A service that has run quietly for a whole window is
//! back at the first delay.

use super::settings::{Restart, Settings};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub restart: Restart,
    pub delay: Duration,
    pub max_delay: Duration,
    /// Restarts allowed within `window`.
    pub limit: u32,
    pub window: Duration,
}

impl From<&Settings> for Policy {
    fn from(s: &Settings) -> Self {
        Policy {
            restart: s.restart,
            delay: s.restart_delay,
            max_delay: s.max_restart_delay,
            limit: s.crash_loop.restarts,
            window: s.crash_loop.within,
        }
    }
}

/// What to do after an exit nobody asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Start again after this delay.
    Restart(Duration),
    /// Leave it down, as its restart policy says (`exited`).
    Stay,
    /// A crash loop: `exits` exits within `window`; leave it down as `failed`.
    Fail { exits: usize, window: Duration },
}

/// The recent exits of one service.
#[derive(Debug, Default, Clone)]
pub struct History {
    exits: VecDeque<Instant>,
}

impl History {
    /// Records an exit at `now` (`success`: exit code 0) and decides what follows.
    pub fn on_exit(&mut self, p: &Policy, now: Instant, success: bool) -> Decision {
        match p.restart {
            Restart::Never => return Decision::Stay,
            Restart::OnFailure if success => return Decision::Stay,
            _ => {}
        }
        self.exits
            .retain(|t| now.saturating_duration_since(*t) < p.window);
        self.exits.push_back(now);
        let n = self.exits.len();
        if n > p.limit as usize {
            return Decision::Fail {
                exits: n,
                window: p.window,
            };
        }
        // 2^(n-1) times the first delay, without overflow on silly settings.
        let factor = 1u32 << u32::try_from(n - 1).unwrap_or(u32::MAX).min(31);
        let delay = p
            .delay
            .checked_mul(factor)
            .unwrap_or(p.max_delay)
            .min(p.max_delay);
        Decision::Restart(delay)
    }

    /// Forgets every exit (the service was started or stopped on purpose).
    pub fn reset(&mut self) {
        self.exits.clear();
    }
}

/// Why a service cannot take part in the start order.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderError {
    /// `after[index]` names a service that does not exist.
    Unknown { index: usize, name: String },
    /// The service is part of a cycle, listed from it back to it.
    Cycle(Vec<String>),
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderError::Unknown { index, name } => {
                write!(f, "after[{index}]: there is no service `{name}`")
            }
            OrderError::Cycle(path) => write!(f, "after: a cycle: {}", path.join(" -> ")),
        }
    }
}

/// Checks the `after` lists of every service: each named service must exist, and no service
/// may wait for itself through others. Services not in the result are fine.
pub fn check_order(after: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, OrderError> {
    let mut bad = BTreeMap::new();
    for (name, deps) in after {
        for (index, d) in deps.iter().enumerate() {
            if !after.contains_key(d) {
                bad.insert(
                    name.clone(),
                    OrderError::Unknown {
                        index,
                        name: d.clone(),
                    },
                );
                break;
            }
        }
    }
    // A depth-first walk from each service; a path that comes back to where it started is
    // a cycle of every service on it.
    for start in after.keys() {
        if bad.contains_key(start) {
            continue;
        }
        let mut stack: Vec<(String, usize)> = vec![(start.clone(), 0)];
        let mut seen = std::collections::BTreeSet::new();
        while let Some((node, i)) = stack.pop() {
            let deps = after.get(&node).map(Vec::as_slice).unwrap_or(&[]);
            if i >= deps.len() {
                continue;
            }
            stack.push((node.clone(), i + 1));
            let next = &deps[i];
            if next == start {
                let mut path: Vec<String> = stack.iter().map(|(n, _)| n.clone()).collect();
                path.push(start.clone());
                bad.insert(start.clone(), OrderError::Cycle(path));
                break;
            }
            if after.contains_key(next) && seen.insert(next.clone()) {
                stack.push((next.clone(), 0));
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(restart: Restart) -> Policy {
        Policy {
            restart,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            limit: 4,
            window: Duration::from_secs(10),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = policy(Restart::Always);
        let mut h = History::default();
        let t = Instant::now();
        let delays: Vec<Decision> = (0..4)
            .map(|i| h.on_exit(&p, t + Duration::from_secs(i), false))
            .collect();
        let ms = |m| Decision::Restart(Duration::from_millis(m));
        assert_eq!(delays, vec![ms(100), ms(200), ms(400), ms(500)]);
    }

    #[test]
    fn one_exit_too_many_in_the_window_is_a_crash_loop() {
        let p = policy(Restart::Always);
        let mut h = History::default();
        let t = Instant::now();
        for i in 0..4 {
            assert!(matches!(
                h.on_exit(&p, t + Duration::from_secs(i), true),
                Decision::Restart(_)
            ));
        }
        assert_eq!(
            h.on_exit(&p, t + Duration::from_secs(4), false),
            Decision::Fail {
                exits: 5,
                window: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn exits_outside_the_window_are_forgotten() {
        let p = policy(Restart::Always);
        let mut h = History::default();
        let t = Instant::now();
        for i in 0..4 {
            h.on_exit(&p, t + Duration::from_secs(i * 3), false);
        }
        // At 13 s, the exits at 0 s and 3 s have left the window: 3 in it, not a loop,
        // and the delay reflects only those.
        assert_eq!(
            h.on_exit(&p, t + Duration::from_secs(13), false),
            Decision::Restart(Duration::from_millis(400))
        );
        // A long quiet run: back to the first delay.
        assert_eq!(
            h.on_exit(&p, t + Duration::from_secs(100), false),
            Decision::Restart(Duration::from_millis(100))
        );
    }

    #[test]
    fn policies() {
        let t = Instant::now();
        let mut h = History::default();
        assert_eq!(h.on_exit(&policy(Restart::Never), t, false), Decision::Stay);
        assert_eq!(
            h.on_exit(&policy(Restart::OnFailure), t, true),
            Decision::Stay
        );
        assert!(matches!(
            h.on_exit(&policy(Restart::OnFailure), t, false),
            Decision::Restart(_)
        ));
        assert!(matches!(
            h.on_exit(&policy(Restart::Always), t, true),
            Decision::Restart(_)
        ));
        h.reset();
        let strict = Policy {
            limit: 0,
            ..policy(Restart::Always)
        };
        assert!(matches!(
            h.on_exit(&strict, t, false),
            Decision::Fail { .. }
        ));
    }

    #[test]
    fn huge_delays_do_not_overflow() {
        let p = Policy {
            delay: Duration::from_secs(3600),
            max_delay: Duration::from_secs(86400),
            limit: 1000,
            ..policy(Restart::Always)
        };
        let mut h = History::default();
        let t = Instant::now();
        let mut last = Decision::Stay;
        for _ in 0..100 {
            last = h.on_exit(&p, t, false);
        }
        assert_eq!(last, Decision::Restart(Duration::from_secs(86400)));
    }

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn order_unknown_and_cycles() {
        let g = graph(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["b", "a"]),
            ("x", &["nope"]),
            ("p", &["q"]),
            ("q", &["r"]),
            ("r", &["p"]),
            ("s", &["p"]),
        ]);
        let bad = check_order(&g);
        assert_eq!(
            bad.get("x"),
            Some(&OrderError::Unknown {
                index: 0,
                name: "nope".into()
            })
        );
        for n in ["p", "q", "r"] {
            assert!(matches!(bad.get(n), Some(OrderError::Cycle(_))), "{n}");
        }
        assert_eq!(
            bad.get("p").unwrap().to_string(),
            "after: a cycle: p -> q -> r -> p"
        );
        // Waiting for a service in a cycle is not a cycle of its own: that service simply
        // never starts, and `s` starts once it has settled as failed.
        for n in ["a", "b", "c", "s"] {
            assert!(!bad.contains_key(n), "{n}: {:?}", bad.get(n));
        }
    }
}
