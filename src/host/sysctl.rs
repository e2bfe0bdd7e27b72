//! Kernel switches under /proc/sys and /sys/module that decide how a host forwards VM
//! traffic: IPv4 forwarding, bridge netfilter (br_netfilter) and nested virtualisation.

use crate::error::{Error, Result};

/// A file's content, trimmed.
pub fn read_trimmed(path: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::from(e).context(format!("cannot read {path}")))
}

/// A 0/1 sysctl.
pub fn flag(path: &str) -> Result<bool> {
    read_trimmed(path).map(|v| v == "1")
}

/// net.ipv4.ip_forward.
pub fn ip_forward() -> Result<bool> {
    flag("/proc/sys/net/ipv4/ip_forward")
}

/// net.bridge.bridge-nf-call-iptables; None when br_netfilter is not active (the sysctl only
/// exists while it is, as a module or built in).
pub fn bridge_nf_call_iptables() -> Option<bool> {
    flag("/proc/sys/net/bridge/bridge-nf-call-iptables").ok()
}

/// e.g. "kvm_intel nested=Y", when a KVM module is loaded.
pub fn nested_virtualization() -> Option<String> {
    ["kvm_intel", "kvm_amd"].iter().find_map(|module| {
        read_trimmed(&format!("/sys/module/{module}/parameters/nested"))
            .ok()
            .map(|v| format!("{module} nested={v}"))
    })
}
