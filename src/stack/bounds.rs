//! The bounds a rendered service must keep before anything runs: durations that parse, are
//! positive and at most an hour; health retries in 1..=1000; a memory limit of at least 4 MiB
//! and at most 1 TiB; container ports from 1; addresses that parse; log rotation that keeps
//! at least one file. Values out of these come from a stack or a template and would otherwise
//! overflow the arithmetic on them (a panic skips the rollback) or mean nothing to Docker.

use crate::error::{Error, Result};
use crate::template::container::{HealthSpec, ServiceSpec};
use std::time::Duration;

/// The longest interval, timeout or start period a health check may have.
pub const MAX_HEALTH_DURATION: Duration = Duration::from_secs(3600);
pub const HEALTH_RETRIES: std::ops::RangeInclusive<u32> = 1..=1000;
pub const MIN_MEMORY: u64 = 4 << 20;
pub const MAX_MEMORY: u64 = 1 << 40;
pub const LOG_FILES: std::ops::RangeInclusive<u32> = 1..=100;

/// Check every bounded field of `spec`; the error names the field.
pub fn check(spec: &ServiceSpec) -> Result<()> {
    let memory = crate::units::parse_size("memory", &spec.memory)?;
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&memory) {
        return Err(Error::bad_input(format!(
            "memory '{}' is out of range: at least 4M, at most 1T",
            spec.memory
        ))
        .with_hint("Docker refuses less than a few MiB; more than 1T is a typo"));
    }
    crate::units::parse_size("log.max_size", &spec.log.max_size)?;
    if !LOG_FILES.contains(&spec.log.max_file) {
        return Err(Error::bad_input(format!(
            "log.max_file {} is out of range 1..=100",
            spec.log.max_file
        ))
        .with_hint("keep at least one log file"));
    }
    for port in &spec.ports {
        if port.container == 0 {
            return Err(Error::bad_input("ports.container 0 is not a port")
                .with_hint("a container port is 1..=65535"));
        }
        if port.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::bad_input(format!(
                "ports.host_ip '{}' is not an IP address",
                port.host_ip
            ))
            .with_hint("e.g. 127.0.0.1 (the default)"));
        }
    }
    for (field, path) in spec
        .volumes
        .iter()
        .map(|v| ("volumes.target", &v.target))
        .chain(spec.tmpfs.iter().map(|t| ("tmpfs", t)))
    {
        if !path.starts_with('/') {
            return Err(Error::bad_input(format!(
                "{field} '{path}' is not an absolute path in the container"
            ))
            .with_hint("e.g. /data"));
        }
    }
    if let Some(key) = spec.env.keys().find(|k| k.is_empty() || k.contains('=')) {
        return Err(
            Error::bad_input(format!("env key '{key}' is not a variable name"))
                .with_hint("an environment variable's name has no '=' and is not empty"),
        );
    }
    if let Some(health) = &spec.healthcheck {
        check_health(health)?;
    }
    Ok(())
}

fn check_health(h: &HealthSpec) -> Result<()> {
    if h.test.is_empty() {
        return Err(Error::bad_input("healthcheck.test is empty")
            .with_hint("e.g. [\"CMD\", \"/bin/busybox\", \"true\"]"));
    }
    duration("healthcheck.interval", &h.interval, false)?;
    duration("healthcheck.timeout", &h.timeout, false)?;
    duration("healthcheck.start_period", &h.start_period, true)?;
    if !HEALTH_RETRIES.contains(&h.retries) {
        return Err(Error::bad_input(format!(
            "healthcheck.retries {} is out of range 1..=1000",
            h.retries
        ))
        .with_hint("failed probes before Docker calls the service unhealthy, e.g. 30"));
    }
    Ok(())
}

/// A health check duration: parses, is positive (or zero where `zero_ok`), at most an hour.
pub fn duration(field: &str, text: &str, zero_ok: bool) -> Result<Duration> {
    let hint = "durations look like 500ms, 2s, 1m; at most 1h";
    let d = humantime::parse_duration(text).map_err(|e| {
        Error::bad_input(format!("{field} '{text}' is not a duration: {e}")).with_hint(hint)
    })?;
    if (d.is_zero() && !zero_ok) || d > MAX_HEALTH_DURATION {
        return Err(Error::bad_input(format!(
            "{field} '{text}' is out of range: above 0, at most 1h"
        ))
        .with_hint(hint));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::container::{ImageSource, LogSpec, PortSpec, VolumeSpec};

    fn spec() -> ServiceSpec {
        ServiceSpec {
            image: ImageSource {
                reference: Some("busybox".into()),
                build: None,
                name: None,
                context_files: Default::default(),
                tarball: None,
            },
            entrypoint: None,
            command: None,
            env: [("A".to_string(), "1".to_string())].into(),
            ports: vec![PortSpec {
                container: 80,
                host: 8080,
                host_ip: "127.0.0.1".into(),
            }],
            volumes: vec![VolumeSpec {
                source: "data".into(),
                target: "/data".into(),
                read_only: false,
            }],
            memory: "32M".into(),
            log: LogSpec {
                driver: "local".into(),
                max_size: "5m".into(),
                max_file: 2,
            },
            restart: "unless-stopped".into(),
            read_only: true,
            tmpfs: vec!["/www".into()],
            user: None,
            healthcheck: Some(HealthSpec {
                test: vec!["CMD".into(), "true".into()],
                interval: "2s".into(),
                timeout: "10s".into(),
                retries: 30,
                start_period: "0s".into(),
            }),
        }
    }

    #[test]
    fn values_out_of_bounds_are_refused_naming_the_field() {
        assert!(check(&spec()).is_ok());
        let health = |change: fn(&mut HealthSpec)| {
            let mut s = spec();
            change(s.healthcheck.as_mut().unwrap());
            s
        };
        let cases: Vec<(ServiceSpec, &str)> = vec![
            (
                health(|h| h.retries = 0),
                "healthcheck.retries 0 is out of range",
            ),
            (
                health(|h| h.retries = u32::MAX),
                "healthcheck.retries 4294967295",
            ),
            (
                health(|h| h.interval = "0s".into()),
                "healthcheck.interval '0s' is out of range",
            ),
            (
                health(|h| h.timeout = "2h".into()),
                "healthcheck.timeout '2h' is out of range",
            ),
            (
                health(|h| h.interval = "99999999999999h".into()),
                "healthcheck.interval",
            ),
            (
                health(|h| h.start_period = "soon".into()),
                "healthcheck.start_period 'soon' is not a duration",
            ),
            (health(|h| h.test.clear()), "healthcheck.test is empty"),
            (
                ServiceSpec {
                    memory: "1M".into(),
                    ..spec()
                },
                "memory '1M' is out of range",
            ),
            (
                ServiceSpec {
                    memory: "9999999T".into(),
                    ..spec()
                },
                "memory",
            ),
            (
                ServiceSpec {
                    memory: "lots".into(),
                    ..spec()
                },
                "memory: 'lots' is not a size",
            ),
            (
                ServiceSpec {
                    log: LogSpec {
                        max_file: 0,
                        ..spec().log
                    },
                    ..spec()
                },
                "log.max_file 0 is out of range",
            ),
            (
                ServiceSpec {
                    log: LogSpec {
                        max_size: "big".into(),
                        ..spec().log
                    },
                    ..spec()
                },
                "log.max_size: 'big' is not a size",
            ),
            (
                ServiceSpec {
                    ports: vec![PortSpec {
                        container: 0,
                        ..spec().ports[0].clone()
                    }],
                    ..spec()
                },
                "ports.container 0",
            ),
            (
                ServiceSpec {
                    ports: vec![PortSpec {
                        host_ip: "any".into(),
                        ..spec().ports[0].clone()
                    }],
                    ..spec()
                },
                "ports.host_ip 'any'",
            ),
            (
                ServiceSpec {
                    tmpfs: vec!["www".into()],
                    ..spec()
                },
                "tmpfs 'www'",
            ),
            (
                ServiceSpec {
                    env: [("A=B".to_string(), "1".to_string())].into(),
                    ..spec()
                },
                "env key 'A=B'",
            ),
        ];
        for (bad, says) in cases {
            let err = check(&bad).unwrap_err();
            assert!(err.message().starts_with(says), "{says}: {err}");
            assert!(err.hint().is_some(), "{says}");
        }
        assert!(check(&health(|h| h.start_period = "0s".into())).is_ok());
    }
}
