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
