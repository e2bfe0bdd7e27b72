//! Choosing the accelerator: KVM when qemu (as the user libvirt runs it as) can open /dev/kvm
//! AND the CPU is hardware-virtualised (vmx/svm); TCG otherwise. Nested paravirtual KVM
//! without vmx/svm exists and cannot boot a stock kernel, hence both conditions.

use crate::error::{Error, Result};
use crate::host::qemu_user::{configured_user, user_name, QemuIdentity};
use crate::host::runner::Runner;
use serde::Serialize;
use std::os::unix::fs::MetadataExt;

/// What the user asked for on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelRequest {
    Auto,
    Kvm,
    Tcg,
}

/// What a VM actually runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    /// libvirt's domain type for this accelerator.
    pub fn domain_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "qemu",
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
    pub fn parse(text: &str) -> Option<Accel> {
        match text {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }
}

/// The facts the choice depends on, read from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmFacts {
    /// None when /dev/kvm is missing; otherwise owner, group and mode.
    pub dev_kvm: Option<(u32, u32, u32)>,
    /// Whether the qemu user can open /dev/kvm read-write.
    pub usable_by_qemu: bool,
    pub qemu_user: String,
    /// vmx or svm among the CPU flags.
    pub hardware_virt: bool,
    /// /dev/kvm's "user:group" as named on a remote host (None: named from this machine's
    /// users and groups, where the ids are).
    pub dev_kvm_names: Option<String>,
}

impl KvmFacts {
    pub fn read() -> Result<KvmFacts> {
        let qemu = QemuIdentity::discover()?;
        let dev_kvm = std::fs::metadata("/dev/kvm")
            .ok()
            .map(|m| (m.uid(), m.gid(), m.mode() & 0o7777));
        let usable_by_qemu = dev_kvm
            .map(|(uid, gid, mode)| qemu.can_read_write(uid, gid, mode))
            .unwrap_or(false);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Ok(KvmFacts {
            dev_kvm,
            usable_by_qemu,
            qemu_user: qemu.user,
            hardware_virt: cpu_has_virt_flag(&cpuinfo),
            dev_kvm_names: None,
        })
    }

    /// The same facts of a remote host, read over SSH (`stat`, qemu.conf, `id`, cpuinfo): the
    /// user qemu runs as there, and that host's /dev/kvm and CPU.
    pub fn read_on(runner: &Runner) -> Result<KvmFacts> {
        if runner.is_local() {
            return KvmFacts::read();
        }
        let stat = runner.run("stat", &["-Lc", "%u %g %a %U:%G", "/dev/kvm"])?;
        let dev_kvm = (stat.status == 0)
            .then(|| parse_stat_line(&stat.stdout))
            .flatten();
        let dev_kvm_names = (stat.status == 0)
            .then(|| stat.stdout.split_whitespace().nth(3).map(str::to_string))
            .flatten();
        let conf = runner.run("cat", &["/etc/libvirt/qemu.conf"])?.stdout;
        let candidates: Vec<String> = match configured_user(&conf) {
            Some(user) => vec![user],
            None => vec!["libvirt-qemu".into(), "qemu".into()],
        };
        let mut qemu = None;
        for name in &candidates {
            let uid = runner.run("id", &["-u", name])?;
            let gids = runner.run("id", &["-G", name])?;
            if uid.status == 0 && gids.status == 0 {
                qemu = Some(QemuIdentity {
                    user: name.clone(),
                    uid: uid.stdout.trim().parse().unwrap_or(u32::MAX),
                    gids: gids
                        .stdout
                        .split_whitespace()
                        .filter_map(|g| g.parse().ok())
                        .collect(),
                });
                break;
            }
        }
        let qemu = qemu.ok_or_else(|| {
            Error::not_found(format!(
                "none of the users libvirt runs qemu as exists on {} ({})",
                runner.describe(),
                candidates.join(", ")
            ))
            .with_hint("install libvirt-daemon-system on that host")
        })?;
        let cpuinfo = runner.capture("cat", &["/proc/cpuinfo"])?;
        Ok(KvmFacts {
            dev_kvm,
            usable_by_qemu: dev_kvm
                .map(|(uid, gid, mode)| qemu.can_read_write(uid, gid, mode))
                .unwrap_or(false),
            qemu_user: qemu.user,
            hardware_virt: cpu_has_virt_flag(&cpuinfo),
            dev_kvm_names,
        })
    }

    /// /dev/kvm's owner and group as "user:group", named where they are.
    pub fn dev_kvm_owner(&self) -> Option<String> {
        let (uid, gid, _) = self.dev_kvm?;
        Some(self.dev_kvm_names.clone().unwrap_or_else(|| {
            format!(
                "{}:{}",
                user_name(uid),
                nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
                    .ok()
                    .flatten()
                    .map(|g| g.name)
                    .unwrap_or_else(|| gid.to_string())
            )
        }))
    }

    /// Why KVM cannot be used, or None when it can.
    pub fn kvm_blocker(&self) -> Option<String> {
        let Some((_, _, mode)) = self.dev_kvm else {
            return Some(
                "/dev/kvm does not exist (no kvm module, or not exposed to this machine)".into(),
            );
        };
        if !self.hardware_virt {
            return Some("the CPU shows no vmx/svm flag in /proc/cpuinfo (no hardware virtualisation; a paravirtual /dev/kvm cannot boot a stock kernel)".into());
        }
        if !self.usable_by_qemu {
            return Some(format!(
                "/dev/kvm is {} mode {:04o}, which qemu's user '{}' cannot open",
                self.dev_kvm_owner().unwrap_or_default(),
                mode,
                self.qemu_user
            ));
        }
        None
    }
}

/// "UID GID OCTAL-MODE" as `stat -Lc '%u %g %a ...'` starts (what follows is for messages).
pub fn parse_stat_line(line: &str) -> Option<(u32, u32, u32)> {
    let mut fields = line.split_whitespace();
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    let mode = u32::from_str_radix(fields.next()?, 8).ok()?;
    Some((uid, gid, mode))
}

/// vmx (Intel VT-x) or svm (AMD-V) on any flags line.
pub fn cpu_has_virt_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Pick the accelerator; the string says why, for `vm create` to report.
pub fn choose(request: AccelRequest, facts: &KvmFacts) -> Result<(Accel, String)> {
    match (request, facts.kvm_blocker()) {
        (AccelRequest::Tcg, _) => Ok((Accel::Tcg, "tcg requested".into())),
        (AccelRequest::Kvm, None) | (AccelRequest::Auto, None) => {
            Ok((Accel::Kvm, "/dev/kvm usable and CPU has hardware virtualisation".into()))
        }
        (AccelRequest::Kvm, Some(why)) => Err(Error::bad_input(format!("--accel kvm: {why}"))
            .with_hint("use --accel tcg (software emulation, slower) or fix /dev/kvm: `chgrp kvm /dev/kvm; chmod 0660 /dev/kvm` (./scripts/setup does)")),
        (AccelRequest::Auto, Some(why)) => Ok((Accel::Tcg, why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(dev: Option<(u32, u32, u32)>, usable: bool, hw: bool) -> KvmFacts {
        KvmFacts {
            dev_kvm: dev,
            usable_by_qemu: usable,
            qemu_user: "libvirt-qemu".into(),
            hardware_virt: hw,
            dev_kvm_names: None,
        }
    }

    #[test]
    fn stat_lines_of_dev_kvm() {
        assert_eq!(parse_stat_line("0 108 660\n"), Some((0, 108, 0o660)));
        assert_eq!(parse_stat_line("0 0 600"), Some((0, 0, 0o600)));
        assert_eq!(parse_stat_line("0 994 660 root:kvm"), Some((0, 994, 0o660)));
        assert_eq!(parse_stat_line("0 0"), None);
        assert_eq!(parse_stat_line("0 0 rw"), None);
    }

    #[test]
    fn auto_needs_both_usable_device_and_cpu_flag() {
        let good = facts(Some((0, 108, 0o660)), true, true);
        assert_eq!(choose(AccelRequest::Auto, &good).unwrap().0, Accel::Kvm);
        // This machine: nested paravirtual kvm, no vmx/svm.
        let pvm = facts(Some((0, 108, 0o660)), true, false);
        let (accel, why) = choose(AccelRequest::Auto, &pvm).unwrap();
        assert_eq!(accel, Accel::Tcg);
        assert!(why.contains("vmx/svm"), "{why}");
        // Fresh machine: root-only /dev/kvm.
        let root_only = facts(Some((0, 0, 0o600)), false, true);
        let (accel, why) = choose(AccelRequest::Auto, &root_only).unwrap();
        assert_eq!(accel, Accel::Tcg);
        assert!(why.contains("0600"), "{why}");
        assert_eq!(
            choose(AccelRequest::Auto, &facts(None, false, true))
                .unwrap()
                .0,
            Accel::Tcg
        );
    }

    #[test]
    fn explicit_kvm_fails_with_reason_when_unusable() {
        let err = choose(AccelRequest::Kvm, &facts(Some((0, 0, 0o600)), false, true)).unwrap_err();
        assert!(err.message().contains("cannot open"), "{err}");
        assert!(err.hint().unwrap().contains("chmod 0660"));
        assert_eq!(
            choose(AccelRequest::Tcg, &facts(Some((0, 108, 0o660)), true, true))
                .unwrap()
                .0,
            Accel::Tcg
        );
    }

    #[test]
    fn reads_virt_flags() {
        assert!(cpu_has_virt_flag(
            "processor: 0\nflags\t\t: fpu vme vmx sse\n"
        ));
        assert!(cpu_has_virt_flag("flags : fpu svm\n"));
        assert!(!cpu_has_virt_flag(
            "flags : fpu vme hypervisor\nvmx flags : ept\n"
        ));
    }
}
