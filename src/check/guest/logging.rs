//! guest.logging (LOG-1, the paper's log lesson): json-file without max-size keeps every
//! line a container writes until the disk is full. The fix gives json-file rotation in
//! daemon.json and turns live-restore on before restarting Docker so containers keep
//! running (not on a swarm node: Docker refuses live-restore in swarm mode, and the fix says
//! its containers restart); containers made before keep their old log settings until they
//! are recreated.

use crate::check::snapshot::guest::GuestDockerState;
use crate::check::{Finding, Fix, FixAction, GuestCheck, GuestVerdict, GuestView, Verdict};
use crate::guest::docker::in_swarm_mode;

const ID: &str = "guest.logging";

pub const CHECK: GuestCheck = GuestCheck {
    id: ID,
    reads: "docker info LoggingDriver (API), log-driver and log-opts in /etc/docker/daemon.json, each running container's HostConfig.LogConfig (API)",
    verdict: GuestVerdict::Engine(verdict),
};

/// json-file with a max-size rotates; every other driver strata knows rotates or keeps
/// nothing on disk.
fn rotates(driver: &str, opts: Option<&serde_json::Value>) -> bool {
    driver != "json-file" || opts.and_then(|o| o.get("max-size")).is_some()
}

fn verdict(view: &GuestView, state: &GuestDockerState) -> Vec<Finding> {
    let who = view.subject.clone();
    let driver = state.info.logging_driver.clone().unwrap_or_default();
    let daemon = state.daemon_json.as_ref().and_then(|d| d.as_ref().ok());
    let opts = daemon.and_then(|d| d.get("log-opts"));
    let unrotated_containers: Vec<String> = state
        .containers
        .iter()
        .filter(|c| c.log_driver == "json-file" && !c.log_opts.contains_key("max-size"))
        .map(|c| c.name.clone())
        .collect();
    let mut evidence = vec![format!(
        "log driver {driver}; daemon.json log-opts {}",
        opts.map(|o| o.to_string())
            .unwrap_or_else(|| "(none)".into())
    )];
    if !unrotated_containers.is_empty() {
        evidence.push(format!(
            "containers writing unrotated json-file logs: {}",
            unrotated_containers.join(", ")
        ));
    }
    if rotates(&driver, opts) {
        if unrotated_containers.is_empty() {
            return vec![Finding::new(
                ID,
                who,
                Verdict::Ok,
                format!("container logs are rotated ({driver})"),
            )
            .evidence(evidence)];
        }
        return vec![Finding::new(
            ID,
            who,
            Verdict::Warn,
            "some containers were created before rotation was configured and still log without it"
                .into(),
        )
        .evidence(evidence)
        .with_fix(Fix::manual(
            "recreate those containers (log settings are fixed when a container is created)",
        ))];
    }
    vec![Finding::new(
        ID,
        who,
        Verdict::Warn,
        "json-file logs without rotation grow until the disk is full".into(),
    )
    .evidence(evidence)
    .with_fix(Fix::automatic(
        if in_swarm_mode(&state.info) {
            format!(
                "set log-opts max-size=20m, max-file=5 in /etc/docker/daemon.json and restart Docker in {}: a swarm node, so live-restore stays off (Docker refuses it in swarm mode) and its containers stop and start again with Docker; they keep their old log settings until recreated",
                view.snapshot.vm
            )
        } else {
            format!(
                "set log-opts max-size=20m, max-file=5 and live-restore in /etc/docker/daemon.json, reload then restart Docker in {} (running containers keep running; they keep their old log settings until recreated)",
                view.snapshot.vm
            )
        },
        FixAction::GuestLogRotation { vm: view.snapshot.vm.clone() },
    ))]
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;
    use crate::check::snapshot::guest::ContainerView;

    #[test]
    fn local_driver_passes() {
        assert_eq!(judge(&CHECK, &guest_facts())[0].verdict, Verdict::Ok);
    }

    /// On a swarm node the fix does not promise that containers keep running: live-restore
    /// cannot be turned on there.
    #[test]
    fn on_a_swarm_node_the_fix_says_containers_restart() {
        let mut f = guest_facts();
        let d = docker_mut(&mut f);
        d.info.logging_driver = Some("json-file".into());
        d.daemon_json = Some(Ok(serde_json::json!({"log-driver": "json-file"})));
        let alone = judge(&CHECK, &f)[0].fix.clone().unwrap().description;
        assert!(alone.contains("keep running"), "{alone}");
        docker_mut(&mut f).info.swarm = Some(bollard::models::SwarmInfo {
            local_node_state: Some(bollard::models::LocalNodeState::ACTIVE),
            ..Default::default()
        });
        let node = judge(&CHECK, &f)[0].fix.clone().unwrap();
        assert!(
            node.description.contains("swarm node"),
            "{}",
            node.description
        );
        assert!(
            !node.description.contains("keep running"),
            "{}",
            node.description
        );
        assert_eq!(
            node.action,
            Some(FixAction::GuestLogRotation { vm: "web1".into() })
        );
    }

    #[test]
    fn json_file_without_max_size_warns_with_the_fix() {
        let mut f = guest_facts();
        let d = docker_mut(&mut f);
        d.info.logging_driver = Some("json-file".into());
        d.daemon_json = Some(Ok(serde_json::json!({"log-driver": "json-file"})));
        d.containers.push(ContainerView {
            name: "chatty".into(),
            memory_limit: 0,
            log_driver: "json-file".into(),
            log_opts: Default::default(),
        });
        let found = judge(&CHECK, &f);
        assert_eq!(found[0].verdict, Verdict::Warn);
        assert!(found[0].evidence[1].contains("chatty"));
        assert_eq!(
            found[0].fix.as_ref().unwrap().action,
            Some(FixAction::GuestLogRotation { vm: "web1".into() })
        );
        // After the fix: daemon rotates, the old container still does not.
        let d = docker_mut(&mut f);
        d.daemon_json = Some(Ok(
            serde_json::json!({"log-driver": "json-file", "log-opts": {"max-size": "20m"}}),
        ));
        let found = judge(&CHECK, &f);
        assert_eq!(found[0].verdict, Verdict::Warn);
        assert!(found[0].fix.as_ref().unwrap().action.is_none());
    }

    #[test]
    fn no_docker_skips() {
        let mut f = guest_facts();
        f.docker = Err(crate::error::Error::failed("Docker is not installed"));
        assert_eq!(judge(&CHECK, &f)[0].verdict, Verdict::Skip);
    }
}
