//! guest.storage (STO-1, STO-2, STO-5, STO-6): the filesystem under Docker's data-root must
//! give overlay2 d_type (xfs ftype=1, ext4 filetype) and be a real block filesystem; the driver
//! in use must be the one strata configured, or the one its storage decision picks for these
//! facts (never vfs); and no other driver's folder may be left under data-root (Docker then
//! refuses to start or sticks to the old driver). What the engine layer expects arrives in the
//! snapshot (StorageExpectation): this check compares, it does not decide.

use crate::check::{Finding, Fix, GuestCheck, GuestVerdict, GuestView, Verdict};

const ID: &str = "guest.storage";

pub const CHECK: GuestCheck = GuestCheck {
    id: ID,
    reads: "filesystem type under /var/lib/docker (stat -f), xfs_info ftype / tune2fs filetype, driver folders under /var/lib/docker, docker info Driver and DriverStatus (API), strata's record and storage decision",
    verdict: GuestVerdict::Facts(verdict),
};

fn verdict(view: &GuestView) -> Vec<Finding> {
    let who = view.subject.clone();
    let Some(expected) = &view.snapshot.storage else {
        return vec![Finding::skipped(
            ID,
            who,
            "strata's storage decision was not available for this guest",
        )];
    };
    let backing = &view.facts.data_root_backing;
    let mut evidence = vec![format!("/var/lib/docker is on {}", backing.describe())];
    let running = view.snapshot.docker.as_ref().ok();
    let in_use = running.and_then(|d| d.info.driver.clone());
    if let Some(driver) = &in_use {
        evidence.push(format!(
            "Docker {} uses the {driver} driver",
            expected.engine
        ));
    }
    let (recorded, decided) = (&expected.recorded, &expected.decided);
    let mut problems: Vec<(Verdict, String, Option<Fix>)> = Vec::new();
    // Judge the filesystem for the driver in use; with Docker stopped, for the one strata
    // configured, else the one it would choose (overlay2 on every layout but btrfs/LVM).
    let judged = match in_use
        .as_deref()
        .or(recorded.as_deref())
        .or(decided.as_deref())
    {
        Some("btrfs") => "btrfs",
        Some("devicemapper") => "devicemapper",
        _ => "overlay2",
    };
    if let Some(why) = expected.unsupported.get(judged) {
        problems.push((
            Verdict::Fail,
            format!("{judged} cannot work here: {why}"),
            Fix::manual("give Docker a data disk: `strata engine install VM --data-disk 20G` (ext4, or LVM with xfs ftype=1), or reformat with `mkfs.xfs -n ftype=1`"),
        ));
    }
    match in_use.as_deref() {
        Some("vfs") => problems.push((
            Verdict::Fail,
            "Docker fell back to vfs (a full copy per layer)".into(),
            Fix::manual("set \"storage-driver\" explicitly on a filesystem that supports it (`strata engine install` does)"),
        )),
        Some(_) => {
            let dtype = running
                .and_then(|d| d.info.driver_status.as_ref())
                .and_then(|s| s.iter().find(|p| p.first().map(String::as_str) == Some("Supports d_type")))
                .and_then(|p| p.get(1).cloned());
            if dtype.as_deref() == Some("false") {
                problems.push((Verdict::Fail, "Docker reports no d_type support under data-root".into(), None));
            }
        }
        None => {}
    }
    match (&in_use, recorded, decided) {
        (Some(used), Some(want), _) if !same_driver(used, want) => problems.push((
            Verdict::Fail,
            format!("Docker uses {used}, but strata configured {want}"),
            Fix::manual("re-run `strata engine install VM` to converge"),
        )),
        (Some(used), None, Some(want)) if !same_driver(used, want) && used != "vfs" => problems.push((
            Verdict::Warn,
            format!("Docker uses {used}; for these facts strata's storage decision is {want}"),
            Fix::manual("pin \"storage-driver\" in daemon.json (or let `strata engine install VM` decide and verify it)"),
        )),
        (None, _, Some(want)) => evidence.push(format!("an install would choose {want}")),
        _ => {}
    }
    if let Ok(script) = &view.snapshot.script {
        let current = in_use.as_deref().unwrap_or("");
        // The folder of the driver in use is expected; with Docker stopped, overlay2's is.
        let expected =
            |dir: &str| same_driver(current, dir) || (current.is_empty() && dir == "overlay2");
        let leftovers: Vec<&String> = script.driver_dirs.iter().filter(|d| !expected(d)).collect();
        if !leftovers.is_empty() {
            let names: Vec<&str> = leftovers.iter().map(|s| s.as_str()).collect();
            problems.push((
                Verdict::Warn,
                format!("folders of other drivers under /var/lib/docker: {}", names.join(", ")),
                Fix::manual("with Docker stopped and its images saved, move those folders aside; Docker refuses to start when several hold data, and removed drivers (aufs, overlay, devicemapper) no longer load"),
            ));
        }
    }
    if problems.is_empty() {
        return vec![Finding::new(
            ID,
            who,
            Verdict::Ok,
            format!("{} suits {judged}", backing.describe()),
        )
        .evidence(evidence)];
    }
    problems
        .into_iter()
        .map(|(v, summary, fix)| {
            Finding::new(ID, who.clone(), v, summary)
                .evidence(evidence.clone())
                .with_fix(fix)
        })
        .collect()
}

/// Docker 29's containerd image store reports its overlay snapshotter as "overlayfs"; it sits
/// on the same kernel overlay filesystem that strata chose as "overlay2".
fn same_driver(used: &str, configured: &str) -> bool {
    used == configured || (used == "overlayfs" && configured == "overlay2")
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;

    #[test]
    fn strata_installed_engine_passes() {
        let found = judge(&CHECK, &guest_facts());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].verdict, Verdict::Ok, "{found:?}");
    }

    #[test]
    fn xfs_without_ftype_fails_even_before_docker_is_installed() {
        let mut f = with_facts(
            &FACTS_WITH_DOCKER
                .replace("data_root_fs=ext2/ext3", "data_root_fs=xfs")
                .replace("ext_filetype=1", "xfs_ftype=0"),
        );
        f.docker = Err(crate::error::Error::not_found("Docker is not installed"));
        f.script = Ok(Default::default());
        // The engine layer's view of xfs ftype=0: overlay2 cannot work, nothing is decided.
        let storage = f.storage.as_mut().unwrap();
        storage.decided = None;
        storage
            .unsupported
            .insert("overlay2".into(), "xfs ftype=0 gives no d_type".into());
        let found = judge(&CHECK, &f);
        assert_eq!(found[0].verdict, Verdict::Fail);
        assert!(found[0].summary.contains("ftype"), "{}", found[0].summary);
    }

    #[test]
    fn driver_other_than_intended_is_reported() {
        let mut f = guest_facts();
        docker_mut(&mut f).info.driver = Some("btrfs".into());
        // No record: strata's decision for ext4 is overlay2.
        let found = judge(&CHECK, &f);
        assert!(
            found
                .iter()
                .any(|x| x.verdict == Verdict::Warn && x.summary.contains("decision is overlay2")),
            "{found:?}"
        );
    }

    #[test]
    fn stopped_docker_is_judged_for_the_recorded_driver() {
        let mut f =
            with_facts(&FACTS_WITH_DOCKER.replace("data_root_fs=ext2/ext3", "data_root_fs=btrfs"));
        f.docker = Err(crate::error::Error::not_found("Docker is not running"));
        f.script = Ok(Default::default());
        // strata configured btrfs: with Docker stopped the filesystem is judged for btrfs,
        // not for overlay2 (which cannot work on btrfs).
        let storage = f.storage.as_mut().unwrap();
        storage.recorded = Some("btrfs".into());
        storage.decided = None;
        storage.unsupported =
            [("overlay2".to_string(), "btrfs under data-root".to_string())].into();
        let found = judge(&CHECK, &f);
        assert!(found.iter().all(|x| x.verdict == Verdict::Ok), "{found:?}");
        f.storage.as_mut().unwrap().recorded = None;
        let found = judge(&CHECK, &f);
        assert!(
            found.iter().any(|x| x.verdict == Verdict::Fail),
            "{found:?}"
        );
    }

    #[test]
    fn containerd_overlayfs_matches_overlay2() {
        assert!(same_driver("overlayfs", "overlay2"));
        assert!(!same_driver("vfs", "overlay2"));
        let mut f = guest_facts();
        docker_mut(&mut f).info.driver = Some("overlayfs".into());
        let found = judge(&CHECK, &f);
        assert_eq!(found[0].verdict, Verdict::Ok, "{found:?}");
    }

    #[test]
    fn vfs_and_leftover_folders_are_reported() {
        let mut f = guest_facts();
        docker_mut(&mut f).info.driver = Some("vfs".into());
        f.script.as_mut().unwrap().driver_dirs = vec!["vfs".into(), "devicemapper".into()];
        let found = judge(&CHECK, &f);
        assert!(found
            .iter()
            .any(|x| x.verdict == Verdict::Fail && x.summary.contains("vfs")));
        assert!(found
            .iter()
            .any(|x| x.verdict == Verdict::Warn && x.summary.contains("devicemapper")));
    }

    #[test]
    fn without_the_engines_view_the_check_says_so() {
        let mut f = guest_facts();
        f.storage = None;
        assert_eq!(judge(&CHECK, &f)[0].verdict, Verdict::Skip);
    }
}
