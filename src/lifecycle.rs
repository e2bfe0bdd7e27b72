//! Whole-VM pipelines built from the vm and guest layers. `create` reads top-down as the path
//! the paper describes: clone -> reserve address -> keys -> define -> start -> wait for SSH.
//! Every step journals its undo on disk *before* acting, so a failure, Ctrl-C, or even a
//! killed process leaves nothing behind: the next strata run rolls abandoned journals back.

use crate::error::{Error, ErrorKind, Result};
use crate::guest::{keys, readiness, ssh};
use crate::host::accel::{self, Accel, AccelRequest, KvmFacts};
use crate::host::qemu_user::QemuIdentity;
use crate::image::read_record;
use crate::interrupt;
use crate::progress::Progress;
use crate::state::{remove_dir_if_present, write_private, Paths};
use crate::template::{self, InjectMethod};
use crate::units::parse_size;
use crate::vm::network::DhcpHost;
use crate::vm::{alloc, domain, network, pool, Libvirt, VM_METADATA_NS};
use serde::{Deserialize, Serialize};
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

/// How long one stage of a create took.
#[derive(Debug, Clone, Serialize)]
pub struct StageTime {
    pub stage: String,
    pub seconds: f64,
}

/// One undo step, journaled before the step it undoes is carried out.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Undo {
    Volume { name: String },
    File { path: PathBuf },
    Reservation { network: String, host: DhcpHost },
    VmDir { path: PathBuf },
    Domain { name: String, uuid: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    vm: String,
    pid: u32,
    steps: Vec<Undo>,
    #[serde(skip)]
    path: PathBuf,
}

fn journal_dir(paths: &Paths) -> PathBuf {
    paths.state.join("journal")
}

impl Journal {
    fn begin(paths: &Paths, vm: &str) -> Result<Journal> {
        let dir = journal_dir(paths);
        paths.ensure_dir(&dir)?;
        let journal = Journal {
            vm: vm.to_string(),
            pid: std::process::id(),
            steps: Vec::new(),
            path: dir.join(format!("{vm}.json")),
        };
        journal.save()?;
        Ok(journal)
    }

    fn save(&self) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    /// Record the undo of a step about to be taken.
    fn push(&mut self, undo: Undo) -> Result<()> {
        self.steps.push(undo);
        self.save()
    }

    fn commit(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Undo every step, newest first; every undo is a no-op when its object is gone.
    fn rollback(self, lv: &Libvirt, paths: &Paths) -> Vec<String> {
        let mut problems = Vec::new();
        for step in self.steps.iter().rev() {
            if let Err(e) = undo(lv, paths, step) {
                problems.push(format!("{step:?}: {e}"));
            }
        }
        if problems.is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
        problems
    }
}

fn undo(lv: &Libvirt, paths: &Paths, step: &Undo) -> Result<()> {
    match step {
        Undo::Domain { name, uuid } => {
            if let Ok(dom) = lv.conn.lookup_domain_by_name(name) {
                // Only the domain this create defined, never a namesake.
                if dom.uuid_string()? == *uuid {
                    domain::undefine(&lv.conn, name)?;
                }
            }
            Ok(())
        }
        Undo::VmDir { path } => remove_dir_if_present(path),
        Undo::File { path } => remove_pool_file(lv, paths, path),
        Undo::Reservation { network: net, host } => network::release(&lv.conn, net, host),
        Undo::Volume { name } => {
            let pool_handle = pool::ensure(&lv.conn, &paths.pool_dir())?;
            pool::delete_vm_volume(&pool_handle, name)
        }
    }
}

/// Roll back creates whose process died (killed, power loss). Returns the VMs cleaned.
pub fn recover_abandoned(lv: &Libvirt, paths: &Paths) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(journal_dir(paths)) else {
        return Ok(Vec::new());
    };
    let mut cleaned = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(mut journal) = serde_json::from_str::<Journal>(&text) else {
            continue;
        };
        let alive =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(journal.pid as i32), None).is_ok();
        if alive && journal.pid != std::process::id() {
            continue;
        }
        journal.path = path;
        let vm = journal.vm.clone();
        let problems = journal.rollback(lv, paths);
        if !problems.is_empty() {
            return Err(Error::failed(format!(
                "cleaning up the abandoned create of '{vm}' failed: {}",
                problems.join("; ")
            )));
        }
        cleaned.push(vm);
    }
    Ok(cleaned)
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

/// Everything decided and checked before anything is changed.
struct CreatePlan {
    template: template::Template,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    template_volume: String,
    cpus: u32,
    memory: u64,
    disk: u64,
    accel: Accel,
    accel_reason: String,
    volume: String,
    /// cloud-init templates: the NoCloud seed disk in the pool directory.
    seed: Option<PathBuf>,
}

fn plan_create(lv: &Libvirt, paths: &Paths, req: &CreateRequest) -> Result<CreatePlan> {
    network::validate_name("VM", &req.name)?;
    let template = template::find(
        &template::search_path(&paths.state.join("imported")),
        &req.template,
    )?;
    let defaults = &template.manifest.vm;
    let cpus = req.cpus.unwrap_or(defaults.cpus);
    let memory = parse_size(
        "--memory",
        req.memory.as_deref().unwrap_or(&defaults.memory),
    )?;
    let disk = parse_size("--disk", req.disk.as_deref().unwrap_or(&defaults.disk))?;
    let node = lv.conn.node_info()?;
    if cpus == 0 || cpus > node.cpus {
        return Err(
            Error::bad_input(format!("--cpus {cpus}: this host has {} CPUs", node.cpus))
                .with_hint(format!("give 1 to {}", node.cpus)),
        );
    }
    let host_memory = node.memory * 1024;
    if memory < 128 << 20 || memory > host_memory {
        return Err(Error::bad_input(format!(
            "--memory {}: must be between 128 MiB and this host's {}",
            crate::units::format_size(memory),
            crate::units::format_size(host_memory)
        ))
        .with_hint("e.g. --memory 1G"));
    }
    if domain::exists(&lv.conn, &req.name) {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("a VM named '{}' already exists", req.name),
        )
        .with_hint("pick another name, or remove it with `strata vm destroy NAME`"));
    }
    let record = read_record(&paths.template_dir(template.name()))?.ok_or_else(|| {
        Error::not_found(format!("template '{}' is not built yet", template.name()))
            .with_hint(format!("run `strata template build {}`", template.name()))
    })?;
    let pool_handle = pool::ensure(&lv.conn, &paths.pool_dir())?;
    if pool::find_volume(&pool_handle, &record.volume).is_none() {
        return Err(Error::not_found(format!(
            "template '{}' has no volume '{}' in pool '{}'",
            template.name(),
            record.volume,
            pool::POOL_NAME
        ))
        .with_hint(format!(
            "rebuild it with `strata template build {}`",
            template.name()
        )));
    }
    let volume = pool::vm_volume_name(&req.name);
    if pool::find_volume(&pool_handle, &volume).is_some() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "volume '{volume}' already exists in pool '{}' but no VM '{}' does",
                pool::POOL_NAME,
                req.name
            ),
        )
        .with_hint(format!(
            "it is left from something else; remove it with `virsh vol-delete {volume} --pool {}`",
            pool::POOL_NAME
        )));
    }
    let (_, net) = network::lookup(&lv.conn, &req.network)?;
    if net.subnet.is_none() {
        return Err(Error::bad_input(format!("network '{}' has no IPv4 subnet with DHCP", req.network))
            .with_hint("strata reserves addresses in a libvirt network's DHCP; use one made by `strata net create`"));
    }
    if !net.active {
        return Err(
            Error::bad_input(format!("network '{}' is not running", req.network))
                .with_hint(format!("start it with `virsh net-start {}`", req.network)),
        );
    }
    let facts = if lv.is_test_driver() {
        None
    } else {
        Some(KvmFacts::read()?)
    };
    let (accel, accel_reason) = match &facts {
        Some(facts) => accel::choose(req.accel, facts)?,
        None => (Accel::Tcg, "test driver".to_string()),
    };
    if !lv.is_test_driver() {
        let qemu = QemuIdentity::discover()?;
        let files = [
            Some(paths.pool_dir().join(&record.volume)),
            record.kernel.clone(),
            record.initrd.clone(),
        ];
        for file in files.into_iter().flatten() {
            if let Some(dir) = qemu.blocked_directory(&file) {
                return Err(Error::bad_input(format!(
                    "qemu's user '{}' cannot reach {}: {} is not traversable (o+x) for it",
                    qemu.user,
                    file.display(),
                    dir.display()
                ))
                .with_hint(format!("chmod o+x {}", dir.display())));
            }
        }
    }
    let seed = (template.manifest.guest.inject == InjectMethod::CloudInit)
        .then(|| paths.pool_dir().join(seed_file_name(&req.name)));
    Ok(CreatePlan {
        seed,
        kernel: record.kernel.clone(),
        initrd: record.initrd.clone(),
        template_volume: record.volume.clone(),
        template,
        cpus,
        memory,
        disk,
        accel,
        accel_reason,
        volume,
    })
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
    let xml = render_domain(
        paths,
        req,
        plan,
        &host,
        &uuid,
        &disk.path()?,
        &login.public_openssh,
        &host_key,
    )?;
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
        readiness::wait_for_ssh(&target, timeout, &interrupt::requested)?;
    }
    let stages = progress
        .finish()
        .into_iter()
        .map(|(stage, d)| StageTime {
            stage,
            seconds: d.as_secs_f64(),
        })
        .collect();
    Ok(Created {
        name: name.to_string(),
        ip: host.ip,
        accel: plan.accel,
        accel_reason: plan.accel_reason.clone(),
        stages,
    })
}

#[allow(clippy::too_many_arguments)]
fn render_domain(
    paths: &Paths,
    req: &CreateRequest,
    plan: &CreatePlan,
    host: &DhcpHost,
    uuid: &str,
    disk_path: &str,
    authorized_key: &str,
    host_key: &keys::KeyPair,
) -> Result<String> {
    use base64::Engine;
    let name = req.name.as_str();
    let oem_strings = vec![
        format!("strata.hostname={name}"),
        format!("strata.authorized_key={}", authorized_key.trim()),
        format!(
            "strata.host_key={}",
            base64::engine::general_purpose::STANDARD.encode(host_key.private_openssh.as_bytes())
        ),
        format!("strata.host_key_pub={}", host_key.public_openssh.trim()),
    ];
    let path_str = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let context = serde_json::json!({
        "name": name,
        "uuid": uuid,
        "template": plan.template.name(),
        "metadata_ns": VM_METADATA_NS,
        "created": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "accel": plan.accel.as_str(),
        "virt_type": plan.accel.domain_type(),
        "network": req.network,
        "mac": host.mac,
        "ip": host.ip.to_string(),
        "user": plan.template.manifest.vm.user,
        "key_path": paths.vm_key(name).display().to_string(),
        "volume": plan.volume,
        "memory_kib": plan.memory / 1024,
        "cpus": plan.cpus,
        "oem_strings": oem_strings,
        "kernel": path_str(&plan.kernel),
        "initrd": path_str(&plan.initrd),
        "cmdline": plan.template.manifest.boot.cmdline,
        "disk_path": disk_path,
        "console_log": paths.vm_dir(name).join("console.log").display().to_string(),
        "seed_path": path_str(&plan.seed),
    });
    template::render_file(&plan.template.domain_xml_template(), &context)
}

/// The seed disk's file name in the pool directory.
fn seed_file_name(vm: &str) -> String {
    format!("vm-{vm}-seed.img")
}

/// cloud-init NoCloud data: hostname, login key, and the host key strata pins.
fn write_seed(
    path: &std::path::Path,
    name: &str,
    uuid: &str,
    authorized_key: &str,
    host_key: &keys::KeyPair,
) -> Result<()> {
    let context = serde_json::json!({
        "name": name,
        "uuid": uuid,
        "authorized_key": authorized_key.trim(),
        "host_key_private": host_key.private_openssh.trim_end(),
        "host_key_public": host_key.public_openssh.trim(),
    });
    let user_data = template::render_str("user-data.j2", USER_DATA, &context)?;
    let meta_data = template::render_str("meta-data.j2", META_DATA, &context)?;
    crate::image::seed::build_seed(path, &user_data, &meta_data)
}

const USER_DATA: &str = include_str!("../libvirt-templates/cloud-init-user-data.j2");
const META_DATA: &str = include_str!("../libvirt-templates/cloud-init-meta-data.j2");

/// Remove a file strata put in the pool directory and let libvirt forget it.
fn remove_pool_file(lv: &Libvirt, paths: &Paths, path: &std::path::Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::from(e).context(format!("removing {}", path.display()))),
    }
    if !lv.is_test_driver() {
        pool::ensure(&lv.conn, &paths.pool_dir())?.refresh(0)?;
    }
    Ok(())
}

/// A random RFC 4122 version-4 UUID, so a define can never silently update a namesake.
fn uuid_v4() -> String {
    use rand_core::RngCore;
    let mut b = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// Remove a VM: its domain, its volume, its DHCP reservation and its keys; never the template.
pub fn destroy(lv: &Libvirt, paths: &Paths, name: &str) -> Result<()> {
    let (_, info) = domain::lookup(&lv.conn, name)?;
    domain::undefine(&lv.conn, name)?;
    let pool_handle = pool::ensure(&lv.conn, &paths.pool_dir())?;
    pool::delete_vm_volume(&pool_handle, &info.record.volume)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_version_4() {
        let u = uuid_v4();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, uuid_v4());
    }
}
