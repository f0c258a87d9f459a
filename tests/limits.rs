//! Bounded logs (services' and onboot's log files capped and rotated at line boundaries,
//! `logs` and `logs -f` across rotations, timestamps) and the onboot time limit (the
//! `lkinit.timeout` annotation against `--timeout`), against real runc.
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::supervisor::read_for;
use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

fn service_yml(bundle: &Path, text: &str) {
    std::fs::write(bundle.join("service.yml"), text).unwrap();
}

/// `PATH.K`.
fn rotated(path: &Path, k: u32) -> PathBuf {
    PathBuf::from(format!("{}.{k}", path.display()))
}

/// The log at `path` and its rotated files that exist, oldest first.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (1..=9)
        .rev()
        .map(|k| rotated(path, k))
        .filter(|p| p.exists())
        .collect();
    v.push(path.to_path_buf());
    v
}

/// The lines of a file that must hold whole lines only: each ends with a newline and
/// matches `ok`.
fn whole_lines(path: &Path, ok: impl Fn(&str) -> bool) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends inside a line: {:?}",
        path.display(),
        &text[text.len().saturating_sub(40)..]
    );
    text.lines()
        .map(|l| {
            assert!(ok(l), "{}: a line cut or malformed: {l:?}", path.display());
            l.to_string()
        })
        .collect()
}

fn assert_contiguous(numbers: &[u64]) {
    for w in numbers.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap or a repeat after {}", w[0]);
    }
}

/// 6,600,000 numbered lines of 8 bytes (50.4 MiB), as fast as the service can write, into
/// 1 MiB files with 2 kept: at most three files of at most 1 MiB and one line each, every
/// line whole, the numbers contiguous from the oldest kept line to the last one written.
/// Links planted at the rotated names are replaced, never written through.
#[test]
fn a_fast_writer_keeps_the_cap_and_no_line_is_cut() {
    const LAST: u64 = 6_600_000;
    const CAP: u64 = 1 << 20;
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let b = env.bundle(&dir, "flood", &["seq", "-w", "1", &LAST.to_string()]);
    service_yml(&b, "restart: never\nlogs:\n  maxSize: 1m\n  keep: 2\n");
    std::fs::create_dir_all(&env.log_dir).unwrap();
    let out_log = env.log_dir.join("flood.out.log");
    let canary = env.dir.join("canary");
    std::fs::write(&canary, "untouched\n").unwrap();
    for k in 1..=3 {
        std::os::unix::fs::symlink(&canary, rotated(&out_log, k)).unwrap();
    }

    let sup = env.system_init(&dir);
    let st = sup.wait_status("flood", "exited", |s| s.state == "exited");
    assert_eq!(st.exit, "exit code 0", "{st:?}");

    assert_eq!(std::fs::read_to_string(&canary).unwrap(), "untouched\n");
    let files = log_files(&out_log);
    assert_eq!(
        files,
        [rotated(&out_log, 2), rotated(&out_log, 1), out_log.clone()]
    );
    let mut numbers = Vec::new();
    let mut total = 0;
    for f in &files {
        let meta = std::fs::symlink_metadata(f).unwrap();
        assert!(meta.file_type().is_file(), "{}", f.display());
        assert!(
            meta.len() <= CAP + 8,
            "{}: {} bytes",
            f.display(),
            meta.len()
        );
        total += meta.len();
        let lines = whole_lines(f, |l| l.len() == 7 && l.bytes().all(|b| b.is_ascii_digit()));
        numbers.extend(lines.iter().map(|l| l.parse::<u64>().unwrap()));
    }
    assert!(total <= 3 * (CAP + 8), "{total} bytes kept");
    // The rotated files are full: each ended at the line that reached the cap.
    for f in &files[..2] {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len > CAP - 8, "{}: {len} bytes", f.display());
    }
    assert_contiguous(&numbers);
    assert_eq!(numbers.last(), Some(&LAST));
    assert!(numbers[0] > 1, "nothing was rotated away");
}

/// `logs` prints the rotated files oldest first, then the current one; `logs -f`, started
/// before the first rotation, goes on across several with no line lost or repeated.
#[test]
fn logs_and_logs_follow_across_rotations() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    // 60-byte lines, 100 a second: a 4 KiB file rotates about every 0.7 s.
    let body = "i=0; while true; do printf 'line %06d %050d\\n' $i 0; i=$((i+1)); sleep 0.01; done";
    let b = env.bundle(&dir, "writer", &["sh", "-c", body]);
    service_yml(&b, "logs: {maxSize: 4k, keep: 9}\n");
    let out_log = env.log_dir.join("writer.out.log");
    let number = |l: &str| -> u64 { l[5..11].parse().unwrap() };
    let well_formed = |l: &str| {
        l.len() == 62 && l.starts_with("line ") && l[5..11].bytes().all(|b| b.is_ascii_digit())
    };

    let sup = env.system_init(&dir);
    sup.wait_running("writer");
    sup.wait_until("its first lines", Duration::from_secs(20), || {
        (!env.log("writer.out.log").is_empty()).then_some(())
    });
    let mut c = env.cli();
    c.args(["logs", "-f", "writer"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut follower = c.spawn().unwrap();
    assert!(
        !rotated(&out_log, 1).exists(),
        "rotated before `logs -f` started"
    );
    // Until the writer is four files further.
    let out = read_for(&mut follower, Duration::from_secs(60), |s| {
        s.lines()
            .rfind(|l| well_formed(l))
            .is_some_and(|l| number(l) >= 4 * 66 + 10)
    });
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(rotated(&out_log, 4).exists(), "fewer than four rotations");
    // Whole lines from the first on (the last one may be cut by the kill).
    let seen: Vec<u64> = out
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
        .map(|l| {
            assert!(well_formed(l), "{l:?}");
            number(l)
        })
        .collect();
    assert_eq!(seen.first(), Some(&0), "{out}");
    assert_contiguous(&seen);
    assert!(*seen.last().unwrap() >= 4 * 66 + 10);

    // `logs`: the same lines, from the oldest file on, each file whole lines.
    let r = sup.cli(&["logs", "writer"]);
    assert_eq!(r.code, 0);
    let files = log_files(&out_log);
    assert!(files.len() >= 5, "{files:?}");
    let first_kept = number(&whole_lines(&files[0], well_formed)[0]);
    let printed: Vec<u64> = r
        .stdout
        .lines()
        .take_while(|l| well_formed(l))
        .map(number)
        .collect();
    assert_eq!(printed.first(), Some(&first_kept));
    assert_contiguous(&printed);
    assert!(printed.len() as u64 >= 4 * 66, "{}", printed.len());
}

/// `timestamps: true`: each line in the file begins with its RFC 3339 UTC time; a line
/// written in two parts gets one stamp, when it begins.
#[test]
fn timestamps() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let b = env.bundle(
        &dir,
        "stamped",
        &[
            "sh",
            "-c",
            "echo one; printf par; sleep 0.5; echo tial; echo two >&2; echo three",
        ],
    );
    service_yml(&b, "restart: never\nlogs: {timestamps: true}\n");
    let before = std::time::SystemTime::now();
    let sup = env.system_init(&dir);
    sup.wait_status("stamped", "exited", |s| s.state == "exited");
    let day = |t: std::time::SystemTime| {
        stamp_date(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400)
    };
    let check = |file: &str, want: &[&str]| {
        let text = env.log(file);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), want.len(), "{text}");
        for (l, w) in lines.iter().zip(want) {
            let (stamp, rest) = l.split_once(' ').unwrap();
            assert_eq!(rest, *w, "{l}");
            // 2026-01-02T03:04:05.123456Z
            let b = stamp.as_bytes();
            assert_eq!(b.len(), 27, "{stamp}");
            assert_eq!(
                (b[4], b[7], b[10], b[13], b[16], b[19], b[26]),
                (b'-', b'-', b'T', b':', b':', b'.', b'Z'),
                "{stamp}"
            );
            assert!(
                stamp.bytes().filter(u8::is_ascii_digit).count() == 20,
                "{stamp}"
            );
        }
        lines
            .iter()
            .map(|l| l[..27].to_string())
            .collect::<Vec<_>>()
    };
    let out = check("stamped.out.log", &["one", "partial", "three"]);
    check("stamped.log", &["two"]);
    // The partial line was stamped when it began; the stamps are in order.
    assert!(out[0] <= out[1] && out[1] <= out[2], "{out:?}");
    // Today's date (or tomorrow's, at midnight).
    let after = std::time::SystemTime::now();
    assert!(
        out[0].starts_with(&day(before)) || out[0].starts_with(&day(after)),
        "{out:?}"
    );
    // `logs` shows the stamps as they are in the file.
    let r = sup.cli(&["logs", "stamped"]);
    assert_eq!(r.stdout, env.log("stamped.out.log"));
}

/// `YYYY-MM-DD` of a day number since the epoch, by counting (a test needs no speed).
fn stamp_date(days: u64) -> String {
    let mut y = 1970;
    let mut d = days;
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    loop {
        let n = if leap(y) { 366 } else { 365 };
        if d < n {
            break;
        }
        d -= n;
        y += 1;
    }
    let months = [
        31,
        if leap(y) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut m = 0;
    while d >= months[m] {
        d -= months[m];
        m += 1;
    }
    format!("{y:04}-{:02}-{:02}", m + 1, d + 1)
}

/// onboot's logs have the same cap (`--log-max-size`, `--log-keep`); the console still
/// gets every line.
#[test]
fn onboot_logs_are_capped_too() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    env.bundle(&ob, "chatty", &["seq", "-w", "1", "20000"]);
    let r = env.onboot(&ob, &["--log-max-size", "16k", "--log-keep", "1", "-q"]);
    assert_eq!(r.code, 0);
    let console: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(console.len(), 20000);
    let log = env.log_dir.join("onboot.chatty.out.log");
    let files = log_files(&log);
    assert_eq!(files, [rotated(&log, 1), log.clone()]);
    let mut numbers = Vec::new();
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= (16 << 10) + 6);
        let lines = whole_lines(f, |l| l.len() == 5);
        numbers.extend(lines.iter().map(|l| l.parse::<u64>().unwrap()));
    }
    assert_contiguous(&numbers);
    assert_eq!(numbers.last(), Some(&20000));
    assert!(numbers[0] > 1);

    // Impossible values are refused before anything runs.
    for (flag, value) in [
        ("--log-max-size", "8x"),
        ("--log-max-size", "1"),
        ("--log-keep", "10"),
    ] {
        let r = env.onboot(&ob, &[flag, value]);
        assert_eq!(r.code, 2, "{flag} {value}");
        assert!(
            r.stderr.contains(flag) && r.stderr.contains(value),
            "{}",
            r.stderr
        );
    }
}

/// A bad `logs` value in service.yml fails the service with the file, line and field.
#[test]
fn bad_log_settings_are_reported() {
    let env = TestEnv::new();
    let dir = env.bundles_dir("services");
    let cases = [
        (
            "size",
            "logs:\n  maxSize: 8x\n",
            "line 2",
            "logs.maxSize",
            "`8x` is not a size",
        ),
        (
            "keep",
            "logs:\n  keep: 12\n",
            "line 2",
            "logs.keep",
            "between 0 and 9",
        ),
        (
            "unknown",
            "restart: never\nlogs: {maxsize: 8m}\n",
            "line 2",
            "logs.maxsize",
            "unknown field",
        ),
    ];
    for (name, text, _, _, _) in &cases {
        let b = env.bundle(&dir, name, &["sleep", "1000"]);
        service_yml(&b, text);
    }
    let sup = env.system_init(&dir);
    for (name, _, line, field, msg) in cases {
        let st = sup.wait_status(name, "failed", |s| s.state == "failed");
        let file = dir.join(name).join("service.yml");
        assert!(
            st.reason
                .starts_with(&format!("{}: {line}", file.display()))
                && st.reason.contains(&format!("field `{field}`"))
                && st.reason.contains(msg),
            "{st:?}"
        );
    }
}

/// The `lkinit.timeout` annotation bounds its bundle, and wins over `--timeout`: a
/// shorter limit, no limit (0), and a bad value reported as the bundle's error while the
/// next bundle runs.
#[test]
fn the_timeout_annotation_wins_for_its_bundle() {
    let env = TestEnv::new();
    let ob = env.bundles_dir("onboot");
    let annotate = |b: &Path, v: &str| {
        env.edit_config(b, |c| c["annotations"] = json!({"lkinit.timeout": v}));
    };
    let b = env.bundle(&ob, "1-short", &["sleep", "1000"]);
    annotate(&b, "1");
    let b = env.bundle(&ob, "2-unbounded", &["sleep", "3"]);
    annotate(&b, "0");
    env.bundle(&ob, "3-default", &["sleep", "1000"]);
    let b = env.bundle(&ob, "4-bad", &["true"]);
    annotate(&b, "soon");
    env.bundle(&ob, "5-after", &["echo", "after"]);

    let t = std::time::Instant::now();
    let r = env.onboot(&ob, &["--timeout", "2"]);
    assert!(t.elapsed() < Duration::from_secs(60));
    assert_eq!(r.code, 1);
    assert_eq!(
        r.line("1-short"),
        "1-short: timed out after 1s, killed: exit code 137"
    );
    assert_eq!(r.line("2-unbounded"), "2-unbounded: exit code 0");
    assert_eq!(
        r.line("3-default"),
        "3-default: timed out after 2s, killed: exit code 137"
    );
    assert_eq!(
        r.line("4-bad"),
        format!(
            "4-bad: error: {}: annotation `lkinit.timeout` is `soon`: expected whole seconds up \
             to 2592000 (0: no limit)",
            ob.join("4-bad/config.json").display()
        )
    );
    assert_eq!(r.line("5-after"), "5-after: exit code 0");
    assert!(env.containers().is_empty());
    assert!(env.my_mounts().is_empty());

    // Without --timeout, the annotation alone bounds its bundle; `--timeout 0` is no limit.
    std::fs::remove_dir_all(ob.join("3-default")).unwrap();
    std::fs::remove_dir_all(ob.join("4-bad")).unwrap();
    let r = env.onboot(&ob, &["--timeout", "0"]);
    assert_eq!(
        r.line("1-short"),
        "1-short: timed out after 1s, killed: exit code 137"
    );
    assert_eq!(r.line("2-unbounded"), "2-unbounded: exit code 0");
}
