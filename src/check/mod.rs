//! Preflight checks of the host and of guests for the known libvirtd/Docker conflicts
//! (../shared/reference/conflicts.md). Each check is one file: an id, a sentence saying what
//! it reads, and a pure verdict function over a snapshot gathered once per subject
//! (snapshot/); a finding may carry a fix, and `fix` carries out the host fixes strata can
//! apply safely. The snapshots are read from real state (sysctls, /proc, /sys, iptables,
//! libvirt and Docker through their APIs, files in the guest over SSH); a fact that could not
//! be read makes its checks say `skip` with the reason instead of guessing. A whole run (read,
//! judge, fix, read again) is composed by the assembly layer (lifecycle/checks.rs).

pub mod fix;
pub mod guest;
pub mod host;
pub mod report;
pub mod snapshot;
pub mod swarm_ports;

use serde::Serialize;

pub use snapshot::{GuestSnapshot, HostSnapshot, StorageExpectation};

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
    /// The bridge the finding is about, for checks judged bridge by bridge: a launch is
    /// refused only for a failure on its own VM's bridge (or on no bridge in particular).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,
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
            bridge: None,
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
    pub fn about_bridge(mut self, bridge: &str) -> Self {
        self.bridge = Some(bridge.to_string());
        self
    }
    /// The finding of a check whose facts could not be read.
    pub fn skipped(check: &'static str, subject: Subject, why: impl AsRef<str>) -> Self {
        let why = why.as_ref();
        Finding::new(check, subject, Verdict::Skip, format!("not checked: {why}"))
    }
}

/// A check of the host.
pub struct HostCheck {
    pub id: &'static str,
    /// What it reads, for `strata check --list` and the docs.
    pub reads: &'static str,
    pub verdict: fn(&HostSnapshot) -> Vec<Finding>,
}

/// A check of one guest.
pub struct GuestCheck {
    pub id: &'static str,
    pub reads: &'static str,
    pub verdict: GuestVerdict,
}

/// What a guest check judges. The runner gives it only what it needs, already read: a guest
/// whose facts could not be read, or (for engine checks) whose Docker does not run, gets one
/// `skip` finding with the reason instead.
pub enum GuestVerdict {
    /// The guest's facts; Docker's state may be absent.
    Facts(fn(&GuestView) -> Vec<Finding>),
    /// The running engine (and the facts).
    Engine(fn(&GuestView, &snapshot::guest::GuestDockerState) -> Vec<Finding>),
}

/// One guest as a check sees it.
pub struct GuestView<'a> {
    pub subject: Subject,
    pub facts: &'a crate::guest::facts::GuestFacts,
    pub snapshot: &'a GuestSnapshot,
}

/// Every host check on the snapshot (pure).
pub fn judge_host(snapshot: &HostSnapshot) -> Vec<Finding> {
    host::ALL
        .iter()
        .flat_map(|c| (c.verdict)(snapshot))
        .collect()
}

/// Every guest check on one guest's snapshot (pure).
pub fn judge_guest(snapshot: &GuestSnapshot) -> Vec<Finding> {
    guest::ALL
        .iter()
        .flat_map(|check| judge_one(check, snapshot))
        .collect()
}

/// One guest check: given what it needs, or skipped once with the reason it is missing.
pub(crate) fn judge_one(check: &GuestCheck, snapshot: &GuestSnapshot) -> Vec<Finding> {
    let subject = Subject::Vm(snapshot.vm.clone());
    let skipped =
        |why: &crate::error::Error| vec![Finding::skipped(check.id, subject.clone(), why)];
    let facts = match &snapshot.facts {
        Ok(facts) => facts,
        Err(why) => return skipped(why),
    };
    let view = GuestView {
        subject: subject.clone(),
        facts,
        snapshot,
    };
    match (&check.verdict, &snapshot.docker) {
        (GuestVerdict::Facts(verdict), _) => verdict(&view),
        (GuestVerdict::Engine(verdict), Ok(engine)) => verdict(&view, engine),
        (GuestVerdict::Engine(_), Err(why)) => skipped(why),
    }
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
        .chain([("vms", swarm_ports::ID, swarm_ports::READS)])
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
