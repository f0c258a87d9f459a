//! What readiness waits for, by when, which check is due, when a watchdog expires and
//! when a service has failed: logic with no clock or process of its own, so that every
//! rule is tested with made-up instants.

use super::super::checks::{Health, Probe, Ready};
use super::super::service::secs;
use super::super::settings::Settings;
use std::time::{Duration, Instant};

/// What is watched, from the service's settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub ready: Option<Ready>,
    pub ready_timeout: Duration,
    pub health: Option<Health>,
}

impl Plan {
    pub fn of(s: &Settings) -> Plan {
        Plan {
            ready: s.ready.clone(),
            ready_timeout: s.ready_timeout,
            health: s.health.clone(),
        }
    }

    /// Whether the container gets a `NOTIFY_SOCKET`.
    pub fn wants_notify(&self) -> bool {
        self.ready == Some(Ready::Notify) || self.watchdog().is_some()
    }

    pub fn watchdog(&self) -> Option<Duration> {
        self.health.as_ref().and_then(|h| h.watchdog)
    }

    /// Whether anything is watched at all (no task is needed otherwise).
    pub fn watches(&self) -> bool {
        self.ready.is_some() || self.health.is_some()
    }

    /// What `status` says while the service is not ready.
    pub fn waiting(&self) -> String {
        match &self.ready {
            Some(r) => format!(
                "not ready yet: waiting for {} (at most {})",
                r.describe(),
                secs(self.ready_timeout)
            ),
            None => "not ready yet".into(),
        }
    }
}

/// Which check a probe is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ready,
    Health,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ready => "readiness",
            Kind::Health => "health",
        }
    }
}

/// What the tracker concludes.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Ready,
    /// The service has failed (not ready in time, unhealthy, its watchdog expired): why.
    Fail(String),
}

/// The readiness and health of one running container.
#[derive(Debug)]
pub struct Tracker {
    plan: Plan,
    ready: bool,
    /// While not ready: when the wait ends.
    ready_by: Instant,
    /// It said it is stopping: no more checks, no watchdog.
    stopping: bool,
    /// Health checks failed in a row.
    failures: u32,
    /// What the last failed check said.
    last: Option<String>,
    /// When the next check starts; None while one runs, or when none is due.
    next_probe: Option<Instant>,
    watchdog_by: Option<Instant>,
}

impl Tracker {
    /// A container started at `now`; `ready` when it is known to be ready already (it has
    /// nothing to wait for, or an earlier supervisor saw it ready).
    pub fn new(plan: Plan, now: Instant, ready: bool) -> Tracker {
        let ready_by = now + plan.ready_timeout;
        let first_probe = matches!(plan.ready, Some(Ready::Exec(_))).then_some(now);
        let mut t = Tracker {
            plan,
            ready: false,
            ready_by,
            stopping: false,
            failures: 0,
            last: None,
            next_probe: first_probe,
            watchdog_by: None,
        };
        if ready || t.plan.ready.is_none() {
            t.become_ready(now);
        }
        t
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    fn become_ready(&mut self, now: Instant) {
        self.ready = true;
        let health = self.plan.health.as_ref();
        self.next_probe = health
            .and_then(|h| h.exec.as_ref())
            .map(|p| now + p.interval);
        self.watchdog_by = health.and_then(|h| h.watchdog).map(|w| now + w);
    }

    /// `READY=1`, or a line on the readiness descriptor: counts when that is what
    /// readiness waits for.
    pub fn on_signal(&mut self, now: Instant) -> Option<Verdict> {
        if self.ready || !matches!(self.plan.ready, Some(Ready::Notify | Ready::Fd(_))) {
            return None;
        }
        self.become_ready(now);
        Some(Verdict::Ready)
    }

    /// `EXTEND_TIMEOUT_USEC`: the wait for readiness lasts at least `by` from now.
    pub fn on_extend(&mut self, now: Instant, by: Duration) {
        if !self.ready {
            let by = by.min(Duration::from_secs_f64(super::super::checks::MAX_SECONDS));
            self.ready_by = self.ready_by.max(now + by);
        }
    }

    /// `STOPPING=1`: it is on its way out; its end is an exit like any other.
    pub fn on_stopping(&mut self) {
        self.stopping = true;
        self.next_probe = None;
        self.watchdog_by = None;
    }

    /// `WATCHDOG=1`.
    pub fn on_watchdog(&mut self, now: Instant) {
        if let (Some(w), Some(_)) = (self.plan.watchdog(), self.watchdog_by) {
            self.watchdog_by = Some(now + w);
        }
    }

    /// `WATCHDOG=trigger`: the service asks to be handled as hung (when a watchdog is set).
    pub fn on_watchdog_trigger(&mut self) -> Option<Verdict> {
        if self.plan.watchdog().is_none() || self.stopping {
            return None;
        }
        Some(Verdict::Fail(
            "watchdog: it asked to be restarted (WATCHDOG=trigger)".into(),
        ))
    }

    /// The check to start now, if one is due; it runs until [`Tracker::on_probe`].
    pub fn probe_due(&mut self, now: Instant) -> Option<(Kind, Probe)> {
        if self.stopping || self.next_probe.is_none_or(|t| t > now) {
            return None;
        }
        let (kind, probe) = if self.ready {
            (Kind::Health, self.plan.health.as_ref()?.exec.clone()?)
        } else {
            match &self.plan.ready {
                Some(Ready::Exec(p)) => (Kind::Ready, p.clone()),
                _ => return None,
            }
        };
        self.next_probe = None;
        Some((kind, probe))
    }

    /// A check of `kind` ended at `now`.
    pub fn on_probe(
        &mut self,
        kind: Kind,
        now: Instant,
        ok: bool,
        summary: &str,
    ) -> Option<Verdict> {
        match kind {
            Kind::Ready => {
                if self.ready {
                    return None;
                }
                if ok {
                    self.become_ready(now);
                    return Some(Verdict::Ready);
                }
                self.last = Some(summary.to_string());
                if let Some(Ready::Exec(p)) = &self.plan.ready {
                    self.next_probe = Some(now + p.interval);
                }
                None
            }
            Kind::Health => {
                let health = self.plan.health.as_ref()?;
                let probe = health.exec.as_ref()?;
                if !self.ready || self.stopping {
                    return None;
                }
                if ok {
                    self.failures = 0;
                } else {
                    self.failures += 1;
                    self.last = Some(summary.to_string());
                    if self.failures >= health.retries {
                        return Some(Verdict::Fail(format!(
                            "health check failed {} time{} in a row: {summary}",
                            self.failures,
                            if self.failures == 1 { "" } else { "s" }
                        )));
                    }
                }
                self.next_probe = Some(now + probe.interval);
                None
            }
        }
    }

    /// Health checks failed in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The next instant at which [`Tracker::on_time`] or [`Tracker::probe_due`] has
    /// something to say.
    pub fn deadline(&self) -> Option<Instant> {
        let ready_by = (!self.ready).then_some(self.ready_by);
        [ready_by, self.next_probe, self.watchdog_by]
            .into_iter()
            .flatten()
            .min()
    }

    /// What time alone decides at `now`: readiness not reached in time, a watchdog
    /// without its ping.
    pub fn on_time(&mut self, now: Instant) -> Option<Verdict> {
        if !self.ready && now >= self.ready_by {
            let waited = secs(self.plan.ready_timeout);
            let why = match (&self.plan.ready, &self.last) {
                (Some(Ready::Notify), _) => "no READY=1 on its NOTIFY_SOCKET".to_string(),
                (Some(Ready::Fd(n)), _) => format!("no line on its descriptor {n}"),
                (Some(Ready::Exec(p)), Some(last)) => {
                    format!("`{}` did not succeed; last: {last}", p.command_line())
                }
                (Some(Ready::Exec(p)), None) => format!("`{}` never ended", p.command_line()),
                (None, _) => String::new(),
            };
            return Some(Verdict::Fail(format!("not ready within {waited} ({why})")));
        }
        if let (Some(by), Some(w)) = (self.watchdog_by, self.plan.watchdog())
            && now >= by
            && !self.stopping
        {
            return Some(Verdict::Fail(format!(
                "watchdog: no WATCHDOG=1 within {}",
                secs(w)
            )));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(interval: u64) -> Probe {
        Probe {
            cmd: vec!["check".into()],
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(1),
        }
    }

    fn plan(ready: Option<Ready>, health: Option<Health>) -> Plan {
        Plan {
            ready,
            ready_timeout: Duration::from_secs(10),
            health,
        }
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Without `ready:` a service is ready when it starts; with one it waits.
    #[test]
    fn ready_at_once_or_not() {
        let t0 = Instant::now();
        let t = Tracker::new(plan(None, None), t0, false);
        assert!(t.is_ready());
        assert_eq!(t.deadline(), None);
        let t = Tracker::new(plan(Some(Ready::Notify), None), t0, false);
        assert!(!t.is_ready());
        assert_eq!(t.deadline(), Some(t0 + s(10)));
        // An adopted service seen ready before.
        assert!(Tracker::new(plan(Some(Ready::Notify), None), t0, true).is_ready());
    }

    #[test]
    fn notify_and_fd_readiness() {
        let t0 = Instant::now();
        for r in [Ready::Notify, Ready::Fd(3)] {
            let mut t = Tracker::new(plan(Some(r), None), t0, false);
            assert_eq!(t.on_time(t0 + s(9)), None);
            assert_eq!(t.on_signal(t0 + s(2)), Some(Verdict::Ready));
            assert!(t.is_ready());
            // Once is enough; later ones say nothing.
            assert_eq!(t.on_signal(t0 + s(3)), None);
            assert_eq!(t.on_time(t0 + s(60)), None);
        }
        // READY=1 means nothing to a service whose readiness is a probe's.
        let mut t = Tracker::new(plan(Some(Ready::Exec(probe(1))), None), t0, false);
        assert_eq!(t.on_signal(t0), None);
        assert!(!t.is_ready());
    }

    #[test]
    fn readiness_times_out_with_a_reason() {
        let t0 = Instant::now();
        let mut t = Tracker::new(plan(Some(Ready::Notify), None), t0, false);
        match t.on_time(t0 + s(10)) {
            Some(Verdict::Fail(why)) => {
                assert_eq!(
                    why,
                    "not ready within 10s (no READY=1 on its NOTIFY_SOCKET)"
                );
            }
            v => panic!("{v:?}"),
        }
        // EXTEND_TIMEOUT_USEC pushes the end out, never in.
        let mut t = Tracker::new(plan(Some(Ready::Fd(4)), None), t0, false);
        t.on_extend(t0 + s(5), s(20));
        assert_eq!(t.deadline(), Some(t0 + s(25)));
        t.on_extend(t0 + s(6), s(1));
        assert_eq!(t.deadline(), Some(t0 + s(25)));
        assert_eq!(t.on_time(t0 + s(24)), None);
        match t.on_time(t0 + s(25)) {
            Some(Verdict::Fail(why)) => assert!(why.contains("no line on its descriptor 4")),
            v => panic!("{v:?}"),
        }
    }

    /// A readiness probe runs at once, then `interval` after each end, one at a time,
    /// until one succeeds; its failures count for nothing but the last word.
    #[test]
    fn readiness_probe() {
        let t0 = Instant::now();
        let mut t = Tracker::new(plan(Some(Ready::Exec(probe(2))), None), t0, false);
        assert_eq!(t.probe_due(t0).map(|p| p.0), Some(Kind::Ready));
        // One at a time: nothing more is due while it runs.
        assert_eq!(t.probe_due(t0 + s(5)), None);
        assert_eq!(
            t.on_probe(Kind::Ready, t0 + s(1), false, "exit code 1"),
            None
        );
        assert_eq!(t.deadline(), Some(t0 + s(3)));
        assert_eq!(t.probe_due(t0 + s(2)), None);
        assert!(t.probe_due(t0 + s(3)).is_some());
        assert_eq!(
            t.on_probe(Kind::Ready, t0 + s(4), false, "exit code 2"),
            None
        );
        match t.on_time(t0 + s(10)) {
            Some(Verdict::Fail(why)) => {
                assert!(
                    why.contains("`check` did not succeed; last: exit code 2"),
                    "{why}"
                );
            }
            v => panic!("{v:?}"),
        }
        let mut t = Tracker::new(plan(Some(Ready::Exec(probe(2))), None), t0, false);
        t.probe_due(t0);
        assert_eq!(
            t.on_probe(Kind::Ready, t0 + s(1), true, "exit code 0"),
            Some(Verdict::Ready)
        );
        assert_eq!(t.deadline(), None, "no health check: nothing more to do");
    }

    fn health(retries: u32, watchdog: Option<u64>) -> Health {
        Health {
            exec: Some(probe(3)),
            retries,
            watchdog: watchdog.map(s),
        }
    }

    /// Health checks start once ready, `interval` apart; `retries` failures in a row fail
    /// the service, a success in between starts the count again.
    #[test]
    fn health_checks_count_failures_in_a_row() {
        let t0 = Instant::now();
        let mut t = Tracker::new(plan(Some(Ready::Notify), Some(health(3, None))), t0, false);
        assert_eq!(
            t.probe_due(t0 + s(100)),
            None,
            "no health check before ready"
        );
        t.on_signal(t0 + s(1));
        assert_eq!(t.deadline(), Some(t0 + s(4)));
        let mut at = t0 + s(4);
        let mut run = |t: &mut Tracker, ok: bool| {
            let (kind, _) = t.probe_due(at).expect("due");
            assert_eq!(kind, Kind::Health);
            at += s(1);
            let v = t.on_probe(kind, at, ok, if ok { "exit code 0" } else { "exit code 1" });
            at += s(3);
            v
        };
        assert_eq!(run(&mut t, false), None);
        assert_eq!(run(&mut t, false), None);
        assert_eq!(t.failures(), 2);
        assert_eq!(run(&mut t, true), None);
        assert_eq!(t.failures(), 0);
        assert_eq!(run(&mut t, false), None);
        assert_eq!(run(&mut t, false), None);
        assert_eq!(
            run(&mut t, false),
            Some(Verdict::Fail(
                "health check failed 3 times in a row: exit code 1".into()
            ))
        );
    }

    #[test]
    fn watchdog() {
        let t0 = Instant::now();
        let h = Health {
            exec: None,
            retries: 3,
            watchdog: Some(s(5)),
        };
        let mut t = Tracker::new(plan(Some(Ready::Notify), Some(h.clone())), t0, false);
        // Pings before ready do not start it; it runs from readiness.
        t.on_watchdog(t0);
        assert_eq!(t.deadline(), Some(t0 + s(10)));
        t.on_signal(t0 + s(2));
        assert_eq!(t.deadline(), Some(t0 + s(7)));
        t.on_watchdog(t0 + s(6));
        assert_eq!(t.on_time(t0 + s(10)), None);
        assert_eq!(
            t.on_time(t0 + s(11)),
            Some(Verdict::Fail("watchdog: no WATCHDOG=1 within 5s".into()))
        );
        assert!(matches!(t.on_watchdog_trigger(), Some(Verdict::Fail(_))));
        // STOPPING=1: no more watchdog nor checks.
        let mut t = Tracker::new(plan(None, Some(h)), t0, false);
        t.on_stopping();
        assert_eq!(t.on_time(t0 + s(100)), None);
        assert_eq!(t.on_watchdog_trigger(), None);
        assert_eq!(t.deadline(), None);
        // No watchdog set: a trigger means nothing.
        let mut t = Tracker::new(plan(None, Some(health(1, None))), t0, false);
        assert_eq!(t.on_watchdog_trigger(), None);
    }
}
