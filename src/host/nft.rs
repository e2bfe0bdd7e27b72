//! Which packet-filter back ends hold rules on this host (NET-2, NET-5): what `iptables` is
//! (nf_tables or legacy), how many rules each back end holds, the nftables tables
//! (`nft -j list tables`), and libvirt's own firewall back end (/etc/libvirt/network.conf).

use crate::error::{Error, Result};
use crate::host::runner::Runner;

/// Which packet-filter back ends hold rules (NET-2, NET-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallBackends {
    /// "nf_tables" or "legacy": what `iptables` is on this host.
    pub iptables_variant: Option<String>,
    /// Rules (`-A` lines) in the legacy x_tables back end; 0 when it has no tables loaded.
    pub legacy_rules: Result<usize>,
    /// Rules in iptables' nf_tables back end.
    pub nft_rules: Result<usize>,
    /// `family name` of every nftables table (e.g. "ip libvirt_network"), when nft is installed.
    pub nft_tables: Result<Vec<String>>,
    /// `firewall_backend` from /etc/libvirt/network.conf, when set.
    pub libvirt_backend: Option<String>,
}

/// Count `-A` lines in a *-save dump.
fn rule_count(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with("-A ")).count()
}

/// Read the back ends; each count says why when it could not be read.
pub fn read() -> FirewallBackends {
    read_on(&Runner::Local)
}

/// The back ends of `runner`'s host.
pub fn read_on(runner: &Runner) -> FirewallBackends {
    let iptables_variant = runner
        .capture("iptables", &["--version"])
        .ok()
        .map(|v| variant_of(&v));
    // The legacy back end only has rules when it has tables loaded; reading
    // /proc/net/ip_tables_names first avoids running (and module-loading) iptables-legacy.
    let legacy_rules = match runner.read_file("/proc/net/ip_tables_names") {
        Ok(names) if !names.trim().is_empty() => runner
            .capture("iptables-legacy-save", &[])
            .map(|t| rule_count(&t)),
        _ => Ok(0),
    };
    FirewallBackends {
        iptables_variant,
        legacy_rules,
        nft_rules: runner
            .capture("iptables-nft-save", &[])
            .map(|t| rule_count(&t)),
        nft_tables: runner
            .capture("nft", &["-j", "list", "tables"])
            .and_then(|j| parse_nft_tables(&j)),
        libvirt_backend: runner
            .read_file("/etc/libvirt/network.conf")
            .ok()
            .and_then(|conf| config_value(&conf, "firewall_backend")),
    }
}

/// "legacy" or "nf_tables", from `iptables --version`.
fn variant_of(version: &str) -> String {
    if version.contains("legacy") {
        "legacy".to_string()
    } else {
        "nf_tables".to_string()
    }
}

/// `family name` of each table in `nft -j list tables` output (pure).
pub fn parse_nft_tables(json: &str) -> Result<Vec<String>> {
    let doc: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::failed(format!("reading `nft -j list tables`: {e}")))?;
    Ok(doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let table = item.get("table")?;
            Some(format!(
                "{} {}",
                table["family"].as_str()?,
                table["name"].as_str()?
            ))
        })
        .collect())
}

/// `key = "value"` from a libvirt-style config file, ignoring comments (pure).
pub fn config_value(conf: &str, key: &str) -> Option<String> {
    conf.lines().find_map(|line| {
        let line = line.trim();
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nft_tables_and_libvirt_backend() {
        // Shape of `nft -j list tables` (nftables 1.0.6) with libvirt's nftables backend.
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "filter", "handle": 1}}, {"table": {"family": "ip", "name": "libvirt_network", "handle": 7}}]}"#;
        assert_eq!(
            parse_nft_tables(json).unwrap(),
            vec!["ip filter".to_string(), "ip libvirt_network".to_string()]
        );
        let conf = "# firewall_backend = \"iptables\"\nfirewall_backend = \"nftables\"\n";
        assert_eq!(
            config_value(conf, "firewall_backend").as_deref(),
            Some("nftables")
        );
    }
}
