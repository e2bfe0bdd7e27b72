//! `vm create` explained: the values of each step's classic commands
//! (explain-templates/vm-*.bash.j2), written as the create runs (`--explain`), or all at once
//! without changing anything (`--dry-run`), when they make a script that creates the same VM:
//! the same volume, reservation, key files, pinned host key and domain with strata's record,
//! so that `strata vm list` and `strata vm ssh` know it afterwards.
//!
//! The script makes its own keys with ssh-keygen when it runs, so no key of this run is ever
//! printed: the domain XML takes the public halves from shell variables, and the private host
//! key reaches QEMU through a root-only handover file as in strata's own create.

use super::create_plan::{plan_create, CreatePlan};
use super::first_boot::{self, GuestKeys};
use super::vm_create::CreateRequest;
use crate::error::{Error, Result};
use crate::explain::{self, Step};
use crate::state::Paths;
use crate::vm::alloc;
use crate::vm::network::{self, DhcpHost};
use crate::vm::record::VmRecord;
use crate::vm::{pool, Libvirt};
use serde_json::json;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

/// Where the script's shell variables go into the domain XML (replaced after escaping; no
/// character in them is one XML escapes).
const LOGIN_PUB: (&str, &str) = ("STRATA-EXPLAIN-LOGIN-PUB", "login_pub");
const HOST_PUB: (&str, &str) = ("STRATA-EXPLAIN-HOST-PUB", "host_pub");
const HANDOVER: (&str, &str) = ("STRATA-EXPLAIN-HANDOVER", "handover");

/// The here-document marker the templates end the domain XML with.
const XML_MARKER: &str = "STRATA_XML";

/// The explanation of one create: what every step's commands need.
pub(super) struct Explainer<'a> {
    pub(super) lv: &'a Libvirt,
    pub(super) paths: &'a Paths,
    pub(super) req: &'a CreateRequest,
    pub(super) plan: &'a CreatePlan,
}

impl Explainer<'_> {
    /// Whether this run explains at all (the values are only gathered when it does). A VM on
    /// a remote host is not explained: its files (the handover, the disk's path) are that
    /// host's, which the script's local commands would not reach.
    pub(super) fn is_on(&self) -> bool {
        explain::is_on() && !self.lv.is_remote()
    }

    pub(super) fn clone_disk(&self) -> Result<()> {
        if explain::is_on() && self.lv.is_remote() {
            return explain::note(&format!(
                "vm create {} on a remote host is not explained yet",
                self.req.name
            ));
        }
        if !self.is_on() {
            return Ok(());
        }
        let (pool_name, _) = pool::home(self.lv, self.paths);
        let pool_handle = pool::ensure_home(self.lv, self.paths)?;
        let backing = pool::find_volume(&pool_handle, &self.plan.template_volume)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "template volume {} is not in pool '{pool_name}'",
                    self.plan.template_volume
                ))
            })?
            .path()?;
        explain::step(
            Step::VmClone,
            &json!({
                "pool": pool_name,
                "volume": self.plan.volume,
                "capacity": self.plan.disk,
                "backing_path": backing,
            }),
        )
    }

    pub(super) fn reserve_address(&self, host: &DhcpHost) -> Result<()> {
        if !self.is_on() {
            return Ok(());
        }
        let (net, _) = network::lookup(&self.lv.conn(), &self.req.network)?;
        explain::step(
            Step::VmReserveAddress,
            &json!({
                "network": self.req.network,
                "host_xml": network::host_xml(host)?,
                "live": net.is_active()?,
            }),
        )
    }

    pub(super) fn keys(&self, ip: Ipv4Addr) -> Result<()> {
        if !self.is_on() {
            return Ok(());
        }
        let name = self.req.name.as_str();
        explain::step(
            Step::VmKeys,
            &json!({
                "name": name,
                "ip": ip.to_string(),
                "vm_dir": self.paths.vm_dir(name),
                "login_key": self.paths.vm_key(name),
                "known_hosts": self.paths.vm_known_hosts(name),
            }),
        )
    }

    /// The domain as strata defines it, with the script's variables where its keys go.
    pub(super) fn define(
        &self,
        record: &VmRecord,
        uuid: &str,
        disk_path: &str,
        keys: &GuestKeys,
    ) -> Result<()> {
        if !self.is_on() {
            return Ok(());
        }
        let template = self.plan.template.domain_xml_template();
        let xml = |host_key: Option<&Path>| -> Result<String> {
            let mut spec = first_boot::domain_spec(
                self.req, self.plan, record, uuid, disk_path, keys, host_key,
            )?;
            spec.oem_strings = first_boot::oem_strings(&self.req.name, LOGIN_PUB.0, HOST_PUB.0);
            let text = spec.render(&template)?;
            explain::heredoc(&text, XML_MARKER, &[LOGIN_PUB, HOST_PUB, HANDOVER])
        };
        explain::step(
            Step::VmDefine,
            &json!({
                "name": self.req.name,
                "handover_dir": first_boot::handover_dir(self.paths),
                "xml": xml(None)?,
                "first_boot_xml": xml(Some(Path::new(HANDOVER.0)))?,
            }),
        )
    }

    pub(super) fn start(&self) -> Result<()> {
        if !self.is_on() {
            return Ok(());
        }
        explain::step(Step::VmStart, &json!({ "name": self.req.name }))
    }

    pub(super) fn wait_for_ssh(&self, ip: Ipv4Addr, timeout: Duration) -> Result<()> {
        if !self.is_on() {
            return Ok(());
        }
        let name = self.req.name.as_str();
        crate::guest::route::explain_wait_for_ssh(
            self.paths,
            name,
            ip.into(),
            &self.plan.template.manifest.vm.user,
            &self.paths.vm_key(name),
            timeout,
        )
    }
}

/// `vm create --dry-run --explain`: check and decide as a create does, choose the address,
/// and write the whole create as a script; change nothing. Returns the address chosen.
pub fn dry_run(lv: &Libvirt, paths: &Paths, req: &CreateRequest) -> Result<Ipv4Addr> {
    if lv.is_remote() {
        return Err(Error::bad_input(
            "--dry-run of `vm create` works on this machine's libvirt only",
        )
        .with_hint("leave out --connect, or run it on that host"));
    }
    let plan = plan_create(lv, paths, req)?;
    if plan.seed.is_some() {
        return Err(Error::bad_input(format!(
            "--dry-run of a VM from '{}' (an imported cloud image) is not written yet: its cloud-init seed is a vfat image strata assembles itself",
            req.template
        ))
        .with_hint("use --explain without --dry-run, or a template built by `strata template build`"));
    }
    let host = alloc::choose_address(&lv.conn(), &req.network, &req.name, None)?;
    let uuid = first_boot::uuid_v4();
    // Keys only to fill the definition's shape: their public halves are replaced by the
    // script's variables, and they are never written anywhere.
    let keys = GuestKeys::generate(&req.name)?;
    let record = super::vm_create::record_of(paths, req, &plan, &host);
    let disk_path = paths.pool_dir().join(&plan.volume).display().to_string();
    let explainer = Explainer {
        lv,
        paths,
        req,
        plan: &plan,
    };
    explainer.clone_disk()?;
    explainer.reserve_address(&host)?;
    explainer.keys(host.ip)?;
    explainer.define(&record, &uuid, &disk_path, &keys)?;
    explainer.start()?;
    if let Some(timeout) = req.ssh_timeout {
        explainer.wait_for_ssh(host.ip, timeout)?;
    }
    Ok(host.ip)
}
