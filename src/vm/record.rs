//! strata's record of a VM, kept by libvirt in the domain's own <metadata> element: which
//! template it was cloned from, when, with which accelerator, on which network with which MAC
//! and IP, who logs in with which key, and every volume strata made for it in its pool. This
//! module is the one place that writes the element (libvirt-templates/vm-metadata.xml.j2) and
//! reads it back; everything else uses the typed record. A domain without the element was not
//! made by strata, and strata leaves it alone.

use crate::error::{Error, Result};
use crate::host::accel::Accel;
use crate::vm::{xml, VM_METADATA_NS};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// What strata recorded about a VM when it created it (and updates when it adds a volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmRecord {
    pub template: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub accel: Accel,
    pub network: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub user: String,
    /// The login key strata generated for the VM.
    pub key: PathBuf,
    /// Every volume strata made for this VM in its pool: `vm destroy` removes exactly these.
    pub volumes: Vec<VmVolume>,
    /// The plan that made this VM (`strata plan apply`); only that plan changes or removes it.
    pub plan: Option<String>,
    /// What that plan last brought up in the VM in full (the sha256 of its engine section and
    /// stack files, as the plan layer computes it), so an unchanged re-apply need not log in.
    pub applied: Option<String>,
}

/// One volume of a VM and what it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmVolume {
    pub role: VolumeRole,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeRole {
    /// The thin clone of the template the VM boots from.
    Root,
    /// Docker's data disk (`engine install --data-disk`).
    Data,
    /// The cloud-init seed of a VM cloned from an imported image.
    Seed,
}

impl VolumeRole {
    fn parse(text: &str) -> Option<VolumeRole> {
        match text {
            "root" => Some(VolumeRole::Root),
            "data" => Some(VolumeRole::Data),
            "seed" => Some(VolumeRole::Seed),
            _ => None,
        }
    }
}

impl VmRecord {
    /// The volume with `role`, if the VM has one.
    pub fn volume(&self, role: VolumeRole) -> Option<&str> {
        self.volumes
            .iter()
            .find(|v| v.role == role)
            .map(|v| v.name.as_str())
    }

    /// The <strata:vm> element for a domain definition's <metadata>.
    pub fn to_xml(&self) -> Result<String> {
        self.render("strata:", VM_METADATA_NS)
    }

    /// The same element without its namespace, as virDomainSetMetadata takes it (libvirt
    /// puts it in strata's namespace itself, and refuses an element that declares one).
    pub fn to_metadata_element(&self) -> Result<String> {
        self.render("", "")
    }

    fn render(&self, prefix: &str, namespace: &str) -> Result<String> {
        xml::render(
            xml::VM_METADATA,
            &serde_json::json!({
                "p": prefix,
                "ns": namespace,
                "template": self.template,
                "created": self.created,
                "accel": self.accel.as_str(),
                "network": self.network,
                "mac": self.mac,
                "ip": self.ip.to_string(),
                "user": self.user,
                "key": self.key.display().to_string(),
                "volumes": self.volumes,
                "plan": self.plan,
                "applied": self.applied,
            }),
        )
    }

    /// Parse the element libvirt returns for strata's namespace (pure). Records written before
    /// volumes had roles hold one `<volume>`: the root disk.
    pub fn parse(text: &str) -> Result<VmRecord> {
        let doc = roxmltree::Document::parse(text)
            .map_err(|e| Error::failed(format!("strata metadata is not XML: {e}")))?;
        let root = doc.root_element();
        let elements = |tag: &'static str| {
            root.children()
                .filter(move |c| c.is_element() && c.tag_name().name() == tag)
        };
        let field = |tag: &'static str| -> Result<String> {
            elements(tag)
                .next()
                .map(|c| c.text().unwrap_or_default().trim().to_string())
                .ok_or_else(|| Error::failed(format!("strata metadata lacks <{tag}>")))
        };
        let bad = |tag: &str, value: &str| {
            Error::failed(format!("strata metadata has a bad <{tag}>: '{value}'"))
        };
        let accel = field("accel")?;
        let ip = field("ip")?;
        let mut volumes = Vec::new();
        for v in elements("volume") {
            let role = match v.attribute("role") {
                None => VolumeRole::Root,
                Some(r) => VolumeRole::parse(r).ok_or_else(|| bad("volume role", r))?,
            };
            let name = v.text().unwrap_or_default().trim().to_string();
            if name.is_empty() {
                return Err(bad("volume", ""));
            }
            volumes.push(VmVolume { role, name });
        }
        let plan = match elements("plan").next() {
            None => None,
            Some(p) => {
                let name = p.text().unwrap_or_default().trim().to_string();
                if !crate::names::is_valid_name(&name) {
                    return Err(bad("plan", &name));
                }
                Some(name)
            }
        };
        let applied = match elements("applied").next() {
            None => None,
            Some(a) => {
                let digest = a.text().unwrap_or_default().trim().to_string();
                if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("applied", &digest));
                }
                Some(digest)
            }
        };
        Ok(VmRecord {
            plan,
            applied,
            template: field("template")?,
            created: field("created")?,
            accel: Accel::parse(&accel).ok_or_else(|| bad("accel", &accel))?,
            network: field("network")?,
            mac: field("mac")?,
            ip: ip.parse().map_err(|_| bad("ip", &ip))?,
            user: field("user")?,
            key: PathBuf::from(field("key")?),
            volumes,
        })
    }
}

/// A record as strata writes one, for the tests of the modules that carry it.
#[cfg(test)]
pub(crate) fn sample() -> VmRecord {
    VmRecord {
        template: "debian-12".into(),
        created: "2026-11-28T01:00:00Z".into(),
        accel: Accel::Tcg,
        network: "n".into(),
        mac: "52:54:00:aa:bb:cc".into(),
        ip: "10.77.0.2".parse().unwrap(),
        user: "root".into(),
        key: "/var/lib/strata/vms/a/id_ed25519".into(),
        volumes: vec![
            VmVolume {
                role: VolumeRole::Root,
                name: "vm_a.qcow2".into(),
            },
            VmVolume {
                role: VolumeRole::Data,
                name: "vm_a_data.qcow2".into(),
            },
        ],
        plan: None,
        applied: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> VmRecord {
        super::sample()
    }

    #[test]
    fn written_and_read_back_alike() {
        let r = record();
        let xml = r.to_xml().unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(
            doc.root_element().tag_name().namespace(),
            Some(VM_METADATA_NS)
        );
        assert_eq!(VmRecord::parse(&xml).unwrap(), r);
        assert_eq!(r.volume(VolumeRole::Data), Some("vm_a_data.qcow2"));
        let bare = r.to_metadata_element().unwrap();
        assert!(
            !bare.contains("xmlns") && !bare.contains("strata:"),
            "{bare}"
        );
        assert_eq!(VmRecord::parse(&bare).unwrap(), r);
        assert_eq!(r.volume(VolumeRole::Seed), None);
    }

    #[test]
    fn the_owning_plan_is_kept_and_checked() {
        let mut r = record();
        assert!(!r.to_xml().unwrap().contains("plan"));
        r.plan = Some("lab".into());
        let xml = r.to_xml().unwrap();
        assert_eq!(VmRecord::parse(&xml).unwrap().plan.as_deref(), Some("lab"));
        let bare = r.to_metadata_element().unwrap();
        assert_eq!(VmRecord::parse(&bare).unwrap(), r);
        let bad = xml.replace(">lab<", ">../lab<");
        assert!(VmRecord::parse(&bad)
            .unwrap_err()
            .message()
            .contains("bad <plan>"));
    }

    #[test]
    fn what_a_plan_brought_up_is_kept_and_must_be_a_sha256() {
        let mut r = record();
        r.plan = Some("lab".into());
        let digest = "790b38d9f94a1c4898abd1bd19b90c01f34abd1970b5f85a3c2df88ccfa8beb1";
        r.applied = Some(digest.into());
        let xml = r.to_xml().unwrap();
        assert_eq!(VmRecord::parse(&xml).unwrap(), r);
        for bad in [
            "abc",
            "../../etc/passwd",
            &format!("{digest}0"),
            &digest.replace('7', "g"),
        ] {
            let text = xml.replace(digest, bad);
            assert!(
                VmRecord::parse(&text)
                    .unwrap_err()
                    .message()
                    .contains("bad <applied>"),
                "{bad}"
            );
        }
    }

    #[test]
    fn values_are_escaped() {
        let mut r = record();
        r.user = "a<b&'c".into();
        assert_eq!(
            VmRecord::parse(&r.to_xml().unwrap()).unwrap().user,
            "a<b&'c"
        );
    }

    #[test]
    fn reads_what_libvirt_returns_for_an_older_record() {
        // virDomainGetMetadata returns the element with its own prefix and namespace; records
        // from before volume roles have one <volume>.
        let xml = "<strata:vm xmlns:strata=\"https://strata.dev/xmlns/vm/1\">\n  <strata:template>debian-12</strata:template>\n  <strata:created>2026-11-28T01:00:00Z</strata:created>\n  <strata:accel>tcg</strata:accel>\n  <strata:network>n</strata:network>\n  <strata:mac>52:54:00:aa:bb:cc</strata:mac>\n  <strata:ip>10.77.0.2</strata:ip>\n  <strata:user>root</strata:user>\n  <strata:key>/var/lib/strata/vms/a/id_ed25519</strata:key>\n  <strata:volume>vm-a.qcow2</strata:volume>\n</strata:vm>";
        let r = VmRecord::parse(xml).unwrap();
        assert_eq!(r.template, "debian-12");
        assert_eq!(r.accel, Accel::Tcg);
        assert_eq!(r.ip, "10.77.0.2".parse::<Ipv4Addr>().unwrap());
        assert_eq!(r.volume(VolumeRole::Root), Some("vm-a.qcow2"));
    }

    #[test]
    fn missing_or_bad_fields_are_errors() {
        let err = VmRecord::parse("<vm><template>x</template></vm>").unwrap_err();
        assert!(err.message().contains("lacks <"), "{err}");
        let bad_ip = record()
            .to_xml()
            .unwrap()
            .replace("10.77.0.2", "10.77.0.999");
        assert!(VmRecord::parse(&bad_ip)
            .unwrap_err()
            .message()
            .contains("ip"));
    }
}
