//! strata's <metadata> element in each domain it made: template, creation time, accelerator,
//! network, MAC, IP, login user, key path and volume. libvirt keeps it; `vm list` reads it.

use crate::error::{Error, Result};
use serde::Serialize;

/// What strata recorded about a VM when it created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VmRecord {
    pub template: String,
    pub created: String,
    pub accel: String,
    pub network: String,
    pub mac: String,
    pub ip: String,
    pub user: String,
    pub key: String,
    pub volume: String,
}

/// Parse the element libvirt returns for our namespace (pure).
pub fn parse(xml: &str) -> Result<VmRecord> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| Error::failed(format!("strata metadata is not XML: {e}")))?;
    let root = doc.root_element();
    let field = |tag: &str| -> Result<String> {
        root.children()
            .find(|c| c.is_element() && c.tag_name().name() == tag)
            .map(|c| c.text().unwrap_or_default().trim().to_string())
            .ok_or_else(|| Error::failed(format!("strata metadata lacks <{tag}>")))
    };
    Ok(VmRecord {
        template: field("template")?,
        created: field("created")?,
        accel: field("accel")?,
        network: field("network")?,
        mac: field("mac")?,
        ip: field("ip")?,
        user: field("user")?,
        key: field("key")?,
        volume: field("volume")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_libvirt_returns() {
        // virDomainGetMetadata returns the element with its own prefix and namespace.
        let xml = "<strata:vm xmlns:strata=\"https://strata.dev/xmlns/vm/1\">\n  <strata:template>debian-12</strata:template>\n  <strata:created>2026-11-28T01:00:00Z</strata:created>\n  <strata:accel>tcg</strata:accel>\n  <strata:network>n</strata:network>\n  <strata:mac>52:54:00:aa:bb:cc</strata:mac>\n  <strata:ip>10.77.0.2</strata:ip>\n  <strata:user>root</strata:user>\n  <strata:key>/var/lib/strata/vms/a/id_ed25519</strata:key>\n  <strata:volume>vm-a.qcow2</strata:volume>\n</strata:vm>";
        let r = parse(xml).unwrap();
        assert_eq!(r.template, "debian-12");
        assert_eq!(r.accel, "tcg");
        assert_eq!(r.ip, "10.77.0.2");
        assert_eq!(r.volume, "vm-a.qcow2");
    }

    #[test]
    fn missing_field_is_an_error() {
        let err = parse("<vm><template>x</template></vm>").unwrap_err();
        assert!(err.message().contains("<created>"), "{err}");
    }
}
