//! libvirt.pool-access: qemu opens VM disks as its own user, so every directory above
//! strata's storage pool needs the execute (search) bit for that user; otherwise domains fail
//! to start with "Permission denied" on the disk.

use crate::check::{Finding, Fix, HostCheck, HostSnapshot, Subject, Verdict};

const ID: &str = "libvirt.pool-access";

pub const CHECK: HostCheck = HostCheck {
    id: ID,
    reads: "owner, group and mode of each directory above strata's pool, qemu's user and groups",
    verdict,
};

fn verdict(facts: &HostSnapshot) -> Vec<Finding> {
    let access = match &facts.pool_access {
        Ok(a) => a,
        Err(why) => return vec![Finding::skipped(ID, Subject::Host, why)],
    };
    match &access.blocked_at {
        None => vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Ok,
            format!(
                "'{}' can reach strata's pool {}",
                access.qemu_user,
                access.pool_dir.display()
            ),
        )],
        Some(dir) => vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Fail,
            format!(
                "'{}' cannot traverse {}, so it cannot open disks in {}",
                access.qemu_user,
                dir.display(),
                access.pool_dir.display()
            ),
        )
        .with_fix(Fix::manual(format!(
            "`chmod o+x {}` (search only, no listing), or move the state directory (STRATA_STATE_DIR) somewhere qemu can reach",
            dir.display()
        )))],
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;
    use crate::check::snapshot::host::PoolAccess;

    #[test]
    fn blocked_directory_is_named() {
        let mut facts = host_facts(DOCKER_20_10);
        facts.pool_access = Ok(PoolAccess {
            qemu_user: "libvirt-qemu".into(),
            pool_dir: "/home/ann/.local/state/strata/pool".into(),
            blocked_at: Some("/home/ann".into()),
        });
        let found = verdict(&facts);
        assert_eq!(found[0].verdict, Verdict::Fail);
        assert!(found[0]
            .fix
            .as_ref()
            .unwrap()
            .description
            .contains("chmod o+x /home/ann"));
    }
}
