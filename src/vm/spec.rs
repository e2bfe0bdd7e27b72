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
        // The record must come back out of what libvirt will store.
        let placed = roxmltree::Document::parse(&xml)
            .ok()
            .and_then(|doc| {
                doc.descendants()
                    .find(|n| n.tag_name().namespace() == Some(crate::vm::VM_METADATA_NS))
                    .map(|n| xml[n.range()].to_string())
            })
            .and_then(|element| VmRecord::parse(&element).ok());
        if placed.is_none() {
            return Err(Error::bad_input(format!(
                "{}: the domain XML does not carry strata's record",
                template.display()
            ))
            .with_hint(
                "put `<metadata>{{ metadata | safe }}</metadata>` in the template's <domain>",
            ));
        }
        Ok(xml)
    }
}
