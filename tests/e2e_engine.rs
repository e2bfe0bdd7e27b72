//! End-to-end: `strata engine install` into real VMs, one per storage layout (overlay2 on the
//! root ext4, btrfs on a data disk, overlay2 on an LVM volume with xfs ftype=1, devicemapper on
//! an LVM thin pool), each verified through the Docker API over the SSH tunnel, then used: an
//! image built on the host (FROM scratch + Debian's busybox-static) is loaded over the API and
//! a container prints what the test asks. The root layout gets Docker from the host's offline
//! bundle into a plain clone, through both faults of an install (the VM powered off while dpkg
//! runs, then the next run killed mid-apt: the one after converges); the data-disk layouts go
//! onto clones of the template with Docker baked in, whose still-empty engine gives way to the
//! disk (the storage tools are in the template already; under TCG a docker.io install per
//! layout would cost minutes each). Bad input is refused before the guest changes.

mod common;

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, WaitContainerOptions,
};
use common::*;
use futures_util::StreamExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use strata::guest::docker::GuestDocker;
use strata::state::Paths;
use strata::vm::{pool, Libvirt};

/// Load the busybox image into the VM's Docker over the API, run a container that echoes
/// `message`, and return what it printed (the container is removed).
fn run_busybox(lv: &Libvirt, paths: &Paths, vm: &str, tar: &[u8], message: &str) -> String {
    let target = strata::guest::Route::of_vm(lv, paths, vm).unwrap();
    let client = GuestDocker::connect(&target).unwrap();
    let docker = &client.docker;
    load_busybox(&client, tar);
    client.run(async {
        let name = format!("strata-e2e-{}", std::process::id());
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some(BUSYBOX_IMAGE.into()),
                    cmd: Some(vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        format!("echo {message} from $(hostname)"),
                    ]),
                    ..Default::default()
                },
            )
            .await
            .expect("creating the container");
        docker
            .start_container(&created.id, None)
            .await
            .expect("starting the container");
        let mut wait = docker.wait_container(&created.id, None::<WaitContainerOptions>);
        while let Some(status) = wait.next().await {
            assert_eq!(status.expect("waiting for the container").status_code, 0);
        }
        let mut logs = docker.logs(
            &created.id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        let mut printed = String::new();
        while let Some(chunk) = logs.next().await {
            printed.push_str(&chunk.expect("reading the logs").to_string());
        }
        docker
            .remove_container(&created.id, None::<RemoveContainerOptions>)
            .await
            .expect("removing the container");
        printed
    })
}

fn engine_info(vm: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["engine", "info", vm, "--output", "json"])).unwrap()
}

fn spawn_install(vm: &str, extra: &[&str]) -> Spawned {
    Spawned::new(
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["engine", "install", vm])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Bad input on a fresh VM: one clear error each, and the guest and the pool unchanged.
fn refuses_bad_input(lv: &Libvirt, paths: &Paths, vm: &str) {
    let cases: &[(&[&str], &str)] = &[
        (&["--storage", "zfs"], "unknown storage policy 'zfs'"),
        (&["--storage", "btrfs"], "btrfs"),
        (&["--storage", "lvm"], "LVM needs a data disk"),
        (&["--data-disk", "100M"], "too small"),
        (&["--data-disk", "lots"], "is not a size"),
        (&["--version", "99.0"], "99.0"),
        (
            &["--engine-storage", "devicemapper", "--data-disk", "2G"],
            "--engine-storage devicemapper",
        ),
        (&["--log-driver", "syslog"], "unknown log driver"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["engine", "install", vm];
        all.extend_from_slice(args);
        let out = strata(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} should be bad input: {err}"
        );
        assert!(
            err.contains(expected),
            "{args:?}: expected '{expected}' in: {err}"
        );
        assert!(err.contains("hint:"), "{args:?}: no hint in: {err}");
    }
    let pool_handle = pool::ensure(&lv.conn(), paths).unwrap();
    assert!(
        pool::find_volume(
            &pool_handle,
            &pool::vm_volume_name(vm, strata::vm::record::VolumeRole::Data)
        )
        .is_none(),
        "a refused install left a data disk"
    );
    let out = ok(&[
        "vm",
        "ssh",
        vm,
        "--",
        "dpkg-query -W docker.io 2>/dev/null || echo no-docker; ls /etc/docker 2>/dev/null || echo no-config",
    ]);
    assert!(
        out.contains("no-docker") && out.contains("no-config"),
        "{out}"
    );
}

#[test]
fn bundle_installs_on_every_storage_layout_and_containers_run() {
    let (lv, paths, mut cleanup, net, base) = scenario("eng");
    let layouts: [(&str, &[&str]); 4] = [
        ("root", &[]),
        (
            "btrfs",
            &[
                "--storage",
                "btrfs",
                "--data-disk",
                "3G",
                "--version",
                "20.10.24",
            ],
        ),
        ("lvm", &["--storage", "lvm", "--data-disk", "3G"]),
        (
            "dm",
            &[
                "--storage",
                "lvm",
                "--engine-storage",
                "devicemapper",
                "--data-disk",
                "3G",
            ],
        ),
    ];
    let vms: Vec<String> = layouts
        .iter()
        .map(|(tag, _)| format!("{base}-{tag}"))
        .collect();
    cleanup.vms = vms.clone();
    ok(&["template", "build", "debian-12-docker"]);
    let creates: Vec<_> = vms
        .iter()
        .enumerate()
        .map(|(i, vm)| match i {
            0 => Spawned::new(spawn_create(vm, &net)),
            _ => Spawned::new(spawn_strata(&baked_create_args(vm, &net), &[])),
        })
        .collect();
    for (vm, child) in vms.iter().zip(creates) {
        assert_success(&format!("vm create {vm}"), &child.output());
    }

    refuses_bad_input(&lv, &paths, &vms[0]);

    // A clone of the baked template only verifies: nothing pushed, installed or rewritten (at
    // most the boot-time start is waited for).
    let out = ok(&["engine", "install", &vms[2]]);
    assert!(!out.contains("packages"), "{out}");
    assert!(!out.contains("daemon.json"), "{out}");
    assert!(out.contains("verified: docker.io 20.10"), "{out}");
    let info = engine_info(&vms[2]);
    assert_eq!(info["record"]["source"], "baked", "{info}");
    assert_eq!(info["observed"]["driver"], "overlay2", "{info}");
    assert_eq!(info["observed"]["backing_filesystem"], "extfs", "{info}");
    assert_eq!(info["mismatches"], serde_json::json!([]), "{info}");

    // The root layout meets both faults of an install, one after the other. First the VM is
    // powered off while dpkg runs in it: a clear error; started again, the next run finishes
    // what dpkg left (`dpkg --configure -a`). That run is killed (kill -9 drops its SSH
    // connection mid-apt); the one after it must converge.
    let others: Vec<_> = layouts[1..]
        .iter()
        .zip(&vms[1..])
        .map(|((_, args), vm)| spawn_install(vm, args))
        .collect();
    let powered_off = spawn_install(&vms[0], &[]);
    // One login that watches for dpkg every half second (a login per look cost 5-13 s in a
    // guest this busy, so a look came every ~10 s).
    let watched = strata(&[
        "vm",
        "ssh",
        &vms[0],
        "--",
        "for i in $(seq 900); do \
           pgrep -x dpkg >/dev/null && test -e /var/lib/dpkg/lock-frontend && exit 0; \
           sleep 0.5; done; exit 1",
    ]);
    assert!(
        watched.status.success(),
        "the install never reached dpkg: {}",
        stderr_of(&watched)
    );
    let dom = lv.conn().lookup_domain_by_name(&vms[0]).unwrap();
    strata::vm::domain::force_off(&dom).unwrap();
    let out = powered_off.output();
    assert!(
        !out.status.success(),
        "an install whose VM went away succeeded"
    );
    assert!(stderr_of(&out).contains("hint:"), "{}", stderr_of(&out));
    ok(&["vm", "start", &vms[0]]);

    let mut interrupted = spawn_install(&vms[0], &[]);
    let started = Instant::now();
    let stderr = interrupted.child().stderr.take().unwrap();
    let mut seen = String::new();
    {
        use std::io::{BufRead, BufReader};
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("installing") {
                std::thread::sleep(Duration::from_secs(8));
                interrupted.child().kill().unwrap();
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "install never reached apt: {seen}"
            );
        }
    }
    let _ = interrupted.child().wait();
    assert!(
        seen.contains("installing"),
        "the install after the power-off did not install packages again: {seen}"
    );
    let rerun = ok(&["engine", "install", &vms[0]]);
    assert!(rerun.contains("verified: docker.io"), "{rerun}");

    // Asked for a data disk, each baked clone's engine (its data-root made at boot, still
    // empty) gives way to the disk and runs again on it.
    for ((tag, _), (vm, child)) in layouts[1..].iter().zip(vms[1..].iter().zip(others)) {
        let out = assert_success(&format!("engine install {vm} ({tag})"), &child.output());
        assert!(out.contains("verified: docker.io 20.10"), "{out}");
        if *tag != "dm" {
            assert!(
                out.contains("in place of the baked engine's empty one"),
                "{out}"
            );
        }
    }

    // What the engine reports through the tunnel, per layout.
    let expected = [
        ("overlay2", Some("extfs"), "root_fs"),
        ("btrfs", None, "disk_btrfs"),
        ("overlay2", Some("xfs"), "lvm_xfs"),
        ("devicemapper", None, "lvm_thin_pool"),
    ];
    let tar = busybox_rootfs_tar();
    for (vm, (driver, backing, layout)) in vms.iter().zip(expected) {
        let info = engine_info(vm);
        let seen = &info["observed"];
        assert_eq!(seen["driver"], driver, "{vm}: {info}");
        assert_eq!(info["record"]["layout"], layout, "{vm}: {info}");
        if let Some(fs) = backing {
            assert_eq!(seen["backing_filesystem"], fs, "{vm}: {info}");
            assert_eq!(seen["supports_d_type"], true, "{vm}: {info}");
        }
        assert_eq!(seen["root_dir"], "/var/lib/docker", "{vm}: {info}");
        assert_eq!(seen["logging_driver"], "local", "{vm}: {info}");
        assert_eq!(seen["cgroup_version"], "2", "{vm}: {info}");
        assert_eq!(info["mismatches"], serde_json::json!([]), "{vm}: {info}");
        if driver == "devicemapper" {
            assert_eq!(seen["pool_name"], "strata-thinpool", "{vm}: {info}");
        }
        let printed = run_busybox(&lv, &paths, vm, &tar, "hello-strata");
        assert!(
            printed.contains("hello-strata from"),
            "{vm}: the container printed {printed:?}"
        );
    }

    // The data-root really is the disk: the guest's mount table says so.
    let mounts = ok(&[
        "vm",
        "ssh",
        &vms[2],
        "--",
        "findmnt -n -o SOURCE,FSTYPE /var/lib/docker",
    ]);
    assert!(
        mounts.contains("/dev/mapper/strata-docker") && mounts.contains("xfs"),
        "{mounts}"
    );

    // A daemon.json that dockerd rejects does not leave the guest without Docker: the
    // previous file comes back and Docker runs again.
    let sha = "sha256sum /etc/docker/daemon.json";
    let before = ok(&["vm", "ssh", &vms[0], "--", sha]);
    let target = strata::guest::Route::of_vm(&lv, &paths, &vms[0]).unwrap();
    let session = strata::guest::ssh::connect(&target, Duration::from_secs(15)).unwrap();
    let err = strata::engine::scripts::apply_daemon_json(
        &session,
        "{\"storage-driver\": \"no-such-driver\"}\n",
        strata::guest::facts::EngineVersion::new(20, 10, 24),
    )
    .unwrap_err();
    assert!(
        err.message().contains("previous configuration is back"),
        "{err}"
    );
    assert_eq!(ok(&["vm", "ssh", &vms[0], "--", sha]), before);
    let active = ok(&["vm", "ssh", &vms[0], "--", "systemctl is-active docker"]);
    assert_eq!(active.trim(), "active");
    assert_eq!(engine_info(&vms[0])["mismatches"], serde_json::json!([]));

    // A re-run with nothing to do changes nothing.
    let again = ok(&["engine", "install", &vms[1], "--storage", "btrfs"]);
    assert!(again.contains("nothing changed"), "{again}");

    // A data disk of another size is refused, not replaced.
    let out = strata(&[
        "engine",
        "install",
        &vms[1],
        "--storage",
        "btrfs",
        "--data-disk",
        "5G",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has a data disk"));

    for vm in &vms {
        ok(&["vm", "destroy", vm]);
        assert_gone(&lv, &paths, vm, &net);
    }
    cleanup.close();
}
