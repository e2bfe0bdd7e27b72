//! One check run, top-down: read the facts of the host and of each guest (guests in
//! parallel, one SSH login each), judge them, and with --fix apply the fixes strata can
//! apply, then read and judge everything again so the report shows before and after.

use crate::check::report::Report;
use crate::check::{fix, guest_facts, Finding, FixAction, Verdict};
use crate::error::{Error, Result};
use crate::state::Paths;
use crate::vm::Libvirt;

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct CheckRequest {
    pub host: bool,
    pub vms: Vec<String>,
    pub fix: bool,
}

/// Check, fix when asked, and report.
pub fn run(lv: Option<&Libvirt>, paths: &Paths, request: &CheckRequest) -> Report {
    let first = judge(lv, paths, request);
    if !request.fix {
        return Report::new(first, None);
    }
    let actions = fixable(&first);
    let applied = fix::apply_all(lv, paths, &actions);
    let second = judge(lv, paths, request);
    Report::new(second, Some((first, applied)))
}

/// Before containers are launched in `vm`: check the host and that VM, and refuse (naming
/// each failure and its fix) unless `force`. Warnings never stop a launch.
pub fn preflight(lv: &Libvirt, paths: &Paths, vm: &str, force: bool) -> Result<Report> {
    let report = run(
        Some(lv),
        paths,
        &CheckRequest {
            host: true,
            vms: vec![vm.to_string()],
            fix: false,
        },
    );
    match refusal(&report, vm) {
        Some(err) if !force => Err(err),
        _ => Ok(report),
    }
}

/// The error a launch gets when the report holds failures (pure).
pub fn refusal(report: &Report, vm: &str) -> Option<Error> {
    let failures: Vec<String> = report
        .findings
        .iter()
        .map(|r| &r.finding)
        .filter(|f| f.verdict == Verdict::Fail)
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
            "preflight checks for '{vm}' failed:\n  {}",
            failures.join("\n  ")
        ))
        .with_hint(format!(
            "`strata check --host {vm} --fix` applies the fixes strata can; --force launches anyway"
        )),
    )
}

/// The distinct actions of the findings that are not ok, in finding order.
pub fn fixable(findings: &[Finding]) -> Vec<FixAction> {
    let mut actions: Vec<FixAction> = Vec::new();
    for f in findings
        .iter()
        .filter(|f| f.verdict > crate::check::Verdict::Skip)
    {
        if let Some(action) = f.fix.as_ref().and_then(|x| x.action.clone()) {
            if !actions.contains(&action) {
                actions.push(action);
            }
        }
    }
    actions
}

fn judge(lv: Option<&Libvirt>, paths: &Paths, request: &CheckRequest) -> Vec<Finding> {
    let mut findings = Vec::new();
    std::thread::scope(|scope| {
        let guests: Vec<_> = request
            .vms
            .iter()
            .map(|vm| {
                scope.spawn(move || match lv {
                    Some(lv) => guest_facts::gather(lv, paths, vm),
                    None => {
                        guest_facts::GuestCheckFacts::unreachable(vm, "libvirt is not reachable")
                    }
                })
            })
            .collect();
        if request.host {
            let facts = crate::check::facts::gather(lv, paths);
            findings.extend(crate::check::judge_host(&facts));
        }
        for g in guests {
            match g.join() {
                Ok(facts) => findings.extend(crate::check::judge_guest(&facts)),
                Err(_) => findings.push(Finding::new(
                    "guest.facts",
                    crate::check::Subject::Host,
                    Verdict::Fail,
                    "reading a guest's facts panicked".into(),
                )),
            }
        }
    });
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Fix, Subject};

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
        assert!(refusal(&warn_only, "web1").is_none());
        let failing = Report::new(
            vec![f(Verdict::Fail).with_fix(Fix::manual("reformat"))],
            None,
        );
        let err = refusal(&failing, "web1").unwrap();
        assert!(
            err.message()
                .contains("guest.storage on vm web1: xfs ftype=0 (fix: reformat)"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("--force"));
    }

    #[test]
    fn each_action_once_and_only_for_problems() {
        let f = |v, action: FixAction| {
            Finding::new("x", Subject::Host, v, String::new()).with_fix(Fix::automatic("d", action))
        };
        let within = FixAction::AcceptWithinBridge {
            chain: "DOCKER-USER".into(),
            bridge: "stbr0".into(),
        };
        let found = vec![
            f(Verdict::Fail, within.clone()),
            f(Verdict::Fail, within.clone()),
            f(Verdict::Ok, FixAction::KvmGroupAccess),
            f(
                Verdict::Warn,
                FixAction::GuestLogRotation { vm: "a".into() },
            ),
        ];
        assert_eq!(
            fixable(&found),
            vec![within, FixAction::GuestLogRotation { vm: "a".into() }]
        );
    }
}
