//! One service as Docker's container-create request: image, command, environment, published
//! ports, mounts, memory limit, log options, restart policy, read-only root with tmpfs, health
//! check, the stack's networks with the service name as alias, and strata's labels. The
//! request's hash (with the image id) is the "config" label, so `up` can tell an unchanged
//! service from a changed one without comparing Docker's inspect output field by field.

use crate::error::{Error, Result};
use crate::stack::file::{Service, StackFile, DEFAULT_NETWORK};
use crate::template::container::{HealthSpec, ServiceSpec, VolumeSpec};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig,
    NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use std::collections::HashMap;
use std::time::Duration;

pub const LABEL_STACK: &str = "strata.stack";
pub const LABEL_SERVICE: &str = "strata.service";
pub const LABEL_CONFIG: &str = "strata.config";
/// On networks and volumes: which stack made them.
pub const LABEL_VM: &str = "strata.vm";

/// What `up` creates for one service.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    pub service: String,
    pub name: String,
    pub body: ContainerCreateBody,
    /// The networks to connect after creation (Docker before API 1.44 takes one at create).
    pub more_networks: Vec<String>,
    /// sha256 of the request and the image id, also in the strata.config label.
    pub config_hash: String,
    pub has_healthcheck: bool,
}

/// Build the create request for `service` with its rendered `spec` and the image id to use.
pub fn plan(
    stack: &StackFile,
    service: &Service,
    spec: &ServiceSpec,
    image_id: &str,
) -> Result<ContainerPlan> {
    let bad = |what: String, hint: &str| stack.error_at(service, what, hint.to_string());
    let memory = memory_limit(stack, service, spec)?;
    let restart: RestartPolicyNameEnum = spec.restart.parse().map_err(|_| {
        bad(
            format!("restart '{}' is not a restart policy", spec.restart),
            "use no, always, unless-stopped or on-failure",
        )
    })?;
    let binds: Vec<String> = mount_sources(stack, service, spec)?
        .into_iter()
        .map(|(source, v)| {
            let mode = if v.read_only { ":ro" } else { "" };
            format!("{source}:{}{mode}", v.target)
        })
        .collect();
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &spec.ports {
        let key = format!("{}/tcp", p.container);
        exposed.push(key.clone());
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: Some(p.host_ip.clone()),
                host_port: Some(p.host.to_string()),
            });
    }
    let healthcheck = spec
        .healthcheck
        .as_ref()
        .map(health_config)
        .transpose()
        .map_err(|e| bad(e, "durations look like 1s, 500ms, 2m"))?;
    let networks = network_names(stack, service);
    let endpoint = EndpointSettings {
        aliases: Some(vec![service.name.clone()]),
        ..Default::default()
    };
    let labels = HashMap::from([
        (LABEL_STACK.to_string(), stack.name.clone()),
        (LABEL_SERVICE.to_string(), service.name.clone()),
    ]);
    let mut body = ContainerCreateBody {
        image: Some(image_id.to_string()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.command.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        user: spec.user.clone(),
        hostname: Some(service.name.clone()),
        labels: Some(labels),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        healthcheck,
        host_config: Some(HostConfig {
            memory: Some(memory),
            // Swap as large as memory again would hide an OOM as slowness: none.
            memory_swap: Some(memory),
            binds: (!binds.is_empty()).then_some(binds),
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            log_config: Some(HostConfigLogConfig {
                typ: Some(spec.log.driver.clone()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), spec.log.max_size.clone()),
                    ("max-file".to_string(), spec.log.max_file.to_string()),
                ])),
            }),
            restart_policy: Some(RestartPolicy {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            readonly_rootfs: Some(spec.read_only),
            tmpfs: (!spec.tmpfs.is_empty()).then(|| {
                spec.tmpfs
                    .iter()
                    .map(|t| (t.clone(), String::new()))
                    .collect()
            }),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(networks[0].clone(), endpoint)])),
        }),
        ..Default::default()
    };
    let config_hash = hash_of(&body, &networks)?;
    if let Some(labels) = body.labels.as_mut() {
        labels.insert(LABEL_CONFIG.to_string(), config_hash.clone());
    }
    Ok(ContainerPlan {
        service: service.name.clone(),
        name: stack.scoped(&service.name),
        body,
        more_networks: networks[1..].to_vec(),
        config_hash,
        has_healthcheck: spec.healthcheck.is_some(),
    })
}

/// The service's memory limit in bytes, as Docker takes it.
pub(crate) fn memory_limit(
    stack: &StackFile,
    service: &Service,
    spec: &ServiceSpec,
) -> Result<i64> {
    let bad = |what: String, hint: &str| stack.error_at(service, what, hint.to_string());
    let memory = crate::units::parse_size("memory", &spec.memory)
        .map_err(|e| bad(e.message().to_string(), "give memory as a size, e.g. 64M"))?;
    i64::try_from(memory).map_err(|_| {
        bad(
            format!("memory '{}' is too large", spec.memory),
            "at most 1T",
        )
    })
}

/// Each volume of the service with its source: a path in the VM as written, or the stack's
/// own volume by its scoped name (a volume the stack file does not declare is refused).
pub(crate) fn mount_sources<'s>(
    stack: &StackFile,
    service: &Service,
    spec: &'s ServiceSpec,
) -> Result<Vec<(String, &'s VolumeSpec)>> {
    spec.volumes
        .iter()
        .map(|v| {
            if v.source.starts_with('/') {
                Ok((v.source.clone(), v))
            } else if stack.volumes.contains_key(&v.source) {
                Ok((stack.scoped(&v.source), v))
            } else {
                Err(stack.error_at(
                    service,
                    format!("volume '{}' is not declared", v.source),
                    format!(
                        "add [volumes.{}] to the stack file, or use an absolute path in the VM",
                        v.source
                    ),
                ))
            }
        })
        .collect()
}

/// The networks the service joins, by their Docker names.
pub(crate) fn network_names(stack: &StackFile, service: &Service) -> Vec<String> {
    if service.decl.networks.is_empty() {
        vec![stack.scoped(DEFAULT_NETWORK)]
    } else {
        service
            .decl
            .networks
            .iter()
            .map(|n| stack.scoped(n))
            .collect()
    }
}

/// A stable hash: serde_json's maps are sorted, so HashMap order does not leak into it.
fn hash_of(body: &ContainerCreateBody, networks: &[String]) -> Result<String> {
    let value = serde_json::json!({ "body": body, "networks": networks });
    let text = serde_json::to_string(&value)
        .map_err(|e| Error::failed(format!("hashing a container request: {e}")))?;
    Ok(crate::digest::sha256_bytes(text.as_bytes()))
}

pub(crate) fn health_config(h: &HealthSpec) -> std::result::Result<HealthConfig, String> {
    // Docker takes nanoseconds as an int64 (about 292 years); a longer duration would wrap.
    let nanos = |field: &str, text: &str| {
        let d = humantime::parse_duration(text)
            .map_err(|e| format!("healthcheck.{field} '{text}': {e}"))?;
        i64::try_from(d.as_nanos())
            .map_err(|_| format!("healthcheck.{field} '{text}' is too long for Docker"))
    };
    Ok(HealthConfig {
        test: Some(h.test.clone()),
        interval: Some(nanos("interval", &h.interval)?),
        timeout: Some(nanos("timeout", &h.timeout)?),
        retries: Some(i64::from(h.retries)),
        start_period: Some(nanos("start_period", &h.start_period)?),
        start_interval: None,
    })
}

/// How long `up` waits for a service to turn healthy: Docker's own give-up point (start
/// period + (retries + 1) x (interval + timeout)) plus slack. None when that does not fit a
/// Duration: stack::bounds refuses such values first, and a panic here would skip rollback.
pub fn health_deadline(spec: &ServiceSpec) -> Option<Duration> {
    let Some(h) = &spec.healthcheck else {
        return Some(Duration::from_secs(10));
    };
    let parse = |t: &str| humantime::parse_duration(t).unwrap_or_default();
    let probes = h.retries.checked_add(1)?;
    parse(&h.interval)
        .checked_add(parse(&h.timeout))?
        .checked_mul(probes)?
        .checked_add(parse(&h.start_period))?
        .checked_add(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::container::{self, RenderContext};
    use std::path::Path;

    const STACK: &str = r#"
vm = "v"
[networks.front]
[networks.back]
[volumes.data]
[services.web]
template = "busybox-httpd"
networks = ["front", "back"]
[services.poll]
template = "busybox-poller"
params = { url = "http://web/" }
"#;

    fn planned(text: &str, service: &str) -> Result<ContainerPlan> {
        let stack = StackFile::parse(Path::new("shop.toml"), text).unwrap();
        let svc = &stack.services[service];
        let search = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("container-templates")];
        let t = container::find(&search, &svc.decl.template).unwrap();
        let ctx = RenderContext {
            stack: stack.name.clone(),
            service: svc.name.clone(),
        };
        let spec = t.render(&svc.decl.params, &ctx).unwrap();
        plan(&stack, svc, &spec, "sha256:abc")
    }

    #[test]
    fn request_carries_limits_logs_health_and_networks() {
        let p = planned(STACK, "web").unwrap();
        assert_eq!(p.name, "shop-web");
        let host = p.body.host_config.as_ref().unwrap();
        assert_eq!(host.memory, Some(32 << 20));
        assert_eq!(host.readonly_rootfs, Some(true));
        let log = host.log_config.as_ref().unwrap();
        assert_eq!(log.typ.as_deref(), Some("local"));
        assert_eq!(log.config.as_ref().unwrap()["max-size"], "5m");
        let binding = &host.port_bindings.as_ref().unwrap()["80/tcp"]
            .as_ref()
            .unwrap()[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(binding.host_port.as_deref(), Some("8080"));
        assert_eq!(
            p.body.healthcheck.as_ref().unwrap().interval,
            Some(10_000_000_000)
        );
        let first = p
            .body
            .networking_config
            .as_ref()
            .unwrap()
            .endpoints_config
            .as_ref()
            .unwrap();
        assert_eq!(
            first["shop-front"].aliases.as_deref(),
            Some(&["web".to_string()][..])
        );
        assert_eq!(p.more_networks, ["shop-back"]);
        assert_eq!(p.body.labels.as_ref().unwrap()[LABEL_CONFIG], p.config_hash);
    }

    #[test]
    fn hash_is_stable_and_follows_the_parameters() {
        let a = planned(STACK, "web").unwrap().config_hash;
        assert_eq!(a, planned(STACK, "web").unwrap().config_hash);
        let changed = STACK.replace(
            "networks = [\"front\", \"back\"]",
            "networks = [\"front\", \"back\"]\nparams = { content = \"v2\" }",
        );
        assert_ne!(a, planned(&changed, "web").unwrap().config_hash);
        // Another service's change does not touch this one.
        let other = STACK.replace("http://web/", "http://web:80/");
        assert_eq!(a, planned(&other, "web").unwrap().config_hash);
    }

    fn with_health(interval: &str, retries: u32) -> ServiceSpec {
        let stack = StackFile::parse(Path::new("shop.toml"), STACK).unwrap();
        let search = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("container-templates")];
        let t = container::find(&search, "busybox-httpd").unwrap();
        let ctx = RenderContext {
            stack: stack.name.clone(),
            service: "web".into(),
        };
        let mut spec = t.render(&toml::Table::new(), &ctx).unwrap();
        let health = spec.healthcheck.as_mut().unwrap();
        health.interval = interval.to_string();
        health.retries = retries;
        spec
    }

    /// Found by the healthcheck fuzz target: an interval of 10^11 years times 31 tries
    /// overflowed Duration and panicked `up` while it waited (and `retries = 4294967295`
    /// overflowed the try count). The deadline is None then; bounds refuse such values first.
    #[test]
    fn health_deadline_of_absurd_durations_and_retries_is_none() {
        assert_eq!(health_deadline(&with_health("100000000000y", 30)), None);
        assert_eq!(health_deadline(&with_health("2s", u32::MAX)), None);
        assert_eq!(
            health_deadline(&with_health("2s", 30)).map(|d| d.as_secs()),
            Some(31 * 12 + 5)
        );
    }

    /// Docker's health durations are int64 nanoseconds; a longer one used to wrap around
    /// (to a negative interval) instead of being refused.
    #[test]
    fn health_interval_longer_than_docker_takes_is_refused_naming_the_service() {
        let stack = StackFile::parse(Path::new("shop.toml"), STACK).unwrap();
        let err = plan(
            &stack,
            &stack.services["web"],
            &with_health("300y", 30),
            "sha256:abc",
        )
        .unwrap_err();
        assert!(
            err.message().contains("shop.toml:6: service 'web'")
                && err
                    .message()
                    .contains("healthcheck.interval '300y' is too long for Docker"),
            "{err}"
        );
        let ok = plan(
            &stack,
            &stack.services["web"],
            &with_health("200y", 30),
            "sha256:abc",
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
    }

    #[test]
    fn a_health_deadline_that_overflows_is_none_not_a_panic() {
        // 2 s + 10 s per probe, 31 probes, 5 s slack.
        let spec = with_health("2s", 30);
        assert_eq!(health_deadline(&spec), Some(Duration::from_secs(377)));
        let spec = with_health("100000000000000h", 1000);
        assert!(health_deadline(&spec).is_none());
        let stack = StackFile::parse(Path::new("shop.toml"), STACK).unwrap();
        let err = plan(&stack, &stack.services["web"], &spec, "sha256:x").unwrap_err();
        assert!(err.message().contains("healthcheck.interval"), "{err}");
    }

    #[test]
    fn stack_volumes_are_scoped_and_undeclared_ones_refused() {
        let p = planned(STACK, "poll").unwrap();
        let binds = p.body.host_config.unwrap().binds.unwrap();
        assert_eq!(binds, ["shop-data:/data"]);
        let err = planned(&STACK.replace("[volumes.data]\n", ""), "poll").unwrap_err();
        assert!(
            err.message()
                .contains("shop.toml:8: service 'poll': volume 'data' is not declared"),
            "{err}"
        );
    }
}
