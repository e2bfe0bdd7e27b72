//! DomainSpec: everything a VM template's domain.xml.j2 is rendered from, as plain data. The
//! create pipeline fills it in; this module renders it (strictly, XML-escaped) and checks that
//! the template placed strata's record where libvirt keeps it, so a template cannot make a VM
//! that strata would then not recognise as its own.

use crate::error::{Error, Result};
use crate::vm::record::VmRecord;
use serde::Serialize;
use std::path::Path;

/// The values a domain.xml.j2 may use.
#[derive(Debug, Clone, Serialize)]
pub struct DomainSpec {
    pub name: String,
    /// Random per create, so a define can never silently update a namesake.
    pub uuid: String,
    pub template: String,
    /// libvirt's domain type: "kvm" or "qemu" (TCG).
    pub virt_type: &'static str,
    /// "kvm" or "tcg".
    pub accel: &'static str,
    pub memory_kib: u64,
    pub cpus: u32,
    pub network: String,
    pub mac: String,
    /// The root disk (a thin clone in strata's pool).
    pub disk_path: String,
    /// Direct kernel boot; empty for firmware boot.
    pub kernel: String,
    pub initrd: String,
    pub cmdline: String,
    /// The CPU model under TCG (a validated libvirt model name); empty: `maximum`.
    pub tcg_cpu: String,
    /// Where the serial console is logged (kept when a boot fails).
    pub console_log: String,
    /// The cloud-init seed disk; empty for templates with their own first-boot unit.
    pub seed_path: String,
    /// First-boot data for strata's own templates (SMBIOS type 11): public values only.
    pub oem_strings: Vec<String>,
    /// Files handed to the guest through QEMU's fw_cfg (name under opt/, host path): how the
    /// guest's private host key reaches it without a command line or the domain XML holding it.
    pub fw_cfg_files: Vec<FwCfgFile>,
    /// strata's <metadata> element (VmRecord::to_xml), placed with `{{ metadata | safe }}`.
    pub metadata: String,
}

/// One fw_cfg blob QEMU reads from a file when it starts.
#[derive(Debug, Clone, Serialize)]
pub struct FwCfgFile {
    pub name: String,
    pub file: String,
}

impl DomainSpec {
    /// Render `template` (a domain.xml.j2) with this spec.
    pub fn render(&self, template: &Path) -> Result<String> {
        let xml = crate::template::render_file(template, self)?;
        // The record must come back out of what libvirt will store, once and as strata wrote
        // it: `vm destroy` removes what the record names, so a template may not add its own.
        let records: Vec<String> = roxmltree::Document::parse(&xml)
            .map(|doc| {
                doc.descendants()
                    .filter(|n| n.tag_name().namespace() == Some(crate::vm::VM_METADATA_NS))
                    .filter(|n| {
                        n.parent_element()
                            .is_none_or(|p| p.tag_name().namespace() != n.tag_name().namespace())
                    })
                    .map(|n| xml[n.range()].to_string())
                    .collect()
            })
            .unwrap_or_default();
        let ours = VmRecord::parse(&self.metadata).ok();
        let placed_once = match records.as_slice() {
            [only] => ours.is_some() && VmRecord::parse(only).ok() == ours,
            _ => false,
        };
        if !placed_once {
            return Err(Error::bad_input(format!(
                "{}: the domain XML does not carry strata's record exactly once, as strata wrote it",
                template.display()
            ))
            .with_hint(
                "put `<metadata>{{ metadata | safe }}</metadata>` in the template's <domain>, and nothing else in strata's namespace",
            ));
        }
        Ok(xml)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DomainSpec {
        let record = crate::vm::record::sample();
        DomainSpec {
            name: "a".into(),
            uuid: "00000000-0000-0000-0000-000000000001".into(),
            template: "t".into(),
            virt_type: "qemu",
            accel: "tcg",
            memory_kib: 1024,
            cpus: 1,
            network: "n".into(),
            mac: "52:54:00:aa:bb:cc".into(),
            disk_path: "/var/lib/strata/pool/vm_a.qcow2".into(),
            kernel: String::new(),
            initrd: String::new(),
            cmdline: String::new(),
            tcg_cpu: String::new(),
            console_log: String::new(),
            seed_path: String::new(),
            oem_strings: vec![],
            fw_cfg_files: vec![],
            metadata: record.to_xml().unwrap(),
        }
    }

    /// Render `body` as a domain template (written to a scratch file).
    fn render(tag: &str, body: &str) -> Result<String> {
        let dir = std::env::temp_dir().join(format!("strata-spec-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("domain.xml.j2");
        std::fs::write(&file, body).unwrap();
        let out = spec().render(&file);
        std::fs::remove_dir_all(&dir).unwrap();
        out
    }

    #[test]
    fn the_record_placed_once_renders() {
        let xml = render(
            "once",
            "<domain><name>{{ name }}</name><metadata>{{ metadata | safe }}</metadata></domain>",
        )
        .unwrap();
        assert!(xml.contains("vm_a.qcow2"), "{xml}");
    }

    #[test]
    fn a_missing_or_forged_record_is_refused() {
        let forged = spec().metadata.replace("vm_a.qcow2", "../../../etc/shadow");
        for (tag, body) in [
            ("none", "<domain><name>{{ name }}</name></domain>".to_string()),
            (
                "twice",
                "<domain><metadata>{{ metadata | safe }}{{ metadata | safe }}</metadata></domain>"
                    .to_string(),
            ),
            (
                "own",
                format!("<domain><metadata>{forged}</metadata></domain>"),
            ),
            (
                "extra",
                format!("<domain><metadata>{{{{ metadata | safe }}}}</metadata><description>{forged}</description></domain>"),
            ),
        ] {
            let err = render(tag, &body).unwrap_err();
            assert!(err.message().contains("exactly once"), "{tag}: {err}");
        }
    }

    #[test]
    fn the_cpu_follows_the_accelerator_and_the_templates_tcg_model() {
        let shipped = |name: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        for template in [
            shipped("vm-templates/debian-12/domain.xml.j2"),
            shipped("libvirt-templates/imported-domain.xml.j2"),
        ] {
            let mut spec = spec();
            let cpu = |spec: &DomainSpec| {
                let xml = spec.render(&template).unwrap();
                let doc = roxmltree::Document::parse(&xml).unwrap();
                let cpu = doc.descendants().find(|n| n.has_tag_name("cpu")).unwrap();
                let model = cpu
                    .children()
                    .find(|n| n.has_tag_name("model"))
                    .and_then(|m| m.text())
                    .map(str::to_string);
                (cpu.attribute("mode").unwrap().to_string(), model)
            };
            assert_eq!(cpu(&spec), ("maximum".into(), None), "{template:?}");
            spec.tcg_cpu = "Nehalem".into();
            assert_eq!(
                cpu(&spec),
                ("custom".into(), Some("Nehalem".into())),
                "{template:?}"
            );
            spec.accel = "kvm";
            assert_eq!(
                cpu(&spec),
                ("host-passthrough".into(), None),
                "{template:?}"
            );
        }
    }
}
