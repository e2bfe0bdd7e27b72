//! Bad flag values, through the built binary: strata's own one-line error naming the option
//! and a hint, exit code 2, and nothing touched. Runs against libvirt's in-process test
//! driver with private state and cache directories, so it needs no daemon.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// A private directory for one test's state, cache and HOME; removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("strata-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }

    fn strata(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--connect", "test:///default"])
            .args(args)
            .env("STRATA_STATE_DIR", self.dir.join("state"))
            .env("STRATA_CACHE_DIR", self.dir.join("cache"))
            .env("HOME", self.dir.join("home"))
            .env_remove("LIBVIRT_DEFAULT_URI")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// What strata left in the scratch directory.
    fn contents(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn bad_values_get_strata_errors_naming_the_option() {
    let scratch = Scratch::new("values");
    let cases: &[(&str, &[&str])] = &[
        (
            "--disk",
            &["vm", "create", "x", "-t", "debian-12", "--disk", "-5G"],
        ),
        (
            "--memory",
            &["vm", "create", "x", "-t", "debian-12", "--memory", "2048"],
        ),
        (
            "--cpus",
            &["vm", "create", "x", "-t", "debian-12", "--cpus", "0"],
        ),
        (
            "--ssh-timeout",
            &["vm", "create", "x", "-t", "debian-12", "--ssh-timeout", "0"],
        ),
        (
            "--cpus",
            &[
                "vm",
                "create",
                "x",
                "-t",
                "t",
                "--cpus",
                "18446744073709551616",
            ],
        ),
        ("--timeout", &["vm", "stop", "x", "--timeout", "-1"]),
        (
            "--ssh-timeout",
            &["vm", "start", "x", "--ssh-timeout", "-30"],
        ),
        ("PORTS", &["vm", "forward", "x", "0"]),
        (
            "--data-disk",
            &["engine", "install", "x", "--data-disk", "99999999999T"],
        ),
        ("--tail", &["logs", "stack.toml", "web", "--tail", "-1"]),
        (
            "--subnet",
            &["net", "create", "n", "--subnet", "10.0.0.0/33"],
        ),
    ];
    for (option, args) in cases {
        let out = scratch.strata(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 2, "{args:?}: one error and one hint: {stderr}");
        assert!(
            lines[0].starts_with(&format!("error: {option}: '")),
            "{args:?}: {stderr}"
        );
        assert!(lines[1].starts_with("  hint: "), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            scratch.contents().is_empty(),
            "{args:?} touched {:?}",
            scratch.contents()
        );
    }
}

#[test]
fn other_command_line_mistakes_keep_clap_messages() {
    let scratch = Scratch::new("clap");
    let out = scratch.strata(&["vm", "create", "x", "-t", "debian-12", "--bogus"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unexpected argument '--bogus'"), "{stderr}");
    assert!(scratch.contents().is_empty());
}

#[test]
fn swarm_port_probes_need_two_vms() {
    let scratch = Scratch::new("probes");
    let out = scratch.strata(&["check", "--swarm-ports", "web-1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: --swarm-ports") && stderr.contains("hint: "),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(scratch.contents().is_empty(), "{:?}", scratch.contents());
}

/// `--dry-run` only where the whole job can be written as a script, and only with
/// `--explain`; `--explain` takes a file only after '=', so it never eats the command.
#[test]
fn dry_run_is_refused_where_it_cannot_keep_its_promise() {
    let scratch = Scratch::new("dryrun");
    let out = scratch.strata(&["--dry-run", "--explain", "vm", "destroy", "x"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: --dry-run is not available for this command")
            && stderr.contains("hint: "),
        "{stderr}"
    );
    let out = scratch.strata(&["--dry-run", "net", "create", "n", "--subnet", "10.9.0.0/24"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--explain"),
        "{out:?}"
    );
    assert!(scratch.contents().is_empty(), "{:?}", scratch.contents());

    // A command not explained yet says so in its script instead of looking explained.
    let out = scratch.strata(&["--explain", "net", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.starts_with("#!/bin/bash\n"), "{stderr}");
    assert!(
        stderr.contains("# note: this command is not explained yet"),
        "{stderr}"
    );
}

/// Completions and the man page come from the same command definitions as the parser.
#[test]
fn completions_and_man_page_know_every_command() {
    let scratch = Scratch::new("complete");
    for shell in ["bash", "zsh", "fish"] {
        let out = scratch.strata(&["completions", shell]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{shell}: {out:?}");
        for word in ["swarm", "import-image", "dry-run", "explain"] {
            assert!(text.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = scratch.strata(&["manpage"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(text.contains(".TH strata 1"), "{text}");
    assert!(text.contains("\\-\\-explain"), "{text}");
    assert!(scratch.contents().is_empty(), "{:?}", scratch.contents());
}
