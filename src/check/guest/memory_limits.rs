//! guest.memory-limits (LOG-2, the paper's OOM lesson): a container without a memory limit can
//! take the whole VM; and limits only hold when the kernel's memory controller is there.

use crate::check::snapshot::guest::GuestDockerState;
use crate::check::{Finding, Fix, GuestCheck, GuestVerdict, GuestView, Verdict};

const ID: &str = "guest.memory-limits";

pub const CHECK: GuestCheck = GuestCheck {
    id: ID,
    reads: "each running container's HostConfig.Memory, docker info MemoryLimit (API)",
    verdict: GuestVerdict::Engine(verdict),
};

fn verdict(view: &GuestView, state: &GuestDockerState) -> Vec<Finding> {
    let who = view.subject.clone();
    if state.info.memory_limit == Some(false) {
        return vec![Finding::new(
            ID,
            who,
            Verdict::Warn,
            "the guest kernel does not enforce memory limits".into(),
        )
        .with_fix(Fix::manual(
            "boot the guest with cgroup v2 (the memory controller on)",
        ))];
    }
    let unlimited: Vec<&str> = state
        .containers
        .iter()
        .filter(|c| c.memory_limit == 0)
        .map(|c| c.name.as_str())
        .collect();
    if unlimited.is_empty() {
        return vec![Finding::new(
            ID,
            who,
            Verdict::Ok,
            format!(
                "{} running containers, each with a memory limit",
                state.containers.len()
            ),
        )];
    }
    vec![Finding::new(
        ID,
        who,
        Verdict::Warn,
        format!(
            "containers without a memory limit: {}",
            unlimited.join(", ")
        ),
    )
    .with_fix(Fix::manual(
        "recreate them with a limit (`docker run -m 256m`, or memory in a strata stack's service)",
    ))]
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;
    use crate::check::snapshot::guest::ContainerView;

    #[test]
    fn unlimited_containers_are_named() {
        let mut f = guest_facts();
        let c = |name: &str, memory_limit| ContainerView {
            name: name.into(),
            memory_limit,
            log_driver: "local".into(),
            log_opts: Default::default(),
        };
        docker_mut(&mut f).containers = vec![c("db", 268435456), c("web", 0)];
        let found = judge(&CHECK, &f);
        assert_eq!(found[0].verdict, Verdict::Warn);
        assert!(found[0].summary.ends_with("web"));
        docker_mut(&mut f).containers.pop();
        assert_eq!(judge(&CHECK, &f)[0].verdict, Verdict::Ok);
    }
}
