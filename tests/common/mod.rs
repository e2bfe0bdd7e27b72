//! Shared by the end-to-end tests: running the strata binary, libvirt, and guards that remove
//! what a test made even when it fails halfway: its VMs and isolated network (Cleanup), a
//! rule in the host's firewall (HostRule).
#![allow(dead_code)]

use futures_util::StreamExt;
use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use strata::guest::docker::GuestDocker;
use strata::state::Paths;
use strata::vm::record::VolumeRole;
use strata::vm::{network, pool, Libvirt};

pub const TEMPLATE: &str = "debian-12";

pub fn strata(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command.args(args);
    run_bounded(
        command,
        &format!("strata {}", args.join(" ")),
        deadline_for(args),
    )
}

/// How long one strata command of the tests may take before it counts as hung: template
/// builds download and debootstrap, engine installs unpack packages in a TCG guest; the
/// rest are seconds to a few minutes under TCG.
pub const TEMPLATE_DEADLINE: Duration = Duration::from_secs(1800);
pub const ENGINE_DEADLINE: Duration = Duration::from_secs(1200);
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(600);

fn deadline_for(args: &[&str]) -> Duration {
    match args.first() {
        Some(&"template") => TEMPLATE_DEADLINE,
        Some(&"engine") => ENGINE_DEADLINE,
        _ => COMMAND_DEADLINE,
    }
}

/// Run a command to its end, collecting both streams, with a deadline (see `finish_bounded`).
pub fn run_bounded(mut command: Command, what: &str, deadline: Duration) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    finish_bounded(child, what, deadline)
}

/// Wait for a child started with piped streams, collecting them, with a deadline: a child
/// still running then is a hang, and it fails the test with the process tree and its stacks
/// instead of stalling the whole suite. Each command and its time go to stderr (shown with a
/// failure, or with --nocapture).
pub fn finish_bounded(mut child: Child, what: &str, deadline: Duration) -> Output {
    let started = Instant::now();
    fn collect(stream: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a child") {
            break status;
        }
        if started.elapsed() > deadline {
            let stacks = diagnose_hang(child.id());
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
            panic!(
                "{what} still ran after {} s: killed.\nstdout:\n{}\nstderr:\n{}\n{stacks}",
                deadline.as_secs(),
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "[e2e] {what}: {status} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// What a hung process and the machine are doing: the process tree, and the threads' stacks
/// of `pid` and its children (gdb, when it is there).
pub fn diagnose_hang(pid: u32) -> String {
    let run = |program: &str, args: &[&str]| -> String {
        match Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("({program}: {e})\n"),
        }
    };
    let mut report = format!(
        "--- processes\n{}",
        run(
            "ps",
            &["-eo", "pid,ppid,etime,stat,wchan:24,args", "--forest"]
        )
    );
    let children = run("pgrep", &["-P", &pid.to_string()]);
    for p in std::iter::once(pid.to_string()).chain(children.split_whitespace().map(String::from)) {
        report += &format!(
            "--- stacks of {p}\n{}",
            run(
                "gdb",
                &["-p", &p, "-batch", "-ex", "thread apply all bt 30"]
            )
        );
    }
    report + &format!("--- libvirt domains\n{}", run("virsh", &["list", "--all"]))
}

/// What a finished command wrote to stderr, as text.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn ok(args: &[&str]) -> String {
    assert_success(&format!("strata {args:?}"), &strata(args))
}

/// The stdout of a run that must have succeeded; otherwise fail showing both streams.
pub fn assert_success(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn system() -> Libvirt {
    Libvirt::open("qemu:///system")
        .expect("libvirtd must be running for the end-to-end tests (./scripts/setup starts it)")
}

/// Destroys what the test made, even when an assertion failed halfway.
pub struct Cleanup {
    pub vms: Vec<String>,
    pub network: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let lv = system();
        for vm in &self.vms {
            if lv.conn().lookup_domain_by_name(vm).is_ok() {
                let out = strata(&["vm", "destroy", vm]);
                if !out.status.success() {
                    eprintln!(
                        "cleanup: vm destroy {vm}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        if let Some(net) = &self.network {
            if lv.conn().lookup_network_by_name(net).is_err() {
                return;
            }
            let out = strata(&["net", "destroy", net]);
            if !out.status.success() {
                eprintln!(
                    "cleanup: net destroy {net}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

impl Cleanup {
    /// The test's normal end: its network goes, and that it went is checked.
    pub fn close(mut self) {
        if let Some(net) = self.network.take() {
            ok(&["net", "destroy", &net]);
            assert!(
                system().conn().lookup_network_by_name(&net).is_err(),
                "network {net} left behind"
            );
        }
    }
}

/// Create an isolated network on a free 10.x subnet; returns its name and subnet prefix.
pub fn make_network(cleanup: &mut Cleanup, tag: &str) -> (String, String) {
    let name = format!("strata-e2e-{tag}-{}", std::process::id());
    for third in (std::process::id() % 150 + 50)..250 {
        let subnet = format!("10.251.{third}.0/24");
        let out = strata(&["net", "create", &name, "--subnet", &subnet, "--isolated"]);
        if out.status.success() {
            cleanup.network = Some(name.clone());
            return (name, format!("10.251.{third}."));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("overlaps"),
            "net create failed for another reason: {err}"
        );
    }
    panic!("no free 10.251.x.0/24 subnet");
}

/// The start of a VM scenario: libvirt, strata's paths, the template built, an isolated
/// network of its own (in `cleanup`) and a VM name to use on it.
pub fn scenario(tag: &str) -> (Libvirt, Paths, Cleanup, String, String) {
    let lv = system();
    let paths = Paths::discover();
    ok(&["template", "build", TEMPLATE]);
    let mut cleanup = Cleanup {
        vms: vec![],
        network: None,
    };
    let (net, _) = make_network(&mut cleanup, tag);
    let vm = format!("e2e-{tag}-{}", std::process::id());
    cleanup.vms = vec![vm.clone()];
    (lv, paths, cleanup, net, vm)
}

/// Build the debian-12-docker template (cached) and create `vm` from it on `net`.
pub fn create_baked_docker_vm(vm: &str, net: &str) {
    ok(&["template", "build", "debian-12-docker"]);
    ok(&baked_create_args(vm, net));
}

/// `vm create NAME` from the template with Docker baked in on `net`, small (build it first).
pub fn baked_create_args<'a>(vm: &'a str, net: &'a str) -> Vec<&'a str> {
    let mut args = create_args(vm, net);
    let template = args.iter().position(|a| *a == TEMPLATE).unwrap();
    args[template] = "debian-12-docker";
    args
}

/// `vm create NAME` from the test template on `net`, small.
pub fn create_args<'a>(vm: &'a str, net: &'a str) -> Vec<&'a str> {
    vec![
        "vm",
        "create",
        vm,
        "--template",
        TEMPLATE,
        "--net",
        net,
        "--memory",
        "768M",
        "--ssh-timeout",
        BOOT_UNDER_LOAD,
    ]
}

/// How long a test VM may take to answer SSH: e2e_engine boots five at once on two cores under
/// TCG while others install packages, and one of them once stayed silent past the default
/// 300 s (its console empty: `quiet` hides the kernel's messages).
pub const BOOT_UNDER_LOAD: &str = "600";

pub fn spawn_create(name: &str, net: &str) -> Child {
    spawn_strata(&create_args(name, net), &[])
}

/// The strata binary started with `args` and extra environment, its output piped.
pub fn spawn_strata(args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A spawned create or install, waited for under the engine deadline.
pub fn wait_output(child: Child) -> Output {
    let what = format!("strata (pid {})", child.id());
    finish_bounded(child, &what, ENGINE_DEADLINE)
}

/// Nothing of `vm` is left: domain, volume, reservation, keys, journal.
pub fn assert_gone(lv: &Libvirt, paths: &Paths, vm: &str, net: &str) {
    assert_vm_gone(lv, paths, vm);
    let (_, info) = network::lookup(&lv.conn(), net).unwrap();
    assert!(
        !info.hosts.iter().any(|h| h.name == vm),
        "DHCP reservation of {vm} left behind"
    );
}

/// Nothing of `vm` is left but what its network holds: domain, volumes, keys, journal.
pub fn assert_vm_gone(lv: &Libvirt, paths: &Paths, vm: &str) {
    assert!(
        lv.conn().lookup_domain_by_name(vm).is_err(),
        "domain {vm} left behind"
    );
    let pool_handle = pool::ensure(&lv.conn(), paths).unwrap();
    pool::refresh(&pool_handle).unwrap();
    for role in [VolumeRole::Root, VolumeRole::Data, VolumeRole::Seed] {
        let volume = pool::vm_volume_name(vm, role);
        assert!(
            pool::find_volume(&pool_handle, &volume).is_none(),
            "{volume} of {vm} left behind"
        );
    }
    assert!(!paths.vm_dir(vm).exists(), "keys of {vm} left behind");
    assert!(
        !paths
            .state
            .join("journal")
            .join(format!("{vm}.json"))
            .exists(),
        "journal of {vm} left behind"
    );
}

/// A child strata process that is killed when the test ends before waiting for it (a failed
/// assertion must not leave an install running against VMs the cleanup removes).
pub struct Spawned(Option<Child>);

impl Spawned {
    pub fn new(child: Child) -> Spawned {
        Spawned(Some(child))
    }
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("not waited for yet")
    }
    pub fn output(mut self) -> Output {
        wait_output(self.0.take().expect("not waited for yet"))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A root filesystem with Debian's static busybox as /bin/busybox and /bin/sh, as a tar.
pub fn busybox_rootfs_tar() -> Vec<u8> {
    let dir = std::env::temp_dir().join(format!("strata-e2e-busybox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .expect("/bin/busybox (busybox-static, installed by scripts/setup) must exist");
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    let out = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "tar failed");
    out.stdout
}

/// The image name `load_busybox` gives the rootfs.
pub const BUSYBOX_IMAGE: &str = "strata-e2e/busybox:1";

/// Import the busybox rootfs as BUSYBOX_IMAGE into a guest's Docker over the API.
pub fn load_busybox(client: &GuestDocker, tar: &[u8]) {
    use bollard::query_parameters::CreateImageOptions;
    client.run(async {
        let mut import = client.docker.create_image(
            Some(CreateImageOptions {
                from_src: Some("-".into()),
                repo: Some("strata-e2e/busybox".into()),
                tag: Some("1".into()),
                ..Default::default()
            }),
            Some(bollard::body_full(tar.to_vec().into())),
            None,
        );
        while let Some(step) = import.next().await {
            step.expect("importing the busybox image");
        }
    })
}

/// `GET /` over HTTP/1.0 at `addr` (a forward's local end): the whole response.
pub fn http_get(addr: std::net::SocketAddr) -> String {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

/// Build the test-only cloud-init template debian-12-cloud (tests/templates; cached), standing
/// in for a distribution's cloud image; its build record.
pub fn build_cloud_template(paths: &strata::state::Paths) -> strata::image::BuildRecord {
    let search = format!("{}/tests/templates", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command
        .args(["template", "build", "debian-12-cloud"])
        .env("STRATA_TEMPLATE_PATH", &search);
    let build = run_bounded(
        command,
        "strata template build debian-12-cloud",
        TEMPLATE_DEADLINE,
    );
    assert_success("template build debian-12-cloud", &build);
    strata::image::read_record(&paths.template_dir("debian-12-cloud"))
        .unwrap()
        .expect("debian-12-cloud is built")
}

/// A rule in one of the host's iptables chains, deleted when dropped (even after a failure).
pub struct HostRule {
    chain: String,
    spec: Vec<String>,
}

impl HostRule {
    /// Insert `spec` at the top of `chain`.
    pub fn insert(chain: &str, spec: &[&str]) -> HostRule {
        let done = std::process::Command::new("iptables")
            .args(["-I", chain])
            .args(spec)
            .status()
            .unwrap();
        assert!(done.success(), "iptables -I {chain} {spec:?}");
        HostRule::added(chain, spec)
    }

    /// A rule something else added, to be deleted at the end.
    pub fn added(chain: &str, spec: &[&str]) -> HostRule {
        HostRule {
            chain: chain.to_string(),
            spec: spec.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Whether the rule is in its chain (`iptables -C`).
    pub fn present(&self) -> bool {
        std::process::Command::new("iptables")
            .args(["-C", &self.chain])
            .args(&self.spec)
            .output()
            .unwrap()
            .status
            .success()
    }
}

impl Drop for HostRule {
    fn drop(&mut self) {
        // Quietly: strata may have removed it already (net destroy takes its own rules).
        let _ = std::process::Command::new("iptables")
            .args(["-D", &self.chain])
            .args(&self.spec)
            .output();
    }
}

/// A rule of a site's own dropping VXLAN (4789/udp) within `bridge`, first in FORWARD: it
/// must come before any accept, and libvirt's own accept within its bridges (LIBVIRT_FWX)
/// comes before DOCKER-USER whenever libvirtd set up its chains after dockerd last made a
/// network (as on a fresh machine).
pub fn vxlan_drop_first(bridge: &str) -> HostRule {
    HostRule::insert(
        "FORWARD",
        &[
            "-i", bridge, "-o", bridge, "-p", "udp", "--dport", "4789", "-j", "DROP",
        ],
    )
}

/// The accept within `bridge` that `strata check --fix --output json` (its report `fixed`)
/// says it applied, in the chain it chose; asserted present, deleted when dropped.
pub fn fix_accept_of(fixed: &serde_json::Value, bridge: &str) -> HostRule {
    let chain = fixed["fixes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["action"] == "accept_within_bridge" && f["bridge"] == bridge)
        .and_then(|f| f["chain"].as_str())
        .unwrap_or_else(|| panic!("no accept for {bridge}: {fixed}"))
        .to_string();
    let spec = strata::check::fix::within_bridge_rule(bridge);
    let rule = HostRule::added(&chain, &spec.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(rule.present(), "{fixed}");
    rule
}
