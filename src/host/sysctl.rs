//! Kernel switches under /proc/sys and /sys/module that decide how a host forwards VM
//! traffic: IPv4 forwarding, bridge netfilter (br_netfilter) and nested virtualisation.

use crate::error::Result;
use crate::host::runner::Runner;

/// A file's content, trimmed.
pub fn read_trimmed(path: &str) -> Result<String> {
    read_trimmed_on(&Runner::Local, path)
}

/// A file's content on `runner`'s host, trimmed.
pub fn read_trimmed_on(runner: &Runner, path: &str) -> Result<String> {
    runner.read_file(path).map(|s| s.trim().to_string())
}

/// A 0/1 sysctl.
pub fn flag(path: &str) -> Result<bool> {
    flag_on(&Runner::Local, path)
}

fn flag_on(runner: &Runner, path: &str) -> Result<bool> {
    read_trimmed_on(runner, path).map(|v| v == "1")
}

/// net.ipv4.ip_forward.
pub fn ip_forward() -> Result<bool> {
    ip_forward_on(&Runner::Local)
}

pub fn ip_forward_on(runner: &Runner) -> Result<bool> {
    flag_on(runner, "/proc/sys/net/ipv4/ip_forward")
}

/// net.bridge.bridge-nf-call-iptables; None when br_netfilter is not active (the sysctl only
/// exists while it is, as a module or built in).
pub fn bridge_nf_call_iptables() -> Option<bool> {
    bridge_nf_call_iptables_on(&Runner::Local)
}

pub fn bridge_nf_call_iptables_on(runner: &Runner) -> Option<bool> {
    flag_on(runner, "/proc/sys/net/bridge/bridge-nf-call-iptables").ok()
}

/// e.g. "kvm_intel nested=Y", when a KVM module is loaded.
pub fn nested_virtualization() -> Option<String> {
    nested_virtualization_on(&Runner::Local)
}

pub fn nested_virtualization_on(runner: &Runner) -> Option<String> {
    ["kvm_intel", "kvm_amd"].iter().find_map(|module| {
        read_trimmed_on(runner, &format!("/sys/module/{module}/parameters/nested"))
            .ok()
            .map(|v| format!("{module} nested={v}"))
    })
}
