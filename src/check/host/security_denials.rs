//! security.denials: AppArmor denials of libvirt's per-VM profiles (libvirt-UUID) or of qemu
//! in the kernel log, and SELinux AVC denials of sVirt's domains (svirt_t) in the audit log;
//! a denied disk or socket path shows up here before anywhere else.

use crate::check::{Finding, Fix, HostCheck, HostSnapshot, Subject, Verdict};
use crate::error::Result;

const ID: &str = "security.denials";

pub const CHECK: HostCheck = HostCheck {
    id: ID,
    reads: "/sys/module/apparmor/parameters/enabled and the kernel log (dmesg, else /var/log/kern.log) for apparmor=\"DENIED\" lines of libvirt/qemu profiles; /sys/fs/selinux/enforce and /var/log/audit/audit.log for AVC denials of svirt/qemu",
    verdict,
};

/// One security module's denials as a finding.
fn judge(module: &str, denials: &Option<Result<Vec<String>>>, fix: &str) -> Finding {
    match denials {
        None => Finding::new(
            ID,
            Subject::Host,
            Verdict::Ok,
            format!("{module} is not enforcing"),
        ),
        Some(Err(why)) => Finding::skipped(ID, Subject::Host, why),
        Some(Ok(d)) if d.is_empty() => Finding::new(
            ID,
            Subject::Host,
            Verdict::Ok,
            format!("no {module} denials for libvirt or qemu"),
        ),
        Some(Ok(d)) => Finding::new(
            ID,
            Subject::Host,
            Verdict::Warn,
            format!("{} {module} denials for libvirt or qemu", d.len()),
        )
        .evidence(d.iter().rev().take(3).cloned())
        .with_fix(Fix::manual(fix)),
    }
}

fn verdict(facts: &HostSnapshot) -> Vec<Finding> {
    vec![
        judge(
            "AppArmor",
            &facts.apparmor_denials,
            "keep VM disks under a libvirt storage pool (libvirt's virt-aa-helper allows those paths), or add the path to /etc/apparmor.d/local/abstractions/libvirt-qemu",
        ),
        judge(
            "SELinux",
            &facts.selinux_denials,
            "label the disk directory virt_image_t (`semanage fcontext -a -t virt_image_t 'DIR(/.*)?'; restorecon -R DIR`)",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;

    #[test]
    fn denials_warn_with_the_latest_lines() {
        let mut facts = host_facts(DOCKER_20_10);
        assert!(verdict(&facts).iter().all(|f| f.verdict == Verdict::Ok));
        facts.apparmor_denials = Some(Ok(vec!["a".into(), "b".into(), "c".into(), "d".into()]));
        facts.selinux_denials = Some(Err(crate::error::Error::failed(
            "cannot read /var/log/audit/audit.log",
        )));
        let found = verdict(&facts);
        assert_eq!(found[0].verdict, Verdict::Warn);
        assert_eq!(found[0].evidence, vec!["d", "c", "b"]);
        assert_eq!(found[1].verdict, Verdict::Skip);
    }
}
