//! Restarts, launches that fail or are cut short, stops, cleanups that fail, adoption.

use super::double::{Adopt, Behaviour, FIRST_PID, Launch, handover};
use super::*;
use crate::supervisor::record::{self, Persisted, Record};

/// After each crash the service starts again, the delay doubling from `restartDelay`
/// (0.5 s) until `maxRestartDelay`.
#[tokio::test(start_paused = true)]
async fn a_crash_restarts_after_a_backoff_that_doubles_up_to_its_cap() {
    let r = rig();
    r.d.settings_of(
        "web",
        "maxRestartDelay: 2\ncrashLoop: {restarts: 10, within: 60}\n",
    );
    r.d.always("web", Launch::Runs(Behaviour::crashing(code(1))));
    let h = r.start("web");
    let s = until(&h, |s| s.restarts == 6).await;
    assert_eq!(s.state, State::Restarting);
    assert_eq!(s.reason.as_deref(), Some("restart 6 after 2s"));
    assert_eq!(s.exit, Some(code(1)));
    assert_eq!(r.d.record("web"), Some(Persisted::Restarting));
    let launches = r.d.times("launch web");
    assert_eq!(ms(&launches[..1]), [0]);
    assert_eq!(gaps(&launches), [500, 1000, 2000, 2000, 2000]);
    // Each container is retired before the next one is launched.
    let j = r.d.journal();
    assert_eq!(
        j[..4],
        [
            "launch web",
            "retire web 1001",
            "launch web",
            "retire web 1002"
        ]
    );
}

/// One exit more than `crashLoop` allows within its window marks the service failed, and
/// leaves it down; a `start` then begins a fresh count, back at the first delay.
#[tokio::test(start_paused = true)]
async fn a_crash_loop_marks_it_failed_and_a_start_counts_afresh() {
    let r = rig();
    r.d.launches(
        "web",
        std::iter::repeat_n(Launch::Runs(Behaviour::crashing(code(2))), 6),
    );
    let h = r.start("web");
    let s = until_in(&h, State::Failed).await;
    let reason = "crash loop: 6 exits within 60s";
    assert_eq!(s.reason.as_deref(), Some(reason));
    assert_eq!(s.restarts, 5);
    assert_eq!(
        r.d.record("web"),
        Some(Persisted::Failed {
            reason: reason.into()
        })
    );
    // Backoff 0.5, 1, 2, 4, 8 s between the six launches: all within the window of 60 s.
    assert_eq!(
        gaps(&r.d.times("launch web")),
        [500, 1000, 2000, 4000, 8000]
    );
    // Still within the window of the six exits: a start forgets them all the same.
    pass(30.0).await;
    assert_eq!(r.d.times("launch web").len(), 6, "failed stays down");

    let pid = FIRST_PID + 6;
    let said = ask(h.clone(), Cmd::Start).await;
    assert_eq!(said, Ok(format!("web: running, pid {pid}")));
    let s = until_in(&h, State::Running).await;
    assert_eq!(s.restarts, 0);
    r.d.end(pid, Some(code(1)));
    let s = until_in(&h, State::Restarting).await;
    assert_eq!(s.reason.as_deref(), Some("restart 1 after 0.5s"));
}

/// `restart: never` leaves it `exited` after any exit; `on-failure` after an exit 0 only.
#[tokio::test(start_paused = true)]
async fn restart_never_and_on_failure_follow_the_exit() {
    let r = rig();
    r.d.settings_of("never", "restart: never\n");
    r.d.settings_of("onfail", "restart: on-failure\n");
    let never = r.start("never");
    let onfail = r.start("onfail");
    let n = until_in(&never, State::Running).await;
    let o = until_in(&onfail, State::Running).await;

    r.d.end(n.pid.unwrap(), Some(code(1)));
    let s = until_in(&never, State::Exited).await;
    assert_eq!((s.exit, s.reason, s.restarts), (Some(code(1)), None, 0));
    assert_eq!(r.d.record("never"), Some(Persisted::Exited));

    r.d.end(o.pid.unwrap(), Some(code(0)));
    let s = until_in(&onfail, State::Exited).await;
    assert_eq!(s.exit, Some(code(0)));
    let said = ask(onfail.clone(), Cmd::Start).await.unwrap();
    let pid = until_in(&onfail, State::Running).await.pid.unwrap();
    assert_eq!(said, format!("onfail: running, pid {pid}"));
    r.d.end(pid, Some(code(3)));
    let s = until_in(&onfail, State::Restarting).await;
    assert_eq!(s.exit, Some(code(3)));
    pass(60.0).await;
    assert_eq!(r.d.times("launch never").len(), 1);
    assert_eq!(r.d.times("launch onfail").len(), 3);
}

/// A launch that fails counts as an exit and follows the settings read before it (delay,
/// restart policy); one that cannot work (a bundle that cannot be used, a rollback that
/// left something) fails the service at once.
#[tokio::test(start_paused = true)]
async fn a_failed_launch_follows_the_settings() {
    let r = rig();
    r.d.settings_of("web", "restartDelay: 3\n");
    r.d.launches("web", [Launch::Fails("mounts: EPERM")]);
    let web = r.spawn("web", Boot::Idle);
    let said = ask(web.clone(), Cmd::Start).await;
    assert_eq!(said, Err("web: mounts: EPERM".into()));
    let s = until_in(&web, State::Restarting).await;
    assert_eq!(
        s.reason.as_deref(),
        Some("restart 1 after 3s: mounts: EPERM")
    );
    assert_eq!(s.exit, None);
    until_in(&web, State::Running).await;
    assert_eq!(ms(&r.d.times("launch web")), [0, 3000]);

    r.d.settings_of("once", "restart: never\n");
    r.d.launches("once", [Launch::Fails("start: exec format error")]);
    let once = r.start("once");
    let s = until_in(&once, State::Exited).await;
    assert_eq!(s.reason.as_deref(), Some("start: exec format error"));
    assert_eq!(r.d.record("once"), Some(Persisted::Exited));

    r.d.launches("bad", [Launch::Unusable("config.json: not JSON")]);
    r.d.launches("left", [Launch::Leaves("start: boom", "unmount /x: EBUSY")]);
    let bad = r.start("bad");
    let left = r.start("left");
    for (h, why) in [(&bad, "config.json: not JSON"), (&left, "start: boom")] {
        let s = until_in(h, State::Failed).await;
        assert_eq!(s.reason.as_deref(), Some(why));
    }
    pass(600.0).await;
    assert_eq!(r.d.times("launch bad").len(), 1);
    assert_eq!(r.d.times("launch left").len(), 1);
}

/// A stop that comes while the launch hangs cuts it short: nothing of it runs, the stop
/// says so, and the start is answered with why it did not happen.
#[tokio::test(start_paused = true)]
async fn a_stop_during_a_start_cuts_it_short() {
    let r = rig();
    r.d.launches("web", [Launch::Hangs]);
    let h = r.spawn("web", Boot::Idle);
    let start = tokio::spawn(ask(h.clone(), Cmd::Start));
    r.d.until(|j| j.len() == 1).await;
    let stop = ask(h.clone(), Cmd::Stop).await;
    assert_eq!(stop, Ok("web: stopped (its start was cut short)".into()));
    assert_eq!(
        start.await.unwrap(),
        Err(
            "web: its start was cut short: create: rt create: killed: the launch was cut short"
                .into()
        )
    );
    assert_eq!(r.d.journal(), ["launch web", "cut short"]);
    assert_eq!(until_in(&h, State::Stopped).await.reason, None);
    assert_eq!(r.d.record("web"), Some(Persisted::Stopped));

    // A launch that got its container up before it could be cut short: it is up, and the
    // stop is carried out on it a moment later.
    r.d.launches("web", [Launch::HangsThenRuns]);
    let start = tokio::spawn(ask(h.clone(), Cmd::Start));
    r.d.until(|j| j.len() == 3).await;
    let stop = ask(h.clone(), Cmd::Stop).await;
    let pid = FIRST_PID;
    assert_eq!(start.await.unwrap(), Ok(format!("web: running, pid {pid}")));
    assert_eq!(
        stop,
        Ok("web: stopped, exit code 143 (killed by SIGTERM)".into())
    );
    assert_eq!(
        r.d.journal()[2..],
        [
            "launch web".to_string(),
            "cut short".into(),
            format!("SIGTERM web {pid}"),
            format!("retire web {pid}")
        ]
    );
}

/// A stop: SIGTERM; SIGKILL once `stopGrace` has passed without the end; the cleanup once
/// the init has ended, or 5 s after a SIGKILL it survives.
#[tokio::test(start_paused = true)]
async fn a_stop_sends_sigterm_then_sigkill_after_its_grace() {
    let r = rig();
    r.d.settings_of("stubborn", "stopGrace: 3\n");
    let ignores = Behaviour {
        on_term: None,
        ..Behaviour::default()
    };
    r.d.launches("stubborn", [Launch::Runs(ignores)]);
    let h = r.start("stubborn");
    let pid = until_in(&h, State::Running).await.pid.unwrap();
    let stop = tokio::spawn(ask(h.clone(), Cmd::Stop));
    until_in(&h, State::Stopping).await;
    assert_eq!(
        stop.await.unwrap(),
        Ok("stubborn: stopped, exit code 137 (killed by SIGKILL)".into())
    );
    assert_eq!(
        r.d.journal()[1..],
        [
            format!("SIGTERM stubborn {pid}"),
            format!("SIGKILL stubborn {pid}"),
            format!("retire stubborn {pid}")
        ]
    );
    let term = r.d.times("SIGTERM stubborn")[0];
    assert_eq!(gaps(&[term, r.d.times("SIGKILL stubborn")[0]]), [3000]);
    assert_eq!(
        until_in(&h, State::Stopped).await.exit,
        Some(ExitStatus::Signal(9))
    );

    // One that ends on SIGTERM gets no SIGKILL.
    let h = r.start("polite");
    let pid = until_in(&h, State::Running).await.pid.unwrap();
    let said = ask(h.clone(), Cmd::Stop).await;
    assert_eq!(
        said,
        Ok("polite: stopped, exit code 143 (killed by SIGTERM)".into())
    );
    let j = r.d.journal();
    assert_eq!(
        j[j.len() - 2..],
        [
            format!("SIGTERM polite {pid}"),
            format!("retire polite {pid}")
        ]
    );

    // One that survives SIGKILL: the stop goes on without its status.
    r.d.settings_of("undead", "stopGrace: 1\n");
    let undead = Behaviour {
        on_term: None,
        dies_on_kill: false,
        ..Behaviour::default()
    };
    r.d.launches("undead", [Launch::Runs(undead)]);
    let h = r.start("undead");
    until_in(&h, State::Running).await;
    let said = ask(h.clone(), Cmd::Stop).await;
    assert_eq!(said, Ok("undead: stopped, exit status unknown".into()));
    let at = |w: &str| r.d.times(w)[0];
    let (term, kill, retire) = (
        at("SIGTERM undead"),
        at("SIGKILL undead"),
        at("retire undead"),
    );
    assert_eq!(gaps(&[term, kill, retire]), [1000, 5000]);
}

/// A cleanup that fails makes the stop an error and the service `failed`, never stopped
/// nor started again on top of what is left; so does one after a crash.
#[tokio::test(start_paused = true)]
async fn a_cleanup_that_fails_fails_the_stop_and_the_service() {
    let r = rig();
    let leaves = Behaviour {
        cleanup_fails: Some("unmount /x: EBUSY"),
        ..Behaviour::default()
    };
    r.d.launches("web", [Launch::Runs(leaves)]);
    let h = r.start("web");
    until_in(&h, State::Running).await;
    let said = ask(h.clone(), Cmd::Stop).await;
    assert_eq!(
        said,
        Err(
            "web: its processes are gone (exit code 143 (killed by SIGTERM)), but it is not \
             stopped: cleanup failed: unmount /x: EBUSY"
                .into()
        )
    );
    let reason = "cleanup failed: unmount /x: EBUSY";
    let s = until_in(&h, State::Failed).await;
    assert_eq!(s.reason.as_deref(), Some(reason));
    assert_eq!(
        r.d.record("web"),
        Some(Persisted::Failed {
            reason: reason.into()
        })
    );

    let crashes = Behaviour {
        crashes: Some(code(1)),
        ..leaves
    };
    r.d.launches("db", [Launch::Runs(crashes)]);
    let h = r.start("db");
    let s = until_in(&h, State::Failed).await;
    assert_eq!(s.reason.as_deref(), Some(reason));
    pass(600.0).await;
    assert_eq!(r.d.times("launch db").len(), 1);
}

/// What a killed supervisor recorded of a running service.
fn running_record(name: &str, pid: i32) -> Boot {
    Boot::Record(Box::new(Record {
        v: record::VERSION,
        name: name.into(),
        bundle: format!("/services/{name}").into(),
        restarts: 2,
        since: 1.0,
        service: Persisted::Running {
            container: handover(name, pid),
            ready: true,
        },
    }))
}

/// A recorded service whose init is alive is adopted as it runs: its pid, its restart
/// count; its exit status, once it ends, is not ours to know.
#[tokio::test(start_paused = true)]
async fn a_recorded_service_whose_init_lives_is_adopted() {
    let r = rig();
    r.d.adoption("web", Adopt::Alive(Behaviour::default()));
    let h = r.spawn("web", running_record("web", 777));
    let s = until_in(&h, State::Running).await;
    assert_eq!((s.pid, s.adopted, s.restarts), (Some(777), true, 2));
    assert_eq!(r.d.journal(), ["adopt web 777"]);

    let said = ask(h.clone(), Cmd::Stop).await;
    assert_eq!(said, Ok("web: stopped, exit status unknown".into()));
    assert!(until_in(&h, State::Stopped).await.exit_unknown);
    assert_eq!(
        r.d.journal(),
        ["adopt web 777", "SIGTERM web 777", "retire web 777"]
    );
    assert_eq!(r.d.record("web"), Some(Persisted::Stopped));

    // Its end, seen through its pidfd, is an exit like any other.
    r.d.adoption("db", Adopt::Alive(Behaviour::default()));
    let h = r.spawn("db", running_record("db", 778));
    until_in(&h, State::Running).await;
    r.d.end(778, None);
    let s = until_in(&h, State::Restarting).await;
    assert!(s.exit_unknown);
    assert_eq!(s.restarts, 3);
    assert_eq!(until_in(&h, State::Running).await.pid, Some(FIRST_PID));
}

/// A recorded service whose init has gone: what is left of its container is cleared, and
/// its end counts as an exit (a restart after the first delay).
#[tokio::test(start_paused = true)]
async fn a_recorded_service_whose_init_is_gone_is_cleared_and_restarted() {
    let r = rig();
    r.d.adoption("web", Adopt::Gone);
    let h = r.spawn("web", running_record("web", 777));
    let s = until_in(&h, State::Restarting).await;
    assert!(s.exit_unknown);
    assert_eq!(s.restarts, 3);
    let s = until_in(&h, State::Running).await;
    assert_eq!((s.pid, s.adopted), (Some(FIRST_PID), false));
    assert_eq!(
        r.d.journal(),
        ["adopt web 777", "clear web 777", "launch web"]
    );
    assert_eq!(ms(&r.d.times("launch web")), [500]);
}

/// The shutdown: SIGTERM (`signalled` says it is sent), the end, the cleanup, then `done`;
/// the record goes, so the next supervisor starts it afresh.
#[tokio::test(start_paused = true)]
async fn a_shutdown_stops_it_and_forgets_its_record() {
    let r = rig();
    let h = r.start("web");
    let pid = until_in(&h, State::Running).await.pid.unwrap();
    assert!(r.d.record("web").is_some());
    let (signalled, s_rx) = oneshot::channel();
    let (done, d_rx) = oneshot::channel();
    assert!(h.tx.send(Cmd::Shutdown { signalled, done }).is_ok());
    bounded(s_rx).await.unwrap();
    bounded(d_rx).await.unwrap();
    assert_eq!(
        r.d.journal()[1..],
        [format!("SIGTERM web {pid}"), format!("retire web {pid}")]
    );
    assert_eq!(r.d.record("web"), None);
    assert_eq!(h.status.borrow().state, State::Stopped);
}
