//! The init package: the layout scripts/init-layout.sh makes (the Dockerfiles run it), the
//! two Dockerfiles and build.yml agreeing, and the Dockerfile's final stage built for real
//! with buildah from this build's binary (no Docker engine or base image needed: the stage
//! is FROM scratch).
#![allow(
    clippy::unwrap_used,
    reason = "test code throughout: a failed unwrap fails the test (allow-unwrap-in-tests covers only #[test] functions)"
)]

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn layout(root: &Path) {
    let st = Command::new(repo().join("scripts/init-layout.sh"))
        .arg(LKINIT)
        .arg(root)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Checks a laid-out root: the binary itself and every name resolving to it.
fn check_layout(root: &Path) {
    let service = root.join("usr/bin/service");
    let md = std::fs::symlink_metadata(&service).unwrap();
    assert!(
        md.file_type().is_file(),
        "service must be the binary itself"
    );
    assert_eq!(md.permissions().mode() & 0o777, 0o755);
    assert!(
        std::fs::read(&service).unwrap() == std::fs::read(LKINIT).unwrap(),
        "usr/bin/service is not the lkinit binary"
    );
    for (link, target) in [
        ("usr/bin/onboot", "service"),
        ("usr/bin/onshutdown", "service"),
        ("usr/bin/init", "service"),
        ("usr/bin/lkinit", "service"),
        ("sbin/init", "../usr/bin/service"),
        ("init", "usr/bin/service"),
    ] {
        // Relative, so they resolve inside the image wherever it is mounted.
        assert_eq!(
            std::fs::read_link(root.join(link)).unwrap(),
            Path::new(target),
            "{link}"
        );
        assert_eq!(
            root.join(link).canonicalize().unwrap(),
            service.canonicalize().unwrap(),
            "{link}"
        );
    }
}

fn run(path: &Path, args: &[&str]) -> Run {
    let mut c = Command::new(path);
    c.args(args);
    Run::of(c)
}

#[test]
fn every_name_is_the_binary_and_acts_as_its_command() {
    let env = TestEnv::new();
    let root = env.dir.join("root");
    layout(&root);
    check_layout(&root);

    for (name, usage) in [
        ("usr/bin/onboot", "Usage: lkinit onboot"),
        ("usr/bin/onshutdown", "Usage: lkinit onshutdown"),
        ("usr/bin/init", "Usage: lkinit init"),
        ("sbin/init", "Usage: lkinit init"),
        ("init", "Usage: lkinit init"),
        ("usr/bin/service", "Usage: service"),
    ] {
        let r = run(&root.join(name), &["--help"]);
        assert_eq!(r.code, 0, "{name}");
        assert!(r.stdout.contains(usage), "{name}: {}", r.stdout);
    }
    // As a command, init refuses to run anywhere but as PID 1: it would take the machine
    // down.
    let r = run(&root.join("init"), &[]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("must run as PID 1"), "{}", r.stderr);
}

/// A Dockerfile's instructions, comments and blank lines left out.
fn instructions(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn dockerfiles_and_build_yml_agree() {
    let top = instructions(&repo().join("Dockerfile"));
    let pkg = instructions(&repo().join("pkg/init/Dockerfile"));
    assert_eq!(top, pkg, "pkg/init/Dockerfile differs from Dockerfile");

    // The final stage is the tree the layout script makes, nothing else.
    let last_from = top.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    assert_eq!(top[last_from], "FROM scratch");
    let copies: Vec<&String> = top[last_from..]
        .iter()
        .filter(|l| l.starts_with("COPY"))
        .collect();
    assert_eq!(copies, ["COPY --from=build /out/ /"]);
    assert!(
        top[..last_from].iter().any(|l| l.starts_with("RUN ")
            && l.contains("scripts/init-layout.sh target/release/lkinit /out")),
        "the build stage does not lay out /out with scripts/init-layout.sh"
    );

    // Every source the build stage copies exists here, and linuxkit pkg build (whose
    // context is pkg/init) gets each of them through build.yml's extra-sources.
    let yml: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo().join("pkg/init/build.yml")).unwrap())
            .unwrap();
    let extra: Vec<(String, String)> = yml["extra-sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let (s, d) = v.as_str().unwrap().split_once(':').unwrap();
            (s.to_string(), d.to_string())
        })
        .collect();
    for (src, _) in &extra {
        assert!(
            repo().join("pkg/init").join(src).exists(),
            "extra-sources: {src} does not exist"
        );
    }
    let copied: Vec<&str> = top[..last_from]
        .iter()
        .filter(|l| l.starts_with("COPY "))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[1..words.len() - 1].to_vec()
        })
        .collect();
    // What cargo reads to build the package is all in the build context.
    for needed in ["Cargo.toml", "Cargo.lock", "build.rs", "src"] {
        if repo().join(needed).exists() {
            assert!(
                copied.contains(&needed),
                "the build stage does not copy {needed}"
            );
        }
    }
    for l in top[..last_from].iter().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = l.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(repo().join(src).exists(), "{l}: {src} does not exist");
            assert!(
                extra.iter().any(|(_, d)| d == src),
                "{l}: {src} is not in pkg/init/build.yml extra-sources"
            );
        }
    }
}

#[test]
fn final_stage_builds_from_the_binary() {
    ensure_installed(&["buildah"]);
    let env = TestEnv::new();
    let ctx = env.dir.join("ctx");
    layout(&ctx.join("out"));
    // The real Dockerfile's final stage, fed the prebuilt tree instead of the build stage.
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let stage = &text[text.rfind("\nFROM scratch").expect("a FROM scratch stage") + 1..];
    assert_eq!(stage.matches("COPY --from=build /out/ /").count(), 1);
    std::fs::write(
        ctx.join("Dockerfile"),
        stage.replace("COPY --from=build /out/ /", "COPY out/ /"),
    )
    .unwrap();

    let storage = env.dir.join("storage");
    let runroot = env.dir.join("run");
    let buildah = |args: &[&str]| {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(&storage)
            .arg("--runroot")
            .arg(&runroot)
            .args(["--storage-driver", "vfs"])
            .args(args);
        let r = Run::of(c);
        assert_eq!(r.code, 0, "buildah {args:?}: {}", r.stderr);
        r.stdout.trim().to_string()
    };
    let tag = format!("localhost/{}:test", unique("lkinit-init-"));
    let ctx_s = ctx.to_string_lossy().to_string();
    buildah(&["bud", "--quiet", "-t", &tag, &ctx_s]);
    let ctr = buildah(&["from", &tag]);
    let mnt = PathBuf::from(buildah(&["mount", &ctr]));
    // The image holds exactly the layout, symlinks kept as symlinks.
    check_layout(&mnt);
    let mut top: Vec<String> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["init", "sbin", "usr"]);
    buildah(&["umount", &ctr]);
    buildah(&["rm", &ctr]);
    buildah(&["rmi", "--all", "--force"]);
}

/// The man pages and completions the image installs come from the command line
/// definitions: one page per command, completions that know the commands.
#[test]
fn man_pages_and_completions_are_generated_from_the_cli() {
    let out = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(repo())
        .args([
            "run",
            "--quiet",
            "--locked",
            "--features",
            "docs",
            "--bin",
            "lkinit-docs",
            "--",
        ])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(st.success(), "lkinit-docs: {st}");
    let man = out.path().join("man/man1");
    for page in [
        "lkinit",
        "lkinit-onboot",
        "lkinit-system-init",
        "lkinit-exec",
        "lkinit-volumes",
    ] {
        let text = std::fs::read_to_string(man.join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(text.contains(".TH"), "{page}.1 is not a man page");
    }
    assert!(
        !man.join("lkinit-nsenter-helper.1").exists(),
        "hidden commands get no page"
    );
    let bash =
        std::fs::read_to_string(out.path().join("bash-completion/completions/lkinit")).unwrap();
    for word in ["onboot", "system-init", "--runtime-root"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    assert!(out.path().join("zsh/site-functions/_lkinit").is_file());
    assert!(
        out.path()
            .join("fish/vendor_completions.d/lkinit.fish")
            .is_file()
    );
}
