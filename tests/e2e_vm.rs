//! End-to-end: the strata binary against the real libvirtd on this machine, booting real VMs
//! from the built template on an isolated network this test creates. Nothing here is
//! skipped: if libvirtd or the template is missing, the test fails and says why.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};
use strata::state::Paths;
use strata::vm::pool;

fn template_sha(paths: &Paths) -> String {
    let record = strata::image::read_record(&paths.template_dir(TEMPLATE))
        .unwrap()
        .expect("template debian-12 must be built (scripts/test builds it)");
    let file = paths.pool_dir().join(&record.volume);
    let actual = strata::digest::sha256_file(&file).unwrap();
    assert_eq!(
        actual, record.sha256,
        "template volume differs from its recorded sha256"
    );
    actual
}

/// Read the command lines of the qemu processes of `vms` until `create` ends, failing when one
/// holds a private key; returns how many command lines were read.
fn watch_qemu_command_lines(create: &mut std::process::Child, vms: &[&str]) -> usize {
    let mut seen = 0;
    while create.try_wait().unwrap().is_none() {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            if !line.contains("qemu-system") || !vms.iter().any(|vm| line.contains(vm)) {
                continue;
            }
            seen += 1;
            assert!(
                !line.contains("PRIVATE KEY") && !line.contains("strata.host_key="),
                "a private host key on qemu's command line: {line}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    seen
}

fn vm_json(name: &str) -> serde_json::Value {
    let list: serde_json::Value =
        serde_json::from_str(&ok(&["vm", "list", "--output", "json"])).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in vm list: {list}"))
}

#[test]
fn two_vms_boot_talk_and_leave_nothing_behind() {
    let lv = system();
    let paths = Paths::discover();
    ok(&["template", "build", TEMPLATE]);
    // A second build with nothing changed is a no-op.
    assert!(ok(&["template", "build", TEMPLATE]).contains("up to date"));
    let sha_before = template_sha(&paths);
    let mut cleanup = Cleanup {
        vms: vec![],
        network: None,
    };
    let (net, prefix) = make_network(&mut cleanup, "pair");
    let (a, b) = (
        format!("e2e-a-{}", std::process::id()),
        format!("e2e-b-{}", std::process::id()),
    );
    cleanup.vms = vec![a.clone(), b.clone()];

    // Both at once: creates must not serialise each other.
    let (mut ca, cb) = (spawn_create(&a, &net), spawn_create(&b, &net));
    // While they boot, no process shows the guests' private host keys to local users.
    let seen = watch_qemu_command_lines(&mut ca, &[&a, &b]);
    assert!(seen > 0, "never saw the qemu of {a} or {b} running");
    for (name, out) in [(&a, wait_output(ca)), (&b, wait_output(cb))] {
        assert!(
            out.status.success(),
            "create {name} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("boot-to-ssh"), "no per-stage times: {text}");
    }
    // Once first boot has used it, the host's private key is gone from the definition.
    let inactive = lv
        .conn()
        .lookup_domain_by_name(&a)
        .unwrap()
        .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
        .unwrap();
    assert!(
        inactive.contains("strata.hostname="),
        "first-boot data missing: {inactive}"
    );
    assert!(
        !inactive.contains("strata.host_key=") && !inactive.contains("PRIVATE KEY"),
        "private host key left in the domain XML"
    );
    let handover: Vec<_> = std::fs::read_dir(paths.state.join("handover"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    // Only these two VMs' files: the other tests of this binary may be starting theirs now.
    let named = |p: &std::path::PathBuf, vm: &str| {
        p.file_name()
            .is_some_and(|f| f.to_string_lossy().starts_with(&format!("{vm}-")))
    };
    assert!(
        handover.iter().all(|p| !named(p, &a) && !named(p, &b)),
        "host key files outlived the start: {handover:?}"
    );
    let (va, vb) = (vm_json(&a), vm_json(&b));
    let ip_a = va["ip"].as_str().unwrap().to_string();
    let ip_b = vb["ip"].as_str().unwrap().to_string();
    assert!(ip_a.starts_with(&prefix) && ip_b.starts_with(&prefix) && ip_a != ip_b);
    assert_eq!(va["state"], "running");
    let facts = strata::host::accel::KvmFacts::read().unwrap();
    let expected = strata::host::accel::choose(strata::host::accel::AccelRequest::Auto, &facts)
        .unwrap()
        .0;
    assert_eq!(
        va["accel"],
        expected.as_str(),
        "vm list shows the accelerator that auto chose"
    );

    // Commands run in the guest; hostname came through first-boot data; exit codes pass through.
    assert_eq!(ok(&["vm", "ssh", &a, "--", "hostname"]).trim(), a);
    let status = strata(&["vm", "ssh", &a, "--", "sh", "-c", "exit 7"]).status;
    assert_eq!(status.code(), Some(7));
    // Our stdin reaches the command, and so does its end (as with `ssh VM CMD < FILE`).
    let mut counted = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["vm", "ssh", &a, "--", "cat > /tmp/in && wc -c < /tmp/in"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = counted.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        std::io::Write::write_all(&mut input, &vec![b'x'; 300_000]).unwrap();
    });
    let out = finish_bounded(
        counted,
        "vm ssh with stdin",
        std::time::Duration::from_secs(120),
    );
    writer.join().unwrap();
    assert_eq!(assert_success("vm ssh with stdin", &out).trim(), "300000");
    // The root filesystem grew to the requested disk (default 8G) on first boot.
    let df = ok(&["vm", "ssh", &b, "--", "df", "--output=size", "-B1G", "/"]);
    let size: u64 = df.lines().last().unwrap().trim().parse().unwrap();
    assert!(size >= 7, "root filesystem is {size}G, not grown");

    // The two guests reach each other over the isolated network.
    ok(&["vm", "ssh", &a, "--", "ping", "-c", "2", "-W", "3", &ip_b]);
    ok(&["vm", "ssh", &b, "--", "ping", "-c", "2", "-W", "3", &ip_a]);

    // A changed host key is refused.
    let known = paths.vm_known_hosts(&a);
    let pinned = std::fs::read_to_string(&known).unwrap();
    let other = strata::guest::keys::generate("impostor").unwrap();
    std::fs::write(
        &known,
        strata::guest::route::known_hosts_line(&ip_a, &other.public_openssh),
    )
    .unwrap();
    let refused = strata(&["vm", "ssh", &a, "--", "true"]);
    std::fs::write(&known, pinned).unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("host key mismatch"));

    // Stop and start keep the VM and its address.
    ok(&["vm", "stop", &a, "--timeout", "30"]);
    assert_eq!(vm_json(&a)["state"], "shut off");
    ok(&["vm", "start", &a]);
    assert_eq!(ok(&["vm", "ssh", &a, "--", "hostname"]).trim(), a);

    ok(&["vm", "destroy", &a]);
    ok(&["vm", "destroy", &b]);
    assert_gone(&lv, &paths, &a, &net);
    assert_gone(&lv, &paths, &b, &net);
    assert_eq!(
        template_sha(&paths),
        sha_before,
        "the template volume was written"
    );
    cleanup.close();
}

#[test]
fn interrupted_create_leaves_nothing_and_rerun_works() {
    let (lv, paths, cleanup, net, vm) = scenario("intr");

    let wait_for_domain = |deadline: Duration| {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if lv.conn().lookup_domain_by_name(&vm).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("create never defined the domain");
    };

    // Ctrl-C while it waits for the guest: the create rolls itself back.
    let child = spawn_create(&vm, &net);
    wait_for_domain(Duration::from_secs(60));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = wait_output(child);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("interrupted"));
    assert_gone(&lv, &paths, &vm, &net);

    // SIGKILL cannot be caught: the journal stays, and the next run cleans it up first.
    let mut child = spawn_create(&vm, &net);
    wait_for_domain(Duration::from_secs(60));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        paths
            .state
            .join("journal")
            .join(format!("{vm}.json"))
            .exists(),
        "journal must survive a kill"
    );
    let out = wait_output(spawn_create(&vm, &net));
    assert!(
        out.status.success(),
        "re-run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ok(&["vm", "ssh", &vm, "--", "hostname"]).trim(), vm);
    let first_ip = vm_json(&vm)["ip"].as_str().unwrap().to_string();
    ok(&["vm", "destroy", &vm]);
    assert_gone(&lv, &paths, &vm, &net);

    // The destroyed VM's DHCP lease outlives it; dnsmasq would not hand that address to a new
    // MAC, so the next VM must get another one and still boot to SSH.
    ok(&[
        "vm",
        "create",
        &vm,
        "--template",
        TEMPLATE,
        "--net",
        &net,
        "--memory",
        "768M",
    ]);
    assert_ne!(vm_json(&vm)["ip"].as_str().unwrap(), first_ip);
    assert_eq!(ok(&["vm", "ssh", &vm, "--", "hostname"]).trim(), vm);
    ok(&["vm", "destroy", &vm]);
    assert_gone(&lv, &paths, &vm, &net);
    cleanup.close();
}

#[test]
fn bad_input_gets_one_clear_error() {
    system();
    let cases: [(&[&str], &str); 6] = [
        // dockerd runs (scripts/setup starts it): its default bridge network is in use.
        (
            &["net", "create", "x", "--subnet", "172.17.5.0/24"],
            "Docker network 'bridge'",
        ),
        (
            &["vm", "create", "x", "--template", "no-such"],
            "unknown template 'no-such'",
        ),
        (
            &[
                "vm",
                "create",
                "x",
                "--template",
                TEMPLATE,
                "--net",
                "no-such-net",
            ],
            "network 'no-such-net' does not exist",
        ),
        (
            &[
                "vm",
                "create",
                "x",
                "--template",
                TEMPLATE,
                "--memory",
                "12Q",
            ],
            "--memory: '12Q' is not a size",
        ),
        (
            &["net", "create", "x", "--subnet", "10.0.0.300/24"],
            "is not an IPv4 CIDR",
        ),
        (
            &[
                "--connect",
                "qemu+unix:///system?socket=/nonexistent/sock",
                "vm",
                "list",
            ],
            "cannot reach libvirt",
        ),
    ];
    for (args, expected) in cases {
        let out = strata(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(expected),
            "{args:?}: expected '{expected}' in {err}"
        );
        assert!(err.contains("hint:"), "{args:?}: no hint in {err}");
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error:")).count(),
            1,
            "{err}"
        );
    }
}

/// A cloud-init image (built by strata's own recipe, standing in for a distribution's cloud
/// image) imported as a template: a VM cloned from it gets its hostname, login key and pinned
/// host key from a NoCloud seed.
#[test]
fn imported_cloud_image_boots_with_a_nocloud_seed() {
    let lv = system();
    let paths = Paths::discover();
    let built = build_cloud_template(&paths);
    let image = paths.pool_dir().join(&built.volume);
    let name = format!("cloudy-{}", std::process::id());

    struct RemoveTemplate(String);
    impl Drop for RemoveTemplate {
        fn drop(&mut self) {
            let _ = strata(&["template", "remove", &self.0]);
        }
    }
    let _remove = RemoveTemplate(name.clone());
    let kernel = built.kernel.unwrap().display().to_string();
    let initrd = built.initrd.unwrap().display().to_string();
    let image_arg = image.display().to_string();
    let import = [
        "import-image",
        &name,
        "--from",
        &image_arg,
        "--kernel",
        &kernel,
        "--initrd",
        &initrd,
    ];
    ok(&import);
    let listed = ok(&["template", "list", "--output", "json"]);
    assert!(
        listed.contains(&format!("\"name\": \"{name}\"")),
        "{listed}"
    );
    // Importing twice is refused and changes nothing.
    let again = strata(&import);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    // Not a qcow2: refused.
    let kernel_as_image = strata(&["import-image", "bogus", "--from", &kernel]);
    assert!(
        String::from_utf8_lossy(&kernel_as_image.stderr).contains("not qcow2"),
        "{}",
        String::from_utf8_lossy(&kernel_as_image.stderr)
    );
    assert!(!paths.state.join("imported/bogus").exists());

    let mut cleanup = Cleanup {
        vms: vec![],
        network: None,
    };
    let (net, _) = make_network(&mut cleanup, "cloud");
    let vm = format!("e2e-cloud-{}", std::process::id());
    cleanup.vms = vec![vm.clone()];
    ok(&[
        "vm",
        "create",
        &vm,
        "--template",
        &name,
        "--net",
        &net,
        "--ssh-timeout",
        "600",
    ]);
    assert_eq!(ok(&["vm", "ssh", &vm, "--", "hostname"]).trim(), vm);
    let seed = paths.pool_dir().join(format!("vm_{vm}_seed.img"));
    assert!(seed.exists());
    // The seed names the login key and the public host key, never the private one: that
    // went through fw_cfg, from a file deleted once QEMU had started.
    let user_data = Command::new("mtype")
        .arg("-i")
        .arg(&seed)
        .arg("::user-data")
        .output()
        .unwrap();
    assert!(user_data.status.success(), "reading the seed with mtype");
    let user_data = String::from_utf8_lossy(&user_data.stdout);
    assert!(user_data.contains("ssh_authorized_keys"), "{user_data}");
    assert!(!user_data.contains("PRIVATE KEY"), "{user_data}");
    ok(&["vm", "destroy", &vm]);
    assert_gone(&lv, &paths, &vm, &net);
    assert!(!seed.exists(), "seed left behind");
    cleanup.close();
    ok(&["template", "remove", &name]);
    assert!(!image
        .with_file_name(pool::template_volume_name(&name))
        .exists());
}

/// A VM that stops while booting ends the wait at once (not at the SSH timeout) and is rolled
/// back; QEMU itself dying (reproduced with SIGSEGV, as QEMU 7.2's TCG did once here) gets
/// one reported restart and the create succeeds.
#[test]
fn boot_failures_are_reported_at_once() {
    let (lv, paths, cleanup, net, vm) = scenario("boot");
    let running_domain = || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(dom) = lv.conn().lookup_domain_by_name(&vm) {
                if dom.is_active().unwrap_or(false) {
                    return dom;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("create never started the domain");
    };

    // Powered off under it: the create fails within seconds, names the reason, rolls back.
    let child = spawn_create(&vm, &net);
    let dom = running_domain();
    // Let `start` return first: the create is then waiting for SSH.
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    dom.destroy().unwrap();
    let out = wait_output(child);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stopped while booting"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited {:?}",
        started.elapsed()
    );
    assert_gone(&lv, &paths, &vm, &net);

    // QEMU crashes: one restart, reported, and the VM comes up.
    let child = spawn_create(&vm, &net);
    running_domain();
    std::thread::sleep(Duration::from_secs(3));
    let pid_file = format!("/run/libvirt/qemu/{vm}.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGSEGV,
    )
    .unwrap();
    let out = wait_output(child);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("qemu died while the VM was booting"), "{err}");
    assert_eq!(ok(&["vm", "ssh", &vm, "--", "hostname"]).trim(), vm);
    ok(&["vm", "destroy", &vm]);
    assert_gone(&lv, &paths, &vm, &net);
    cleanup.close();
}

/// Nothing of `vm` exists yet: no domain, root volume, keys folder or reservation on `net`.
fn assert_not_made(lv: &strata::vm::Libvirt, paths: &Paths, vm: &str, net: &str) {
    assert!(
        lv.conn().lookup_domain_by_name(vm).is_err(),
        "domain {vm} made"
    );
    let pool_handle = pool::ensure(&lv.conn(), paths).unwrap();
    pool::refresh(&pool_handle).unwrap();
    let volume = pool::vm_volume_name(vm, strata::vm::record::VolumeRole::Root);
    assert!(
        pool::find_volume(&pool_handle, &volume).is_none(),
        "volume {volume} made"
    );
    assert!(!paths.vm_dir(vm).exists(), "keys folder of {vm} made");
    let (_, info) = strata::vm::network::lookup(&lv.conn(), net).unwrap();
    assert!(
        info.hosts.is_empty(),
        "a reservation made: {:?}",
        info.hosts
    );
}

/// `--dry-run --explain` changes nothing, and its script, run by bash as root, does the job:
/// the network and the VM it makes are strata's own afterwards (listed, logged into, and
/// destroyed by strata).
#[test]
fn dry_run_scripts_make_what_strata_would() {
    let lv = system();
    let paths = Paths::discover();
    ok(&["template", "build", TEMPLATE]);
    let work = std::env::temp_dir().join(format!("strata-e2e-dry-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let net = format!("strata-e2e-dry-{}", std::process::id());
    let vm = format!("e2e-dry-{}", std::process::id());
    let mut cleanup = Cleanup {
        vms: vec![vm.clone()],
        network: Some(net.clone()),
    };
    let bash = |script: &std::path::Path| {
        let mut command = Command::new("bash");
        command.arg(script);
        let out = run_bounded(command, "the dry run's script", Duration::from_secs(900));
        assert_success(&format!("bash {}", script.display()), &out)
    };

    // The network: a free subnet, as a dry run judges it.
    let net_script = work.join("net.sh");
    let explain_net = format!("--explain={}", net_script.display());
    let subnet = (60..250)
        .map(|third| format!("10.252.{third}.0/24"))
        .find(|subnet| {
            let out = strata(&[
                "--dry-run",
                &explain_net,
                "net",
                "create",
                &net,
                "--subnet",
                subnet,
            ]);
            if !out.status.success() {
                assert!(stderr_of(&out).contains("overlaps"), "{}", stderr_of(&out));
            }
            out.status.success()
        })
        .expect("no free 10.252.x.0/24 subnet");
    assert!(
        lv.conn().lookup_network_by_name(&net).is_err(),
        "the dry run made network {net}"
    );
    bash(&net_script);
    let nets: serde_json::Value =
        serde_json::from_str(&ok(&["net", "list", "--output", "json"])).unwrap();
    let made = nets
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == net.as_str())
        .unwrap_or_else(|| panic!("{net} not in net list: {nets}"));
    assert_eq!(made["strata"], true, "{made}");
    assert_eq!(made["subnet"], subnet.as_str(), "{made}");

    // The VM: the script makes its keys, reservation, disk and domain; strata knows it after.
    let vm_script = work.join("vm.sh");
    let explain_vm = format!("--explain={}", vm_script.display());
    let mut args = vec!["--dry-run", explain_vm.as_str()];
    args.extend(create_args(&vm, &net));
    let said = ok(&args);
    assert_not_made(&lv, &paths, &vm, &net);
    let script = std::fs::read_to_string(&vm_script).unwrap();
    assert!(script.starts_with("#!/bin/bash\n"), "{script}");
    assert!(script.contains("set -euo pipefail\n"));
    assert!(!script.contains("PRIVATE KEY"), "a key in the script");
    let started = Instant::now();
    bash(&vm_script);
    eprintln!("the dry run's vm script ran in {:.1?}", started.elapsed());
    let listed = vm_json(&vm);
    assert_eq!(listed["state"], "running");
    let ip = listed["ip"].as_str().unwrap();
    assert!(said.contains(&format!("address {ip} free")), "{said}");
    assert_eq!(ok(&["vm", "ssh", &vm, "--", "hostname"]).trim(), vm);
    let inactive = lv
        .conn()
        .lookup_domain_by_name(&vm)
        .unwrap()
        .xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
        .unwrap();
    assert!(!inactive.contains("fwcfg"), "the handover is still defined");

    // Docker: the dry run reads the guest and changes nothing in it; its script installs
    // Docker from the host's bundle, and strata's own engine info verifies the result.
    let engine_script = work.join("engine.sh");
    ok(&[
        "--dry-run",
        &format!("--explain={}", engine_script.display()),
        "engine",
        "install",
        &vm,
    ]);
    let untouched = strata(&[
        "vm",
        "ssh",
        &vm,
        "--",
        "test ! -e /etc/docker && ! command -v dockerd",
    ]);
    assert!(untouched.status.success(), "the dry run changed the guest");
    let started = Instant::now();
    bash(&engine_script);
    eprintln!(
        "the dry run's engine script ran in {:.1?}",
        started.elapsed()
    );
    let info: serde_json::Value =
        serde_json::from_str(&ok(&["engine", "info", &vm, "--output", "json"])).unwrap();
    assert!(info["mismatches"].as_array().unwrap().is_empty(), "{info}");
    assert_eq!(info["observed"]["driver"], "overlay2", "{info}");

    // A stack: the dry run makes no container; its script builds the image, makes the
    // network and starts the container, which strata's own ps then shows healthy.
    let stack_file = work.join("dry.toml");
    std::fs::write(
        &stack_file,
        format!(
            "name = \"dry\"\nvm = \"{vm}\"\n[networks.front]\n[services.web]\ntemplate = \"busybox-httpd\"\nnetworks = [\"front\"]\nparams = {{ port = 8080, content = \"it's a dry run\", health_interval = \"2s\" }}\n"
        ),
    )
    .unwrap();
    let stack_path = stack_file.to_str().unwrap();
    let up_script = work.join("up.sh");
    ok(&[
        "--dry-run",
        &format!("--explain={}", up_script.display()),
        "up",
        stack_path,
    ]);
    let containers = ok(&[
        "vm",
        "ssh",
        &vm,
        "--",
        "docker ps -aq | wc -l; docker network ls -q --filter label=strata.stack=dry | wc -l",
    ]);
    assert_eq!(
        containers.split_whitespace().collect::<Vec<_>>(),
        ["0", "0"],
        "the dry run changed the VM's Docker"
    );
    let started = Instant::now();
    bash(&up_script);
    eprintln!("the dry run's up script ran in {:.1?}", started.elapsed());
    let ps: serde_json::Value =
        serde_json::from_str(&ok(&["ps", stack_path, "--output", "json"])).unwrap();
    let web = &ps.as_array().unwrap_or_else(|| panic!("{ps}"))[0];
    assert_eq!(
        (&web["state"], &web["health"]),
        (&"running".into(), &"healthy".into()),
        "{ps}"
    );
    assert_eq!(
        ok(&[
            "vm",
            "ssh",
            &vm,
            "--",
            "docker exec dry-web /bin/busybox wget -q -O - http://127.0.0.1/"
        ])
        .trim(),
        "it's a dry run"
    );

    // strata's own destroy, explained as it runs, removes what the script made.
    let destroy_script = work.join("destroy.sh");
    ok(&[
        "vm",
        "destroy",
        &vm,
        &format!("--explain={}", destroy_script.display()),
    ]);
    let explained = std::fs::read_to_string(&destroy_script).unwrap();
    assert!(
        explained.contains(&format!("virsh undefine {vm}\n")),
        "{explained}"
    );
    assert_gone(&lv, &paths, &vm, &net);
    cleanup.vms.clear();
    let _ = std::fs::remove_dir_all(&work);
    cleanup.close();
}
