//! `strata up`, top-down: render the stack, look at what its VM already runs, and when
//! anything must change run the preflight checks for the host and that VM first, then
//! converge (stack rolls back what it made if that fails). One `up` of a stack at a time: a
//! second waits for the first, then finds the stack as the first left it.

use super::checks;
use crate::check::report::Report;
use crate::error::Result;
use crate::guest::docker::GuestDocker;
use crate::guest::{route, Route};
use crate::progress::Progress;
use crate::stack::{self, DownReport, StackFile, UpOptions, UpReport};
use crate::state::Paths;
use crate::vm::Libvirt;

/// What `up` did, and the preflight report when the checks ran (only when something had to
/// change).
pub struct StackUp {
    pub report: UpReport,
    pub checks: Option<Report>,
}

/// Bring `stack` up in its VM.
pub fn up(
    lv: &Libvirt,
    paths: &Paths,
    file: &StackFile,
    options: UpOptions,
    progress: &Progress,
) -> Result<StackUp> {
    file.require_vm()?;
    let resolved = stack::resolve(file)?;
    let key = format!("stack {} in VM {}", file.name, file.vm);
    let waiting = || progress.println(&format!("strata: waiting for another `strata up` of {key}"));
    paths.with_named_lock(&key, &waiting, || {
        let route = lv.resilient(|| Route::of_vm(lv, paths, &file.vm))?;
        route::explain_login(lv, paths, &route, &file.vm, "up")?;
        let docker = GuestDocker::connect(&route)?;
        let survey = stack::survey(&docker, file, &resolved)?;
        if let Some(rows) = survey.unchanged() {
            crate::explain::note(&format!(
                "stack {} in {} runs as its file says: nothing to do",
                file.name, file.vm
            ))?;
            return Ok(StackUp {
                report: UpReport::unchanged(file, rows),
                checks: None,
            });
        }
        // Something will be launched: the checks first.
        let checks = checks::preflight(lv, paths, &file.vm, options.force)?;
        if crate::explain::is_dry_run() {
            crate::explain::note(
                "the images are named by tag here (their ids are known only once they are in the VM), and so are they in each container's config label: after this script, the next `strata up` recreates each container once, with the label it computes from the ids",
            )?;
        }
        let report = stack::converge(&docker, file, &resolved, survey, options.keep_failed)?;
        Ok(StackUp {
            report,
            checks: Some(checks),
        })
    })
}

/// Take `stack` down in its VM (its volumes kept unless `volumes`), under the same lock as
/// `up`, so that a down never interleaves with an up of the same stack.
pub fn down(lv: &Libvirt, paths: &Paths, file: &StackFile, volumes: bool) -> Result<DownReport> {
    file.require_vm()?;
    let key = format!("stack {} in VM {}", file.name, file.vm);
    paths.with_named_lock(&key, &|| {}, || {
        let route = lv.resilient(|| Route::of_vm(lv, paths, &file.vm))?;
        route::explain_login(lv, paths, &route, &file.vm, "down")?;
        let docker = GuestDocker::connect(&route)?;
        stack::down(&docker, file, volumes)
    })
}
