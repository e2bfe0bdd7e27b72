//! firewalld, when it runs: its active zones with their interfaces, and its back end.

use crate::error::Result;
use crate::host::runner::Runner;

/// firewalld, when it runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Firewalld {
    /// Active zones and their interfaces (`firewall-cmd --get-active-zones`).
    pub zones: Vec<(String, Vec<String>)>,
    /// FirewallBackend from /etc/firewalld/firewalld.conf.
    pub backend: Option<String>,
}

/// Whether a firewalld process runs.
pub fn running() -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .map(|c| c.trim() == "firewalld")
                .unwrap_or(false)
        })
}

/// firewalld on `runner`'s host: None when it does not run there (here from /proc, there by
/// `pgrep`).
pub fn read_on(runner: &Runner) -> Option<Result<Firewalld>> {
    let running = match runner {
        Runner::Local => running(),
        Runner::Ssh { .. } => runner
            .run("pgrep", &["-x", "firewalld"])
            .map(|ran| ran.status == 0)
            .unwrap_or(false),
    };
    running.then(|| read_with(runner))
}

/// FirewallBackend= of a firewalld.conf.
fn backend_of(conf: &str) -> Option<String> {
    conf.lines().find_map(|l| {
        l.trim()
            .strip_prefix("FirewallBackend=")
            .map(|v| v.trim().to_string())
    })
}

/// firewalld's zones and back end.
pub fn read() -> Result<Firewalld> {
    read_with(&Runner::Local)
}

fn read_with(runner: &Runner) -> Result<Firewalld> {
    let zones = runner.capture("firewall-cmd", &["--get-active-zones"])?;
    Ok(Firewalld {
        zones: parse_active_zones(&zones),
        backend: runner
            .read_file("/etc/firewalld/firewalld.conf")
            .ok()
            .and_then(|c| backend_of(&c)),
    })
}

/// `firewall-cmd --get-active-zones`: a zone name on its own line, then indented
/// `interfaces: a b` / `sources: ...` lines (pure).
pub fn parse_active_zones(text: &str) -> Vec<(String, Vec<String>)> {
    let mut zones: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(char::is_whitespace) {
            let name = line.split_whitespace().next().unwrap_or_default();
            zones.push((name.to_string(), Vec::new()));
        } else if let (Some(rest), Some(zone)) =
            (line.trim().strip_prefix("interfaces:"), zones.last_mut())
        {
            zone.1.extend(rest.split_whitespace().map(str::to_string));
        }
    }
    zones
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_firewalld_zones() {
        let text = "docker\n  interfaces: docker0 br-1a2b3c4d5e6f\nlibvirt\n  interfaces: virbr0\npublic (default)\n  interfaces: eth0\n  sources: 10.0.0.0/8\n";
        let zones = parse_active_zones(text);
        assert_eq!(zones.len(), 3);
        assert_eq!(zones[0].1, vec!["docker0", "br-1a2b3c4d5e6f"]);
        assert_eq!(zones[2].0, "public");
        assert_eq!(zones[2].1, vec!["eth0"]);
    }
}
