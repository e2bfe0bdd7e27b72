//! End-to-end on a second hypervisor: scripts/second-host makes one on this machine (a
//! container with its own libvirtd, virtlogd and sshd, on a Docker network of its own) and
//! prints its qemu+ssh:// URI. What strata does on remote hosts so far: a template built here
//! is uploaded into the host's pool through libvirt's stream API and verified there, an
//! unchanged one is not sent again, a changed file is; `vm list` and `net list` read that
//! host; `net create` checks overlaps against that host's networks and routes and makes the
//! network there; a host key that is unknown or not the recorded one is refused before anything is
//! sent; strata's guest SSH reaches an address only that host reaches through it (the jump),
//! checking the pinned key inside; a VM is created there, reached with `vm ssh` (strata's
//! client and the system's, both through the host) and `vm forward`, given Docker from this
//! machine's bundle (sent into that host's pool), stopped, started and destroyed, and a create
//! that fails is rolled back there; a cloud image is imported for it and boots there with
//! its cloud-init seed; and this machine's libvirt sees none of it. The rig is removed at the end.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use strata::error::ErrorKind;
use strata::guest::{ssh, Route};
use strata::host::remote::Site;
use strata::state::Paths;
use strata::vm::Libvirt;

const RIG: &str = "strata-second-host";
const REMOTE_POOL: &str = "/var/lib/strata/pool";

fn second_host(action: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/second-host");
    let mut command = Command::new(script);
    command.arg(action);
    let out = run_bounded(
        command,
        &format!("scripts/second-host {action}"),
        COMMAND_DEADLINE,
    );
    assert_success(&format!("scripts/second-host {action}"), &out)
        .trim()
        .to_string()
}

/// A command in the second host, through Docker (not through strata).
fn on_rig(script: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", RIG, "sh", "-c", script])
        .output()
        .unwrap();
    assert_success(&format!("docker exec {RIG} {script}"), &out)
}

/// Every domain, network and volume (but the templates and bundles built here) of this
/// machine's libvirt, by name.
fn local_objects(lv: &Libvirt) -> BTreeSet<String> {
    let conn = lv.conn();
    let mut seen = BTreeSet::new();
    for dom in conn.list_all_domains(0).unwrap() {
        seen.insert(format!("domain {}", dom.name().unwrap()));
    }
    for net in conn.list_all_networks(0).unwrap() {
        seen.insert(format!("network {}", net.name().unwrap()));
    }
    for pool in conn.list_all_storage_pools(0).unwrap() {
        let pool_name = pool.name().unwrap();
        if pool.is_active().unwrap_or(false) {
            // Templates and the offline bundle are made here by design (then sent): a
            // first run on a fresh machine builds them.
            for vol in pool.list_volumes().unwrap_or_default() {
                if vol.starts_with("template-") || vol.starts_with("bundle-") {
                    continue;
                }
                seen.insert(format!("volume {pool_name}/{vol}"));
            }
        }
    }
    seen
}

/// The URI with another known_hosts file for strata's own check (libvirt's ssh keeps the
/// rig's, so libvirt itself still connects).
fn with_known_hosts(uri: &str, file: &Path) -> String {
    let (base, query) = uri.split_once('?').unwrap();
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.starts_with("known_hosts="))
        .collect();
    format!("{base}?{}&known_hosts={}", kept.join("&"), file.display())
}

/// The files of strata's pool on the second host.
fn rig_pool() -> BTreeSet<String> {
    on_rig(&format!("ls -A {REMOTE_POOL}"))
        .lines()
        .map(str::to_string)
        .collect()
}

/// vm create, ssh (strata's own and the system client's), forward, engine install, stop,
/// start, destroy on the second host; a create that fails rolls back there.
fn a_vm_lives_on_the_remote_host(uri: &str, net: &str) {
    let vm = format!("e2e-r{}", std::process::id());
    let template_only = rig_pool();
    // vm create there, with arguments after the template's name.
    let create = |template: &str, more: &[&str]| {
        let mut args = vec![
            "--connect",
            uri,
            "vm",
            "create",
            &vm,
            "--template",
            template,
            "--net",
            net,
        ];
        args.extend_from_slice(more);
        strata(&args)
    };
    let created = assert_success("vm create there", &create(TEMPLATE, &[]));
    assert!(created.contains(&format!("created {vm} at ")), "{created}");
    // The accelerator is that host's (its CPU and /dev/kvm, read there) and is what runs.
    let live = on_rig(&format!("virsh dumpxml {vm}"));
    let domain_type = live
        .split("<domain type='")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_default();
    let expected = if created.contains(" (tcg: ") {
        "qemu"
    } else {
        "kvm"
    };
    assert_eq!(domain_type, expected, "{created}");
    assert!(
        !on_rig(&format!("virsh dumpxml --inactive {vm}")).contains("fwcfg"),
        "the definition still hands over the host key"
    );
    let volume = format!("vm_{vm}.qcow2");
    let mut with_vm = template_only.clone();
    with_vm.insert(volume.clone());
    assert_eq!(rig_pool(), with_vm, "the host key's volume is not gone");

    assert_eq!(
        ok(&["--connect", uri, "vm", "ssh", &vm, "--", "hostname"]).trim(),
        vm
    );
    // The system ssh client, through the host by ProxyCommand, with the same pins.
    let mut interactive = Command::new(env!("CARGO_BIN_EXE_strata"));
    interactive
        .args(["--connect", uri, "vm", "ssh", &vm])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = interactive.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"echo through-$(hostname)\n")
        .unwrap();
    let out = finish_bounded(child, "strata vm ssh (system client)", COMMAND_DEADLINE);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("through-{vm}")),
        "{}",
        stderr_of(&out)
    );
    // Its keys are kept apart for that host.
    let Site::Ssh(login) = Site::of_uri(uri).unwrap() else {
        panic!("an SSH URI")
    };
    let here = Paths::discover();
    let there = here.for_remote_host(&login.folder_name());
    assert!(there.vm_key(&vm).is_file());
    assert!(!here.vm_dir(&vm).exists());

    // Docker from this machine's offline bundle: the package image is sent into that host's
    // pool (verified there) and plugged in from there.
    let installed = ok(&["--connect", uri, "engine", "install", &vm]);
    assert!(
        installed.contains("from the host's bundle") && installed.contains("verified: docker.io"),
        "{installed}"
    );
    let bundles: Vec<String> = rig_pool()
        .into_iter()
        .filter(|f| f.starts_with("bundle-") && f.ends_with(".img"))
        .collect();
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    let mode = on_rig(&format!("stat -c %a {REMOTE_POOL}/{}", bundles[0]));
    assert_eq!(mode.trim(), "444");

    // The host checks read that host (over SSH): its libvirt dnsmasq holds port 67 there,
    // named with its command line, a process this machine does not have.
    // (Exit 1: its guests run under TCG, a warning.)
    let out = strata(&["--connect", uri, "check", "--host", "--output", "json"]);
    let checked = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{checked}\n{}",
        stderr_of(&out)
    );
    assert!(
        checked.contains(&format!("/var/lib/libvirt/dnsmasq/{net}.conf")),
        "{checked}"
    );
    assert!(checked.contains("kvm.device"), "{checked}");

    // A stack there: preflight on that host's facts and the VM's, the image built in the
    // guest, up, ps, an unchanged re-run, down.
    let stack_dir = std::env::temp_dir().join(format!("strata-e2e-rstack-{}", std::process::id()));
    std::fs::create_dir_all(&stack_dir).unwrap();
    let stack = stack_dir.join("remote.toml");
    std::fs::write(
        &stack,
        format!(
            "name = \"rweb\"\nvm = \"{vm}\"\n\n[services.web]\ntemplate = \"busybox-httpd\"\nparams = {{ port = 8080, content = \"from the second host\" }}\n"
        ),
    )
    .unwrap();
    let stack = stack.to_str().unwrap();
    let up = ok(&["--connect", uri, "up", stack]);
    assert!(up.contains("healthy"), "{up}");
    let ps = ok(&["--connect", uri, "ps", stack]);
    assert!(ps.contains("running") && ps.contains("healthy"), "{ps}");
    // Its published port on the VM's loopback, from this machine through the host.
    let remote = Libvirt::open(uri).unwrap();
    let route = Route::of_vm(&remote, &there, &vm).unwrap();
    let forward = strata::guest::forward::Forward::open(&route, 0, "127.0.0.1", 8080).unwrap();
    let page = http_get(forward.spawn().unwrap());
    assert!(page.contains("from the second host"), "{page}");
    let again = ok(&["--connect", uri, "up", stack]);
    assert!(again.contains("unchanged"), "{again}");
    ok(&["--connect", uri, "down", stack]);
    let _ = std::fs::remove_dir_all(&stack_dir);

    ok(&["--connect", uri, "vm", "stop", &vm]);
    let started = ok(&["--connect", uri, "vm", "start", &vm]);
    assert!(started.contains("SSH answers"), "{started}");

    // A port of the guest on this machine's loopback, through the host: the guest's sshd
    // greets through it.
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut forward = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--connect", uri, "vm", "forward", &vm])
        .arg(format!("{free_port}:22"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(forward.stdout.take().unwrap()),
        &mut said,
    )
    .unwrap();
    let local = said
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("vm forward said: {said}"))
        .to_string();
    let mut greeting = [0u8; 8];
    let mut client = std::net::TcpStream::connect(&local).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    std::io::Read::read_exact(&mut client, &mut greeting).unwrap();
    let _ = forward.kill();
    let _ = forward.wait();
    assert_eq!(&greeting, b"SSH-2.0-", "{said}");

    ok(&["--connect", uri, "vm", "destroy", &vm]);
    // The bundle stays in that host's pool for its next VM, as it does here.
    let template_only: BTreeSet<String> = template_only
        .into_iter()
        .chain(rig_pool().into_iter().filter(|f| f.contains("bundle-")))
        .collect();
    assert_eq!(rig_pool(), template_only);
    assert!(!there.vm_dir(&vm).exists());
    let reservations = on_rig(&format!("virsh net-dumpxml {net}"));
    assert!(!reservations.contains("<host "), "{reservations}");

    // A boot that does not answer in time is rolled back on that host, the hint pointing at
    // the console log there; a template the host lacks is named with how to send it.
    let out = create(TEMPLATE, &["--ssh-timeout", "2"]);
    let err = stderr_of(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("/var/log/libvirt/qemu/"), "{err}");
    assert_eq!(rig_pool(), template_only, "{err}");
    assert_eq!(on_rig("virsh list --all --name").trim(), "");
    assert!(!on_rig(&format!("virsh net-dumpxml {net}")).contains("<host "));
    let out = create("debian-12-docker", &[]);
    let err = stderr_of(&out);
    assert!(
        err.contains("on that host") && err.contains("template build debian-12-docker"),
        "{err}"
    );
    strata::guest::jump::close_all();
}

/// A cloud image imported for the second host: imported here (from strata's own cloud-init
/// recipe, standing in for a distribution's image) and sent there like a built template; a
/// VM cloned from it there gets its NoCloud seed as a 0600 volume in that host's pool (made
/// here in a private folder, never on this machine's pool), answers with its pinned key
/// through the host, and takes the seed with it when destroyed.
fn a_cloud_image_boots_on_the_remote_host(uri: &str, net: &str) {
    let paths = Paths::discover();
    let built = build_cloud_template(&paths);
    let id = std::process::id();
    let (name, vm) = (format!("e2e-rcloud-{id}"), format!("e2e-rc{id}"));
    let image = paths.pool_dir().join(&built.volume).display().to_string();
    let kernel = built.kernel.unwrap().display().to_string();
    let initrd = built.initrd.unwrap().display().to_string();
    let import = [
        "--connect",
        uri,
        "import-image",
        &name,
        "--from",
        &image,
        "--kernel",
        &kernel,
        "--initrd",
        &initrd,
    ];
    let sent = ok(&import);
    assert!(
        sent.contains(&format!("imported template {name} here")),
        "{sent}"
    );
    for volume in ["qcow2", "vmlinuz", "initrd"] {
        assert!(
            sent.contains(&format!("uploaded template-{name}.{volume}")),
            "{sent}"
        );
    }
    // Again: the import here is found, nothing is sent; another image under the name is not.
    let again = ok(&import);
    assert!(again.contains("imported here already"), "{again}");
    assert_eq!(again.matches("not sent").count(), 3, "{again}");
    let mut other = import;
    other[5] = &kernel;
    let out = strata(&other);
    assert!(
        !out.status.success() && stderr_of(&out).contains("from another image"),
        "{}",
        stderr_of(&out)
    );

    ok(&[
        "--connect",
        uri,
        "vm",
        "create",
        &vm,
        "--template",
        &name,
        "--net",
        net,
        "--ssh-timeout",
        BOOT_UNDER_LOAD,
    ]);
    assert_eq!(
        ok(&["--connect", uri, "vm", "ssh", &vm, "--", "hostname"]).trim(),
        vm
    );
    let seed = format!("{REMOTE_POOL}/vm_{vm}_seed.img");
    assert_eq!(on_rig(&format!("stat -c %a {seed}")).trim(), "600");
    // The seed names the login key and the public host key, never the private one.
    assert_eq!(
        on_rig(&format!("grep -ac ssh_authorized_keys {seed}")).trim(),
        "1"
    );
    assert_eq!(
        on_rig(&format!("grep -ac 'PRIVATE KEY' {seed} || true")).trim(),
        "0"
    );
    assert!(
        !rig_pool().iter().any(|f| f.contains("hostkey")),
        "{:?}",
        rig_pool()
    );
    assert!(!paths.pool_dir().join(format!("vm_{vm}_seed.img")).exists());
    ok(&["--connect", uri, "vm", "destroy", &vm]);
    assert!(
        !rig_pool().iter().any(|f| f.contains(&vm)),
        "{:?}",
        rig_pool()
    );
    ok(&["--connect", uri, "template", "remove", &name]);
    ok(&["template", "remove", &name]);
    strata::guest::jump::close_all();
}

/// `plan apply/show/destroy` of a plan whose network (and so its VM) is on the second host,
/// named in its `[hosts]`: made there, shown unchanged host by host, removed there.
fn a_plan_spans_this_machine_and_the_second_host(uri: &str) {
    let id = std::process::id();
    let dir = std::env::temp_dir().join(format!("strata-e2e-rplan-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    let (net, vm) = (format!("e2e-rpn{id}"), format!("e2e-rpv{id}"));
    let file = dir.join("spans.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"e2e-rplan{id}\"\n\n[hosts.second]\nuri = \"{uri}\"\n\n[networks.{net}]\nsubnet = \"10.251.9.0/24\"\nhost = \"second\"\n\n[vms.{vm}]\ntemplate = \"{TEMPLATE}\"\nnet = \"{net}\"\n"
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let applied = ok(&["plan", "apply", file, "--yes"]);
    assert!(
        applied.contains("HOST") && applied.contains("second") && applied.contains("done"),
        "{applied}"
    );
    assert_eq!(on_rig("virsh list --name").trim(), vm);
    assert!(on_rig("virsh net-list --name").contains(&net));
    let shown = ok(&["plan", "show", file, "--output", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let steps = shown["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{shown}");
    for step in steps {
        assert_eq!(step["host"], "second", "{shown}");
        assert_eq!(step["action"], "unchanged", "{shown}");
    }
    let destroyed = ok(&["plan", "destroy", file]);
    assert!(destroyed.contains("second"), "{destroyed}");
    assert_eq!(on_rig("virsh list --all --name").trim(), "");
    assert!(!on_rig("virsh net-list --all --name").contains(&net));
    let _ = std::fs::remove_dir_all(&dir);
    strata::guest::jump::close_all();
}

#[test]
fn a_template_goes_to_a_remote_host_and_this_machine_sees_none_of_it() {
    // A fresh second host: nothing a killed earlier run made is still there.
    second_host("down");
    let uri = second_host("up");
    let local = system();
    let paths = Paths::discover();
    let before = local_objects(&local);

    // Built here (up to date), sent there, its sha256 checked there.
    let sent = ok(&["--connect", &uri, "template", "build", TEMPLATE]);
    for volume in ["qcow2", "vmlinuz", "initrd"] {
        assert!(
            sent.contains(&format!("uploaded template-{TEMPLATE}.{volume}")),
            "{sent}"
        );
    }
    let record = strata::image::read_record(&paths.template_dir(TEMPLATE))
        .unwrap()
        .expect("the template is built here");
    let there = on_rig(&format!("sha256sum {REMOTE_POOL}/{}", record.volume));
    assert!(
        there.starts_with(&record.sha256),
        "{there} vs {}",
        record.sha256
    );
    let mode = on_rig(&format!("stat -c %a {REMOTE_POOL}/{}", record.volume));
    assert_eq!(mode.trim(), "444", "a template volume is read-only");

    // Unchanged: nothing sent. A file that differs there is sent again, alone.
    let again = ok(&["--connect", &uri, "template", "build", TEMPLATE]);
    assert_eq!(again.matches("not sent").count(), 3, "{again}");
    on_rig(&format!(
        "chmod u+w {REMOTE_POOL}/template-{TEMPLATE}.vmlinuz && truncate -s 1000 {REMOTE_POOL}/template-{TEMPLATE}.vmlinuz"
    ));
    let repaired = ok(&["--connect", &uri, "template", "build", TEMPLATE]);
    assert!(
        repaired.contains(&format!("uploaded template-{TEMPLATE}.vmlinuz"))
            && repaired.matches("not sent").count() == 2,
        "{repaired}"
    );

    // That host's VMs and networks, not this machine's: a network only the host has.
    on_rig(
        "printf '%s' \"<network><name>rig-only</name><bridge name='rigbr0'/><ip address='10.250.7.1' netmask='255.255.255.0'/></network>\" > /tmp/rig-only.xml && virsh net-define /tmp/rig-only.xml",
    );
    let listed = ok(&["--connect", &uri, "vm", "list", "--output", "json"]);
    assert_eq!(listed.trim(), "[]", "{listed}");
    let nets = ok(&["--connect", &uri, "net", "list", "--output", "json"]);
    let nets: serde_json::Value = serde_json::from_str(&nets).unwrap();
    let names: Vec<&str> = nets
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["default", "rig-only"],
        "the second host's networks: {nets}"
    );
    on_rig("virsh net-undefine rig-only");

    // net create there: the overlap check reads that host's libvirt networks and routes (a
    // route only the host has), not this machine's (a range only this machine's Docker uses
    // is free there).
    on_rig("ip route add 10.251.7.0/24 dev eth0");
    let net = format!("strata-e2e-rn{}", std::process::id());
    let create_there = |subnet: &str| {
        strata(&[
            "--connect",
            &uri,
            "net",
            "create",
            &net,
            "--subnet",
            subnet,
            "--isolated",
        ])
    };
    for (subnet, named) in [
        ("10.251.7.0/24", "host route 10.251.7.0/24 dev eth0"),
        ("192.168.122.0/24", "libvirt network 'default'"),
    ] {
        let out = create_there(subnet);
        assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains(named), "{}", stderr_of(&out));
    }
    let local_docker = strata::host::docker::networks()
        .expect("this machine's Docker answers")
        .into_iter()
        .find(|n| n.name == "bridge")
        .expect("this machine's Docker has its bridge network")
        .subnets[0];
    let local_only = format!("{}/24", local_docker.network());
    let here = strata(&["net", "create", &net, "--subnet", &local_only, "--isolated"]);
    assert_eq!(here.status.code(), Some(2), "{local_only} is taken here");
    assert_success("net create there", &create_there(&local_only));
    let nets = ok(&["--connect", &uri, "net", "list", "--output", "json"]);
    assert!(nets.contains(&format!("\"{net}\"")), "{nets}");
    let gateway = std::net::Ipv4Addr::from(u32::from(local_docker.network()) + 1);
    let addresses = on_rig("ip -o -4 addr show");
    assert!(
        addresses.contains(&format!("{gateway}/24")),
        "the network's bridge is not on the second host: {addresses}"
    );
    // A VM there, on that network: cloned from the uploaded template, booted from its kernel
    // and initrd there, its host key handed over through a volume that is gone after the
    // start, reached through the host (the jump) with its pinned key.
    a_vm_lives_on_the_remote_host(&uri, &net);
    a_cloud_image_boots_on_the_remote_host(&uri, &net);

    ok(&["--connect", &uri, "net", "destroy", &net]);
    on_rig("ip route del 10.251.7.0/24 dev eth0");

    // A plan that puts a network and a VM on the second host, applied from here.
    a_plan_spans_this_machine_and_the_second_host(&uri);

    // A host key strata cannot vouch for: refused before anything is sent.
    let keys = std::env::temp_dir().join(format!("strata-e2e-remote-{}", std::process::id()));
    std::fs::create_dir_all(&keys).unwrap();
    let empty = keys.join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let other = keys.join("other");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success());
    let other_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let host = uri.split('@').nth(1).unwrap().split('/').next().unwrap();
    let wrong = keys.join("wrong_known_hosts");
    let mut fields = other_key.split_whitespace();
    std::fs::write(
        &wrong,
        format!(
            "{host} {} {}\n",
            fields.next().unwrap(),
            fields.next().unwrap()
        ),
    )
    .unwrap();
    on_rig(&format!(
        "chmod u+w {REMOTE_POOL}/template-{TEMPLATE}.initrd && truncate -s 1000 {REMOTE_POOL}/template-{TEMPLATE}.initrd"
    ));
    for (file, said) in [(&empty, "is unknown"), (&wrong, "is not the one in")] {
        let out = strata(&[
            "--connect",
            &with_known_hosts(&uri, file),
            "template",
            "build",
            TEMPLATE,
        ]);
        let err = stderr_of(&out);
        assert!(!out.status.success() && err.contains(said), "{err}");
        assert!(err.contains("hint:"), "{err}");
    }
    let size = on_rig(&format!(
        "stat -c %s {REMOTE_POOL}/template-{TEMPLATE}.initrd"
    ));
    assert_eq!(
        size.trim(),
        "1000",
        "something was sent to an unverified host"
    );

    // The jump to guests behind their host: strata's guest SSH through the second host to an
    // address only that host reaches (its own sshd on its loopback stands in for a guest on
    // its private network), with the pinned key checked inside as for any guest.
    let Site::Ssh(login) = Site::of_uri(&uri).unwrap() else {
        panic!("the second host's URI is an SSH one")
    };
    let rig_line = std::fs::read_to_string("/var/lib/strata-second-host/known_hosts").unwrap();
    let rig_key: Vec<&str> = rig_line.split_whitespace().skip(1).take(2).collect();
    let behind = Route {
        addr: "127.0.0.1:22".parse().unwrap(),
        user: "root".into(),
        key: login.keyfile.clone().unwrap(),
        pinned_host_key: rig_key.join(" "),
        via: Some(login.clone()),
    };
    let session = ssh::connect(&behind, Duration::from_secs(15)).unwrap();
    assert_eq!(
        ssh::run_checked(&session, "hostname").unwrap().trim(),
        "second-host"
    );
    drop(session);
    let other_pin: Vec<&str> = other_key.split_whitespace().take(2).collect();
    let impostor = Route {
        pinned_host_key: other_pin.join(" "),
        ..behind.clone()
    };
    let Err(err) = ssh::connect(&impostor, Duration::from_secs(15)) else {
        panic!("logged in through the jump under another host key")
    };
    assert_eq!(err.kind(), ErrorKind::HostKeyChanged, "{err}");
    // Without the jump the same address is this machine's own loopback.
    let direct = Route {
        via: None,
        ..behind.clone()
    };
    assert!(ssh::connect(&direct, Duration::from_secs(5)).is_err());
    strata::guest::jump::close_all();

    // Removed there; the build here stays.
    let removed = ok(&["--connect", &uri, "template", "remove", TEMPLATE]);
    assert!(
        removed.contains("build on this machine is kept"),
        "{removed}"
    );
    assert!(
        rig_pool().iter().all(|f| f.contains("bundle-")),
        "{:?}",
        rig_pool()
    );
    assert!(paths.template_dir(TEMPLATE).join("build.json").exists());

    // A host without room for the template: refused before anything is sent.
    on_rig(&format!(
        "mount -t tmpfs -o size=64m tmpfs {REMOTE_POOL} && virsh -q pool-refresh strata"
    ));
    let out = strata(&["--connect", &uri, "template", "build", TEMPLATE]);
    let err = stderr_of(&out);
    on_rig(&format!(
        "umount {REMOTE_POOL} && virsh -q pool-refresh strata"
    ));
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("free, and") && err.contains("nothing was sent"),
        "{err}"
    );

    assert_eq!(
        local_objects(&local),
        before,
        "this machine's libvirt changed"
    );
    let _ = std::fs::remove_dir_all(&keys);
    second_host("down");
    let gone = Command::new("docker")
        .args(["container", "inspect", RIG])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "the second host is still there");
}
