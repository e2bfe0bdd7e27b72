//! security.apparmor: AppArmor denials of libvirt's per-VM profiles (libvirt-UUID) or of
//! qemu in the kernel log; a denied disk or socket path shows up here before anywhere else.

use crate::check::{Finding, Fix, HostCheck, HostFacts, Subject, Verdict};

const ID: &str = "security.apparmor";

pub const CHECK: HostCheck = HostCheck {
    id: ID,
    reads: "/sys/module/apparmor/parameters/enabled, the kernel log (dmesg, else /var/log/kern.log) for apparmor=\"DENIED\" lines of libvirt/qemu profiles",
    verdict,
};

fn verdict(facts: &HostFacts) -> Vec<Finding> {
    match &facts.apparmor_denials {
        None => vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Ok,
            "AppArmor is not enabled".into(),
        )],
        Some(Err(why)) => vec![Finding::skipped(ID, Subject::Host, why)],
        Some(Ok(denials)) if denials.is_empty() => vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Ok,
            "no AppArmor denials for libvirt or qemu in the kernel log".into(),
        )],
        Some(Ok(denials)) => vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Warn,
            format!("{} AppArmor denials for libvirt or qemu", denials.len()),
        )
        .evidence(denials.iter().rev().take(3).cloned())
        .with_fix(Fix::manual(
            "keep VM disks under a libvirt storage pool (libvirt's virt-aa-helper allows those paths), or add the path to /etc/apparmor.d/local/abstractions/libvirt-qemu",
        ))],
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;

    #[test]
    fn denials_warn_with_the_latest_lines() {
        let mut facts = host_facts(DOCKER_20_10);
        assert_eq!(verdict(&facts)[0].verdict, Verdict::Ok);
        facts.apparmor_denials = Some(Ok(vec!["a".into(), "b".into(), "c".into(), "d".into()]));
        let found = verdict(&facts);
        assert_eq!(found[0].verdict, Verdict::Warn);
        assert_eq!(found[0].evidence, vec!["d", "c", "b"]);
    }
}
