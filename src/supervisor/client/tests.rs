use super::*;

#[test]
fn utc_dates() {
    assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59 UTC");
}

/// The STATUS text and the last check, escaped, each on its line.
#[test]
fn status_lines() {
    let info = ServiceInfo {
        name: "web".into(),
        state: State::Running,
        pid: Some(7),
        restarts: 0,
        exit_code: None,
        exit: None,
        since: 0.0,
        reason: None,
        adopted: false,
        status_text: Some("serving\nforged: yes".into()),
        check: Some(super::super::protocol::CheckInfo {
            kind: "health".into(),
            ok: false,
            at: 0.0,
            took_ms: 5,
            result: "exit code 1".into(),
            output: "no\x1b[2Janswer\n".into(),
            failures: 2,
        }),
    };
    let mut out = Vec::new();
    print_status(&mut out, &info).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("\nstatus:   serving\\nforged: yes\n"), "{out}");
    assert!(
        out.contains("\ncheck:    health failed (2 in a row): exit code 1, in 5 ms, 1970-01-01 00:00:00 UTC ("),
        "{out}"
    );
    assert!(
        out.ends_with("\noutput:   no\\u{1b}[2Janswer\\n\n"),
        "{out}"
    );
}

#[test]
fn list_lines() {
    let s = |name: &str, state, pid, reason: Option<&str>| ServiceInfo {
        name: name.into(),
        state,
        pid,
        restarts: 2,
        exit_code: None,
        exit: None,
        since: 0.0,
        reason: reason.map(str::to_string),
        adopted: false,
        status_text: None,
        check: None,
    };
    let mut out = Vec::new();
    print_list(
        &mut out,
        &[
            s("web", State::Running, Some(4711), None),
            s("broken-one", State::Failed, None, Some("crash loop")),
        ],
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "NAME        STATE           PID  RESTARTS\n\
         web         running        4711         2\n\
         broken-one  failed            -         2  crash loop\n"
    );
    // A name or reason that holds a newline stays on its line.
    let mut out = Vec::new();
    print_list(
        &mut out,
        &[s("a\nb", State::Failed, None, Some("x\nforged  running"))],
    )
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.ends_with("a\\nb  failed            -         2  x\\nforged  running\n"),
        "{out}"
    );
}
