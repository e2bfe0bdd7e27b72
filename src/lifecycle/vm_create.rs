//! `vm create`, top-down as the path the paper describes: clone -> reserve address -> keys ->
//! (cloud-init seed) -> define -> start (handing the guest its host key) -> wait for SSH. Every step journals its undo on disk
//! *before* acting, so a failure, Ctrl-C, or even a killed process leaves nothing behind: the
//! next strata run rolls abandoned journals back.

use super::create_plan::{plan_create, CreatePlan};
use super::first_boot::{self, GuestKeys, Handover};
use super::journal::{self, Journal, Undo};
use super::vm_create_explain::Explainer;
use crate::error::{Error, ErrorKind, Result};
use crate::guest::{readiness, route, Route};
use crate::host::accel::{Accel, AccelRequest};
use crate::interrupt;
use crate::progress::{Progress, StageTime};
use crate::state::{explain_full, remove_dir_if_present, Paths};
use crate::vm::alloc::{self, KeptAddress};
use crate::vm::network::{self, DhcpHost};
use crate::vm::record::{VmRecord, VmVolume, VolumeRole};
use crate::vm::{domain, pool, Libvirt};
use serde::Serialize;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
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
    /// The plan making this VM, recorded as its owner; None for `vm create`.
    pub plan: Option<String>,
    /// The MAC and IP of the VM this one replaces (a plan's rebuild), given again while
    /// nothing else holds them; otherwise a new address is chosen.
    pub keep_address: Option<KeptAddress>,
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
    crate::names::check_vm_name(&req.name)?;
    // What an interrupted run left of this name is finished first (the CLI finishes every
    // other name's leftovers when it connects; one stuck elsewhere does not stop this create).
    // A run of this name that is still alive is for Journal::begin to name.
    match journal::finish(lv, paths, &req.name) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    // The name's journal first: a second create of the same name stops here, told who holds it,
    // before it looks at (or gives advice about) what the first one is making.
    let mut journal = Journal::begin(lv, paths, &req.name)?;
    let plan = match plan_create(lv, paths, req) {
        Ok(plan) => plan,
        Err(e) => {
            journal.commit();
            return Err(e);
        }
    };
    match build_vm(lv, paths, req, &plan, &mut journal, progress) {
        Ok(created) => {
            journal.commit();
            Ok(created)
        }
        Err(e) => {
            progress.println(&format!("strata: {}: rolling back", req.name));
            let e = keep_console_log(lv, paths, &plan, &req.name, e);
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

/// The steps of a create, each journaled before it acts.
fn build_vm(
    lv: &Libvirt,
    paths: &Paths,
    req: &CreateRequest,
    plan: &CreatePlan,
    journal: &mut Journal,
    progress: &Progress,
) -> Result<Created> {
    let name = req.name.as_str();
    let explainer = Explainer {
        lv,
        paths,
        req,
        plan,
    };
    progress.stage("clone");
    explainer.clone_disk()?;
    let disk_path = clone_disk(lv, paths, plan, journal)?;
    progress.stage("reserve address");
    let address = reserve_address(lv, paths, req, journal)?;
    explainer.reserve_address(&address)?;
    progress.stage("keys");
    explainer.keys(address.ip)?;
    let keys = make_keys(paths, name, address.ip, journal)?;
    let uuid = first_boot::uuid_v4();
    if let Some(seed) = &plan.seed {
        progress.stage("cloud-init seed");
        interrupt::check()?;
        journal.push(first_boot::seed_undo(lv, seed))?;
        first_boot::write_seed(lv, paths, seed, name, &uuid, &keys)
            .map_err(|e| explain_pool_full(lv, paths, e))?;
    }
    let record = record_of(paths, req, plan, &address);
    let template = plan.template.domain_xml_template();
    let define = |host_key: Option<&Path>| -> Result<virt::domain::Domain> {
        let spec = first_boot::domain_spec(req, plan, &record, &uuid, &disk_path, &keys, host_key)?;
        domain::define(&lv.conn(), &spec.render(&template)?)
    };

    progress.stage("define");
    interrupt::check()?;
    explainer.define(&record, &uuid, &disk_path, &keys)?;
    let handover = Handover::new(lv, paths, name)?;
    journal.push(handover.undo())?;
    journal.push(Undo::Domain {
        name: name.to_string(),
        uuid: uuid.clone(),
    })?;
    // Defined without the key first: what a failed start leaves defined holds no trace of it.
    lv.resilient(|| define(None))?;

    progress.stage("start");
    interrupt::check()?;
    explainer.start()?;
    // The start that hands the host key to the guest: QEMU reads the file when it starts, and
    // on every path after that the file goes and the definition forgets it.
    let start_with_host_key = || -> Result<()> {
        lv.resilient(|| {
            let placed = handover.place(lv, paths, &keys)?;
            let started = define(Some(&placed)).and_then(|dom| domain::start(&dom));
            let removed = handover.remove(lv, paths);
            let forgotten = define(None).map(|_| ());
            started.and(removed).and(forgotten)
        })
    };
    start_with_host_key()?;

    if let (Some(timeout), false) = (req.ssh_timeout, lv.is_test_driver()) {
        progress.stage("boot-to-ssh");
        explainer.wait_for_ssh(address.ip, timeout)?;
        let route = Route {
            addr: SocketAddr::from((address.ip, 22)),
            user: record.user.clone(),
            key: record.key.clone(),
            pinned_host_key: keys.host.public_openssh.clone(),
            via: route::hypervisor_login(lv)?,
        };
        wait_until_ready(lv, name, &route, timeout, progress, &start_with_host_key)?;
    }
    Ok(Created {
        name: name.to_string(),
        ip: address.ip,
        accel: plan.accel,
        accel_reason: plan.accel_reason.clone(),
        stages: progress.stage_times(),
    })
}

/// strata's record of the VM, as its domain's <metadata> carries it.
pub(super) fn record_of(
    paths: &Paths,
    req: &CreateRequest,
    plan: &CreatePlan,
    address: &DhcpHost,
) -> VmRecord {
    VmRecord {
        template: plan.template.name().to_string(),
        created: crate::units::now_rfc3339(),
        accel: plan.accel,
        network: req.network.clone(),
        mac: address.mac.clone(),
        ip: address.ip,
        user: plan.template.manifest.vm.user.clone(),
        key: paths.vm_key(&req.name),
        volumes: plan.volumes(),
        plan: req.plan.clone(),
        applied: None,
    }
}

/// A thin clone of the template volume; returns its path.
fn clone_disk(
    lv: &Libvirt,
    paths: &Paths,
    plan: &CreatePlan,
    journal: &mut Journal,
) -> Result<String> {
    interrupt::check()?;
    journal.push(Undo::Volume {
        name: plan.volume.clone(),
    })?;
    // Again after a lost libvirtd: the clone may have been made before it went. This run
    // holds the name's journal and the plan refused a volume by that name, so it is ours.
    lv.resilient(|| {
        let pool_handle = pool::ensure_home(lv, paths)?;
        if let Some(made) = pool::find_volume(&pool_handle, &plan.volume) {
            return Ok(made.path()?);
        }
        let template_volume =
            pool::find_volume(&pool_handle, &plan.template_volume).ok_or_else(|| {
                Error::not_found(format!("template volume {} vanished", plan.template_volume))
            })?;
        let disk = pool::clone_volume(&pool_handle, &template_volume, &plan.volume, plan.disk)?;
        Ok(disk.path()?)
    })
    .map_err(|e| explain_pool_full(lv, paths, e))
}

/// An error of a step that writes into the pool, explained when this machine's pool folder is
/// full (a remote host's space is that host's to tell).
fn explain_pool_full(lv: &Libvirt, paths: &Paths, e: Error) -> Error {
    if lv.is_remote() {
        return e;
    }
    explain_full(
        e,
        &format!("pool '{}'", paths.pool_name()),
        &paths.pool_dir(),
    )
}

/// Choose a MAC and an IP and reserve them in the network's DHCP hosts, under strata's lock so
/// that parallel creates never pick the same address.
fn reserve_address(
    lv: &Libvirt,
    paths: &Paths,
    req: &CreateRequest,
    journal: &mut Journal,
) -> Result<DhcpHost> {
    interrupt::check()?;
    paths.with_lock(|| {
        lv.resilient(|| {
            let (net, info) = network::lookup(&lv.conn(), &req.network)?;
            // Again after a lost libvirtd: the address this run journaled is its own, made or
            // still to make. Anyone else's reservation, even under this VM's name, is never
            // taken over.
            if let Some(mine) = journal.reserved(&req.network).cloned() {
                if !info
                    .hosts
                    .iter()
                    .any(|h| h.mac.eq_ignore_ascii_case(&mine.mac))
                {
                    network::reserve(&net, &mine)?;
                }
                return Ok(mine);
            }
            let host = alloc::choose_address(
                &lv.conn(),
                &req.network,
                &req.name,
                req.keep_address.as_ref(),
            )?;
            journal.push(Undo::Reservation {
                network: req.network.clone(),
                host: host.clone(),
            })?;
            network::reserve(&net, &host)?;
            Ok(host)
        })
    })
}

/// The VM's login key and the host key its first boot installs (pinned before first contact).
fn make_keys(paths: &Paths, name: &str, ip: Ipv4Addr, journal: &mut Journal) -> Result<GuestKeys> {
    interrupt::check()?;
    let vm_dir = paths.vm_dir(name);
    journal.push(Undo::VmDir {
        path: vm_dir.clone(),
    })?;
    remove_dir_if_present(&vm_dir)?;
    GuestKeys::generate_and_store(paths, name, ip)
}

/// Wait for SSH while the domain runs. A stop ends the wait at once, with libvirt's reason;
/// a libvirtd that is away (restarting) is no reason to stop waiting: the boot needs no
/// libvirtd. QEMU itself dying during boot (a segfault in a TCG thread, seen once in ~80
/// boots with QEMU 7.2) gets one restart through `restart`, reported; the disk is still the
/// fresh clone.
pub fn wait_until_ready(
    lv: &Libvirt,
    vm: &str,
    route: &Route,
    timeout: Duration,
    progress: &Progress,
    restart: &dyn Fn() -> Result<()>,
) -> Result<ssh2::Session> {
    // Looked up by name each time: a handle dies with the connection it came from.
    let stopped = || -> Result<Option<(String, bool)>> {
        let dom = lv.conn().lookup_domain_by_name(vm)?;
        domain::stopped_reason(&dom)
    };
    let still_booting = || -> Result<()> {
        interrupt::check()?;
        match stopped() {
            Ok(None) => Ok(()),
            Err(e) if e.kind() == ErrorKind::Unreachable => Ok(()),
            Err(e) => Err(e),
            Ok(Some((why, _))) => Err(Error::failed(format!("the VM stopped while booting: {why}"))
                .with_hint("a crash of qemu itself shows in `dmesg`; the guest's own messages are in its console log")),
        }
    };
    let mut restarted = false;
    loop {
        match readiness::wait_for_ssh(route, timeout, &still_booting) {
            Ok(session) => return Ok(session),
            Err(e) if !restarted && matches!(stopped(), Ok(Some((_, true)))) => {
                progress.println(&format!(
                    "strata: qemu died while the VM was booting ({}); starting it once more",
                    e.message()
                ));
                restarted = true;
                restart()?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The VM's directory goes with the rollback; its console log is what explains a failed boot,
/// so it is kept under logs/ and the error points at it.
fn keep_console_log(
    lv: &Libvirt,
    paths: &Paths,
    plan: &CreatePlan,
    vm: &str,
    error: Error,
) -> Error {
    if lv.is_remote() {
        // On that host, where virtlogd wrote it (and where it stays after the rollback).
        return error.and_hint(format!(
            "the VM's console output is on the host in {}",
            plan.console_log.display()
        ));
    }
    let console = &plan.console_log;
    if !console.is_file() {
        return error;
    }
    let logs = paths.state.join("logs");
    let kept = logs.join(format!("{vm}-console.log"));
    if paths.ensure_dir(&logs).is_err() || std::fs::copy(console, &kept).is_err() {
        return error;
    }
    error.and_hint(format!(
        "the VM's console output is kept in {}",
        kept.display()
    ))
}

impl CreatePlan {
    /// The volumes this create makes, as the VM's record lists them.
    fn volumes(&self) -> Vec<VmVolume> {
        let mut volumes = vec![VmVolume {
            role: VolumeRole::Root,
            name: self.volume.clone(),
        }];
        if let Some(seed) = &self.seed {
            let name = seed
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            volumes.push(VmVolume {
                role: VolumeRole::Seed,
                name,
            });
        }
        volumes
    }
}
