//! template.integrity: every VM is a thin clone on top of its template's volume, so a
//! template volume that changed after it was built (written to, replaced, truncated) changes
//! every clone under it. The check hashes each built template's volume and compares it with
//! the checksum recorded at build time.

use crate::check::{Finding, Fix, HostCheck, HostSnapshot, Subject, Verdict};

const ID: &str = "template.integrity";

pub const CHECK: HostCheck = HostCheck {
    id: ID,
    reads: "each built template's build.json (recorded sha256) and the sha256 of its volume in strata's pool",
    verdict,
};

fn verdict(facts: &HostSnapshot) -> Vec<Finding> {
    let templates = match &facts.templates {
        Ok(t) => t,
        Err(why) => return vec![Finding::skipped(ID, Subject::Host, why)],
    };
    if templates.is_empty() {
        return vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Ok,
            "no template is built yet".into(),
        )];
    }
    templates
        .iter()
        .map(|t| {
            let rebuild = Fix::manual(format!(
                "rebuild it: `strata template build {} --refresh` (VMs cloned from it keep their own disks only as deltas; recreate them)",
                t.template
            ));
            match &t.actual_sha256 {
                Ok(sum) if *sum == t.recorded_sha256 => Finding::new(
                    ID,
                    Subject::Host,
                    Verdict::Ok,
                    format!("template {} matches its recorded checksum", t.template),
                )
                .evidence([format!("{} sha256 {}", t.volume.display(), &sum[..16.min(sum.len())])]),
                Ok(sum) => Finding::new(
                    ID,
                    Subject::Host,
                    Verdict::Fail,
                    format!("template {} changed since it was built", t.template),
                )
                .evidence([
                    format!("recorded sha256 {}", t.recorded_sha256),
                    format!("{} sha256 {sum}", t.volume.display()),
                ])
                .with_fix(rebuild),
                Err(why) if !t.volume_present => Finding::new(
                    ID,
                    Subject::Host,
                    Verdict::Fail,
                    format!("template {}'s volume is gone: {why}", t.template),
                )
                .with_fix(rebuild),
                // Present but unreadable: strata could not look, which is not a verdict.
                Err(why) => Finding::skipped(ID, Subject::Host, why),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;
    use crate::check::snapshot::host::TemplateImage;

    #[test]
    fn changed_volume_fails() {
        let mut facts = host_facts(DOCKER_20_10);
        let image = |actual: &str| TemplateImage {
            template: "debian-12".into(),
            volume: "/var/lib/strata/pool/template-debian-12.qcow2".into(),
            recorded_sha256: "ab".repeat(32),
            actual_sha256: Ok(actual.into()),
            volume_present: true,
        };
        facts.templates = Ok(vec![image(&"ab".repeat(32)), image(&"cd".repeat(32))]);
        let found = verdict(&facts);
        assert_eq!(found[0].verdict, Verdict::Ok);
        assert_eq!(found[1].verdict, Verdict::Fail);
        assert!(found[1]
            .fix
            .as_ref()
            .unwrap()
            .description
            .contains("--refresh"));
        let unreadable = TemplateImage {
            actual_sha256: Err(crate::error::Error::failed("permission denied")),
            ..image("")
        };
        let gone = TemplateImage {
            volume_present: false,
            ..unreadable.clone()
        };
        facts.templates = Ok(vec![unreadable, gone]);
        let found = verdict(&facts);
        assert_eq!(found[0].verdict, Verdict::Skip);
        assert_eq!(found[1].verdict, Verdict::Fail);
    }
}
