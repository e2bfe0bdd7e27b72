//! Docker Swarm across strata's VMs, top-down. `create` (and `join`, which grows a swarm that
//! exists): the VMs are looked at first — running, Docker answering, all on one libvirt
//! network, engines of one version, none in another swarm — and the host's and the guests'
//! preflight checks run; then the swarm's address pool is chosen away from every range the
//! host and the guests use, its overlay MTU from the VMs' network, and it is made through each
//! guest's Docker API: init on the first manager, joins, each node labelled with its VM, and a
//! wait until every node is ready. A run that fails halfway takes back what it made (joins,
//! and the swarm itself when it made it). A re-run with nothing new changes nothing.
//! `leave` and `destroy` take VMs out, leaving each engine as it was before it joined. Swarms
//! are read back from the guests (strata's name is a label of the swarm), never from a file.

use crate::error::{Error, ErrorKind, Result};
use crate::guest::docker::GuestDocker;
use crate::guest::Route;
use crate::host::runner::Runner;
use crate::state::Paths;
use crate::swarm::{self, addresses, Member, Membership, SwarmNode};
use crate::vm::{domain, network, Libvirt};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// What `swarm create` (or `swarm join`) asks for.
#[derive(Debug, Clone)]
pub struct SwarmRequest {
    pub name: String,
    pub managers: Vec<String>,
    pub workers: Vec<String>,
    /// Go ahead although the preflight checks fail.
    pub force: bool,
}

/// One VM of a swarm, as a create or join left it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    pub vm: String,
    /// manager or worker.
    pub role: &'static str,
    /// initialized, joined or unchanged.
    pub action: &'static str,
}

/// What a create or join did.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmReport {
    pub swarm: String,
    pub pools: Vec<String>,
    pub overlay_mtu: Option<u32>,
    pub nodes: Vec<NodeRow>,
    /// Warnings worth reading (an even number of managers).
    pub notes: Vec<String>,
}

/// A swarm strata made, as its managers describe it.
#[derive(Debug, Clone, Serialize)]
pub struct SwarmView {
    pub name: String,
    pub id: String,
    pub pools: Vec<String>,
    pub overlay_mtu: Option<u32>,
    pub nodes: Vec<SwarmNode>,
}

impl SwarmView {
    /// The VMs of its nodes in `role` (managers when true).
    pub fn vms(&self, managers: bool) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.manager == managers)
            .map(|n| n.vm.clone().unwrap_or_else(|| n.hostname.clone()))
            .collect()
    }

    fn node_of(&self, vm: &str) -> Option<&SwarmNode> {
        self.nodes.iter().find(|n| n.vm.as_deref() == Some(vm))
    }
}

/// A VM taking part: where it is, its Docker, and what its engine says of its swarm.
struct Guest {
    vm: String,
    route: Route,
    ip: Ipv4Addr,
    network: String,
    /// The guest runs under TCG (emulated), not KVM.
    emulated: bool,
    docker: GuestDocker,
    member: Member,
}

/// Look at `vm`: running, its Docker answering through its SSH tunnel.
fn open_guest(lv: &Libvirt, paths: &Paths, vm: &str) -> Result<Guest> {
    let (_, info) = domain::lookup(&lv.conn(), vm)?;
    let route = Route::of_vm(lv, paths, vm)?;
    let no_docker = |e: Error| {
        e.context(format!("VM '{vm}': its Docker does not answer"))
            .and_hint(format!("`strata engine install {vm}` installs Docker"))
    };
    let docker = GuestDocker::connect(&route).map_err(no_docker)?;
    let member = swarm::read_member(&docker).map_err(no_docker)?;
    Ok(Guest {
        vm: vm.to_string(),
        route,
        ip: info.record.ip,
        network: info.record.network,
        emulated: info.record.accel == crate::host::accel::Accel::Tcg,
        docker,
        member,
    })
}

/// Open every VM of `vms` at once (one SSH login each); each VM's result in order.
fn open_all(lv: &Libvirt, paths: &Paths, vms: &[String]) -> Vec<(String, Result<Guest>)> {
    std::thread::scope(|scope| {
        let opened: Vec<_> = vms
            .iter()
            .map(|vm| (vm.clone(), scope.spawn(move || open_guest(lv, paths, vm))))
            .collect();
        opened
            .into_iter()
            .map(|(vm, handle)| {
                let result = handle
                    .join()
                    .unwrap_or_else(|_| Err(Error::failed("reading the VM panicked")));
                (vm, result)
            })
            .collect()
    })
}

/// Every running VM strata made whose Docker answers (the others cannot be in a swarm strata
/// can reach), but those of `opened` (the caller has them already).
fn survey(lv: &Libvirt, paths: &Paths, opened: &[String]) -> Result<Vec<Guest>> {
    let running: Vec<String> = domain::list(&lv.conn())?
        .into_iter()
        .filter(|vm| vm.state == "running" && !opened.contains(&vm.name))
        .map(|vm| vm.name)
        .collect();
    Ok(open_all(lv, paths, &running)
        .into_iter()
        .filter_map(|(_, guest)| guest.ok())
        .collect())
}

/// The swarms strata made among `guests`, each described by its first manager there (its
/// `docker info`, already read, and its node list).
fn swarms_of(guests: &[Guest]) -> Result<Vec<(SwarmView, usize)>> {
    let mut views: Vec<(SwarmView, usize)> = Vec::new();
    for (index, guest) in guests.iter().enumerate() {
        let Membership::Manager {
            cluster,
            name: Some(name),
            pools,
            overlay_mtu,
        } = &guest.member.membership
        else {
            continue;
        };
        if views.iter().any(|(v, _)| &v.id == cluster) {
            continue;
        }
        views.push((
            SwarmView {
                name: name.clone(),
                id: cluster.clone(),
                pools: pools.clone(),
                overlay_mtu: *overlay_mtu,
                nodes: swarm::list_nodes(&guest.docker)?,
            },
            index,
        ));
    }
    views.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    Ok(views)
}

/// The swarms strata made on the VMs of `lv`'s host.
pub fn list(lv: &Libvirt, paths: &Paths) -> Result<Vec<SwarmView>> {
    let guests = survey(lv, paths, &[])?;
    Ok(swarms_of(&guests)?.into_iter().map(|(v, _)| v).collect())
}

/// A swarm strata made, found by name among the running VMs, with its ready nodes open.
pub struct OpenSwarm {
    pub view: SwarmView,
    /// Each ready node's VM, node id and Docker (the nodes labelled with a VM).
    pub nodes: Vec<(String, String, GuestDocker)>,
    /// Which of `nodes` is the manager to ask.
    pub manager: usize,
}

/// Find swarm `name` and open its ready nodes (one SSH login per running VM, as `list`).
pub fn open_by_name(lv: &Libvirt, paths: &Paths, name: &str) -> Result<OpenSwarm> {
    let guests = survey(lv, paths, &[])?;
    let (view, manager_index) = swarms_of(&guests)?
        .into_iter()
        .find(|(v, _)| v.name == name)
        .ok_or_else(|| not_found(name))?;
    let manager_vm = guests[manager_index].vm.clone();
    let ready: Vec<(String, String)> = view
        .nodes
        .iter()
        .filter(|n| n.state == "ready")
        .filter_map(|n| Some((n.vm.clone()?, n.id.clone())))
        .collect();
    let nodes: Vec<(String, String, GuestDocker)> = guests
        .into_iter()
        .filter_map(|g| {
            let (_, id) = ready.iter().find(|(vm, _)| *vm == g.vm)?;
            Some((g.vm, id.clone(), g.docker))
        })
        .collect();
    let manager = nodes
        .iter()
        .position(|(vm, _, _)| *vm == manager_vm)
        .ok_or_else(|| not_found(name))?;
    Ok(OpenSwarm {
        view,
        nodes,
        manager,
    })
}

fn not_found(name: &str) -> Error {
    Error::not_found(format!("no swarm named '{name}' among the running VMs"))
        .with_hint("`strata swarm list` shows the swarms; a swarm whose managers are all stopped cannot be reached")
}

/// Make swarm `req.name` of `req`'s VMs, or add the VMs it lacks.
pub fn create(lv: &Libvirt, paths: &Paths, req: &SwarmRequest) -> Result<SwarmReport> {
    converge(lv, paths, req, false)
}

/// Add `req.workers` to the existing swarm `req.name`.
pub fn join(lv: &Libvirt, paths: &Paths, req: &SwarmRequest) -> Result<SwarmReport> {
    converge(lv, paths, req, true)
}

fn converge(
    lv: &Libvirt,
    paths: &Paths,
    req: &SwarmRequest,
    must_exist: bool,
) -> Result<SwarmReport> {
    crate::names::check_object_name("swarm", &req.name)?;
    let wanted: Vec<(String, bool)> = req
        .managers
        .iter()
        .map(|vm| (vm.clone(), true))
        .chain(req.workers.iter().map(|vm| (vm.clone(), false)))
        .collect();
    if wanted.is_empty() {
        return Err(Error::bad_input("no VM given")
            .with_hint("name them with --manager VM and --worker VM"));
    }
    for (i, (vm, _)) in wanted.iter().enumerate() {
        crate::names::check_object_name("VM", vm)?;
        if wanted[..i].iter().any(|(seen, _)| seen == vm) {
            return Err(Error::bad_input(format!("VM '{vm}' is named twice"))
                .with_hint("a VM is either a manager or a worker, once"));
        }
    }
    let names: Vec<String> = wanted.iter().map(|(vm, _)| vm.clone()).collect();
    let mut guests = Vec::new();
    for (vm, opened) in open_all(lv, paths, &names) {
        guests.push(opened.map_err(|e| e.context(format!("swarm '{}': VM '{vm}'", req.name)))?);
    }
    refuse_mixed(&guests)?;

    // The swarm of that name: among the given VMs, or else among all the running ones.
    let mut others = Vec::new();
    let mut existing = swarms_of(&guests)?
        .into_iter()
        .find(|(v, _)| v.name == req.name)
        .map(|(view, index)| (view, Home::Given(index)));
    if existing.is_none() {
        others = survey(lv, paths, &names)?;
        existing = swarms_of(&others)?
            .into_iter()
            .find(|(v, _)| v.name == req.name)
            .map(|(view, index)| (view, Home::Other(index)));
    }
    if must_exist && existing.is_none() {
        return Err(not_found(&req.name));
    }
    if let Some((view, Home::Other(_))) = &existing {
        if !must_exist {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "a swarm named '{}' exists already (managers: {})",
                    req.name,
                    view.vms(true).join(", ")
                ),
            )
            .with_hint(format!(
                "add VMs to it with `strata swarm join {} --worker VM`, or pick another name",
                req.name
            )));
        }
    }
    // A VM joining a swarm of other VMs must reach them like the given ones reach each other.
    if let Some((_, Home::Other(i))) = &existing {
        refuse_mismatch(&others[*i].peer(), &guests[0].peer())?;
    }
    let in_swarm = |guest: &Guest| -> bool {
        existing
            .as_ref()
            .is_some_and(|(view, _)| view.nodes.iter().any(|n| n.id == guest.member.node_id))
    };
    for guest in &guests {
        refuse_other_swarm(guest, in_swarm(guest), &req.name)?;
    }
    // Checks are for a change: a re-run with every VM in the swarm already changes nothing.
    if !req.force && !guests.iter().all(in_swarm) {
        // The VMs probe each other on the swarm's ports, and one of the swarm's own managers
        // when they join a swarm of other VMs.
        let mut probed = names.clone();
        if let Some((_, Home::Other(i))) = &existing {
            probed.push(others[*i].vm.clone());
        }
        preflight(lv, paths, &req.name, &names, &probed, &guests[0].network)?;
    }

    let mut notes = Vec::new();
    let manager_count = existing
        .as_ref()
        .map(|(v, _)| v.vms(true).len())
        .unwrap_or(0)
        + wanted
            .iter()
            .zip(&guests)
            .filter(|((_, manager), g)| *manager && !in_swarm(g))
            .count();
    if manager_count % 2 == 0 {
        notes.push(format!(
            "{manager_count} managers: a swarm keeps working while a majority of its managers does, so {manager_count} tolerate no more failures than {}; an odd number is better",
            manager_count - 1
        ));
    }

    let mut made = Made::default();
    let result = (|| {
        let (home, pools, overlay_mtu) = match &existing {
            Some((view, home)) => (
                match home {
                    Home::Given(i) => &guests[*i],
                    Home::Other(i) => &others[*i],
                },
                view.pools.clone(),
                view.overlay_mtu,
            ),
            None => {
                let first = &guests[0];
                let (pool, mtu) = swarm_ranges(lv, &guests)?;
                live_restore_off(first, 0, &mut made)?;
                let emulated = guests.iter().any(|g| g.emulated);
                let heartbeat = addresses::heartbeat(emulated);
                swarm::init(
                    &first.docker,
                    &swarm::InitRequest {
                        name: &req.name,
                        addr: first.ip,
                        pool,
                        subnet_size: addresses::SUBNET_SIZE,
                        overlay_mtu: mtu,
                        heartbeat,
                    },
                )?;
                if emulated {
                    notes.push(format!(
                        "the VMs run under TCG: the nodes report every {}s (Docker's default 5s), so a node that went away is noticed after about {}s",
                        heartbeat.as_secs(),
                        3 * heartbeat.as_secs()
                    ));
                }
                made.initialized = Some(0);
                (first, vec![pool.to_string()], Some(mtu))
            }
        };
        let tokens = swarm::join_tokens(&home.docker)?;
        let mut rows = Vec::new();
        for (index, ((vm, manager), guest)) in wanted.iter().zip(&guests).enumerate() {
            let mut role = if *manager { "manager" } else { "worker" };
            let action = if made.initialized == Some(index) {
                "initialized"
            } else if in_swarm(guest) {
                // strata neither promotes nor demotes: the row says what the node is.
                let is_manager = matches!(guest.member.membership, Membership::Manager { .. });
                if is_manager != *manager {
                    role = if is_manager { "manager" } else { "worker" };
                    notes.push(format!(
                        "VM '{vm}' is a {role} of the swarm already; strata does not change a node's role (`strata swarm leave`, then join it again)"
                    ));
                }
                "unchanged"
            } else {
                let token = if *manager {
                    &tokens.manager
                } else {
                    &tokens.worker
                };
                live_restore_off(guest, index, &mut made)?;
                swarm::join(&guest.docker, guest.ip, home.ip, token)
                    .map_err(|e| e.context(format!("VM '{vm}'")))?;
                made.joined.push(index);
                "joined"
            };
            rows.push(NodeRow {
                vm: vm.clone(),
                role,
                action,
            });
        }
        // Each node named after its VM, then every one of them ready.
        for (index, (vm, guest)) in names.iter().zip(&guests).enumerate() {
            let node = swarm::read_member(&guest.docker)?.node_id;
            let restore = made.live_restore_off.contains(&index);
            swarm::label_node(&home.docker, &node, vm, restore)?;
        }
        wait_ready(&home.docker, &names)?;
        Ok(SwarmReport {
            swarm: req.name.clone(),
            pools,
            overlay_mtu,
            nodes: rows,
            notes,
        })
    })();
    if result.is_err() {
        made.undo(&guests);
    }
    result
}

/// Where the manager a create or join works through is.
enum Home {
    /// One of the VMs given (its index).
    Given(usize),
    /// Another running VM (its index among the others).
    Other(usize),
}

/// What one create or join made, taken back when it fails.
#[derive(Default)]
struct Made {
    /// The guest (index) that became the swarm's first manager.
    initialized: Option<usize>,
    /// The guests (indexes) that joined.
    joined: Vec<usize>,
    /// The guests (indexes) whose live-restore this run turned off.
    live_restore_off: Vec<usize>,
}

impl Made {
    fn undo(self, guests: &[Guest]) {
        for index in self.joined.iter().rev().chain(self.initialized.iter()) {
            let guest = &guests[*index];
            let _ = swarm::leave(&guest.docker, true);
            let _ = settle_after_leave(guest, self.live_restore_off.contains(index));
        }
        // One whose live-restore went off before its join failed.
        for index in &self.live_restore_off {
            if !self.joined.contains(index) && self.initialized != Some(*index) {
                let guest = &guests[*index];
                let _ = crate::engine::live_restore::set(&guest.route, &guest.vm, true);
            }
        }
    }
}

/// Docker refuses swarm mode with live-restore on (strata's default): turn it off in `guest`
/// (a reload, no restart), remembered so that it goes back on when the node leaves.
fn live_restore_off(guest: &Guest, index: usize, made: &mut Made) -> Result<()> {
    if !guest.member.live_restore {
        return Ok(());
    }
    crate::engine::live_restore::set(&guest.route, &guest.vm, false).map_err(|e| {
        e.context(format!(
            "VM '{}': turning live-restore off for swarm mode",
            guest.vm
        ))
    })?;
    made.live_restore_off.push(index);
    Ok(())
}

/// After `guest` left its swarm: live-restore back on when strata turned it off for it, and
/// the engine as it was before it joined. Docker 20.10 sometimes keeps a stale copy of the
/// ingress network after a leave (its endpoint holding docker_gwbridge) until dockerd
/// restarts: then dockerd is restarted, when that stops no container (live-restore on, or
/// none running), else the leftover is said. Then the gateway bridge the join made goes.
fn settle_after_leave(guest: &Guest, restore_live_restore: bool) -> Result<Option<String>> {
    let vm = &guest.vm;
    if restore_live_restore {
        crate::engine::live_restore::set(&guest.route, vm, true)
            .map_err(|e| e.context(format!("VM '{vm}': turning live-restore back on")))?;
    }
    let started = Instant::now();
    while swarm::stale_ingress(&guest.docker)? {
        if started.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let live_restore = swarm::read_member(&guest.docker)?.live_restore;
        if !live_restore && swarm::running_containers(&guest.docker)? > 0 {
            return Ok(Some(format!(
                "VM '{vm}': Docker keeps a stale ingress network after leaving; restarting dockerd clears it (live-restore is off there and containers run, so strata did not)"
            )));
        }
        restart_dockerd(guest)?;
        break;
    }
    swarm::remove_gateway_bridge(&guest.docker)?;
    Ok(None)
}

/// Restart the guest's dockerd and wait until it answers again.
fn restart_dockerd(guest: &Guest) -> Result<()> {
    let session = crate::guest::ssh::connect(&guest.route, Duration::from_secs(15))?;
    crate::guest::ssh::run_checked(&session, "systemctl restart docker.service")
        .map_err(|e| e.context(format!("VM '{}': restarting dockerd", guest.vm)))?;
    let started = Instant::now();
    loop {
        match swarm::read_member(&guest.docker) {
            Ok(_) => return Ok(()),
            Err(e) if started.elapsed() > Duration::from_secs(60) => {
                return Err(e.context(format!("VM '{}': dockerd after its restart", guest.vm)))
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// A swarm's nodes talk to each other directly (2377/tcp, 7946/tcp+udp, 4789/udp): strata's
/// networks are isolated from each other or behind NAT, so the VMs share one. And one engine
/// version: managers and workers of different versions disagree on the swarm's features.
fn refuse_mixed(guests: &[Guest]) -> Result<()> {
    for guest in &guests[1..] {
        refuse_mismatch(&guests[0].peer(), &guest.peer())?;
    }
    Ok(())
}

/// What two nodes of one swarm must share.
struct Peer<'a> {
    vm: &'a str,
    network: &'a str,
    engine_version: &'a str,
}

impl Guest {
    fn peer(&self) -> Peer<'_> {
        Peer {
            vm: &self.vm,
            network: &self.network,
            engine_version: &self.member.engine_version,
        }
    }
}

/// The pure part of `refuse_mixed`.
fn refuse_mismatch(first: &Peer, guest: &Peer) -> Result<()> {
    if guest.network != first.network {
        return Err(Error::bad_input(format!(
            "VM '{}' is on network '{}' and VM '{}' on '{}': a swarm's nodes reach each other directly (2377/tcp, 7946/tcp+udp, 4789/udp), which strata's networks allow only within one network (isolated, or NAT between them)",
            first.vm, first.network, guest.vm, guest.network
        ))
        .with_hint("make the swarm of VMs on one network (`strata vm create ... --net NAME`)"));
    }
    if guest.engine_version != first.engine_version {
        return Err(Error::bad_input(format!(
            "VM '{}' runs Docker {} and VM '{}' Docker {}: a swarm's engines must match",
            first.vm, first.engine_version, guest.vm, guest.engine_version
        ))
        .with_hint("install one version in every VM (`strata engine install VM --version V`)"));
    }
    Ok(())
}

/// A VM in another swarm (or joining, or locked) is refused: strata never moves an engine
/// out of a swarm it was not asked to touch.
fn refuse_other_swarm(guest: &Guest, in_this_one: bool, name: &str) -> Result<()> {
    refuse_membership(&guest.vm, &guest.member.membership, in_this_one, name)
}

/// The pure part of `refuse_other_swarm`.
fn refuse_membership(
    vm: &str,
    membership: &Membership,
    in_this_one: bool,
    name: &str,
) -> Result<()> {
    let elsewhere = match membership {
        Membership::Alone => return Ok(()),
        _ if in_this_one => return Ok(()),
        Membership::Manager {
            name: Some(other), ..
        } => format!("is a manager of swarm '{other}'"),
        Membership::Manager { name: None, .. } => {
            "is a manager of a swarm strata did not make".to_string()
        }
        Membership::Worker => "is a worker of another swarm".to_string(),
        Membership::Unsettled(state) => format!("has a swarm state of '{state}'"),
    };
    Err(Error::bad_input(format!(
        "VM '{vm}' {elsewhere}, not of '{name}'"
    ))
    .with_hint(format!(
        "take it out first: `strata swarm leave SWARM {vm}` for a swarm strata made, else `docker swarm leave` in the VM"
    )))
}

/// The host's and the VMs' checks, as before a launch, and the probes between `probed` on
/// the swarm's ports: failures on the VMs' bridge (or on none in particular) refuse the swarm.
fn preflight(
    lv: &Libvirt,
    paths: &Paths,
    name: &str,
    vms: &[String],
    probed: &[String],
    net: &str,
) -> Result<()> {
    let (reach, check_args) = if probed.len() > 1 {
        (
            super::checks::Reach::Among(probed.to_vec()),
            format!("--swarm-ports {}", probed.join(" ")),
        )
    } else {
        (super::checks::Reach::Nobody, vms.join(" "))
    };
    let report = super::checks::run(
        Some(lv),
        paths,
        &super::checks::CheckRequest {
            host: true,
            vms: vms.to_vec(),
            fix: false,
            reach,
        },
    );
    let bridge = network::lookup(&lv.conn(), net)
        .ok()
        .and_then(|(_, n)| n.bridge);
    match report.refusal_of(
        &format!("swarm '{name}' (VMs {})", vms.join(", ")),
        &check_args,
        bridge.as_deref(),
    ) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The new swarm's address pool, away from the host's libvirt networks, routes and Docker
/// networks and from the guests' Docker networks; and its overlay MTU, from the VMs' network.
fn swarm_ranges(lv: &Libvirt, guests: &[Guest]) -> Result<(ipnet::Ipv4Net, u32)> {
    let runner = Runner::for_uri(&lv.uri)?;
    let (host_taken, _) = network::subnets_in_use(&lv.conn(), &runner)?;
    let mut taken: Vec<ipnet::Ipv4Net> = host_taken.into_iter().map(|t| t.subnet).collect();
    for guest in guests {
        taken.extend(swarm::network_subnets(&guest.docker)?);
    }
    let pool = addresses::choose_pool(&taken)?;
    let (_, net) = network::lookup(&lv.conn(), &guests[0].network)?;
    let mtu = addresses::overlay_mtu(net.mtu.unwrap_or(1500))?;
    Ok((pool, mtu))
}

/// How long the nodes of a swarm may take to report ready (TCG guests are slow to start the
/// swarm's agents).
const READY_WITHIN: Duration = Duration::from_secs(120);

/// Wait until every VM of `vms` is a ready node, as the manager behind `docker` sees them.
fn wait_ready(docker: &GuestDocker, vms: &[String]) -> Result<()> {
    let started = Instant::now();
    loop {
        let nodes = swarm::list_nodes(docker)?;
        let waiting: Vec<&String> = vms
            .iter()
            .filter(|vm| {
                !nodes
                    .iter()
                    .any(|n| n.vm.as_deref() == Some(vm.as_str()) && n.state == "ready")
            })
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if started.elapsed() > READY_WITHIN {
            return Err(Error::failed(format!(
                "the swarm's nodes for {} did not become ready within {} s",
                waiting.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", "),
                READY_WITHIN.as_secs()
            ))
            .with_hint("the VMs must reach each other on 2377/tcp, 7946/tcp+udp and 4789/udp: `strata check --host` names a FORWARD chain that drops them"));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Take `vm` out of swarm `name`: a manager is made a worker first (through another manager;
/// the last manager is refused), it leaves, its node is removed from the list, and its engine
/// is left as before it joined.
/// A note when the engine could not be left quite as it was.
pub fn leave(lv: &Libvirt, paths: &Paths, name: &str, vm: &str) -> Result<Option<String>> {
    crate::names::check_object_name("swarm", name)?;
    crate::names::check_object_name("VM", vm)?;
    let guests = survey(lv, paths, &[])?;
    let (view, _) = swarms_of(&guests)?
        .into_iter()
        .find(|(v, _)| v.name == name)
        .ok_or_else(|| not_found(name))?;
    let node = view.node_of(vm).cloned().ok_or_else(|| {
        Error::not_found(format!("VM '{vm}' is not in swarm '{name}'")).with_hint(format!(
            "its VMs: {}",
            view.vms(true)
                .into_iter()
                .chain(view.vms(false))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let leaving = guests.iter().find(|g| g.vm == vm).ok_or_else(|| {
        Error::new(
            ErrorKind::Unreachable,
            format!("VM '{vm}' does not answer (stopped, or its Docker down)"),
        )
        .with_hint(format!("start it with `strata vm start {vm}`, then leave"))
    })?;
    let other_manager = guests.iter().find(|g| {
        g.vm != vm
            && matches!(&g.member.membership, Membership::Manager { cluster, .. } if *cluster == view.id)
    });
    let Some(manager) = other_manager else {
        return Err(Error::bad_input(format!(
            "VM '{vm}' is the last manager of swarm '{name}' that answers"
        ))
        .with_hint(format!("`strata swarm destroy {name}` ends the swarm")));
    };
    if node.manager {
        swarm::demote(&manager.docker, &node.id)?;
    }
    // A demoted manager sees itself as a worker a moment later; until then it may not leave
    // without force (which would take a manager's vote away unannounced).
    let started = Instant::now();
    loop {
        match swarm::leave(&leaving.docker, false) {
            Ok(()) => break,
            Err(_) if node.manager && started.elapsed() < Duration::from_secs(60) => {
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e.context(format!("VM '{vm}'"))),
        }
    }
    swarm::remove_node(&manager.docker, &node.id)?;
    settle_after_leave(leaving, node.restore_live_restore)
}

/// End swarm `name`: refused while it runs services; every node's VM must answer, but a
/// down worker whose VM no longer exists (destroyed: it can never leave) is taken off the
/// list. Workers leave first, then the managers (the last one ends the swarm); each engine is
/// left as it was before it joined. The VMs, in the order they left.
pub fn destroy(lv: &Libvirt, paths: &Paths, name: &str) -> Result<Destroyed> {
    crate::names::check_object_name("swarm", name)?;
    let guests = survey(lv, paths, &[])?;
    let (view, home) = swarms_of(&guests)?
        .into_iter()
        .find(|(v, _)| v.name == name)
        .ok_or_else(|| not_found(name))?;
    let services = swarm::service_count(&guests[home].docker)?;
    if services > 0 {
        return Err(
            Error::bad_input(format!("swarm '{name}' runs {services} service(s)")).with_hint(
                "remove them first (`strata down` for stacks; `docker service rm` for others)",
            ),
        );
    }
    let mut order: Vec<(&SwarmNode, &Guest)> = Vec::new();
    let mut gone = Vec::new();
    for node in view
        .nodes
        .iter()
        .filter(|n| !n.manager)
        .chain(view.nodes.iter().filter(|n| n.manager))
    {
        let vm = node.vm.clone().unwrap_or_else(|| node.hostname.clone());
        if !node.manager && node.state == "down" && vm_is_gone(lv, &vm)? {
            gone.push(node);
            continue;
        }
        let guest = guests.iter().find(|g| g.vm == vm).ok_or_else(|| {
            Error::new(
                ErrorKind::Unreachable,
                format!("swarm '{name}': its node on VM '{vm}' does not answer"),
            )
            .with_hint(format!(
                "start it (`strata vm start {vm}`) so it can leave; nothing was changed"
            ))
        })?;
        order.push((node, guest));
    }
    let mut left = Vec::new();
    let mut notes = Vec::new();
    for node in gone {
        swarm::remove_node(&guests[home].docker, &node.id)?;
        notes.push(format!(
            "VM '{}' no longer exists: its node was taken off the swarm's list",
            node.vm.as_deref().unwrap_or(&node.hostname)
        ));
    }
    for (node, guest) in order {
        swarm::leave(&guest.docker, node.manager)
            .map_err(|e| e.context(format!("VM '{}'", guest.vm)))?;
        if let Some(note) = settle_after_leave(guest, node.restore_live_restore)? {
            notes.push(note);
        }
        left.push(guest.vm.clone());
    }
    Ok(Destroyed { left, notes })
}

/// libvirt has no VM of that name any more (not merely stopped).
fn vm_is_gone(lv: &Libvirt, vm: &str) -> Result<bool> {
    match domain::lookup(&lv.conn(), vm) {
        Ok(_) => Ok(false),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// What a destroy did.
pub struct Destroyed {
    /// The VMs, in the order they left.
    pub left: Vec<String>,
    /// Where an engine could not be left quite as it was.
    pub notes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer<'a>(vm: &'a str, network: &'a str, engine_version: &'a str) -> Peer<'a> {
        Peer {
            vm,
            network,
            engine_version,
        }
    }

    #[test]
    fn nodes_share_one_network_and_one_engine_version() {
        let a = peer("a", "lab", "20.10.24+dfsg1");
        assert!(refuse_mismatch(&a, &peer("b", "lab", "20.10.24+dfsg1")).is_ok());
        let err = refuse_mismatch(&a, &peer("b", "office", "20.10.24+dfsg1")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput);
        assert!(
            err.message().contains("'office'") && err.message().contains("4789/udp"),
            "{err}"
        );
        let err = refuse_mismatch(&a, &peer("b", "lab", "24.0.7")).unwrap_err();
        assert!(err.message().contains("Docker 24.0.7"), "{err}");
    }

    #[test]
    fn a_vm_of_another_swarm_is_refused_with_how_to_take_it_out() {
        assert!(refuse_membership("a", &Membership::Alone, false, "lab").is_ok());
        let manager = Membership::Manager {
            cluster: "c1".into(),
            name: Some("lab".into()),
            pools: vec![],
            overlay_mtu: None,
        };
        // In this swarm already: fine.
        assert!(refuse_membership("a", &manager, true, "lab").is_ok());
        let err = refuse_membership("a", &manager, false, "web").unwrap_err();
        assert!(err.message().contains("manager of swarm 'lab'"), "{err}");
        assert!(
            err.hint()
                .unwrap_or_default()
                .contains("strata swarm leave"),
            "{err}"
        );
        let foreign = Membership::Manager {
            cluster: "c2".into(),
            name: None,
            pools: vec![],
            overlay_mtu: None,
        };
        let err = refuse_membership("a", &foreign, false, "web").unwrap_err();
        assert!(err.message().contains("did not make"), "{err}");
        let err = refuse_membership("a", &Membership::Worker, false, "web").unwrap_err();
        assert!(err.message().contains("worker of another swarm"), "{err}");
        let err = refuse_membership("a", &Membership::Unsettled("pending".into()), false, "web")
            .unwrap_err();
        assert!(err.message().contains("'pending'"), "{err}");
    }
}
