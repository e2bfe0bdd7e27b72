//! A defined domain's size as its persistent definition has it (memory, vCPUs), and changing
//! it there. A running domain keeps its sizes until it is next started, so this reads and
//! writes the definition, not the live values: a plan's update converges at once, and the
//! change takes effect at the next boot.

use crate::error::{Error, Result};
use crate::vm::pool;
use virt::domain::Domain;
use virt::storage_pool::StoragePool;

/// What the persistent definition gives the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Configured {
    pub memory: u64,
    pub cpus: u32,
}

/// Read memory (bytes) and vCPUs from the domain's persistent definition.
pub fn configured(dom: &Domain) -> Result<Configured> {
    let xml = dom.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)?;
    parse_configured(&xml)
}

/// The pure half of `configured`: <memory unit=...> and <vcpu> of a domain definition.
pub fn parse_configured(xml: &str) -> Result<Configured> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| {
        Error::failed(format!(
            "libvirt gave a domain definition that is not XML: {e}"
        ))
    })?;
    let root = doc.root_element();
    let child = |name: &str| root.children().find(|n| n.has_tag_name(name));
    let bad = |what: &str| Error::failed(format!("the domain definition has no readable <{what}>"));
    let memory_node = child("memory").ok_or_else(|| bad("memory"))?;
    let amount: u64 = memory_node
        .text()
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| bad("memory"))?;
    let scale: u64 = match memory_node.attribute("unit").unwrap_or("KiB") {
        "b" | "bytes" => 1,
        "KiB" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        _ => return Err(bad("memory")),
    };
    let cpus: u32 = child("vcpu")
        .and_then(|n| n.text())
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| bad("vcpu"))?;
    Ok(Configured {
        // libvirt caps memory far below this, but the definition is read, not trusted.
        memory: amount.checked_mul(scale).ok_or_else(|| bad("memory"))?,
        cpus,
    })
}

/// Give the domain `wanted` in its persistent definition (the maximum and the current value
/// alike). Raising the maximum comes before the current value, lowering after, as libvirt
/// requires current <= maximum at each step.
pub fn set_configured(dom: &Domain, wanted: Configured) -> Result<()> {
    let now = configured(dom)?;
    let config = virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
    if wanted.memory != now.memory {
        let kib = wanted.memory >> 10;
        let maximum = config | virt::sys::VIR_DOMAIN_MEM_MAXIMUM;
        let order = if wanted.memory > now.memory {
            [maximum, config]
        } else {
            [config, maximum]
        };
        for flags in order {
            dom.set_memory_flags(kib, flags)?;
        }
    }
    if wanted.cpus != now.cpus {
        let maximum = config | virt::sys::VIR_DOMAIN_VCPU_MAXIMUM;
        let order = if wanted.cpus > now.cpus {
            [maximum, config]
        } else {
            [config, maximum]
        };
        for flags in order {
            dom.set_vcpus_flags(wanted.cpus, flags)?;
        }
    }
    Ok(())
}

/// Grow a VM's disk (a volume of strata's pool) to `size` bytes: through the running domain
/// when it runs (QEMU has the image open), through the pool otherwise. Never shrinks.
pub fn grow_disk(dom: &Domain, pool: &StoragePool, volume: &str, size: u64) -> Result<()> {
    let vol = pool::find_volume(pool, volume)
        .ok_or_else(|| Error::failed(format!("volume '{volume}' is not in strata's pool")))?;
    if vol.info()?.capacity >= size {
        return Ok(());
    }
    if dom.is_active()? {
        dom.block_resize(&vol.path()?, size, virt::sys::VIR_DOMAIN_BLOCK_RESIZE_BYTES)?;
    } else {
        vol.resize(size, 0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memory_in_any_unit_and_vcpus() {
        let xml = "<domain type='qemu'><name>a</name><memory unit='KiB'>1048576</memory>\
                   <currentMemory unit='KiB'>524288</currentMemory><vcpu placement='static'>2</vcpu></domain>";
        assert_eq!(
            parse_configured(xml).unwrap(),
            Configured {
                memory: 1 << 30,
                cpus: 2
            }
        );
        let xml = "<domain><memory unit='MiB'>512</memory><vcpu>1</vcpu></domain>";
        assert_eq!(parse_configured(xml).unwrap().memory, 512 << 20);
    }

    #[test]
    fn refuses_a_definition_without_sizes() {
        assert!(parse_configured("<domain><vcpu>1</vcpu></domain>").is_err());
        assert!(parse_configured(
            "<domain><memory unit='furlong'>1</memory><vcpu>1</vcpu></domain>"
        )
        .is_err());
        assert!(parse_configured("not xml").is_err());
        // A size past u64 in bytes is an error, not a wrap to a small number.
        assert!(parse_configured(
            "<domain><memory unit='TiB'>18446744073709551615</memory><vcpu>1</vcpu></domain>"
        )
        .is_err());
    }
}
