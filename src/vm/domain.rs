//! Domains: define from rendered XML, start, stop, destroy, undefine, and list the ones strata
//! made (those carrying strata's metadata) with their state.

use crate::error::{Error, ErrorKind, Result};
use crate::vm::record::VmRecord;
use crate::vm::VM_METADATA_NS;
use serde::Serialize;
use virt::connect::Connect;
use virt::domain::{Domain, DomainState};

/// A strata VM as libvirt sees it.
#[derive(Debug, Clone, Serialize)]
pub struct VmInfo {
    pub name: String,
    pub state: String,
    pub cpus: u32,
    pub memory_mib: u64,
    #[serde(flatten)]
    pub record: VmRecord,
}

fn state_name(state: DomainState) -> &'static str {
    match state {
        DomainState::Running | DomainState::Blocked => "running",
        DomainState::Paused => "paused",
        DomainState::Shutdown => "shutting down",
        DomainState::Shutoff => "shut off",
        DomainState::Crashed => "crashed",
        DomainState::PMSuspended => "suspended",
        DomainState::NoState => "unknown",
    }
}

/// strata's record of a domain, or None when strata did not make it.
pub fn record(dom: &Domain) -> Result<Option<VmRecord>> {
    match dom.metadata(
        virt::sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
        Some(VM_METADATA_NS),
        0,
    ) {
        Ok(xml) => Ok(Some(VmRecord::parse(&xml)?)),
        Err(e) if e.code().known() == Some(virt::error::ErrorNumber::NoDomainMetadata) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Replace strata's record of a domain (in its persistent definition, and in the running one
/// when it runs), e.g. to add a volume before making it.
pub fn set_record(dom: &Domain, record: &VmRecord) -> Result<()> {
    let mut flags = virt::sys::VIR_DOMAIN_AFFECT_CONFIG;
    if dom.is_active()? {
        flags |= virt::sys::VIR_DOMAIN_AFFECT_LIVE;
    }
    dom.set_metadata(
        virt::sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
        Some(&record.to_metadata_element()?),
        Some("strata"),
        Some(VM_METADATA_NS),
        flags,
    )?;
    Ok(())
}

fn describe(dom: &Domain, record: VmRecord) -> Result<VmInfo> {
    let info = dom.info()?;
    Ok(VmInfo {
        name: dom.name()?,
        state: info
            .state
            .known()
            .map(state_name)
            .unwrap_or("unknown")
            .to_string(),
        cpus: info.nr_virt_cpu,
        memory_mib: info.max_mem / 1024,
        record,
    })
}

/// All domains strata made, sorted by name.
pub fn list(conn: &Connect) -> Result<Vec<VmInfo>> {
    let mut vms = Vec::new();
    for dom in conn.list_all_domains(0)? {
        let described = record(&dom).and_then(|rec| rec.map(|rec| describe(&dom, rec)).transpose());
        match described {
            Ok(Some(vm)) => vms.push(vm),
            Ok(None) => {}
            // Undefined by someone else between listing and reading it: not there any more.
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    vms.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(vms)
}

/// Refuse to remove `what` while strata VMs depend on it (those for which `uses` is true),
/// naming them.
pub fn refuse_while_used(
    conn: &Connect,
    what: &str,
    uses: impl Fn(&VmRecord) -> bool,
) -> Result<()> {
    let users: Vec<String> = list(conn)?
        .into_iter()
        .filter(|vm| uses(&vm.record))
        .map(|vm| vm.name)
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    Err(
        Error::bad_input(format!("{what} is in use by VMs: {}", users.join(", ")))
            .with_hint("destroy those VMs first (`strata vm destroy NAME`)"),
    )
}

/// Does any domain (strata's or not) have this name?
pub fn exists(conn: &Connect, name: &str) -> bool {
    conn.lookup_domain_by_name(name).is_ok()
}

/// The domain named `name`; None only when libvirt says there is none. Any other failure
/// (libvirtd went away) is an error: "not reachable" must never read as "already gone".
pub fn find(conn: &Connect, name: &str) -> Result<Option<Domain>> {
    match conn.lookup_domain_by_name(name) {
        Ok(dom) => Ok(Some(dom)),
        Err(e) => match Error::from(e) {
            err if err.kind() == ErrorKind::NotFound => Ok(None),
            err => Err(err.context(format!("looking up domain '{name}'"))),
        },
    }
}

/// Find a strata VM by name.
pub fn lookup(conn: &Connect, name: &str) -> Result<(Domain, VmInfo)> {
    let dom = find(conn, name)?.ok_or_else(|| {
        Error::not_found(format!("no VM named '{name}'"))
            .with_hint("`strata vm list` shows the VMs strata made")
    })?;
    let rec = record(&dom)?.ok_or_else(|| {
        Error::bad_input(format!("domain '{name}' was not created by strata"))
            .with_hint("strata only manages VMs it created; use virsh for this one")
    })?;
    let info = describe(&dom, rec)?;
    Ok((dom, info))
}

/// Define a persistent domain from XML.
pub fn define(conn: &Connect, xml: &str) -> Result<Domain> {
    Ok(conn.define_domain_xml(xml)?)
}

pub fn start(dom: &Domain) -> Result<()> {
    if !dom.is_active()? {
        dom.create()?;
    }
    Ok(())
}

/// Ask the guest to shut down (ACPI), waiting up to `timeout`; then pull the plug.
pub fn stop(dom: &Domain, timeout: std::time::Duration) -> Result<bool> {
    if !dom.is_active()? {
        return Ok(true);
    }
    let deadline = std::time::Instant::now() + timeout;
    let _ = dom.shutdown();
    while std::time::Instant::now() < deadline {
        if !dom.is_active()? {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    force_off(dom)?;
    Ok(false)
}

/// Why a domain is not running (libvirt's state and reason), and whether its QEMU process
/// died under it; None while it runs.
pub fn stopped_reason(dom: &Domain) -> Result<Option<(String, bool)>> {
    use virt::domain::{DomainShutoffReason, DomainStateReason};
    use virt::enumutil::Enum;
    if dom.is_active()? {
        return Ok(None);
    }
    let (state, reason) = dom.state()?;
    let crashed = state.known() == Some(DomainState::Crashed)
        || matches!(
            reason,
            Enum::Known(DomainStateReason::Shutoff(Enum::Known(
                DomainShutoffReason::Crashed
            )))
        );
    let state = state.known().map(state_name).unwrap_or("stopped");
    Ok(Some((format!("{state} ({reason})"), crashed)))
}

/// Power off immediately if running.
pub fn force_off(dom: &Domain) -> Result<()> {
    if dom.is_active()? {
        if let Err(e) = dom.destroy() {
            // It may have stopped on its own in between.
            if dom.is_active()? {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Remove the definition (after powering off).
pub fn undefine(conn: &Connect, name: &str) -> Result<()> {
    let Some(dom) = find(conn, name)? else {
        return Ok(());
    };
    force_off(&dom)?;
    dom.undefine().map_err(|e| {
        let err: Error = e.into();
        if err.kind() == ErrorKind::NotFound {
            err
        } else {
            err.context(format!("undefining '{name}'"))
        }
    })
}
