//! End-to-end: a four-service stack in a real VM with Docker (the baked debian-12-docker
//! template), built from local busybox images (no registry): a "database" web server on a
//! back network, a TCP ambassador to it, a poller that reaches the database only through the
//! ambassador and keeps what it got in a volume, and a web service published on the VM's
//! loopback. Asserts: start order follows health, the ambassador carries TCP, memory limits
//! and log options are in effect, `logs` prints a service's log, the host reaches the web
//! service through an SSH port forward, the docker CLI reaches the VM through `strata
//! context` (its files removed with the VM), `up` again is unchanged, one changed parameter
//! recreates one service, a port conflict rolls back, a health check that never passes fails
//! (kept with --keep-failed), the Docker tunnel heals after its SSH connection is killed, and
//! `down` keeps volumes.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use strata::guest::docker::GuestDocker;
use strata::stack::StackFile;

fn stack_text(stack: &str, vm: &str, web_content: &str) -> String {
    format!(
        r#"name = "{stack}"
vm = "{vm}"

[networks.front]
[networks.back]
internal = true

[volumes.data]

[services.db]
template = "busybox-httpd"
networks = ["back"]
params = {{ port = 0, content = "metadata-v1" }}

[services.amb]
template = "busybox-tcp-ambassador"
networks = ["back", "front"]
depends_on = ["db"]
params = {{ target_host = "db", target_port = 80, listen_port = 5432 }}

[services.poll]
template = "busybox-poller"
networks = ["front"]
depends_on = ["amb"]
params = {{ url = "http://amb:5432/", every = 1 }}

[services.web]
template = "busybox-httpd"
networks = ["front"]
depends_on = ["amb"]
params = {{ port = 8080, content = "{web_content}" }}
"#
    )
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `strata up FILE --output json`: the per-service rows.
fn up(file: &Path) -> Vec<serde_json::Value> {
    let out = ok(&["up", file.to_str().unwrap(), "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    report["services"].as_array().unwrap().clone()
}

fn actions(rows: &[serde_json::Value]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["service"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_four_service_stack_comes_up_in_health_order_and_converges() {
    let (lv, paths, cleanup, net, vm) = scenario("stk");
    create_baked_docker_vm(&vm, &net);
    let dir = std::env::temp_dir().join(format!("strata-e2e-stack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stack = "stk";
    let file = write(&dir, "stk.toml", &stack_text(stack, &vm, "web-v1"));

    // Bad input first: nothing may reach the VM.
    let bad = write(
        &dir,
        "bad.toml",
        &stack_text(stack, &vm, "x").replace("busybox-poller", "busybox-pollr"),
    );
    let out = strata(&["up", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:21: service 'poll': unknown container template 'busybox-pollr'"),
        "{err}"
    );

    let first = up(&file);
    assert_eq!(
        actions(&first),
        [
            ("db", "created"),
            ("amb", "created"),
            ("poll", "created"),
            ("web", "created")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    for row in &first {
        assert_eq!(row["state"], "running", "{row}");
        assert_eq!(row["health"], "healthy", "{row}");
    }

    let target = strata::guest::Route::of_vm(&lv, &paths, &vm).unwrap();
    let docker = GuestDocker::connect(&target).unwrap();
    let inspect = |name: &str| {
        docker
            .run(docker.docker.inspect_container(name, None))
            .unwrap()
    };

    // Start order follows health: each dependent started after its dependency first
    // reported healthy (Docker's own events; the health log keeps only the last probes).
    let events = ok(&[
        "vm",
        "ssh",
        &vm,
        "--",
        "sh",
        "-c",
        "docker events --since 0 --until $(date +%s) --filter label=strata.stack=stk \
         --format '{{.TimeNano}} {{.Actor.Attributes.name}} {{.Action}}'",
    ]);
    let first = |name: &str, action: &str| -> u128 {
        events
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ' ');
                let (t, n, a) = (f.next()?, f.next()?, f.next()?);
                (n == name && a == action)
                    .then(|| t.parse::<u128>().ok())
                    .flatten()
            })
            .min()
            .unwrap_or_else(|| panic!("no '{action}' event for {name}:\n{events}"))
    };
    for (dep, dependent) in [("db", "amb"), ("amb", "poll"), ("amb", "web")] {
        let healthy = first(&format!("{stack}-{dep}"), "health_status: healthy");
        let started = first(&format!("{stack}-{dependent}"), "start");
        assert!(
            started > healthy,
            "{dependent} started before {dep} was healthy:\n{events}"
        );
    }

    // The poller reaches db only through the ambassador (db is on the internal back network
    // the poller is not on): what it fetched is db's page.
    let busybox_in_poller = |args: &[&str]| {
        let mut all = vec![
            "vm",
            "ssh",
            &vm,
            "--",
            "docker",
            "exec",
            "stk-poll",
            "/bin/busybox",
        ];
        all.extend_from_slice(args);
        strata(&all)
    };
    let fetched = assert_success(
        "cat in stk-poll",
        &busybox_in_poller(&["cat", "/data/last.html"]),
    );
    assert_eq!(fetched.trim(), "metadata-v1");
    let direct = busybox_in_poller(&["wget", "-q", "-T", "3", "-O", "-", "http://db/"]);
    assert!(
        !direct.status.success(),
        "the poller reached db without the ambassador"
    );

    // Memory limit and log options are in effect.
    let web = inspect("stk-web");
    let host = web.host_config.clone().unwrap();
    assert_eq!(host.memory, Some(32 << 20));
    let log = host.log_config.unwrap();
    assert_eq!(log.typ.as_deref(), Some("local"));
    assert_eq!(log.config.unwrap()["max-size"], "5m");
    assert_eq!(host.readonly_rootfs, Some(true));
    // ... and its log is read as written (no prefix: one container).
    let logged = ok(&["logs", file.to_str().unwrap(), "web", "--tail", "5"]);
    assert_eq!(logged.trim(), "httpd: serving /www on port 80", "{logged}");

    // From the host, through an SSH port forward to the VM's loopback.
    let forward = strata::guest::forward::Forward::open(&target, 0, "127.0.0.1", 8080).unwrap();
    let local = forward.spawn().unwrap();
    let page = http_get(local);
    assert!(page.contains("200 OK") && page.contains("web-v1"), "{page}");

    // The user's docker CLI reaches the same Docker through `strata context` (ssh://, the
    // pinned host key); the files it wrote go with the VM (checked at the end).
    let written = ok(&["context", &vm]);
    let printed = |label: &str| -> PathBuf {
        let line = written
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("no '{label}' in:\n{written}"));
        PathBuf::from(
            line.trim()
                .trim_start_matches(&format!("strata-{vm} ("))
                .trim_end_matches(')'),
        )
    };
    let (snippet, meta) = (printed("ssh settings:"), printed("docker context:"));
    let mut docker_cli = std::process::Command::new("docker");
    docker_cli.args([
        "--context",
        &format!("strata-{vm}"),
        "ps",
        "--format",
        "{{.Names}}",
    ]);
    let cli = run_bounded(
        docker_cli,
        "docker --context strata-VM ps",
        std::time::Duration::from_secs(120),
    );
    let names = assert_success("docker --context strata-VM ps", &cli);
    assert!(names.lines().any(|n| n == "stk-web"), "{names}");

    // Again, unchanged; then one parameter changed recreates one service.
    let db_id = inspect("stk-db").id;
    let again = up(&file);
    assert!(
        actions(&again).iter().all(|(_, a)| a == "unchanged"),
        "{again:?}"
    );
    write(&dir, "stk.toml", &stack_text(stack, &vm, "web-v2"));
    let changed = up(&file);
    assert_eq!(
        actions(&changed),
        [
            ("db", "unchanged"),
            ("amb", "unchanged"),
            ("poll", "unchanged"),
            ("web", "recreated")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(inspect("stk-db").id, db_id);
    assert!(http_get(local).contains("web-v2"));

    // A second stack wanting the same published port fails at its start and leaves nothing.
    let clash = write(
        &dir,
        "clash.toml",
        &format!("vm = \"{vm}\"\n[services.site]\ntemplate = \"busybox-httpd\"\nparams = {{ port = 8080 }}\n"),
    );
    let out = strata(&["up", clash.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("clash.toml:2: service 'site'") && err.contains("port"),
        "{err}"
    );
    assert!(err.contains("nothing half-started is left"), "{err}");
    let left = ok(&["vm", "ssh", &vm, "--", "sh", "-c", "docker ps -aq --filter label=strata.stack=clash; docker network ls -q --filter label=strata.stack=clash"]);
    assert_eq!(left.trim(), "", "the failed stack left: {left}");

    // A service whose health check never passes fails the run; with --keep-failed what it
    // made stays and is named, and `down` removes it.
    let never = write(
        &dir,
        "never.toml",
        &format!(
            "vm = \"{vm}\"\n[volumes.data]\n[services.app]\ntemplate = \"busybox-poller\"\nparams = {{ url = \"http://127.0.0.1:1/\", health_retries = 2 }}\n"
        ),
    );
    // A volume of the stack's name that the stack did not make is refused, never adopted.
    ok(&["vm", "ssh", &vm, "--", "docker volume create never-data"]);
    let out = strata(&["up", never.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("volume never-data exists but stack 'never' did not make it"),
        "{err}"
    );
    // One argument after `--` is a shell command line, as with ssh.
    let left = ok(&[
        "vm",
        "ssh",
        &vm,
        "--",
        "docker ps -aq --filter name=never-app; docker volume inspect -f '{{.Labels}}' never-data",
    ]);
    assert_eq!(left.trim(), "map[]", "{left}");
    ok(&["vm", "ssh", &vm, "--", "docker volume rm never-data"]);

    let out = strata(&["up", never.to_str().unwrap(), "--keep-failed"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("never.toml:3: service 'app'")
            && (err.contains("unhealthy") || err.contains("did not turn healthy"))
            && err.contains("--keep-failed: left in")
            && err.contains("container never-app"),
        "{err}"
    );
    ok(&["down", never.to_str().unwrap(), "--volumes"]);

    // The Docker tunnel heals: kill its SSH connection in the guest, then ask again.
    let loaded = StackFile::load(&file).unwrap();
    assert_eq!(strata::stack::ps(&docker, &loaded).unwrap().len(), 4);
    let killed = ok(&[
        "vm", "ssh", &vm, "--", "sh", "-c",
        "keep=''; p=$$; while [ \"$p\" -gt 1 ]; do keep=\"$keep $p \"; p=$(cut -d' ' -f4 /proc/$p/stat); done; \
         n=0; for pid in $(pgrep -f 'sshd: root'); do case \"$keep\" in *\" $pid \"*) ;; *) kill $pid && n=$((n+1));; esac; done; echo $n",
    ]);
    assert!(
        killed.trim().parse::<u32>().unwrap() >= 1,
        "no SSH session to kill: {killed}"
    );
    let rows = strata::stack::ps(&docker, &loaded).expect("ps after the SSH connection was killed");
    assert!(rows.iter().all(|r| r.state == "running"), "{rows:?}");

    // down: containers and networks go, the volume stays.
    ok(&["down", file.to_str().unwrap()]);
    let after = ok(&["vm", "ssh", &vm, "--", "sh", "-c", "docker ps -aq --filter label=strata.stack=stk | wc -l; docker network ls -q --filter label=strata.stack=stk | wc -l; docker volume ls -q --filter label=strata.stack=stk"]);
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(lines, ["0", "0", "stk-data"], "{after}");
    ok(&["down", file.to_str().unwrap(), "--volumes"]);

    drop(docker);
    std::fs::remove_dir_all(&dir).unwrap();
    ok(&["vm", "destroy", &vm]);
    assert_gone(&lv, &paths, &vm, &net);
    assert!(!snippet.exists(), "{} outlived its VM", snippet.display());
    assert!(
        !meta.parent().unwrap().exists(),
        "{} outlived its VM",
        meta.display()
    );
    cleanup.close();
}
