//! End-to-end: Docker Swarm across two VMs cloned from the template with Docker baked in,
//! through each guest's Docker API over its SSH tunnel. A host rule dropping VXLAN on the
//! VMs' bridge is found by the probes between the guests (the create is refused, `check
//! --fix` finds it too and lets the traffic through). A swarm is made (one manager, one
//! worker) with its address pool away from every network in use and its overlay MTU from the
//! VMs' network, each node labelled with its VM and ready; a re-run changes nothing; the
//! worker leaves (its engine as before) and joins again; a VM of the swarm is refused for
//! another. A stack runs on the swarm (a web service of three replicas and a backend on an
//! internal overlay network): the replicas spread over both VMs, each VM answers on the
//! published port through the routing mesh, a web task reaches the backend across VMs over
//! the overlay, `logs` shows each replica's lines after its task and VM, `up` again is
//! unchanged, the destroyed worker's replicas run on the manager within a bounded time, and
//! `down` leaves no service or network. The last manager may not leave; the swarm is
//! destroyed (the destroyed VM's node taken off its list) and the manager's engine is as it
//! was before (no swarm, the same networks). Join tokens never appear in strata's output.
//!
//! Two VMs, not three: with three 2-vCPU TCG guests on 2 cores the stack's `up` took
//! 420-600 s (each node's first task 3-4 minutes in `Starting`) and its wait ran out in a CI
//! run; what the third VM tested (a join, a leave, replicas moved off a destroyed worker) is
//! done here with the one worker.

mod common;

use common::*;
use std::time::Duration;

/// The names of the Docker networks in `vm`, sorted.
fn networks(vm: &str) -> Vec<String> {
    let listed = ok(&[
        "vm",
        "ssh",
        vm,
        "--",
        "docker network ls --format '{{.Name}}'",
    ]);
    let mut names: Vec<String> = listed.lines().map(str::to_string).collect();
    names.sort();
    names
}

/// What the engine in `vm` says of its swarm: inactive, active...
fn swarm_state(vm: &str) -> String {
    ok(&[
        "vm",
        "ssh",
        vm,
        "--",
        "docker info --format '{{.Swarm.LocalNodeState}}'",
    ])
    .trim()
    .to_string()
}

/// A strata run that must succeed; its stdout, with neither stream holding a join token.
fn ok_without_tokens(args: &[&str]) -> String {
    let out = strata(args);
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains("SWMTKN"),
            "a join token was printed by strata {args:?}"
        );
    }
    assert_success(&format!("strata {args:?}"), &out)
}

fn stack_text(stack: &str, swarm: &str, backend_vm: &str) -> String {
    format!(
        r#"name = "{stack}"
swarm = "{swarm}"

[networks.back]
internal = true

[services.db]
template = "busybox-httpd"
networks = ["back"]
placement = ["{backend_vm}"]
params = {{ port = 0, content = "metadata-v1" }}

[services.web]
template = "busybox-httpd"
replicas = 3
networks = ["back"]
depends_on = ["db"]
# Three health checks at once time out in loaded TCG guests (each a runc exec of
# seconds): the replicas go without; the backend's check is waited for before them.
params = {{ port = 8080, content = "web-on-swarm", health = false }}
"#
    )
}

/// The body of `GET /` on `ip:port`, from this machine (the VMs' own isolated network).
fn http_get(ip: std::net::Ipv4Addr, port: u16) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from((ip, port));
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: strata\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

/// `strata ps` of a stack on a swarm: (service, vm, state) of each task.
fn tasks(stack: &str) -> Vec<(String, String, String)> {
    let rows: serde_json::Value =
        serde_json::from_str(&ok(&["ps", stack, "--output", "json"])).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let field = |f: &str| r[f].as_str().unwrap().to_string();
            (field("service"), field("vm"), field("state"))
        })
        .collect()
}

fn running_on(tasks: &[(String, String, String)], service: &str) -> Vec<String> {
    tasks
        .iter()
        .filter(|(s, _, state)| s == service && state == "running")
        .map(|(_, vm, _)| vm.clone())
        .collect()
}

/// A stack on the swarm of `vms` (the manager, then the worker), through its life, to the
/// destruction of the worker (it runs a replica). `lv` finds the VMs' addresses.
fn a_stack_runs_on_the_swarm(lv: &strata::vm::Libvirt, swarm: &str, vms: [&str; 2]) {
    let [manager, worker] = vms;
    let dir = std::env::temp_dir().join(format!("strata-e2e-swarm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("sws{}", std::process::id());
    let file = dir.join("web.toml");
    std::fs::write(&file, stack_text(&name, swarm, manager)).unwrap();
    let stack = file.to_str().unwrap();

    let up: serde_json::Value =
        serde_json::from_str(&ok(&["up", stack, "--output", "json"])).unwrap();
    let actions: Vec<&str> = up["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["created", "created"], "{up}");
    let now = tasks(stack);
    let mut web_vms = running_on(&now, "web");
    assert_eq!(web_vms.len(), 3, "{now:?}");
    web_vms.sort();
    web_vms.dedup();
    assert_eq!(web_vms, sorted(vms), "the replicas did not spread: {now:?}");
    assert_eq!(running_on(&now, "db"), [manager], "{now:?}");

    // The routing mesh: every VM answers on the published port (the replica that answers
    // may be on the other one).
    for vm in vms {
        let ip = strata::vm::domain::lookup(&lv.conn(), vm)
            .unwrap()
            .1
            .record
            .ip;
        let body = http_get(ip, 8080).unwrap_or_else(|e| panic!("{vm} ({ip}):8080: {e}"));
        assert!(body.contains("web-on-swarm"), "{vm}: {body}");
    }
    // The internal overlay: a web task on another VM than the backend's reaches it by name.
    let fetched = ok(&[
        "vm",
        "ssh",
        worker,
        "--",
        &format!(
            "docker exec $(docker ps -q -f label=com.docker.swarm.service.name={name}-web | head -n 1) \
             /bin/busybox wget -q -O - http://db/"
        ),
    ]);
    assert!(fetched.contains("metadata-v1"), "{fetched}");
    // Each replica's log, every line after its task and VM.
    let logged = ok(&["logs", stack, "web", "--tail", "5"]);
    let mut logged_on: Vec<String> = logged
        .lines()
        .filter_map(|l| l.strip_suffix(" | httpd: serving /www on port 80"))
        .filter_map(|task| task.strip_prefix(&format!("{name}-web.")))
        .map(|slot_at_vm| slot_at_vm.split_once('@').unwrap().1.to_string())
        .collect();
    assert_eq!(logged_on.len(), 3, "{logged}");
    logged_on.sort();
    logged_on.dedup();
    assert_eq!(logged_on, sorted(vms), "{logged}");

    let again: serde_json::Value =
        serde_json::from_str(&ok(&["up", stack, "--output", "json"])).unwrap();
    assert!(
        again["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["action"] == "unchanged"),
        "{again}"
    );

    // The worker, which runs a replica, destroyed: its replicas run on the manager within a
    // bounded time.
    ok(&["vm", "destroy", worker]);
    let gone_at = std::time::Instant::now();
    loop {
        let now = tasks(stack);
        let on = running_on(&now, "web");
        if on.len() == 3 && on.iter().all(|vm| vm == manager) {
            eprintln!(
                "[e2e] replicas rescheduled in {:.0}s",
                gone_at.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            gone_at.elapsed() < Duration::from_secs(300),
            "the replicas of a destroyed VM were not rescheduled: {now:?}"
        );
        // Each `ps` logs into every running VM to find the swarm: not too often.
        std::thread::sleep(Duration::from_secs(10));
    }

    let down = ok(&["down", stack]);
    assert!(
        down.contains(&format!("removed service {name}-web")),
        "{down}"
    );
    assert!(
        down.contains(&format!("removed network {name}-back")),
        "{down}"
    );
    let left = ok(&[
        "vm",
        "ssh",
        manager,
        "--",
        "docker service ls -q | wc -l; docker network ls --format '{{.Name}}'",
    ]);
    assert!(left.starts_with('0'), "{left}");
    assert!(!left.contains(&name), "{left}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn sorted(vms: [&str; 2]) -> Vec<String> {
    let mut all: Vec<String> = vms.iter().map(|vm| vm.to_string()).collect();
    all.sort();
    all
}

#[test]
fn a_swarm_of_two_vms_is_made_left_joined_runs_a_stack_and_ends() {
    let (lv, _paths, mut cleanup, net, base) = scenario("swm");
    let (manager, worker) = (format!("{base}-m"), format!("{base}-w"));
    cleanup.vms = vec![manager.clone(), worker.clone()];
    ok(&["template", "build", "debian-12-docker"]);
    let creates: Vec<_> = cleanup
        .vms
        .iter()
        .map(|vm| Spawned::new(spawn_strata(&baked_create_args(vm, &net), &[])))
        .collect();
    for (vm, child) in cleanup.vms.clone().iter().zip(creates) {
        assert_success(&format!("vm create {vm}"), &child.output());
    }
    let before: Vec<Vec<String>> = cleanup.vms.iter().map(|vm| networks(vm)).collect();
    let swarm = format!("e2e-swarm-{}", std::process::id());

    // Bad input: refused before anything changes.
    let out = strata(&[
        "swarm",
        "create",
        &swarm,
        "--manager",
        &manager,
        "--worker",
        &manager,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("named twice"),
        "{}",
        stderr_of(&out)
    );
    let out = strata(&["swarm", "create", "../x", "--manager", &manager]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert_eq!(swarm_state(&manager), "inactive");

    // A rule of the site's own on the host drops VXLAN between the VMs (on this test's
    // bridge only): the probes from inside the guests find it, the create is refused naming
    // the port, and `check --fix` lets the VMs' traffic through above it.
    let bridge = strata::vm::network::lookup(&lv.conn(), &net)
        .unwrap()
        .1
        .bridge
        .unwrap();
    let site_rule = vxlan_drop_first(&bridge);
    let create_pair = [
        "swarm",
        "create",
        swarm.as_str(),
        "--manager",
        manager.as_str(),
        "--worker",
        worker.as_str(),
    ];
    let out = strata(&create_pair);
    let said = stderr_of(&out);
    assert!(
        !out.status.success(),
        "created through a VXLAN drop: {said}"
    );
    assert!(
        said.contains("swarm.ports") && said.contains("4789/udp") && said.contains("--swarm-ports"),
        "{said}"
    );
    assert_eq!(swarm_state(&manager), "inactive");
    // One run with --fix: each VM's verdict before the fix (the drop found) and after it.
    let fixed: serde_json::Value = serde_json::from_slice(
        &strata(&[
            "check",
            "--swarm-ports",
            &manager,
            &worker,
            "--output",
            "json",
            "--fix",
        ])
        .stdout,
    )
    .unwrap();
    let verdicts = |when: &str| -> Vec<String> {
        fixed["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["check"] == "swarm.ports")
            .map(|f| f[when].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(verdicts("before"), ["fail", "fail"], "{fixed}");
    assert_eq!(verdicts("verdict"), ["ok", "ok"], "{fixed}");
    let _fix_rule = fix_accept_of(&fixed, &bridge);
    drop(site_rule);

    // One manager, one worker.
    let create = || -> serde_json::Value {
        let mut args = create_pair.to_vec();
        args.extend(["--output", "json"]);
        let said = ok_without_tokens(&args);
        serde_json::from_str(&said).unwrap()
    };
    let made = create();
    let actions: Vec<(&str, &str)> = made["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["role"].as_str().unwrap(), n["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [("manager", "initialized"), ("worker", "joined")],
        "{made}"
    );
    assert_eq!(made["overlay_mtu"], 1450, "{made}");
    let pool: ipnet::Ipv4Net = made["pools"][0].as_str().unwrap().parse().unwrap();
    assert_eq!(pool.prefix_len(), 16, "{made}");
    assert!(
        "10.0.0.0/8"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&pool),
        "{made}"
    );
    // Docker agrees, inside the manager: both nodes ready, each labelled with its VM, and the
    // ingress network cut from strata's pool (not Docker's 10.0.0.0/24). One login: the
    // docker CLI is slow to start in a TCG guest.
    let seen = ok(&[
        "vm",
        "ssh",
        &manager,
        "--",
        "docker node ls --format '{{.Hostname}} {{.Status}}'; \
         docker node inspect --format 'label {{.Description.Hostname}} {{index .Spec.Labels \"strata.vm\"}}' $(docker node ls -q); \
         docker network inspect ingress --format 'ingress {{(index .IPAM.Config 0).Subnet}}'; \
         test -s /var/lib/docker/swarm/docker-state.json && echo swarm-state-kept",
    ]);
    for vm in [&manager, &worker] {
        assert!(seen.contains(&format!("{vm} Ready")), "{seen}");
        assert!(seen.contains(&format!("label {vm} {vm}")), "{seen}");
    }
    // What the engine's facts read to keep live-restore off on a swarm node.
    assert!(seen.contains("swarm-state-kept"), "{seen}");
    let ingress: ipnet::Ipv4Net = seen
        .lines()
        .find_map(|l| l.strip_prefix("ingress "))
        .unwrap_or_else(|| panic!("no ingress network: {seen}"))
        .trim()
        .parse()
        .unwrap();
    assert!(pool.contains(&ingress), "ingress {ingress} outside {pool}");

    // Again: nothing to do.
    let again = create();
    assert!(
        again["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["action"] == "unchanged"),
        "{again}"
    );

    // The worker leaves: its engine is as before, also for `engine install` (no swarm state,
    // live-restore on again).
    ok(&["swarm", "leave", &swarm, &worker]);
    assert_eq!(swarm_state(&worker), "inactive");
    let state = ok(&[
        "vm",
        "ssh",
        &worker,
        "--",
        "test -e /var/lib/docker/swarm/docker-state.json && echo kept || echo gone; docker info --format 'live-restore {{.LiveRestoreEnabled}}'",
    ]);
    assert!(
        state.contains("gone") && state.contains("live-restore true"),
        "{state}"
    );
    assert_eq!(networks(&worker), before[1]);
    // It joins again; the list shows both nodes ready.
    let joined = ok_without_tokens(&["swarm", "join", &swarm, "--worker", &worker]);
    assert!(joined.contains("joined"), "{joined}");
    let listed = ok_without_tokens(&["swarm", "list", "--output", "json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let ours = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == swarm.as_str())
        .unwrap_or_else(|| panic!("{swarm} not listed: {listed}"));
    let nodes = ours["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{ours}");
    assert!(nodes.iter().all(|n| n["state"] == "ready"), "{ours}");

    // A VM of this swarm is refused for another, named so.
    let out = strata(&[
        "swarm",
        "create",
        &format!("{swarm}-b"),
        "--manager",
        &worker,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("another swarm") && stderr_of(&out).contains("swarm leave"),
        "{}",
        stderr_of(&out)
    );

    // The stack, to the worker's destruction.
    a_stack_runs_on_the_swarm(&lv, &swarm, [&manager, &worker]);

    let out = strata(&["swarm", "leave", &swarm, &manager]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("last manager"),
        "{}",
        stderr_of(&out)
    );

    // Ended: the manager's engine out of it, with the networks it had.
    let out = strata(&["swarm", "destroy", &swarm]);
    let destroyed = assert_success("swarm destroy", &out);
    assert!(destroyed.contains("destroyed"), "{destroyed}");
    assert!(
        stderr_of(&out).contains(&format!("VM '{worker}' no longer exists")),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(swarm_state(&manager), "inactive");
    assert_eq!(networks(&manager), before[0]);
    let listed = ok(&["swarm", "list", "--output", "json"]);
    assert!(!listed.contains(&swarm), "{listed}");
    let out = strata(&["swarm", "destroy", &swarm]);
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("no swarm named"),
        "{}",
        stderr_of(&out)
    );

    ok(&["vm", "destroy", &manager]);
    cleanup.close();
}
