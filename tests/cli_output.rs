//! A reader that went away (`strata ... | head`) or a closed stderr must not panic strata or
//! change its exit code: runs the built binary against libvirt's in-process test driver with
//! its output on a pipe nobody reads. Needs no daemon.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// The write end of a pipe whose read end is already closed: every write to it fails
/// with EPIPE. Close-on-exec, so no other test's child inherits a reader.
fn pipe_nobody_reads() -> OwnedFd {
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    drop(read_end);
    write_end
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strata-out-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn strata(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(["--connect", "test:///default"])
        .args(args)
        .env("STRATA_STATE_DIR", dir.join("state"))
        .env("STRATA_CACHE_DIR", dir.join("cache"))
        .env_remove("LIBVIRT_DEFAULT_URI")
        .stdin(Stdio::null());
    cmd
}

fn assert_no_panic(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{what}: {stderr}");
}

#[test]
fn a_closed_stdout_is_not_a_failure() {
    let dir = scratch("stdout");
    for args in [
        &["net", "list"][..],
        &["net", "list", "--output", "json"][..],
        &["check", "--list"][..],
    ] {
        let out = strata(&dir, args)
            .stdout(pipe_nobody_reads())
            .output()
            .unwrap();
        assert_no_panic(&out, &format!("{args:?}"));
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_stderr_keeps_the_exit_code() {
    let dir = scratch("stderr");
    // An error is reported on stderr; a failed report must not turn exit 2 into a panic's 101.
    for args in [
        &["vm", "destroy", "no-such-vm"][..],
        &["vm", "create", "x", "-t", "debian-12", "--disk", "-5G"][..],
    ] {
        let out = strata(&dir, args)
            .stdout(pipe_nobody_reads())
            .stderr(pipe_nobody_reads())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
