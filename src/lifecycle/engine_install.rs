//! `engine install`, top-down: read the guest and plan (everything that can refuse does so
//! here, before the guest changes), then data disk, storage, packages, daemon.json and
//! dockerd, the guest's record, and verification through the Docker API. Each step is skipped
//! when already as intended, so a re-run converges and an interrupted run continues; the
//! steps that talk to libvirt wait for a libvirtd that restarts under them.

use crate::engine::install::{self, InstallReport, InstallRequest};
use crate::error::Result;
use crate::guest::{ssh, Route};
use crate::progress::Progress;
use crate::state::Paths;
use crate::vm::Libvirt;
use std::time::Duration;

/// Install (or converge, or only verify) Docker in `vm`.
pub fn install(
    lv: &Libvirt,
    paths: &Paths,
    vm: &str,
    req: &InstallRequest,
    progress: &Progress,
) -> Result<InstallReport> {
    let (route, session, plan, changes) = converge(lv, paths, vm, req, progress)?;
    progress.stage("verifying through the Docker API");
    plan.explain_verify()?;
    let observed = plan.verify(&route, session, vm)?;
    Ok(plan.report(vm, changes, observed, progress.stage_times()))
}

/// `engine install --dry-run --explain`: read the guest and decide as an install does (the
/// host's bundle cache may fill: that is the host's apt downloading), then write every step
/// that would change something as commands, changing nothing in the guest or in libvirt.
pub fn dry_run(
    lv: &Libvirt,
    paths: &Paths,
    vm: &str,
    req: &InstallRequest,
    progress: &Progress,
) -> Result<()> {
    if lv.is_remote() {
        return Err(crate::error::Error::bad_input(
            "--dry-run of `engine install` works on this machine's libvirt only",
        )
        .with_hint("leave out --connect, or run it on that host"));
    }
    let (_, _, plan, _) = converge(lv, paths, vm, req, progress)?;
    plan.explain_verify()
}

/// Every step up to verification, each skipped when already as intended (and, in a dry run,
/// only written).
fn converge(
    lv: &Libvirt,
    paths: &Paths,
    vm: &str,
    req: &InstallRequest,
    progress: &Progress,
) -> Result<(Route, ssh2::Session, install::InstallPlan, Vec<String>)> {
    let route = lv.resilient(|| Route::of_vm(lv, paths, vm))?;
    progress.stage("reading the guest");
    crate::guest::route::explain_login(lv, paths, &route, vm, "engine install")?;
    let session = ssh::connect(&route, Duration::from_secs(15))?;
    progress.stage("planning");
    let plan = lv.resilient(|| install::plan(lv, paths, &session, vm, req))?;
    let mut changes = Vec::new();
    changes.extend(lv.resilient(|| plan.attach_data_disk(lv, paths, vm, progress))?);
    changes.extend(plan.prepare_storage(&session, progress)?);
    changes.extend(plan.install_packages(lv, paths, vm, &session, progress)?);
    progress.stage("configuring dockerd");
    changes.extend(plan.configure_dockerd(&session)?);
    plan.write_record(&session, req)?;
    Ok((route, session, plan, changes))
}
