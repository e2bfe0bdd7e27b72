//! One service of a stack on a swarm as Docker's service spec: the container part as a
//! container of a VM stack gets it (image by id, command, environment, user, read-only root
//! with tmpfs, health check, memory limit, log options), the restart condition, replicas or
//! global mode, placement on VMs by the node label strata.vm, the stack's overlay networks
//! with the service name as alias, published ports through the routing mesh, and strata's
//! labels. The spec's hash (the image in it by id) is the "config" label, so `up` can tell an
//! unchanged service from a changed one without reading Docker's defaults back.

use crate::error::{Error, Result};
use crate::stack::container::{
    health_config, memory_limit, mount_sources, network_names, LABEL_CONFIG, LABEL_SERVICE,
    LABEL_STACK,
};
use crate::stack::file::{Service, StackFile, SwarmMode};
use crate::template::container::ServiceSpec;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, Limit, Mount, MountType, MountVolumeOptions, NetworkAttachmentConfig,
    ServiceSpec as DockerServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskSpecLogDriver, TaskSpecPlacement, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};
use std::collections::HashMap;

/// The node label that names a node's VM (set by `strata swarm create`).
const VM_NODE_LABEL: &str = "strata.vm";

/// What `up` asks the swarm for, for one service.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub service: String,
    /// Docker's name for it: "STACK-SERVICE".
    pub name: String,
    pub spec: DockerServiceSpec,
    /// sha256 of the spec (the image in it by id), also in the strata.config label.
    pub config_hash: String,
    pub has_healthcheck: bool,
}

/// Build the service spec for `service` with its rendered `spec` and the id of its image (the
/// same on every node: strata copies it there), on a swarm whose nodes are the VMs `nodes`.
/// By id, a node runs exactly that image and never tries a registry for it (Swarm pulls
/// every image named by a tag before it starts a task).
pub fn plan(
    stack: &StackFile,
    service: &Service,
    spec: &ServiceSpec,
    image_id: &str,
    nodes: &[String],
) -> Result<ServicePlan> {
    let bad = |what: String, hint: &str| stack.error_at(service, what, hint.to_string());
    let memory = memory_limit(stack, service, spec)?;
    let condition = match spec.restart.as_str() {
        "always" | "unless-stopped" => TaskSpecRestartPolicyConditionEnum::ANY,
        "on-failure" => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
        "no" => TaskSpecRestartPolicyConditionEnum::NONE,
        other => {
            return Err(bad(
                format!("restart '{other}' is not a restart policy"),
                "use no, always, unless-stopped or on-failure",
            ))
        }
    };
    let mut mounts: Vec<Mount> = mount_sources(stack, service, spec)?
        .into_iter()
        .map(|(source, v)| {
            let named = !source.starts_with('/');
            Mount {
                target: Some(v.target.clone()),
                source: Some(source),
                typ: Some(if named {
                    MountType::VOLUME
                } else {
                    MountType::BIND
                }),
                read_only: Some(v.read_only),
                // Each node makes the stack's volume where a task first needs it: labelled,
                // so that `down --volumes` finds it on every node.
                volume_options: named.then(|| MountVolumeOptions {
                    labels: Some(HashMap::from([(
                        LABEL_STACK.to_string(),
                        stack.name.clone(),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    mounts.extend(spec.tmpfs.iter().map(|target| Mount {
        target: Some(target.clone()),
        typ: Some(MountType::TMPFS),
        ..Default::default()
    }));
    let healthcheck = spec
        .healthcheck
        .as_ref()
        .map(health_config)
        .transpose()
        .map_err(|e| bad(e, "durations look like 1s, 500ms, 2m"))?;
    let networks: Vec<NetworkAttachmentConfig> = network_names(stack, service)
        .into_iter()
        .map(|target| NetworkAttachmentConfig {
            target: Some(target),
            aliases: Some(vec![service.name.clone()]),
            ..Default::default()
        })
        .collect();
    // A swarm publishes on every node's address through its routing mesh: a template's
    // host_ip (loopback for a VM stack) has no meaning there.
    let ports: Vec<EndpointPortConfig> = spec
        .ports
        .iter()
        .map(|p| EndpointPortConfig {
            protocol: Some(EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(i64::from(p.container)),
            published_port: Some(i64::from(p.host)),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::INGRESS),
            ..Default::default()
        })
        .collect();
    let mode = match service.decl.swarm_mode() {
        SwarmMode::Replicated(n) => ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(n)),
            }),
            ..Default::default()
        },
        SwarmMode::Global => ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        },
    };
    let labels = HashMap::from([
        (LABEL_STACK.to_string(), stack.name.clone()),
        (LABEL_SERVICE.to_string(), service.name.clone()),
    ]);
    let mut docker_spec = DockerServiceSpec {
        name: Some(stack.scoped(&service.name)),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image_id.to_string()),
                labels: Some(labels),
                command: spec.entrypoint.clone(),
                args: spec.command.clone(),
                hostname: Some(service.name.clone()),
                env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                user: spec.user.clone(),
                read_only: Some(spec.read_only),
                mounts: (!mounts.is_empty()).then_some(mounts),
                health_check: healthcheck,
                ..Default::default()
            }),
            resources: Some(TaskSpecResources {
                limits: Some(Limit {
                    memory_bytes: Some(memory),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(condition),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: placement_constraints(stack, service, nodes)?,
                ..Default::default()
            }),
            networks: Some(networks),
            log_driver: Some(TaskSpecLogDriver {
                name: Some(spec.log.driver.clone()),
                options: Some(HashMap::from([
                    ("max-size".to_string(), spec.log.max_size.clone()),
                    ("max-file".to_string(), spec.log.max_file.to_string()),
                ])),
            }),
            ..Default::default()
        }),
        mode: Some(mode),
        endpoint_spec: Some(EndpointSpec {
            ports: (!ports.is_empty()).then_some(ports),
            ..Default::default()
        }),
        ..Default::default()
    };
    let config_hash = hash_of(&docker_spec)?;
    // On the service (is it current?) and on its containers, so each task says which spec
    // it runs (are the tasks current?).
    let container_labels = docker_spec
        .task_template
        .as_mut()
        .and_then(|t| t.container_spec.as_mut())
        .and_then(|c| c.labels.as_mut());
    for labels in [docker_spec.labels.as_mut(), container_labels]
        .into_iter()
        .flatten()
    {
        labels.insert(LABEL_CONFIG.to_string(), config_hash.clone());
    }
    Ok(ServicePlan {
        service: service.name.clone(),
        name: stack.scoped(&service.name),
        spec: docker_spec,
        config_hash,
        has_healthcheck: spec.healthcheck.is_some(),
    })
}

/// Placement by VM name. Swarm ANDs its constraints and has no "one of": one VM is an
/// equality, several are the exclusion of every other node of the swarm as it is now (a VM that
/// joins later is inside the placement until the next `up` excludes it). A VM that is not a
/// node of the swarm is refused.
fn placement_constraints(
    stack: &StackFile,
    service: &Service,
    nodes: &[String],
) -> Result<Option<Vec<String>>> {
    let wanted = &service.decl.placement;
    if let Some(stranger) = wanted.iter().find(|vm| !nodes.contains(vm)) {
        return Err(stack.error_at(
            service,
            format!(
                "placement names VM '{stranger}', which is not a node of swarm '{}'",
                stack.swarm.as_deref().unwrap_or_default()
            ),
            format!("its nodes: {}", nodes.join(", ")),
        ));
    }
    Ok(match wanted.as_slice() {
        [] => None,
        [one] => Some(vec![format!("node.labels.{VM_NODE_LABEL}=={one}")]),
        _ => Some(
            nodes
                .iter()
                .filter(|vm| !wanted.contains(vm))
                .map(|vm| format!("node.labels.{VM_NODE_LABEL}!={vm}"))
                .collect(),
        ),
    })
}

/// A stable hash of the spec (the image is in it by id).
fn hash_of(spec: &DockerServiceSpec) -> Result<String> {
    // Through a Value: its maps are sorted where a HashMap's own order is random.
    let value = serde_json::to_value(spec)
        .map_err(|e| Error::failed(format!("hashing a service spec: {e}")))?;
    let text = serde_json::to_string(&value)
        .map_err(|e| Error::failed(format!("hashing a service spec: {e}")))?;
    Ok(crate::digest::sha256_bytes(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::resolve::resolve;
    use std::path::Path;

    const STACK: &str = r#"
swarm = "lab"
[networks.back]
internal = true
[volumes.data]
[services.web]
template = "busybox-httpd"
replicas = 3
networks = ["back"]
params = { port = 8080 }
[services.poll]
template = "busybox-poller"
mode = "global"
placement = ["n1", "n3"]
networks = ["back"]
params = { url = "http://web/" }
"#;

    const NODES: [&str; 3] = ["n1", "n2", "n3"];

    fn plans_of(text: &str) -> Result<Vec<ServicePlan>> {
        let stack = StackFile::parse(Path::new("stacks/lab.toml"), text).unwrap();
        let nodes: Vec<String> = NODES.iter().map(|n| n.to_string()).collect();
        let resolved = resolve(&stack)?;
        resolved
            .iter()
            .map(|r| plan(&stack, r.service, &r.spec, "sha256:1", &nodes))
            .collect()
    }

    fn by_service<'p>(plans: &'p [ServicePlan], service: &str) -> &'p ServicePlan {
        plans.iter().find(|p| p.service == service).unwrap()
    }

    #[test]
    fn replicas_ports_networks_and_labels_become_the_service_spec() {
        let plans = plans_of(STACK).unwrap();
        let web = by_service(&plans, "web");
        assert_eq!(web.name, "lab-web");
        let spec = &web.spec;
        let replicated = spec.mode.as_ref().unwrap().replicated.as_ref().unwrap();
        assert_eq!(replicated.replicas, Some(3));
        let ports = spec.endpoint_spec.as_ref().unwrap().ports.as_ref().unwrap();
        assert_eq!(ports[0].published_port, Some(8080));
        assert_eq!(ports[0].target_port, Some(80));
        assert_eq!(
            ports[0].publish_mode,
            Some(EndpointPortConfigPublishModeEnum::INGRESS)
        );
        let task = spec.task_template.as_ref().unwrap();
        let networks = task.networks.as_ref().unwrap();
        assert_eq!(networks[0].target.as_deref(), Some("lab-back"));
        assert_eq!(
            networks[0].aliases.as_deref(),
            Some(&["web".to_string()][..])
        );
        let container = task.container_spec.as_ref().unwrap();
        assert_eq!(container.image.as_deref(), Some("sha256:1"));
        // The hash is on the service and on each task's container.
        for labels in [
            spec.labels.as_ref().unwrap(),
            container.labels.as_ref().unwrap(),
        ] {
            assert_eq!(labels[LABEL_CONFIG], web.config_hash);
            assert_eq!(labels[LABEL_STACK], "lab");
            assert_eq!(labels[LABEL_SERVICE], "web");
        }
        assert!(task.placement.as_ref().unwrap().constraints.is_none());
        assert!(
            task.resources
                .as_ref()
                .unwrap()
                .limits
                .as_ref()
                .unwrap()
                .memory_bytes
                .unwrap()
                > 0
        );
    }

    #[test]
    fn global_mode_and_placement_on_several_vms_exclude_the_others() {
        let plans = plans_of(STACK).unwrap();
        let poll = &by_service(&plans, "poll").spec;
        assert!(poll.mode.as_ref().unwrap().global.is_some());
        let constraints = poll
            .task_template
            .as_ref()
            .unwrap()
            .placement
            .as_ref()
            .unwrap()
            .constraints
            .clone();
        assert_eq!(
            constraints,
            Some(vec!["node.labels.strata.vm!=n2".to_string()])
        );
        let one = plans_of(&STACK.replace("[\"n1\", \"n3\"]", "[\"n2\"]")).unwrap();
        let placement = by_service(&one, "poll")
            .spec
            .task_template
            .clone()
            .unwrap()
            .placement;
        assert_eq!(
            placement.unwrap().constraints,
            Some(vec!["node.labels.strata.vm==n2".to_string()])
        );
    }

    #[test]
    fn a_vm_outside_the_swarm_is_refused_by_line_and_service() {
        let err = plans_of(&STACK.replace("\"n3\"]", "\"web-9\"]")).unwrap_err();
        assert!(
            err.message().starts_with("stacks/lab.toml:11: service 'poll': placement names VM 'web-9', which is not a node of swarm 'lab'"),
            "{err}"
        );
        assert_eq!(err.hint(), Some("its nodes: n1, n2, n3"));
    }

    #[test]
    fn a_replica_without_a_health_check_has_none() {
        let plans = plans_of(&STACK.replace("port = 8080", "port = 8080, health = false")).unwrap();
        let web = by_service(&plans, "web");
        assert!(!web.has_healthcheck);
        let task = web.spec.task_template.as_ref().unwrap();
        assert!(task.container_spec.as_ref().unwrap().health_check.is_none());
        assert!(by_service(&plans, "poll").has_healthcheck);
    }

    #[test]
    fn a_changed_parameter_changes_only_that_services_hash() {
        let before = plans_of(STACK).unwrap();
        let after = plans_of(&STACK.replace("replicas = 3", "replicas = 2")).unwrap();
        assert_ne!(
            by_service(&before, "web").config_hash,
            by_service(&after, "web").config_hash
        );
        assert_eq!(
            by_service(&before, "poll").config_hash,
            by_service(&after, "poll").config_hash
        );
        assert_eq!(
            plans_of(STACK).unwrap()[0].config_hash,
            before[0].config_hash
        );
    }
}
