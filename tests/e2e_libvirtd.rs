//! End-to-end: nothing is lost and nothing is left behind when libvirtd restarts under a
//! create or a destroy (or stays away), against the real libvirtd, sshd and TCG guests.
//!
//! These tests stop libvirtd for the whole host, so scripts/test runs this binary alone (the
//! other fault tests, in e2e_faults, run beside other binaries); here they take turns.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The two tests each stop libvirtd: one at a time.
static LIBVIRTD: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    LIBVIRTD.lock().unwrap_or_else(|p| p.into_inner())
}

fn systemd() -> bool {
    std::fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
}

fn libvirtd_running() -> bool {
    Command::new("pgrep")
        .args(["-x", "libvirtd"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// libvirtd and the sockets systemd would start it again from on the next connection.
const LIBVIRTD_UNITS: [&str; 4] = [
    "libvirtd.socket",
    "libvirtd-ro.socket",
    "libvirtd-admin.socket",
    "libvirtd.service",
];

/// Stop libvirtd as an upgrade does (qemu and the guests keep running).
fn stop_libvirtd() {
    let status = if systemd() {
        Command::new("systemctl")
            .arg("stop")
            .args(LIBVIRTD_UNITS)
            .status()
    } else {
        Command::new("pkill")
            .args(["-TERM", "-x", "libvirtd"])
            .status()
    };
    assert!(status.unwrap().success(), "stopping libvirtd");
    let deadline = Instant::now() + Duration::from_secs(20);
    while libvirtd_running() {
        assert!(Instant::now() < deadline, "libvirtd did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn start_libvirtd() {
    if !libvirtd_running() {
        let status = if systemd() {
            Command::new("systemctl")
                .arg("start")
                .args(LIBVIRTD_UNITS)
                .status()
        } else {
            Command::new("libvirtd").arg("-d").status()
        };
        assert!(status.unwrap().success(), "starting libvirtd");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while strata::vm::Libvirt::open("qemu:///system").is_err() {
        assert!(Instant::now() < deadline, "libvirtd did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Starts libvirtd again when a test that stopped it fails before it could.
struct LibvirtdBack;

impl Drop for LibvirtdBack {
    fn drop(&mut self) {
        start_libvirtd();
    }
}

#[test]
fn a_create_survives_a_libvirtd_restart_at_each_of_three_moments() {
    let _only = exclusive();
    let (lv, paths, mut cleanup, net, base) = scenario("lvd");
    let names: Vec<String> = (1..=3).map(|i| format!("{base}-{i}")).collect();
    cleanup.vms = names.clone();
    let _back = LibvirtdBack;
    // One restart, three moments: 3 s, 0.7 s and 0.3 s into each create.
    let first = spawn_strata(&create_args(&names[0], &net), &[]);
    std::thread::sleep(Duration::from_millis(2300));
    let second = spawn_strata(&create_args(&names[1], &net), &[]);
    std::thread::sleep(Duration::from_millis(400));
    let third = spawn_strata(&create_args(&names[2], &net), &[]);
    std::thread::sleep(Duration::from_millis(300));
    stop_libvirtd();
    std::thread::sleep(Duration::from_secs(2));
    start_libvirtd();
    for (name, child) in names.iter().zip([first, second, third]) {
        let out = wait_output(child);
        assert!(
            out.status.success(),
            "create {name} across a libvirtd restart failed:\n{}",
            stderr_of(&out)
        );
        assert_eq!(ok(&["vm", "ssh", name, "--", "hostname"]).trim(), name);
    }
    let lv = if lv.answers() { lv } else { system() };
    for name in &names {
        ok(&["vm", "destroy", name]);
        assert_gone(&lv, &paths, name, &net);
    }
    cleanup.close();
}

#[test]
fn a_destroy_or_a_create_cut_off_from_libvirtd_is_finished_by_the_next_command() {
    let _only = exclusive();
    let (_lv, paths, mut cleanup, net, base) = scenario("lvg");
    let (cut, lost) = (format!("{base}-d"), format!("{base}-c"));
    cleanup.vms = vec![cut.clone(), lost.clone()];
    let _back = LibvirtdBack;

    // A destroy with libvirtd restarting 0.2 s into it: it finishes, or the next destroy does.
    let mut args = create_args(&cut, &net);
    args.push("--no-wait");
    ok(&args);
    let destroy = spawn_strata(&["vm", "destroy", &cut], &[]);
    std::thread::sleep(Duration::from_millis(200));
    stop_libvirtd();
    std::thread::sleep(Duration::from_secs(2));
    start_libvirtd();
    let out = wait_output(destroy);
    if !out.status.success() {
        let again = strata(&["vm", "destroy", &cut]);
        assert!(
            again.status.success(),
            "{}\n{}",
            stderr_of(&out),
            stderr_of(&again)
        );
    }
    assert_gone(&system(), &paths, &cut, &net);

    // A create whose libvirtd stays away (past a short patience): a clear error, and the
    // very next strata command, once libvirtd is back, rolls it back.
    let mut args = create_args(&lost, &net);
    args.push("--no-wait");
    let create = spawn_strata(&args, &[("STRATA_LIBVIRT_PATIENCE", "3")]);
    std::thread::sleep(Duration::from_millis(500));
    stop_libvirtd();
    let out = wait_output(create);
    let said = stderr_of(&out);
    if out.status.success() {
        // It was quicker than the stop: nothing to roll back; destroy it as usual.
        start_libvirtd();
        ok(&["vm", "destroy", &lost]);
    } else {
        assert!(
            said.contains("libvirt") && said.contains("hint:"),
            "an unclear error: {said}"
        );
        start_libvirtd();
        let listed = strata(&["vm", "list", "--output", "json"]);
        assert!(listed.status.success(), "{}", stderr_of(&listed));
        let note = stderr_of(&listed);
        let rows = String::from_utf8_lossy(&listed.stdout);
        assert!(
            note.contains(&format!("left of '{lost}'")) || !rows.contains(&lost),
            "vm list did not finish the lost create: {note}\n{rows}"
        );
    }
    assert_gone(&system(), &paths, &lost, &net);
    cleanup.close();
}
