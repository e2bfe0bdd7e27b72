//! IPv4 routes of a host (`ip -j route` JSON, here or through a runner on a remote host), as
//! subnets a new network must not overlap.

use crate::error::{Context, Result};
use ipnet::Ipv4Net;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct RouteJson {
    dst: String,
    #[serde(default)]
    dev: Option<String>,
}

/// A routed destination and the device it goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoute {
    pub subnet: Ipv4Net,
    pub dev: String,
}

/// Parse `ip -j -4 route show` output; the default route overlaps everything and is skipped.
pub fn parse_routes(json: &str) -> Result<Vec<HostRoute>> {
    let routes: Vec<RouteJson> = serde_json::from_str(json).context("reading `ip -j route`")?;
    Ok(routes
        .into_iter()
        .filter(|r| r.dst != "default")
        .filter_map(|r| {
            let subnet = if r.dst.contains('/') {
                r.dst.parse::<Ipv4Net>().ok()?
            } else {
                Ipv4Net::new(r.dst.parse().ok()?, 32).ok()?
            };
            Some(HostRoute {
                subnet,
                dev: r.dev.unwrap_or_default(),
            })
        })
        .collect())
}

/// The host's IPv4 routes (main table).
pub fn read() -> Result<Vec<HostRoute>> {
    read_with(&crate::host::runner::Runner::Local)
}

/// The IPv4 routes (main table) of the host `runner` runs on.
pub fn read_with(runner: &crate::host::runner::Runner) -> Result<Vec<HostRoute>> {
    parse_routes(&runner.capture("ip", &["-j", "-4", "route", "show"])?)
}

/// The device of the default route: where routed VM traffic leaves the host.
pub fn default_route_device() -> Option<String> {
    default_route_device_on(&crate::host::runner::Runner::Local)
}

/// The same on `runner`'s host.
pub fn default_route_device_on(runner: &crate::host::runner::Runner) -> Option<String> {
    parse_default_device(
        &runner
            .capture("ip", &["-j", "-4", "route", "show", "default"])
            .ok()?,
    )
}

/// The `dev` of the first route in `ip -j route show default` output (pure).
pub fn parse_default_device(json: &str) -> Option<String> {
    let routes: serde_json::Value = serde_json::from_str(json).ok()?;
    routes[0]["dev"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_ip_route_json() {
        // Captured from this machine (`ip -j -4 route show` with dockerd running).
        let json = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},{"dst":"172.17.0.0/16","dev":"docker0","protocol":"kernel","scope":"link","prefsrc":"172.17.0.1","flags":["linkdown"]},{"dst":"192.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]}]"#;
        let routes = parse_routes(json).unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].subnet, "172.17.0.0/16".parse().unwrap());
        assert_eq!(routes[0].dev, "docker0");
        assert_eq!(routes[1].subnet, "192.0.2.0/24".parse().unwrap());
        let host = parse_routes(r#"[{"dst":"169.254.169.254","dev":"eth0","flags":[]}]"#).unwrap();
        assert_eq!(host[0].subnet, "169.254.169.254/32".parse().unwrap());
        assert_eq!(parse_default_device(json).as_deref(), Some("eth0"));
        assert_eq!(parse_default_device("[]"), None);
    }
}
