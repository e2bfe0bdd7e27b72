//! End-to-end: one plan on real libvirt, dockerd in real VMs (the baked debian-12-docker
//! template, small VMs), carried through its life in one run so that the VMs are shared: a
//! bad plan is refused with exit 2 and touches nothing; apply makes the network, both VMs in
//! parallel, Docker on the database VM's data disk and the stacks; apply again is "unchanged"
//! without a write to libvirt; Ctrl-C during the re-creation of a VM destroyed by hand rolls
//! it back and the next apply makes only it; a memory change is an update in place; a
//! rebuild of the database VM keeps its address and a file on its data disk and brings its
//! stack back healthy; a swarm of both VMs with a stack on it, added to the plan, fails on
//! the swarm's port check under a site's VXLAN drop and is made after `check --fix` (and a
//! re-apply is "unchanged" again); destroy removes what the plan made and leaves a VM of the
//! same name that it did not make.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Lab {
    dir: PathBuf,
    plan: PathBuf,
    name: String,
    net: String,
    subnet: String,
    db: String,
    web: String,
    /// The plan's swarm of both VMs, and a stack on it, once the test adds them.
    swarm: Option<String>,
}

impl Lab {
    fn write(&self, db_memory: &str) {
        let text = format!(
            r#"name = "{name}"
[networks.{net}]
subnet = "{subnet}"

[vms.{db}]
template = "debian-12-docker"
net = "{net}"
memory = "{db_memory}"
[vms.{db}.engine]
storage = "overlay2"
data_disk = "2G"

[vms.{web}]
template = "debian-12-docker"
net = "{net}"
memory = "768M"

[stacks.records]
file = "records.toml"
vm = "{db}"

[stacks.front]
file = "front.toml"
{swarm}"#,
            swarm = self.swarm.as_ref().map_or(String::new(), |swarm| format!(
                "\n[swarms.{swarm}]\nmanagers = [\"{}\"]\nworkers = [\"{}\"]\n\n\
                 [stacks.spread]\nfile = \"spread.toml\"\nswarm = \"{swarm}\"\n",
                self.db, self.web
            )),
            name = self.name,
            net = self.net,
            subnet = self.subnet,
            db = self.db,
            web = self.web,
        );
        std::fs::write(&self.plan, text).unwrap();
        std::fs::write(
            self.dir.join("records.toml"),
            format!(
                r#"name = "records"
vm = "{db}"
[networks.back]
internal = true
[volumes.records]
[services.metadata]
template = "busybox-httpd"
networks = ["back"]
params = {{ port = 0, content = "metadata" }}
[services.recorder]
template = "busybox-poller"
networks = ["back"]
depends_on = ["metadata"]
params = {{ url = "http://metadata/", volume = "records" }}
"#,
                db = self.db
            ),
        )
        .unwrap();
        std::fs::write(
            self.dir.join("front.toml"),
            format!(
                r#"name = "front"
vm = "{web}"
[services.web]
template = "busybox-httpd"
params = {{ port = 8080, content = "front" }}
"#,
                web = self.web
            ),
        )
        .unwrap();
    }

    fn plan_arg(&self) -> &str {
        self.plan.to_str().unwrap()
    }

    /// `plan show --output json`: each object's name and action.
    fn show(&self) -> Vec<(String, String)> {
        let out = ok(&["plan", "show", self.plan_arg(), "--output", "json"]);
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        json["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap().to_string(),
                    s["action"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn action_of(&self, name: &str) -> String {
        self.show()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
            .unwrap_or_else(|| panic!("{name} not in plan show"))
    }

    fn apply(&self) -> (String, Duration) {
        let started = Instant::now();
        let out = ok(&["plan", "apply", self.plan_arg(), "--yes"]);
        (out, started.elapsed())
    }
}

/// A domain defined by the test by hand, undefined at the end, even after a failure.
struct Undefine(String);

impl Drop for Undefine {
    fn drop(&mut self) {
        if let Ok(dom) = system().conn().lookup_domain_by_name(&self.0) {
            let _ = dom.undefine();
        }
    }
}

fn uuid(vm: &str) -> String {
    let lv = system();
    let dom = lv.conn().lookup_domain_by_name(vm).unwrap();
    dom.uuid_string().unwrap()
}

/// The MAC and IP strata recorded for `vm`.
fn address(vm: &str) -> (String, std::net::Ipv4Addr) {
    let (_, info) = strata::vm::domain::lookup(&system().conn(), vm).unwrap();
    (info.record.mac, info.record.ip)
}

fn definition(vm: &str) -> String {
    let lv = system();
    let dom = lv.conn().lookup_domain_by_name(vm).unwrap();
    dom.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE).unwrap()
}

/// Every service of a stack file runs and is healthy (or has no health check).
fn assert_stack_healthy(file: &Path) {
    let out = ok(&["ps", file.to_str().unwrap(), "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty(), "{out}");
    for row in rows {
        assert_eq!(row["state"], "running", "{out}");
        assert!(
            row["health"] == "healthy" || row["health"] == "" || row["health"] == "none",
            "{out}"
        );
    }
}

/// A free /24 for the plan's network: `plan show` refuses one the host uses.
fn free_subnet(lab: &mut Lab) {
    for third in (std::process::id() % 150 + 50)..250 {
        lab.subnet = format!("10.252.{third}.0/24");
        lab.write("768M");
        let out = strata(&["plan", "show", lab.plan_arg()]);
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("overlaps"), "plan show failed: {err}");
    }
    panic!("no free 10.252.x.0/24 subnet");
}

#[test]
fn a_plan_through_its_life() {
    ok(&["template", "build", "debian-12-docker"]);
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("strata-e2e-plan-{pid}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut lab = Lab {
        plan: dir.join("lab.toml"),
        dir: dir.clone(),
        name: format!("e2e-plan-{pid}"),
        net: format!("strata-e2e-plan-{pid}"),
        subnet: String::new(),
        db: format!("e2e-pl{pid}-db"),
        web: format!("e2e-pl{pid}-web"),
        swarm: None,
    };
    let _cleanup = Cleanup {
        vms: vec![lab.db.clone(), lab.web.clone()],
        network: Some(lab.net.clone()),
    };
    free_subnet(&mut lab);

    // A bad plan: exit 2, the file, line and field named, nothing made.
    let bad = dir.join("bad.toml");
    let text = std::fs::read_to_string(&lab.plan).unwrap();
    std::fs::write(&bad, text.replace("memory = \"768M\"", "memroy = \"768M\"")).unwrap();
    let out = strata(&["plan", "apply", bad.to_str().unwrap(), "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:") && err.contains("memroy"), "{err}");
    let lv = system();
    assert!(lv.conn().lookup_network_by_name(&lab.net).is_err());
    assert!(lv.conn().lookup_domain_by_name(&lab.db).is_err());

    // Apply: everything made, both stacks healthy.
    let (out, took) = lab.apply();
    eprintln!("first apply: {:.0}s\n{out}", took.as_secs_f64());
    assert_stack_healthy(&dir.join("records.toml"));
    assert_stack_healthy(&dir.join("front.toml"));
    let listed = ok(&["plan", "list", "--output", "json"]);
    for name in [&lab.net, &lab.db, &lab.web] {
        assert!(
            listed.contains(&format!("\"name\": \"{name}\"")),
            "{listed}"
        );
    }

    // Again: unchanged, quickly, and libvirt's definitions untouched.
    let before = (definition(&lab.db), definition(&lab.web));
    let (out, took) = lab.apply();
    eprintln!("unchanged apply: {:.2}s", took.as_secs_f64());
    assert!(
        out.contains(&format!("plan {}: unchanged", lab.name)),
        "{out}"
    );
    assert_eq!(before, (definition(&lab.db), definition(&lab.web)));

    // Drift: the web VM destroyed by hand is a create; Ctrl-C while it boots rolls it back.
    let db_uuid = uuid(&lab.db);
    ok(&["vm", "destroy", &lab.web]);
    assert_eq!(lab.action_of(&lab.web), "create");
    assert_eq!(lab.action_of(&lab.db), "unchanged");
    let mut apply = spawn_strata(&["plan", "apply", lab.plan_arg(), "--yes"], &[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while lv.conn().lookup_domain_by_name(&lab.web).is_err() {
        assert!(
            Instant::now() < deadline,
            "the re-create never defined the VM"
        );
        assert!(apply.try_wait().unwrap().is_none(), "apply ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(apply.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let interrupted = wait_output(apply);
    assert!(!interrupted.status.success(), "{interrupted:?}");
    let paths = strata::state::Paths::discover();
    assert_gone(&lv, &paths, &lab.web, &lab.net);
    let (out, _) = lab.apply();
    assert!(out.contains(&lab.web), "{out}");
    assert_eq!(uuid(&lab.db), db_uuid, "only the missing VM is made again");
    assert_stack_healthy(&dir.join("front.toml"));

    // Memory changed in the plan: an update in place (the same domain), restart said.
    lab.write("1G");
    assert_eq!(lab.action_of(&lab.db), "update");
    let (out, _) = lab.apply();
    assert!(out.contains("restart needed"), "{out}");
    assert_eq!(uuid(&lab.db), db_uuid);
    assert!(
        definition(&lab.db).contains("<memory unit='KiB'>1048576</memory>"),
        "{}",
        definition(&lab.db)
    );
    assert_eq!(lab.action_of(&lab.db), "unchanged");

    // Rebuild of the database VM: a new domain, the file on its data disk still there, its
    // stack healthy again.
    let data_root = ok(&[
        "vm",
        "ssh",
        &lab.db,
        "--",
        "docker info --format '{{.DockerRootDir}}'",
    ]);
    let marker = format!("{}/strata-e2e-marker", data_root.trim());
    ok(&[
        "vm",
        "ssh",
        &lab.db,
        "--",
        &format!("echo kept-{pid} > {marker} && sync"),
    ]);
    let db_address = address(&lab.db);
    let out = ok(&["plan", "rebuild", lab.plan_arg(), &lab.db]);
    eprintln!("rebuild:\n{out}");
    assert_ne!(uuid(&lab.db), db_uuid, "rebuild makes a fresh clone");
    assert_eq!(
        address(&lab.db),
        db_address,
        "the rebuilt VM answers where the old one did"
    );
    let read = ok(&["vm", "ssh", &lab.db, "--", &format!("cat {marker}")]);
    assert_eq!(read.trim(), format!("kept-{pid}"));
    assert_stack_healthy(&dir.join("records.toml"));

    // A swarm of both VMs and a stack on it, added to the plan. A rule of the site's own
    // drops VXLAN between them on this test's bridge: the apply fails on the swarm's port
    // check (naming it) and makes nothing of the swarm; after `check --fix` it makes both.
    let swarm = format!("e2e-pl{pid}");
    lab.swarm = Some(swarm.clone());
    lab.write("1G");
    std::fs::write(
        dir.join("spread.toml"),
        format!(
            r#"name = "spread"
swarm = "{swarm}"
[services.web]
template = "busybox-httpd"
replicas = 2
params = {{ port = 0, content = "spread", health = false }}
"#
        ),
    )
    .unwrap();
    assert_eq!(lab.action_of(&swarm), "update");
    assert_eq!(lab.action_of(&format!("spread@{swarm}")), "update");
    let bridge = strata::vm::network::lookup(&lv.conn(), &lab.net)
        .unwrap()
        .1
        .bridge
        .unwrap();
    let site_rule = vxlan_drop_first(&bridge);
    let out = strata(&["plan", "apply", lab.plan_arg(), "--yes"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr_of(&out)
    );
    assert!(
        !out.status.success(),
        "applied through a VXLAN drop: {said}"
    );
    assert!(
        said.contains("swarm.ports") && said.contains("4789/udp"),
        "{said}"
    );
    let swarms = ok(&["swarm", "list", "--output", "json"]);
    assert!(!swarms.contains(&swarm), "{swarms}");
    // Other checks may warn (exit 1): the swarm's ports are what must be fixed.
    let fixed: serde_json::Value = serde_json::from_slice(
        &strata(&[
            "check",
            "--swarm-ports",
            &lab.db,
            &lab.web,
            "--fix",
            "--output",
            "json",
        ])
        .stdout,
    )
    .unwrap();
    let ports: Vec<&str> = fixed["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "swarm.ports")
        .map(|f| f["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["ok", "ok"], "{fixed}");
    let fix_rule = fix_accept_of(&fixed, &bridge);
    drop(site_rule);
    let (out, took) = lab.apply();
    eprintln!("apply with the swarm: {:.0}s\n{out}", took.as_secs_f64());
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["swarm", "list", "--output", "json"])).unwrap();
    let made = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == swarm.as_str())
        .unwrap_or_else(|| panic!("swarm {swarm} not listed: {listed}"));
    let mut members: Vec<(String, bool)> = made["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["vm"].as_str().unwrap().to_string(), n["manager"] == true))
        .collect();
    members.sort();
    assert_eq!(
        members,
        [(lab.db.clone(), true), (lab.web.clone(), false)],
        "{made}"
    );
    let spread = dir.join("spread.toml");
    let tasks: serde_json::Value =
        serde_json::from_str(&ok(&["ps", spread.to_str().unwrap(), "--output", "json"])).unwrap();
    let running = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "running")
        .count();
    assert_eq!(running, 2, "{tasks}");
    // Again: unchanged, the swarm and its stack included, without a login.
    let (out, took) = lab.apply();
    eprintln!("unchanged apply with the swarm: {:.2}s", took.as_secs_f64());
    assert!(
        out.contains(&format!("plan {}: unchanged", lab.name)),
        "{out}"
    );

    // A VM of the plan's name that the plan did not make: refused by show, left by destroy.
    ok(&["vm", "destroy", &lab.web]);
    let foreign = format!(
        "<domain type='qemu'><name>{}</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>",
        lab.web
    );
    lv.conn().define_domain_xml(&foreign).unwrap();
    let _foreign = Undefine(lab.web.clone());
    assert_eq!(lab.action_of(&lab.web), "refused");
    let out = ok(&["plan", "destroy", lab.plan_arg(), "--volumes"]);
    eprintln!("destroy:\n{out}");
    assert!(out.contains("left alone"), "{out}");
    assert!(
        lv.conn().lookup_domain_by_name(&lab.web).is_ok(),
        "the VM the plan did not make was removed"
    );
    assert_vm_gone(&lv, &paths, &lab.db);
    assert!(
        lv.conn().lookup_network_by_name(&lab.net).is_err(),
        "network left"
    );
    // The accept `check --fix` added for its bridge went with it.
    assert!(
        !fix_rule.present(),
        "the check --fix rule for {bridge} outlived its network"
    );
    let listed = ok(&["plan", "list", "--output", "json"]);
    assert!(!listed.contains(&lab.name), "{listed}");
    std::fs::remove_dir_all(&dir).unwrap();
}
