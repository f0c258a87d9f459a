//! Writes lkinit's man pages and shell completions, generated from its command line
//! definitions, so they cannot drift from what the binary accepts.
//!
//! `cargo run --features docs --bin lkinit-docs -- DIR` writes
//! `DIR/man/man1/lkinit.1`, `lkinit-COMMAND.1` for each command, and
//! `DIR/bash-completion/completions/lkinit`, `DIR/zsh/site-functions/_lkinit`,
//! `DIR/fish/vendor_completions.d/lkinit.fish` (the layout of /usr/share).

use clap::CommandFactory;
use clap_complete::Shell;
use std::path::{Path, PathBuf};

fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(path, bytes)
}

fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    write(&dir.join(format!("{}.1", cmd.get_name())), &page)?;
    n += 1;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("{}-{}", cmd.get_name(), sub.get_name());
        let sub = sub.clone().name(name.clone());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page)?;
        write(&dir.join(format!("{name}.1")), &page)?;
        n += 1;
    }
    Ok(n)
}

fn main() {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!(
            "usage: lkinit-docs DIR   (writes DIR/man/man1, DIR/bash-completion, DIR/zsh, DIR/fish)"
        );
        std::process::exit(2);
    };
    let mut cmd = lkinit::cli::Cli::command();
    cmd.build();
    let result = (|| -> std::io::Result<()> {
        let n = man_pages(&cmd, &out.join("man/man1"))?;
        for (shell, path) in [
            (Shell::Bash, "bash-completion/completions/lkinit"),
            (Shell::Zsh, "zsh/site-functions/_lkinit"),
            (Shell::Fish, "fish/vendor_completions.d/lkinit.fish"),
        ] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "lkinit", &mut buf);
            write(&out.join(path), &buf)?;
        }
        println!(
            "{n} man pages and 3 completions written under {}",
            out.display()
        );
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("lkinit-docs: {}: {e}", out.display());
        std::process::exit(1);
    }
}
