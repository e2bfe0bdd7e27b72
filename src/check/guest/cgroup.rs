//! guest.cgroup (VM-1): Docker older than 20.10 cannot run containers on a cgroup v2 guest;
//! Docker 29 and newer warn that cgroup v1 is deprecated.

use super::engine_version;
use crate::check::snapshot::guest::GuestDockerState;
use crate::check::{Finding, Fix, GuestCheck, GuestVerdict, GuestView, Verdict};
use crate::guest::facts::EngineVersion;

const ID: &str = "guest.cgroup";

pub const CHECK: GuestCheck = GuestCheck {
    id: ID,
    reads: "the filesystem type of /sys/fs/cgroup (cgroup2fs = v2), docker info ServerVersion and CgroupVersion (API)",
    verdict: GuestVerdict::Engine(verdict),
};

fn verdict(view: &GuestView, state: &GuestDockerState) -> Vec<Finding> {
    let who = view.subject.clone();
    let Some(version) = engine_version(state) else {
        return vec![Finding::skipped(
            ID,
            who,
            "the engine did not report a version strata can read",
        )];
    };
    let cgroup = state
        .info
        .cgroup_version
        .map(|v| v.to_string())
        .filter(|v| !v.is_empty())
        .or_else(|| Some(view.facts.cgroup_version.clone()))
        .unwrap_or_default();
    let evidence = vec![format!("Docker {version} on cgroup v{cgroup}")];
    if cgroup == "2" && version < EngineVersion::new(20, 10, 0) {
        return vec![Finding::new(
            ID,
            who,
            Verdict::Fail,
            "Docker older than 20.10 cannot start containers on cgroup v2".into(),
        )
        .evidence(evidence)
        .with_fix(Fix::manual(
            "install Docker 20.10 or newer (`strata engine install VM --version ...`)",
        ))];
    }
    if cgroup == "1" && version >= EngineVersion::new(29, 0, 0) {
        return vec![Finding::new(
            ID,
            who,
            Verdict::Warn,
            "cgroup v1 is deprecated from Docker 29 on".into(),
        )
        .evidence(evidence)
        .with_fix(Fix::manual(
            "boot the guest with the unified hierarchy (drop systemd.unified_cgroup_hierarchy=0)",
        ))];
    }
    vec![Finding::new(
        ID,
        who,
        Verdict::Ok,
        format!("cgroup v{cgroup} suits Docker {version}"),
    )
    .evidence(evidence)]
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;

    #[test]
    fn versions_against_cgroup() {
        let mut f = guest_facts();
        assert_eq!(judge(&CHECK, &f)[0].verdict, Verdict::Ok);
        docker_mut(&mut f).info.server_version = Some("19.03.15".into());
        assert_eq!(judge(&CHECK, &f)[0].verdict, Verdict::Fail);
        let d = docker_mut(&mut f);
        d.info.server_version = Some("29.1.0".into());
        d.info.cgroup_version = Some(bollard::models::SystemInfoCgroupVersionEnum::_1);
        assert_eq!(judge(&CHECK, &f)[0].verdict, Verdict::Warn);
    }
}
