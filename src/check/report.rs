//! How a check run is shown: a table for people (verdicts coloured only on a terminal, and
//! never when NO_COLOR is set) and JSON with stable field names for programs
//! (docs/checks.md documents them). With --fix both show the verdict before the fixes next to
//! the one after, and what each fix did.

use crate::check::fix::Applied;
use crate::check::{exit_code, Finding, Subject, Verdict};
use crate::error::Error;
use comfy_table::{presets::UTF8_BORDERS_ONLY, Cell, Color, ContentArrangement, Table};
use serde::Serialize;
use std::collections::BTreeMap;

/// One finding as reported, with the verdict it had before --fix when fixes ran.
#[derive(Debug, Clone, Serialize)]
pub struct Reported {
    #[serde(flatten)]
    pub finding: Finding,
    /// The verdict before `--fix`; absent without --fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Verdict>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub findings: Vec<Reported>,
    /// What each fix did; absent without --fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixes: Option<Vec<Applied>>,
    pub counts: BTreeMap<&'static str, usize>,
    pub exit_code: i32,
}

impl Report {
    /// A report of one pass, or of two (before and after fixes).
    pub fn new(after: Vec<Finding>, before: Option<(Vec<Finding>, Vec<Applied>)>) -> Report {
        let mut counts: BTreeMap<&'static str, usize> =
            [Verdict::Ok, Verdict::Skip, Verdict::Warn, Verdict::Fail]
                .iter()
                .map(|v| (v.as_str(), 0))
                .collect();
        for f in &after {
            *counts.entry(f.verdict.as_str()).or_default() += 1;
        }
        let code = exit_code(&after);
        let (before_findings, fixes) = match before {
            Some((b, applied)) => (Some(b), Some(applied)),
            None => (None, None),
        };
        let findings = after
            .iter()
            .enumerate()
            .map(|(i, f)| Reported {
                before: before_findings
                    .as_ref()
                    .map(|b| verdict_before(b, &after, i)),
                finding: f.clone(),
            })
            .collect();
        Report {
            findings,
            fixes,
            counts,
            exit_code: code,
        }
    }
}

impl Report {
    /// The error a launch in `vm` gets when the report holds failures (pure): each failure
    /// with its fix; warnings never stop a launch, nor does a failure about another bridge
    /// than `vm_bridge`, the VM's (all count when the VM's bridge is not known).
    pub fn refusal(&self, vm: &str, vm_bridge: Option<&str>) -> Option<Error> {
        self.refusal_of(&format!("'{vm}'"), vm, vm_bridge)
    }

    /// The same for `what` (a VM, a swarm's VMs), whose fix is `strata check --host
    /// CHECK_ARGS --fix`.
    pub fn refusal_of(
        &self,
        what: &str,
        check_args: &str,
        vm_bridge: Option<&str>,
    ) -> Option<Error> {
        let concerns_vm = |f: &Finding| match (f.bridge.as_deref(), vm_bridge) {
            (Some(about), Some(own)) => about == own,
            _ => true,
        };
        let failures: Vec<String> = self
            .findings
            .iter()
            .map(|r| &r.finding)
            .filter(|f| f.verdict == Verdict::Fail && concerns_vm(f))
            .map(|f| {
                let fix = f
                    .fix
                    .as_ref()
                    .map(|x| format!(" (fix: {})", x.description))
                    .unwrap_or_default();
                format!("{} on {}: {}{fix}", f.check, f.subject, f.summary)
            })
            .collect();
        if failures.is_empty() {
            return None;
        }
        Some(
            Error::failed(format!(
                "preflight checks for {what} failed:\n  {}",
                failures.join("\n  ")
            ))
            .with_hint(format!(
                "`strata check --host {check_args} --fix` applies the fixes strata can; --force goes ahead anyway"
            )),
        )
    }
}

/// The same check on the same subject at the same position among that pair's findings;
/// when the first pass had fewer, the finding is new and "before" is what it is now.
fn verdict_before(before: &[Finding], after: &[Finding], index: usize) -> Verdict {
    let f = &after[index];
    let same = |x: &&Finding| x.check == f.check && x.subject == f.subject;
    let ordinal = after[..index].iter().filter(same).count();
    before
        .iter()
        .filter(same)
        .nth(ordinal)
        .map(|b| b.verdict)
        .unwrap_or(f.verdict)
}

fn verdict_cell(v: Verdict) -> Cell {
    let cell = Cell::new(v.as_str());
    match v {
        Verdict::Ok => cell.fg(Color::Green),
        Verdict::Skip => cell.fg(Color::Grey),
        Verdict::Warn => cell.fg(Color::Yellow),
        Verdict::Fail => cell.fg(Color::Red),
    }
}

fn subject_text(s: &Subject) -> String {
    s.to_string()
}

/// The table; `color` is decided by the caller (terminal and NO_COLOR).
pub fn render_table(report: &Report, color: bool) -> String {
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic);
    if color {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    // Piped output has no terminal width to wrap to; this keeps it readable in a log.
    if !table.is_tty() {
        table.set_width(150);
    }
    let with_before = report.fixes.is_some();
    let mut header = vec!["CHECK", "SUBJECT"];
    if with_before {
        header.push("BEFORE");
    }
    header.extend(["VERDICT", "WHAT STRATA SAW", "FIX"]);
    table.set_header(header);
    for r in &report.findings {
        let f = &r.finding;
        let mut seen = f.summary.clone();
        for line in &f.evidence {
            seen.push_str("\n· ");
            seen.push_str(line);
        }
        let fix = f
            .fix
            .as_ref()
            .map(|fix| {
                if fix.action.is_some() {
                    format!("{} [--fix applies]", fix.description)
                } else {
                    fix.description.clone()
                }
            })
            .unwrap_or_default();
        let mut row = vec![Cell::new(f.check), Cell::new(subject_text(&f.subject))];
        if let Some(before) = r.before {
            row.push(verdict_cell(before));
        }
        row.extend([verdict_cell(f.verdict), Cell::new(seen), Cell::new(fix)]);
        table.add_row(row);
    }
    let mut out = String::new();
    if let Some(fixes) = &report.fixes {
        if fixes.is_empty() {
            out.push_str("no fix strata can apply was needed\n");
        }
        for a in fixes {
            out.push_str(&format!("fix {}: {}\n", describe_action(a), a.result));
        }
    }
    out.push_str(&table.to_string());
    out.push('\n');
    let c = &report.counts;
    out.push_str(&format!(
        "{} ok, {} warn, {} fail, {} not checked\n",
        c["ok"], c["warn"], c["fail"], c["skip"]
    ));
    out
}

fn describe_action(a: &Applied) -> String {
    use crate::check::FixAction::*;
    match &a.action {
        AcceptWithinBridge { chain, bridge } => format!("accept {bridge}→{bridge} in {chain}"),
        AcceptRoutedBridge {
            chain,
            bridge,
            subnet,
        } => match subnet {
            Some(net) => format!("accept {net} out of {bridge} in {chain}"),
            None => format!("accept traffic out of {bridge} in {chain}"),
        },
        KvmGroupAccess => "/dev/kvm for group kvm".into(),
        GuestLogRotation { vm } => format!("log rotation in {vm}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Fix, FixAction};

    fn finding(check: &'static str, verdict: Verdict) -> Finding {
        Finding::new(check, Subject::Host, verdict, format!("{check} said"))
            .evidence(["saw this".to_string()])
    }

    #[test]
    fn json_fields_are_stable() {
        let f = finding("kvm.device", Verdict::Fail)
            .with_fix(Fix::automatic("chmod", FixAction::KvmGroupAccess));
        let r = Report::new(vec![f], None);
        let json = serde_json::to_value(&r).unwrap();
        let first = &json["findings"][0];
        assert_eq!(first["check"], "kvm.device");
        assert_eq!(first["subject"]["kind"], "host");
        assert_eq!(first["verdict"], "fail");
        assert_eq!(first["fix"]["action"]["action"], "kvm_group_access");
        assert!(first.get("before").is_none());
        assert!(json.get("fixes").is_none());
        assert_eq!(json["counts"]["fail"], 1);
        assert_eq!(json["exit_code"], 2);
        let vm = serde_json::to_value(Subject::Vm("web1".into())).unwrap();
        assert_eq!(vm, serde_json::json!({"kind": "vm", "name": "web1"}));
    }

    #[test]
    fn before_and_after_pair_by_check_subject_and_position() {
        let before = vec![
            finding("net.bridge-netfilter", Verdict::Fail),
            finding("net.bridge-netfilter", Verdict::Ok),
        ];
        let after = vec![
            finding("net.bridge-netfilter", Verdict::Ok),
            finding("net.bridge-netfilter", Verdict::Ok),
            finding("kvm.device", Verdict::Warn),
        ];
        let r = Report::new(after, Some((before, vec![])));
        let b: Vec<Option<Verdict>> = r.findings.iter().map(|f| f.before).collect();
        assert_eq!(
            b,
            vec![Some(Verdict::Fail), Some(Verdict::Ok), Some(Verdict::Warn)]
        );
        let table = render_table(&r, false);
        assert!(table.contains("BEFORE"));
        assert!(
            !table.contains('\u{1b}'),
            "no colour codes without a terminal"
        );
        assert!(table.contains("2 ok, 1 warn, 0 fail"));
    }

    #[test]
    fn failures_refuse_a_launch_and_warnings_do_not() {
        let f = |v| {
            Finding::new(
                "guest.storage",
                Subject::Vm("web1".into()),
                v,
                "xfs ftype=0".into(),
            )
        };
        let warn_only = Report::new(vec![f(Verdict::Warn)], None);
        assert!(warn_only.refusal("web1", None).is_none());
        let failing = Report::new(
            vec![f(Verdict::Fail).with_fix(crate::check::Fix::manual("reformat"))],
            None,
        );
        let err = failing.refusal("web1", None).unwrap();
        assert!(
            err.message()
                .contains("guest.storage on vm web1: xfs ftype=0 (fix: reformat)"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("--force"));
    }

    #[test]
    fn a_failure_on_another_bridge_does_not_refuse_a_launch() {
        let on = |bridge: &str| {
            Finding::new(
                "net.forward-policy",
                Subject::Host,
                Verdict::Fail,
                format!("VMs on {bridge} cannot reach beyond the host"),
            )
            .about_bridge(bridge)
        };
        let report = Report::new(vec![on("virbr9")], None);
        assert!(report.refusal("web1", Some("virbr1")).is_none());
        assert!(report.refusal("web1", Some("virbr9")).is_some());
        // The VM's bridge unknown: every failure counts.
        assert!(report.refusal("web1", None).is_some());
        // A failure about no bridge in particular counts for every VM.
        let general = Report::new(vec![finding("kvm.device", Verdict::Fail)], None);
        assert!(general.refusal("web1", Some("virbr1")).is_some());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["findings"][0]["bridge"], "virbr9");
    }
}
