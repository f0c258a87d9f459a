//! What watches a running service (readiness, health) and the start order (`after:`).

use super::double::{Behaviour, Launch};
use super::*;
use crate::supervisor::probe::Outcome;
use std::io::Write;

/// Sends `msg` on service `name`'s notify socket, as its init would.
fn notify(r: &Rig, name: &str, msg: &str) {
    let sock = r.state_dir().join("notify").join(name).join("notify.sock");
    let s = std::os::unix::net::UnixDatagram::unbound().unwrap();
    s.send_to(msg.as_bytes(), sock).unwrap();
}

/// Not ready within `readyTimeout`: the service is stopped, and that counts as an exit
/// with the reason (a restart, after the first delay).
#[tokio::test(start_paused = true)]
async fn not_ready_in_time_counts_as_an_exit() {
    let r = rig();
    r.d.settings_of("web", "ready: notify\nreadyTimeout: 5\n");
    let h = r.start("web");
    let s = until(&h, |s| s.pid.is_some()).await;
    assert_eq!(s.state, State::Starting);
    assert_eq!(
        s.reason.as_deref(),
        Some("not ready yet: waiting for READY=1 on its NOTIFY_SOCKET (at most 5s)")
    );
    assert!(!s.settled);
    let s = until_in(&h, State::Restarting).await;
    assert_eq!(
        s.reason.as_deref(),
        Some("restart 1 after 0.5s: not ready within 5s (no READY=1 on its NOTIFY_SOCKET)")
    );
    assert_eq!(s.exit, Some(ExitStatus::Signal(15)));
    assert_eq!(ms(&r.d.times("SIGTERM web")), [5000]);
    until(&h, |s| s.pid.is_some()).await;
    assert_eq!(ms(&r.d.times("launch web")), [0, 5500]);
}

/// Ready by a line on its descriptor or READY=1 on its notify socket: `running`, and
/// settled.
#[tokio::test(start_paused = true)]
async fn a_line_on_its_descriptor_or_ready_1_makes_it_ready() {
    let r = rig();
    r.d.settings_of("fd", "ready: {fd: 3}\n");
    r.d.settings_of("sock", "ready: notify\n");
    let fd = r.start("fd");
    let sock = r.start("sock");
    until(&fd, |s| s.pid.is_some()).await;
    until(&sock, |s| s.pid.is_some()).await;
    pass(2.0).await;
    assert_eq!(fd.status.borrow().state, State::Starting);

    let mut theirs = r.d.extra_fds("fd");
    assert_eq!(
        theirs.len(),
        1,
        "the FIFO is descriptor 3, the first handed over"
    );
    let mut w = std::fs::File::from(theirs.remove(0));
    w.write_all(b"up\n").unwrap();
    let s = until_in(&fd, State::Running).await;
    assert!(s.settled && s.reason.is_none());

    notify(&r, "sock", "STATUS=serving\nREADY=1");
    let s = until_in(&sock, State::Running).await;
    assert_eq!(s.notify_status.as_deref(), Some("serving"));
    pass(600.0).await;
    assert_eq!(r.d.times("launch").len(), 2, "neither was restarted");
}

fn failed(summary: &str) -> Outcome {
    Outcome {
        ok: false,
        summary: summary.into(),
        output: "no answer".into(),
        took: Duration::from_millis(20),
    }
}

/// Health checks run `interval` apart once it is ready; `retries` failures in a row stop
/// it, and that counts as an exit.
#[tokio::test(start_paused = true)]
async fn failing_health_checks_count_as_an_exit() {
    let r = rig();
    r.d.settings_of("web", "health: {exec: [check], interval: 1, retries: 2}\n");
    r.d.probes([failed("exit code 1"), failed("exit code 1")]);
    r.d.launches("web", [Launch::Runs(Behaviour::default())]);
    let h = r.start("web");
    let s = until_in(&h, State::Restarting).await;
    assert_eq!(
        s.reason.as_deref(),
        Some("restart 1 after 0.5s: health check failed 2 times in a row: exit code 1")
    );
    assert_eq!(ms(&r.d.times("probe web")), [1000, 2000]);
    assert_eq!(ms(&r.d.times("SIGTERM web")), [2000]);
    let check = s.check.expect("the last check is kept");
    assert_eq!((check.ok, check.failures), (false, 2));
    assert_eq!(check.output, "no answer");
    // The next run checks again from the start: a success keeps it running.
    let s = until_in(&h, State::Running).await;
    assert!(s.check.is_none());
    pass(10.0).await;
    assert_eq!(h.status.borrow().state, State::Running);
    assert!(h.status.borrow().check.as_ref().is_some_and(|c| c.ok));
}

/// A service that starts `after` another waits until that one is ready, saying so; one
/// whose dependency never gets ready starts once its `afterTimeout` has passed.
#[tokio::test(start_paused = true)]
async fn after_waits_for_readiness_or_its_timeout() {
    let r = rig();
    r.d.settings_of("db", "ready: notify\nreadyTimeout: 100\n");
    r.d.settings_of("slow", "ready: notify\nreadyTimeout: 100\n");
    let db = r.start("db");
    let slow = r.start("slow");
    let after = |dep: &Handle, within| Boot::Start {
        after: vec![dep.status.clone()],
        within: Duration::from_secs(within),
    };
    let web = r.spawn("web", after(&db, 30));
    let late = r.spawn("late", after(&slow, 10));
    let s = until(&web, |s| s.reason.is_some()).await;
    assert_eq!(s.state, State::Starting);
    assert_eq!(
        s.reason.as_deref(),
        Some("waiting for db to be ready (at most 30s more)")
    );
    until(&db, |s| s.pid.is_some()).await;
    pass(3.0).await;
    assert!(r.d.times("launch web").is_empty());

    notify(&r, "db", "READY=1");
    until_in(&db, State::Running).await;
    until_in(&web, State::Running).await;
    let ready_at = ms(&r.d.times("launch web"))[0];
    assert!((3000..3100).contains(&ready_at), "{ready_at}");

    until_in(&late, State::Running).await;
    assert_eq!(ms(&r.d.times("launch late")), [10000]);
    assert_eq!(slow.status.borrow().state, State::Starting);
}
