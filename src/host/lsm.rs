//! Denials by the Linux security modules that confine qemu (AppArmor's libvirt profiles,
//! SELinux's sVirt), from the kernel log and the audit log.

use crate::error::Result;
use crate::host::runner::Runner;
use crate::host::sysctl::read_trimmed_on;

/// Denials of one security module: None when it is not enforcing, Err when its log could not
/// be read.
pub type Denials = Option<Result<Vec<String>>>;

/// AppArmor's and SELinux's denials on `runner`'s host.
pub fn denials_on(runner: &Runner) -> (Denials, Denials) {
    (apparmor_denials_on(runner), selinux_denials_on(runner))
}

/// AppArmor denials of libvirt/qemu profiles; None when AppArmor is not enabled.
pub fn apparmor_denials() -> Denials {
    apparmor_denials_on(&Runner::Local)
}

fn apparmor_denials_on(runner: &Runner) -> Denials {
    let enabled = read_trimmed_on(runner, "/sys/module/apparmor/parameters/enabled").ok()?;
    if enabled != "Y" {
        return None;
    }
    Some(
        runner
            .capture("dmesg", &[])
            .or_else(|why| runner.read_file("/var/log/kern.log").map_err(|_| why))
            .map(|log| libvirt_denials(&log)),
    )
}

/// AVC denials of sVirt/qemu; None when SELinux is not enforcing.
pub fn selinux_denials() -> Denials {
    selinux_denials_on(&Runner::Local)
}

fn selinux_denials_on(runner: &Runner) -> Denials {
    if read_trimmed_on(runner, "/sys/fs/selinux/enforce").ok()? != "1" {
        return None;
    }
    Some(
        runner
            .read_file("/var/log/audit/audit.log")
            .map(|log| svirt_denials(&log)),
    )
}

/// SELinux AVC denials of sVirt's domains or qemu in an audit log (pure).
pub fn svirt_denials(audit_log: &str) -> Vec<String> {
    audit_log
        .lines()
        .filter(|l| l.contains("avc:") && l.contains("denied"))
        .filter(|l| l.contains("svirt") || l.contains("qemu"))
        .map(|l| l.trim().to_string())
        .collect()
}

/// AppArmor denials of libvirt's and qemu's profiles in a kernel log (pure).
pub fn libvirt_denials(kernel_log: &str) -> Vec<String> {
    kernel_log
        .lines()
        .filter(|l| l.contains("apparmor=\"DENIED\""))
        .filter(|l| l.contains("libvirt") || l.contains("qemu"))
        .map(|l| l.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_libvirt_denials() {
        let log = "[ 12.3] audit: type=1400 apparmor=\"DENIED\" operation=\"open\" profile=\"libvirt-2f1e\" name=\"/srv/pool/x.qcow2\"\n[ 13.0] apparmor=\"DENIED\" profile=\"cupsd\"\n[ 14] eth0: link up\n";
        let d = libvirt_denials(log);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("libvirt-2f1e"));
        let audit = "type=AVC msg=audit(1700000000.1:42): avc:  denied  { read } for pid=901 comm=\"qemu-kvm\" name=\"disk.qcow2\" scontext=system_u:system_r:svirt_t:s0:c1,c2 tcontext=unconfined_u:object_r:user_home_t:s0 tclass=file\ntype=AVC msg=audit(1.2:3): avc:  denied  { write } for comm=\"httpd\" scontext=system_u:system_r:httpd_t:s0\n";
        assert_eq!(svirt_denials(audit).len(), 1);
    }
}
