//! Whole-VM pipelines built from the vm and guest layers. `create` reads top-down as the path
//! the paper describes: clone -> reserve address -> keys -> define -> start -> wait for SSH.
//! Every step journals its undo on disk *before* acting, so a failure, Ctrl-C, or even a
//! killed process leaves nothing behind: the next strata run rolls abandoned journals back.

mod guest_data;
mod journal;
mod plan;

pub use journal::recover_abandoned;

use crate::error::{Error, Result};
use crate::guest::{keys, readiness, ssh};
use crate::host::accel::{Accel, AccelRequest};
use crate::interrupt;
use crate::progress::{Progress, StageTime};
use crate::state::{remove_dir_if_present, write_private, Paths};
use crate::vm::network::DhcpHost;
use crate::vm::{alloc, data_disk, domain, network, pool, Libvirt};
use guest_data::{render_domain, seed_file_name, uuid_v4, write_seed};
use journal::{remove_pool_file, Journal, Undo};
use plan::{plan_create, CreatePlan};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// What the user asked `vm create` for.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub name: String,
    pub template: String,
    pub cpus: Option<u32>,
    pub memory: Option<String>,
    pub disk: Option<String>,
    pub network: String,
    pub accel: AccelRequest,
    /// None: return once the domain is started, without waiting for SSH.
    pub ssh_timeout: Option<Duration>,
}

/// What `vm create` made.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub name: String,
    pub ip: Ipv4Addr,
    pub accel: Accel,
    pub accel_reason: String,
    pub stages: Vec<StageTime>,
}

/// Create a VM from a template and wait until SSH answers with the pinned host key.
pub fn create(
    lv: &Libvirt,
    paths: &Paths,
    req: &CreateRequest,
    progress: &Progress,
) -> Result<Created> {
    recover_abandoned(lv, paths)?;
    let plan = plan_create(lv, paths, req)?;
    let mut journal = Journal::begin(paths, &req.name)?;
    match carry_out(lv, paths, req, &plan, &mut journal, progress) {
        Ok(created) => {
            journal.commit();
            Ok(created)
        }
        Err(e) => {
            progress.println(&format!("strata: {}: rolling back", req.name));
            let e = keep_console_log(paths, &req.name, e);
            let problems = journal.rollback(lv, paths);
            if problems.is_empty() {
                Err(e)
            } else {
                Err(e.context(format!(
                    "rollback left something behind ({}); the next strata run retries it",
                    problems.join("; ")
                )))
            }
        }
    }
}

/// The VM's directory goes with the rollback; its console log is what explains a failed boot,
/// so it is kept under logs/ and the error points at it.
fn keep_console_log(paths: &Paths, vm: &str, error: Error) -> Error {
    let console = paths.vm_dir(vm).join("console.log");
    if !console.is_file() {
        return error;
    }
    let logs = paths.state.join("logs");
    let kept = logs.join(format!("{vm}-console.log"));
    if paths.ensure_dir(&logs).is_err() || std::fs::copy(&console, &kept).is_err() {
        return error;
    }
    let hint = match error.hint() {
        Some(h) => format!("{h}; the VM's console output is kept in {}", kept.display()),
        None => format!("the VM's console output is kept in {}", kept.display()),
    };
    error.with_hint(hint)
}

fn carry_out(
    lv: &Libvirt,
    paths: &Paths,
    req: &CreateRequest,
    plan: &CreatePlan,
    journal: &mut Journal,
    progress: &Progress,
) -> Result<Created> {
    let name = req.name.as_str();
    let pool_handle = pool::ensure(&lv.conn, &paths.pool_dir())?;

    progress.stage("clone");
    interrupt::check()?;
    journal.push(Undo::Volume {
        name: plan.volume.clone(),
    })?;
    let template_volume =
        pool::find_volume(&pool_handle, &plan.template_volume).ok_or_else(|| {
            Error::not_found(format!("template volume {} vanished", plan.template_volume))
        })?;
    let disk = pool::clone_volume(&pool_handle, &template_volume, &plan.volume, plan.disk)?;

    progress.stage("reserve address");
    interrupt::check()?;
    let host = paths.with_lock(|| {
        let (net, info) = network::lookup(&lv.conn, &req.network)?;
        let (subnet, gateway) = info.subnet.zip(info.gateway).ok_or_else(|| {
            Error::bad_input(format!("network '{}' has no IPv4 subnet", req.network))
        })?;
        let used_macs: Vec<String> = domain::list(&lv.conn)?
            .into_iter()
            .map(|vm| vm.record.mac)
            .chain(info.hosts.iter().map(|h| h.mac.clone()))
            .collect();
        let space = alloc::AddressSpace {
            subnet,
            gateway,
            dynamic: info.dynamic,
            taken: info
                .hosts
                .iter()
                .map(|h| h.ip)
                .chain(network::leases(&net)?.into_iter().map(|(_, ip)| ip))
                .collect(),
        };
        let host = DhcpHost {
            mac: alloc::choose_mac(&used_macs, alloc::os_random_bytes),
            name: name.to_string(),
            ip: alloc::choose_ip(&space, &req.network)?,
        };
        journal.push(Undo::Reservation {
            network: req.network.clone(),
            host: host.clone(),
        })?;
        network::reserve(&net, &host)?;
        Ok(host)
    })?;

    progress.stage("keys");
    interrupt::check()?;
    let vm_dir = paths.vm_dir(name);
    journal.push(Undo::VmDir {
        path: vm_dir.clone(),
    })?;
    remove_dir_if_present(&vm_dir)?;
    let login = keys::generate(&format!("strata@{name}"))?;
    let host_key = keys::generate(&format!("root@{name}"))?;
    write_private(&paths.vm_key(name), login.private_openssh.as_bytes())?;
    write_private(
        &paths.vm_dir(name).join("id_ed25519.pub"),
        login.public_openssh.as_bytes(),
    )?;
    write_private(
        &paths.vm_known_hosts(name),
        ssh::known_hosts_line(&host.ip.to_string(), &host_key.public_openssh).as_bytes(),
    )?;

    let uuid = uuid_v4();
    if let Some(seed) = &plan.seed {
        progress.stage("cloud-init seed");
        interrupt::check()?;
        journal.push(Undo::File { path: seed.clone() })?;
        write_seed(seed, name, &uuid, &login.public_openssh, &host_key)?;
    }

    progress.stage("define");
    interrupt::check()?;
    let disk_path = disk.path()?;
    let domain_xml = |with_private_host_key| {
        render_domain(
            paths,
            req,
            plan,
            &host,
            &uuid,
            &disk_path,
            &login.public_openssh,
            &host_key,
            with_private_host_key,
        )
    };
    let xml = domain_xml(true)?;
    journal.push(Undo::Domain {
        name: name.to_string(),
        uuid: uuid.clone(),
    })?;
    let dom = domain::define(&lv.conn, &xml)?;

    progress.stage("start");
    interrupt::check()?;
    domain::start(&dom)?;

    if let (Some(timeout), false) = (req.ssh_timeout, lv.is_test_driver()) {
        progress.stage("boot-to-ssh");
        let target = ssh::Target {
            addr: SocketAddr::from((host.ip, 22)),
            user: plan.template.manifest.vm.user.clone(),
            key: paths.vm_key(name),
            pinned_host_key: host_key.public_openssh.clone(),
        };
        wait_until_ready(&dom, &target, timeout, progress)?;
        // First boot has installed the host key; the next boots need no secret in the domain
        // definition (which `virsh dumpxml` shows to anyone with libvirt access).
        domain::define(&lv.conn, &domain_xml(false)?)?;
    }
    let stages = progress.stage_times();
    Ok(Created {
        name: name.to_string(),
        ip: host.ip,
        accel: plan.accel,
        accel_reason: plan.accel_reason.clone(),
        stages,
    })
}

/// Wait for SSH while the domain runs. A stop ends the wait at once, with libvirt's reason.
/// QEMU itself dying during boot (a segfault in a TCG thread, seen once in ~80 boots with
/// QEMU 7.2) gets one restart, reported; the disk is still the fresh clone.
pub fn wait_until_ready(
    dom: &virt::domain::Domain,
    target: &ssh::Target,
    timeout: Duration,
    progress: &Progress,
) -> Result<ssh2::Session> {
    let still_booting = || -> Result<()> {
        interrupt::check()?;
        match domain::stopped_reason(dom)? {
            None => Ok(()),
            Some((why, _)) => Err(Error::failed(format!("the VM stopped while booting: {why}"))
                .with_hint("a crash of qemu itself shows in `dmesg`; the guest's own messages are in its console log")),
        }
    };
    let mut restarted = false;
    loop {
        match readiness::wait_for_ssh(target, timeout, &still_booting) {
            Ok(session) => return Ok(session),
            Err(e) if !restarted && matches!(domain::stopped_reason(dom), Ok(Some((_, true)))) => {
                progress.println(&format!(
                    "strata: qemu died while the VM was booting ({}); starting it once more",
                    e.message()
                ));
                restarted = true;
                domain::start(dom)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Remove a VM: its domain, its volume, its DHCP reservation and its keys; never the template.
pub fn destroy(lv: &Libvirt, paths: &Paths, name: &str) -> Result<()> {
    let (_, info) = domain::lookup(&lv.conn, name)?;
    domain::undefine(&lv.conn, name)?;
    let pool_handle = pool::ensure(&lv.conn, &paths.pool_dir())?;
    pool::delete_vm_volume(&pool_handle, &info.record.volume)?;
    data_disk::delete(&pool_handle, name)?;
    let host = DhcpHost {
        mac: info.record.mac.clone(),
        name: name.to_string(),
        ip: info
            .record
            .ip
            .parse()
            .map_err(|_| Error::failed(format!("bad IP in metadata of '{name}'")))?,
    };
    network::release(&lv.conn, &info.record.network, &host)?;
    remove_pool_file(lv, paths, &paths.pool_dir().join(seed_file_name(name)))?;
    remove_dir_if_present(&paths.vm_dir(name))
}

/// How to log into an existing VM.
pub fn ssh_target(lv: &Libvirt, paths: &Paths, name: &str) -> Result<ssh::Target> {
    let (_, info) = domain::lookup(&lv.conn, name)?;
    if info.state != "running" {
        return Err(Error::bad_input(format!("VM '{name}' is {}", info.state))
            .with_hint(format!("start it with `strata vm start {name}`")));
    }
    let ip: Ipv4Addr = info
        .record
        .ip
        .parse()
        .map_err(|_| Error::failed(format!("bad IP in metadata of '{name}'")))?;
    Ok(ssh::Target {
        addr: SocketAddr::from((ip, 22)),
        user: info.record.user.clone(),
        key: PathBuf::from(&info.record.key),
        pinned_host_key: ssh::pinned_key_from_known_hosts(&paths.vm_known_hosts(name))?,
    })
}
