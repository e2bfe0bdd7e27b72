//! kvm.device: /dev/kvm must be usable by the user libvirt runs qemu as, or every VM runs
//! emulated (TCG); and on a root-only /dev/kvm libvirtd re-probes QEMU at every domain start
//! (measured here: 52 s per start at 0600 against 0.32 s at 0660 group kvm). Also reports
//! whether the CPU offers hardware virtualisation and the nested-virtualisation setting.

use crate::check::{Finding, Fix, FixAction, HostCheck, HostSnapshot, Subject, Verdict};

const ID: &str = "kvm.device";

pub const CHECK: HostCheck = HostCheck {
    id: ID,
    reads: "owner, group and mode of /dev/kvm, qemu's user and groups (/etc/libvirt/qemu.conf, /etc/group), vmx/svm in /proc/cpuinfo, /sys/module/kvm_{intel,amd}/parameters/nested",
    verdict,
};

fn verdict(facts: &HostSnapshot) -> Vec<Finding> {
    let kvm = match &facts.kvm {
        Ok(k) => k,
        Err(why) => return vec![Finding::skipped(ID, Subject::Host, why)],
    };
    let mut evidence = Vec::new();
    match kvm.dev_kvm {
        Some((_, _, mode)) => evidence.push(format!(
            "/dev/kvm {} mode {mode:04o}; qemu runs as '{}'",
            kvm.dev_kvm_owner().unwrap_or_default(),
            kvm.qemu_user
        )),
        None => evidence.push("/dev/kvm does not exist".into()),
    }
    evidence.push(format!(
        "CPU hardware virtualisation (vmx/svm): {}",
        if kvm.hardware_virt { "yes" } else { "no" }
    ));
    if let Some(nested) = &facts.nested {
        evidence.push(nested.clone());
    }
    if kvm.dev_kvm.is_some() && !kvm.usable_by_qemu {
        return vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Fail,
            format!(
                "qemu's user '{}' cannot open /dev/kvm: VMs fall back to emulation and libvirtd re-probes QEMU at every start (about a minute each)",
                kvm.qemu_user
            ),
        )
        .evidence(evidence)
        .with_fix(Fix::automatic(
            "now: `chgrp kvm /dev/kvm && chmod 0660 /dev/kvm`; to keep it across reboots: a udev rule `KERNEL==\"kvm\", GROUP=\"kvm\", MODE=\"0660\"` in /etc/udev/rules.d/65-kvm.rules, and qemu's user in group kvm",
            FixAction::KvmGroupAccess,
        ))];
    }
    if let Some(why) = kvm.kvm_blocker() {
        return vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Warn,
            format!("VMs run emulated (TCG), several times slower: {why}"),
        )
        .evidence(evidence)
        .with_fix(Fix::manual(
            "enable VT-x/AMD-V in the firmware, or nested virtualisation on the machine this host runs on",
        ))];
    }
    vec![Finding::new(ID, Subject::Host, Verdict::Ok, "VMs can use KVM".into()).evidence(evidence)]
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;
    use crate::host::accel::KvmFacts;

    fn kvm(mode: u32, usable: bool, hw: bool) -> KvmFacts {
        KvmFacts {
            dev_kvm: Some((0, 0, mode)),
            usable_by_qemu: usable,
            qemu_user: "libvirt-qemu".into(),
            hardware_virt: hw,
            dev_kvm_names: None,
        }
    }

    #[test]
    fn a_remote_hosts_device_is_named_as_that_host_names_it() {
        let mut facts = host_facts(DOCKER_20_10);
        facts.kvm = Ok(KvmFacts {
            dev_kvm_names: Some("root:kvm".into()),
            ..kvm(0o660, true, true)
        });
        let found = verdict(&facts);
        assert!(
            found[0].evidence[0].starts_with("/dev/kvm root:kvm mode 0660"),
            "{:?}",
            found[0].evidence
        );
    }

    #[test]
    fn root_only_device_fails_with_the_fix() {
        let mut facts = host_facts(DOCKER_20_10);
        facts.kvm = Ok(kvm(0o600, false, false));
        let found = verdict(&facts);
        assert_eq!(found[0].verdict, Verdict::Fail);
        assert!(found[0].evidence[0].contains("0600"));
        let fix = found[0].fix.as_ref().unwrap();
        assert_eq!(fix.action, Some(FixAction::KvmGroupAccess));
        assert!(fix.description.contains("udev") && fix.description.contains("chmod 0660"));
    }

    #[test]
    fn usable_device_without_cpu_support_warns_and_good_one_passes() {
        let mut facts = host_facts(DOCKER_20_10);
        facts.kvm = Ok(kvm(0o660, true, false));
        assert_eq!(verdict(&facts)[0].verdict, Verdict::Warn);
        facts.kvm = Ok(kvm(0o660, true, true));
        assert_eq!(verdict(&facts)[0].verdict, Verdict::Ok);
    }
}
