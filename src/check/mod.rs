//! Preflight checks of the host and of guests for the known libvirtd/Docker conflicts
//! (../shared/reference/conflicts.md). Each check is one file: an id, a sentence saying what
//! it reads, and a pure verdict function over facts gathered once per subject; a finding may
//! carry a fix, and `fix` carries out the ones strata can apply safely. The facts are read
//! from real state (sysctls, /proc, /sys, iptables, libvirt and Docker through their APIs,
//! files in the guest over SSH); a fact that could not be read makes its checks say `skip`
//! with the reason instead of guessing.

pub mod facts;
pub mod firewall;
pub mod fix;
pub mod guest;
pub mod guest_facts;
pub mod host;
pub mod report;
pub mod run;

use serde::Serialize;

pub use facts::HostFacts;
pub use guest_facts::GuestCheckFacts;

/// How bad a finding is. The order is the severity order (the worst decides the exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// The facts the check needs could not be read; the finding says why.
    Skip,
    Warn,
    Fail,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Skip => "skip",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// What a finding is about: the host, or one VM.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "name")]
pub enum Subject {
    Host,
    Vm(String),
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::Host => write!(f, "host"),
            Subject::Vm(name) => write!(f, "vm {name}"),
        }
    }
}

/// A change strata knows how to make safely and idempotently (`strata check --fix`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum FixAction {
    /// Accept forwarding within `bridge` (VM to VM) at the top of `chain` (DOCKER-USER when
    /// Docker made it, else FORWARD).
    AcceptWithinBridge { chain: String, bridge: String },
    /// Accept traffic leaving `bridge` from its `subnet` (when known), and replies coming
    /// back to it, at the top of `chain`: what libvirt's own rules for the network accept.
    AcceptRoutedBridge {
        chain: String,
        bridge: String,
        subnet: Option<String>,
    },
    /// `chgrp kvm /dev/kvm; chmod 0660 /dev/kvm`.
    KvmGroupAccess,
    /// Give json-file logs max-size/max-file and turn live-restore on first (SIGHUP), then
    /// restart Docker in the guest; running containers keep running.
    GuestLogRotation { vm: String },
}

/// What to do about a finding: the words for people, and the action when strata can apply it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fix {
    pub description: String,
    pub action: Option<FixAction>,
}

impl Fix {
    /// A fix only the user can apply (it restarts a daemon on the host, reformats a disk...).
    pub fn manual(description: impl Into<String>) -> Option<Fix> {
        Some(Fix {
            description: description.into(),
            action: None,
        })
    }
    /// A fix `--fix` applies.
    pub fn automatic(description: impl Into<String>, action: FixAction) -> Option<Fix> {
        Some(Fix {
            description: description.into(),
            action: Some(action),
        })
    }
}

/// One check's conclusion about one subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub subject: Subject,
    pub verdict: Verdict,
    /// One sentence: what is wrong, or that nothing is.
    pub summary: String,
    /// What the check saw that led to the verdict.
    pub evidence: Vec<String>,
    pub fix: Option<Fix>,
}

impl Finding {
    pub fn new(check: &'static str, subject: Subject, verdict: Verdict, summary: String) -> Self {
        Finding {
            check,
            subject,
            verdict,
            summary,
            evidence: Vec::new(),
            fix: None,
        }
    }
    pub fn evidence(mut self, lines: impl IntoIterator<Item = String>) -> Self {
        self.evidence.extend(lines);
        self
    }
    pub fn with_fix(mut self, fix: Option<Fix>) -> Self {
        self.fix = fix;
        self
    }
    /// The finding of a check whose facts could not be read.
    pub fn skipped(check: &'static str, subject: Subject, why: &str) -> Self {
        Finding::new(check, subject, Verdict::Skip, format!("not checked: {why}"))
    }
}

/// A check of the host.
pub struct HostCheck {
    pub id: &'static str,
    /// What it reads, for `strata check --list` and the docs.
    pub reads: &'static str,
    pub verdict: fn(&HostFacts) -> Vec<Finding>,
}

/// A check of one guest.
pub struct GuestCheck {
    pub id: &'static str,
    pub reads: &'static str,
    pub verdict: fn(&GuestCheckFacts) -> Vec<Finding>,
}

/// Every host check on the facts (pure).
pub fn judge_host(facts: &HostFacts) -> Vec<Finding> {
    host::ALL.iter().flat_map(|c| (c.verdict)(facts)).collect()
}

/// Every guest check on one guest's facts (pure).
pub fn judge_guest(facts: &GuestCheckFacts) -> Vec<Finding> {
    guest::ALL.iter().flat_map(|c| (c.verdict)(facts)).collect()
}

/// The process exit code for a set of findings: 2 on a failure, 1 on a warning, else 0.
pub fn exit_code(findings: &[Finding]) -> i32 {
    match findings.iter().map(|f| f.verdict).max() {
        Some(Verdict::Fail) => 2,
        Some(Verdict::Warn) => 1,
        _ => 0,
    }
}

/// Ids and what they read, host checks first.
pub fn catalogue() -> Vec<(&'static str, &'static str, &'static str)> {
    host::ALL
        .iter()
        .map(|c| ("host", c.id, c.reads))
        .chain(guest::ALL.iter().map(|c| ("vm", c.id, c.reads)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_verdict_decides_the_exit_code() {
        let f = |v| Finding::new("x", Subject::Host, v, String::new());
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(&[f(Verdict::Ok), f(Verdict::Skip)]), 0);
        assert_eq!(exit_code(&[f(Verdict::Ok), f(Verdict::Warn)]), 1);
        assert_eq!(exit_code(&[f(Verdict::Fail), f(Verdict::Warn)]), 2);
    }

    #[test]
    fn check_ids_are_unique() {
        let mut ids: Vec<&str> = catalogue().iter().map(|(_, id, _)| *id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
