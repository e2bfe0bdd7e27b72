//! The plan file (TOML, docs/plans.md): a whole host in one file — its networks, its VMs (from
//! templates, `count` of them), Docker in them, swarms of them, and the stacks they run.
//! Parsing checks the shape and everything that can be told from the file alone (names, sizes,
//! subnets that overlap, VMs on networks the plan does not declare, names colliding after
//! `count`, a swarm's VMs on one network and each in one swarm), each error naming the file,
//! the line and the field. What needs the host (templates that exist, a stack file's own
//! placement) is `Plan::check_against`.

use crate::engine::decision::StoragePolicy;
use crate::error::{Error, Result};
use crate::names::{check_object_name, check_vm_name, is_valid_name, NAME_RULE};
pub use crate::stack::file::StackOn;
use crate::vm::network::NetworkMode;
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The most VMs one `count` makes: a plan is one host.
pub const MAX_COUNT: u32 = 64;

/// A plan file as written (unknown fields are errors).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: Option<Spanned<String>>,
    #[serde(default)]
    hosts: BTreeMap<String, Spanned<RawHost>>,
    #[serde(default)]
    networks: BTreeMap<String, Spanned<RawNetwork>>,
    #[serde(default)]
    vms: BTreeMap<String, Spanned<RawVm>>,
    #[serde(default)]
    swarms: BTreeMap<String, Spanned<RawSwarm>>,
    #[serde(default)]
    stacks: BTreeMap<String, Spanned<RawStack>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSwarm {
    managers: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    workers: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    uri: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    subnet: Spanned<String>,
    mode: Option<Spanned<String>>,
    host: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    template: String,
    net: Spanned<String>,
    host: Option<Spanned<String>>,
    memory: Option<Spanned<String>>,
    cpus: Option<Spanned<i64>>,
    disk: Option<Spanned<String>>,
    count: Option<Spanned<i64>>,
    engine: Option<Spanned<RawEngine>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    storage: Option<Spanned<String>>,
    data_disk: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStack {
    file: String,
    vm: Option<Spanned<String>>,
    swarm: Option<Spanned<String>>,
}

/// A parsed, self-consistent plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub path: PathBuf,
    pub name: String,
    /// The other hypervisors the plan puts networks and VMs on (`[hosts.NAME] uri = "..."`);
    /// what names no host is on the host strata connects to.
    pub hosts: BTreeMap<String, PlanHost>,
    pub networks: BTreeMap<String, PlanNetwork>,
    /// Every VM by its final name (`count` expanded: web-1, web-2).
    pub vms: BTreeMap<String, PlanVm>,
    /// Docker Swarms of the plan's VMs (`[swarms.NAME]`), VM names expanded.
    pub swarms: BTreeMap<String, PlanSwarm>,
    pub stacks: BTreeMap<String, PlanStack>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanHost {
    pub name: String,
    pub line: usize,
    /// Its libvirt connection URI (qemu+ssh://USER@HOST/system).
    pub uri: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanNetwork {
    pub name: String,
    pub line: usize,
    /// The plan's host it is on; None: the host strata connects to.
    pub host: Option<String>,
    pub subnet: Ipv4Net,
    /// Where `subnet` is written, for errors about it.
    pub subnet_line: usize,
    pub mode: NetworkMode,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanVm {
    pub name: String,
    /// The `[vms.NAME]` table it comes from (NAME itself unless `count` > 1).
    pub declared_as: String,
    pub line: usize,
    pub template: String,
    pub net: String,
    /// The plan's host it runs on (its network's); None: the host strata connects to.
    pub host: Option<String>,
    pub memory: Option<u64>,
    pub cpus: Option<u32>,
    pub disk: Option<u64>,
    pub engine: Option<PlanEngine>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanEngine {
    pub storage: StoragePolicy,
    pub data_disk: Option<u64>,
    pub version: Option<String>,
}

/// A swarm of the plan's VMs: all on one network (so on one host), each in one swarm.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSwarm {
    pub name: String,
    pub line: usize,
    /// The managers by VM name (`count` expanded), the first one making the swarm.
    pub managers: Vec<String>,
    pub workers: Vec<String>,
}

impl PlanSwarm {
    /// Managers, then workers.
    pub fn members(&self) -> impl Iterator<Item = &String> {
        self.managers.iter().chain(&self.workers)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlanStack {
    pub name: String,
    pub line: usize,
    /// The stack file, relative paths taken from the plan file's folder.
    pub file: PathBuf,
    /// Overrides the stack file's own `vm`. After `check_against`, exactly one of `vm` and
    /// `swarm` is set (what the file says when the plan says neither).
    pub vm: Option<String>,
    /// Overrides the stack file's own placement: the stack runs on this swarm of the plan.
    pub swarm: Option<String>,
}

/// What the host knows that the file alone cannot tell.
pub struct Known<'a> {
    /// Whether a template of that name exists, and whether its clones have Docker already.
    pub template: &'a dyn Fn(&str) -> Option<TemplateKind>,
    /// Where a stack file says it runs (read from the file).
    pub stack_on: &'a dyn Fn(&Path) -> Result<StackOn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    Plain,
    /// Docker baked in (debian-12-docker).
    WithDocker,
}

impl Plan {
    pub fn load(path: &Path) -> Result<Plan> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::from(e)
                .context(format!("reading plan file {}", path.display()))
                .with_hint("give the path of a plan file (TOML), e.g. plans/lab.toml")
        })?;
        Plan::parse(path, &text)
    }

    /// Parse and check what the file alone can tell (pure).
    pub fn parse(path: &Path, text: &str) -> Result<Plan> {
        let raw: RawPlan = crate::template::parse_toml(path, text)?;
        let at = Place { path, text };
        let name = match &raw.name {
            Some(spanned) => {
                let name = spanned.get_ref().clone();
                if !is_valid_name(&name) {
                    return Err(at.error(
                        spanned.span().start,
                        "name",
                        format!("'{name}' is not a plan name"),
                        NAME_RULE,
                    ));
                }
                name
            }
            None => {
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                if !is_valid_name(stem) {
                    return Err(at.error(
                        0,
                        "name",
                        format!(
                            "the file name '{stem}' is not a plan name, and the plan gives none"
                        ),
                        "add `name = \"lab\"` at the top, or rename the file",
                    ));
                }
                stem.to_string()
            }
        };
        let hosts = parse_hosts(&at, &raw.hosts)?;
        let networks = parse_networks(&at, &raw.networks, &hosts)?;
        let vms = parse_vms(&at, &raw.vms, &networks, &hosts)?;
        let swarms = parse_swarms(&at, &raw.swarms, &vms)?;
        let stacks = parse_stacks(&at, &raw.stacks, &vms, &swarms)?;
        Ok(Plan {
            path: path.to_path_buf(),
            name,
            hosts,
            networks,
            vms,
            swarms,
            stacks,
        })
    }

    /// The hosts the plan is carried out on, each once: the one strata connects to (None),
    /// then each of `[hosts]`. Each is visited even when the plan puts nothing on it now, so
    /// that what the plan made there earlier is seen (and removed).
    pub fn host_parts(&self) -> Vec<Option<String>> {
        std::iter::once(None)
            .chain(self.hosts.keys().cloned().map(Some))
            .collect()
    }

    /// The part of the plan on one host (`host_parts`): its networks, its VMs, the swarms of
    /// them and the stacks on those (each stack's placement filled in first, by
    /// `check_against` or `fill_stack_targets`).
    pub fn part(&self, host: Option<&str>) -> Plan {
        let vms: BTreeMap<String, PlanVm> = self
            .vms
            .iter()
            .filter(|(_, vm)| vm.host.as_deref() == host)
            .map(|(name, vm)| (name.clone(), vm.clone()))
            .collect();
        // A swarm's VMs share one network, so a swarm is on one host.
        let swarms: BTreeMap<String, PlanSwarm> = self
            .swarms
            .iter()
            .filter(|(_, swarm)| swarm.members().any(|vm| vms.contains_key(vm)))
            .map(|(name, swarm)| (name.clone(), swarm.clone()))
            .collect();
        let stacks = self
            .stacks
            .iter()
            .filter(|(_, stack)| match &stack.swarm {
                Some(swarm) => swarms.contains_key(swarm),
                None => {
                    let named = stack.vm.as_deref().unwrap_or_default();
                    self.vms_named(named)
                        .iter()
                        .any(|vm| vms.contains_key(&vm.name))
                }
            })
            .map(|(name, stack)| (name.clone(), stack.clone()))
            .collect();
        Plan {
            path: self.path.clone(),
            name: self.name.clone(),
            hosts: self.hosts.clone(),
            networks: self
                .networks
                .iter()
                .filter(|(_, net)| net.host.as_deref() == host)
                .map(|(name, net)| (name.clone(), net.clone()))
                .collect(),
            vms,
            swarms,
            stacks,
        }
    }

    /// The connection URI of a part: a `[hosts]` entry's, or `default` (strata's own).
    pub fn uri_of<'a>(&'a self, host: Option<&str>, default: &'a str) -> &'a str {
        host.and_then(|h| self.hosts.get(h))
            .map_or(default, |h| h.uri.as_str())
    }

    /// The VMs a stack's `vm` means: the VM of that name, or every VM a `count` made of that
    /// declaration (`vm = "web"` with `[vms.web] count = 2`: web-1 and web-2).
    pub fn vms_named(&self, name: &str) -> Vec<&PlanVm> {
        named(&self.vms, name)
    }

    /// The plan's stacks that run on VM `vm` (a stack on a `count` runs on each of its VMs).
    /// Each stack's `vm` is known once `check_against` has filled in what the file says.
    pub fn stacks_on(&self, vm: &str) -> Vec<&PlanStack> {
        self.stacks
            .values()
            .filter(|stack| stack.swarm.is_none())
            .filter(|stack| {
                let named = stack.vm.as_deref().unwrap_or_default();
                self.vms_named(named).iter().any(|v| v.name == vm)
            })
            .collect()
    }

    /// The plan's stacks that run on swarm `swarm`.
    pub fn stacks_on_swarm(&self, swarm: &str) -> Vec<&PlanStack> {
        self.stacks
            .values()
            .filter(|stack| stack.swarm.as_deref() == Some(swarm))
            .collect()
    }

    /// The plan's swarm that VM `vm` is in, if any (a VM is in one at most).
    pub fn swarm_of(&self, vm: &str) -> Option<&PlanSwarm> {
        self.swarms
            .values()
            .find(|swarm| swarm.members().any(|m| m == vm))
    }

    /// Give every stack the plan places neither on a VM nor on a swarm its file's own
    /// placement (`stack_on` reads it). Each stack that can be read gets it; the first that
    /// cannot is the error.
    pub fn fill_stack_targets(
        &mut self,
        stack_on: &dyn Fn(&Path) -> Result<StackOn>,
    ) -> Result<()> {
        let mut first_error = None;
        let unplaced = self
            .stacks
            .values_mut()
            .filter(|s| s.vm.is_none() && s.swarm.is_none());
        for stack in unplaced {
            match stack_on(&stack.file) {
                Ok(StackOn::Vm(vm)) => stack.vm = Some(vm),
                Ok(StackOn::Swarm(swarm)) => stack.swarm = Some(swarm),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Check the plan against what the host knows: every template exists, and every stack
    /// runs on a VM of the plan that has Docker (an engine table, or a template with Docker).
    /// A stack without `vm` in the plan takes its file's, filled in here.
    pub fn check_against(&mut self, known: &Known) -> Result<()> {
        self.fill_stack_targets(known.stack_on)?;
        let at = |line: usize, field: String, message: String, hint: &str| {
            Error::bad_input(format!(
                "{}:{line}: {field}: {message}",
                self.path.display()
            ))
            .with_hint(hint.to_string())
        };
        for vm in self.vms.values() {
            if (known.template)(&vm.template).is_none() {
                return Err(at(
                    vm.line,
                    format!("vms.{}.template", vm.declared_as),
                    format!("no template named '{}'", vm.template),
                    "`strata template list` shows the templates; build one with `strata template build NAME`",
                ));
            }
        }
        let has_docker = |vm: &PlanVm| {
            vm.engine.is_some() || (known.template)(&vm.template) == Some(TemplateKind::WithDocker)
        };
        for swarm in self.swarms.values() {
            if let Some(vm) = swarm
                .members()
                .map(|m| &self.vms[m])
                .find(|vm| !has_docker(vm))
            {
                return Err(at(
                    swarm.line,
                    format!("swarms.{}", swarm.name),
                    format!("VM '{}' has no Docker (no [vms.{}.engine], and template '{}' has none baked in)", vm.name, vm.declared_as, vm.template),
                    "add an engine table to that VM, or use a template with Docker such as debian-12-docker",
                ));
            }
        }
        for stack in self.stacks.values() {
            if let Some(swarm) = &stack.swarm {
                if !self.swarms.contains_key(swarm) {
                    return Err(at(
                        stack.line,
                        format!("stacks.{}", stack.name),
                        format!("its file {} runs it on swarm '{swarm}', which is not in the plan", stack.file.display()),
                        "a plan's stacks run on the plan's VMs and swarms: declare it under [swarms.NAME], or place the stack with `vm = \"...\"` or `swarm = \"...\"`",
                    ));
                }
                continue;
            }
            let vm_name = stack.vm.clone().unwrap_or_default();
            let targets = self.vms_named(&vm_name);
            let Some(vm) = targets.first() else {
                return Err(at(
                    stack.line,
                    format!("stacks.{}.vm", stack.name),
                    format!("VM '{vm_name}' is not in the plan"),
                    "a plan's stacks run on the plan's VMs: name one of [vms] with `vm = \"...\"`",
                ));
            };
            if !has_docker(vm) {
                return Err(at(
                    stack.line,
                    format!("stacks.{}.vm", stack.name),
                    format!("VM '{vm_name}' has no Docker (no [vms.{}.engine], and template '{}' has none baked in)", vm.declared_as, vm.template),
                    "add an engine table to that VM, or use a template with Docker such as debian-12-docker",
                ));
            }
        }
        Ok(())
    }
}

/// Where in the plan file an error is.
struct Place<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Place<'_> {
    fn line(&self, offset: usize) -> usize {
        crate::template::line_and_column(self.text, offset).0
    }

    fn error(&self, offset: usize, field: &str, message: impl Into<String>, hint: &str) -> Error {
        Error::bad_input(format!(
            "{}:{}: {field}: {}",
            self.path.display(),
            self.line(offset),
            message.into()
        ))
        .with_hint(hint.to_string())
    }

    /// A name check of src/names.rs, with the place added.
    fn name(&self, offset: usize, field: &str, checked: Result<()>) -> Result<()> {
        checked.map_err(|e| {
            let hint = e.hint().unwrap_or_default().to_string();
            self.error(offset, field, e.message().to_string(), &hint)
        })
    }

    fn size(&self, spanned: &Option<Spanned<String>>, field: &str) -> Result<Option<u64>> {
        let Some(s) = spanned else { return Ok(None) };
        crate::units::parse_bytes(s.get_ref())
            .map(Some)
            .map_err(|e| {
                self.error(
                    s.span().start,
                    field,
                    e.message().to_string(),
                    e.hint().unwrap_or_default(),
                )
            })
    }

    fn number(&self, spanned: &Option<Spanned<i64>>, field: &str, max: u32) -> Result<Option<u32>> {
        let Some(n) = spanned else { return Ok(None) };
        match u32::try_from(*n.get_ref()) {
            Ok(v) if (1..=max).contains(&v) => Ok(Some(v)),
            _ => Err(self.error(
                n.span().start,
                field,
                format!("{} is out of range", n.get_ref()),
                &format!("use 1 to {max}"),
            )),
        }
    }
}

fn parse_hosts(
    at: &Place,
    raw: &BTreeMap<String, Spanned<RawHost>>,
) -> Result<BTreeMap<String, PlanHost>> {
    let mut hosts = BTreeMap::new();
    for (name, spanned) in raw {
        let offset = spanned.span().start;
        let field = format!("hosts.{name}");
        at.name(offset, &field, check_object_name("host", name))?;
        let uri = &spanned.get_ref().uri;
        let site = crate::host::remote::Site::of_uri(uri.get_ref()).map_err(|e| {
            at.error(
                uri.span().start,
                &format!("{field}.uri"),
                e.message().to_string(),
                e.hint().unwrap_or_default(),
            )
        })?;
        if let Some(twin) = hosts.values().find(|h: &&PlanHost| {
            crate::host::remote::Site::of_uri(&h.uri).is_ok_and(|other| other.same_machine(&site))
        }) {
            return Err(at.error(
                uri.span().start,
                &format!("{field}.uri"),
                format!(
                    "the same host as [hosts.{}] (line {})",
                    twin.name, twin.line
                ),
                "name each host once, and put all of its networks under that name",
            ));
        }
        if let crate::host::remote::Site::Other { transport } = site {
            return Err(at.error(
                uri.span().start,
                &format!("{field}.uri"),
                format!(
                    "strata reaches remote hosts over SSH, and this URI's transport is {transport}"
                ),
                "write it qemu+ssh://USER@HOST/system",
            ));
        }
        hosts.insert(
            name.clone(),
            PlanHost {
                name: name.clone(),
                line: at.line(offset),
                uri: uri.get_ref().clone(),
            },
        );
    }
    Ok(hosts)
}

/// A `host = "..."` field: one of the plan's [hosts], or an error at its place.
fn host_of(
    at: &Place,
    host: &Option<Spanned<String>>,
    field: &str,
    hosts: &BTreeMap<String, PlanHost>,
) -> Result<Option<String>> {
    let Some(host) = host else { return Ok(None) };
    if !hosts.contains_key(host.get_ref()) {
        return Err(at.error(
            host.span().start,
            field,
            format!("host '{}' is not in the plan", host.get_ref()),
            "declare it under [hosts.NAME] with its uri = \"qemu+ssh://USER@HOST/system\"",
        ));
    }
    Ok(Some(host.get_ref().clone()))
}

fn parse_networks(
    at: &Place,
    raw: &BTreeMap<String, Spanned<RawNetwork>>,
    hosts: &BTreeMap<String, PlanHost>,
) -> Result<BTreeMap<String, PlanNetwork>> {
    let mut networks: BTreeMap<String, PlanNetwork> = BTreeMap::new();
    for (name, spanned) in raw {
        let offset = spanned.span().start;
        let field = format!("networks.{name}");
        at.name(offset, &field, check_object_name("network", name))?;
        let decl = spanned.get_ref();
        let subnet_text = decl.subnet.get_ref();
        let subnet_at = decl.subnet.span().start;
        let subnet: Ipv4Net = subnet_text.parse().map_err(|_| {
            at.error(
                subnet_at,
                &format!("{field}.subnet"),
                format!("'{subnet_text}' is not an IPv4 subnet"),
                "write it as ADDRESS/PREFIX, e.g. 10.80.0.0/24",
            )
        })?;
        if subnet.network() != subnet.addr() || subnet.prefix_len() > 29 || subnet.prefix_len() < 8
        {
            return Err(at.error(
                subnet_at,
                &format!("{field}.subnet"),
                format!("'{subnet_text}' is not a network of /8 to /29"),
                "give the network's own address, e.g. 10.80.0.0/24",
            ));
        }
        let host = host_of(at, &decl.host, &format!("{field}.host"), hosts)?;
        let mode = match decl.mode.as_ref() {
            None => NetworkMode::Isolated,
            Some(m) => match m.get_ref().as_str() {
                "isolated" => NetworkMode::Isolated,
                "nat" => NetworkMode::Nat,
                other => {
                    return Err(at.error(
                        m.span().start,
                        &format!("{field}.mode"),
                        format!("'{other}' is not a network mode"),
                        "use \"isolated\" (no route out) or \"nat\"",
                    ));
                }
            },
        };
        // Each host's networks are its own: ranges only clash on one host.
        if let Some(other) = networks.values().find(|n| {
            n.host == host
                && (n.subnet.contains(&subnet.network()) || subnet.contains(&n.subnet.network()))
        }) {
            return Err(at.error(
                subnet_at,
                &format!("{field}.subnet"),
                format!(
                    "{subnet} overlaps network '{}' ({}, line {})",
                    other.name, other.subnet, other.line
                ),
                "give each network of the plan its own range",
            ));
        }
        networks.insert(
            name.clone(),
            PlanNetwork {
                name: name.clone(),
                line: at.line(offset),
                subnet,
                subnet_line: at.line(subnet_at),
                mode,
                host,
            },
        );
    }
    Ok(networks)
}

fn parse_vms(
    at: &Place,
    raw: &BTreeMap<String, Spanned<RawVm>>,
    networks: &BTreeMap<String, PlanNetwork>,
    hosts: &BTreeMap<String, PlanHost>,
) -> Result<BTreeMap<String, PlanVm>> {
    let mut vms: BTreeMap<String, PlanVm> = BTreeMap::new();
    for (declared, spanned) in raw {
        let offset = spanned.span().start;
        let field = format!("vms.{declared}");
        at.name(offset, &field, check_vm_name(declared))?;
        let decl = spanned.get_ref();
        if !networks.contains_key(decl.net.get_ref()) {
            return Err(at.error(
                decl.net.span().start,
                &format!("{field}.net"),
                format!("network '{}' is not in the plan", decl.net.get_ref()),
                "declare it under [networks.NAME] with its subnet",
            ));
        }
        // A VM runs where its network is: said once, on the network.
        let host = host_of(at, &decl.host, &format!("{field}.host"), hosts)?;
        let net = &networks[decl.net.get_ref()];
        if host.is_some() && host != net.host {
            let on = |h: &Option<String>| match h {
                Some(h) => format!("host '{h}'"),
                None => "the host strata connects to".to_string(),
            };
            return Err(at.error(
                decl.host.as_ref().map_or(offset, |h| h.span().start),
                &format!("{field}.host"),
                format!(
                    "{}, but its network '{}' is on {} (line {})",
                    on(&host),
                    net.name,
                    on(&net.host),
                    net.line
                ),
                "a VM runs on its network's host: put `host` on the network, and leave it out here or give the same",
            ));
        }
        let host = net.host.clone();
        let count = at
            .number(&decl.count, &format!("{field}.count"), MAX_COUNT)?
            .unwrap_or(1);
        let engine = match &decl.engine {
            None => None,
            Some(e) => Some(parse_engine(at, e.get_ref(), &format!("{field}.engine"))?),
        };
        let template = decl.template.clone();
        let names: Vec<String> = if count == 1 {
            vec![declared.clone()]
        } else {
            (1..=count).map(|i| format!("{declared}-{i}")).collect()
        };
        for name in names {
            at.name(offset, &field, check_vm_name(&name))?;
            if let Some(other) = vms.get(&name) {
                return Err(at.error(
                    offset,
                    &field,
                    format!(
                        "makes VM '{name}', which [vms.{}] (line {}) makes too",
                        other.declared_as, other.line
                    ),
                    "rename one of them, or change its count",
                ));
            }
            vms.insert(
                name.clone(),
                PlanVm {
                    name,
                    declared_as: declared.clone(),
                    line: at.line(offset),
                    template: template.clone(),
                    net: decl.net.get_ref().clone(),
                    host: host.clone(),
                    memory: at.size(&decl.memory, &format!("{field}.memory"))?,
                    cpus: at.number(&decl.cpus, &format!("{field}.cpus"), 64)?,
                    disk: at.size(&decl.disk, &format!("{field}.disk"))?,
                    engine: engine.clone(),
                },
            );
        }
    }
    Ok(vms)
}

fn parse_engine(at: &Place, decl: &RawEngine, field: &str) -> Result<PlanEngine> {
    let storage = match &decl.storage {
        None => StoragePolicy::Auto,
        Some(s) => s.get_ref().parse().map_err(|e: Error| {
            at.error(
                s.span().start,
                &format!("{field}.storage"),
                e.message().to_string(),
                "use auto, overlay2, btrfs or lvm",
            )
        })?,
    };
    let version = match &decl.version {
        None => None,
        Some(v) => {
            let text = v.get_ref();
            let debian_version = !text.is_empty()
                && text.starts_with(|c: char| c.is_ascii_digit())
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".+-~:".contains(c));
            if !debian_version {
                return Err(at.error(
                    v.span().start,
                    &format!("{field}.version"),
                    format!("'{text}' is not a package version"),
                    "e.g. \"20.10.24\" (see `apt-cache madison docker.io`)",
                ));
            }
            Some(text.clone())
        }
    };
    Ok(PlanEngine {
        storage,
        data_disk: at.size(&decl.data_disk, &format!("{field}.data_disk"))?,
        version,
    })
}

/// The VMs a plan name means among `vms`: the VM of that name, or every VM a `count` made.
fn named<'a>(vms: &'a BTreeMap<String, PlanVm>, name: &str) -> Vec<&'a PlanVm> {
    match vms.get(name) {
        Some(vm) => vec![vm],
        None => vms.values().filter(|vm| vm.declared_as == name).collect(),
    }
}

fn parse_swarms(
    at: &Place,
    raw: &BTreeMap<String, Spanned<RawSwarm>>,
    vms: &BTreeMap<String, PlanVm>,
) -> Result<BTreeMap<String, PlanSwarm>> {
    let mut swarms: BTreeMap<String, PlanSwarm> = BTreeMap::new();
    // Each VM once, in any swarm: where it was named first.
    let mut placed: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for (name, spanned) in raw {
        let offset = spanned.span().start;
        let field = format!("swarms.{name}");
        at.name(offset, &field, check_object_name("swarm", name))?;
        let decl = spanned.get_ref();
        if decl.managers.get_ref().is_empty() {
            return Err(at.error(
                decl.managers.span().start,
                &format!("{field}.managers"),
                "a swarm needs a manager",
                "name one VM (or three, for a swarm that survives losing one): managers = [\"VM\"]",
            ));
        }
        let mut roles: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        let mut network: Option<(String, String)> = None;
        for (role, list, key) in [
            (0, decl.managers.get_ref(), "managers"),
            (1, &decl.workers, "workers"),
        ] {
            for entry in list {
                let written = entry.get_ref();
                let entry_at = entry.span().start;
                let entry_field = format!("{field}.{key}");
                let members = named(vms, written);
                if members.is_empty() {
                    return Err(at.error(
                        entry_at,
                        &entry_field,
                        format!("VM '{written}' is not in the plan"),
                        "name one of the plan's VMs (with count > 1: NAME for all of them, or NAME-1, NAME-2, ...)",
                    ));
                }
                for vm in members {
                    let line = at.line(entry_at);
                    if let Some((swarm, first)) = placed.get(&vm.name) {
                        return Err(at.error(
                            entry_at,
                            &entry_field,
                            format!(
                                "VM '{}' is already in swarm '{swarm}' (line {first})",
                                vm.name
                            ),
                            "a VM is in one swarm at most, once",
                        ));
                    }
                    placed.insert(vm.name.clone(), (name.clone(), line));
                    match &network {
                        Some((net, first)) if *net != vm.net => {
                            return Err(at.error(
                                entry_at,
                                &entry_field,
                                format!(
                                    "VM '{}' is on network '{}', VM '{first}' on '{net}'",
                                    vm.name, vm.net
                                ),
                                "put a swarm's VMs on one network: Swarm does not form across NAT, and the port checks run within one network",
                            ));
                        }
                        Some(_) => {}
                        None => network = Some((vm.net.clone(), vm.name.clone())),
                    }
                    roles[role].push(vm.name.clone());
                }
            }
        }
        let [managers, workers] = roles;
        swarms.insert(
            name.clone(),
            PlanSwarm {
                name: name.clone(),
                line: at.line(offset),
                managers,
                workers,
            },
        );
    }
    Ok(swarms)
}

fn parse_stacks(
    at: &Place,
    raw: &BTreeMap<String, Spanned<RawStack>>,
    vms: &BTreeMap<String, PlanVm>,
    swarms: &BTreeMap<String, PlanSwarm>,
) -> Result<BTreeMap<String, PlanStack>> {
    let folder = at.path.parent().unwrap_or(Path::new("."));
    let mut stacks = BTreeMap::new();
    for (name, spanned) in raw {
        let offset = spanned.span().start;
        let field = format!("stacks.{name}");
        if !is_valid_name(name) {
            return Err(at.error(
                offset,
                &field,
                format!("'{name}' is not a stack name"),
                NAME_RULE,
            ));
        }
        let decl = spanned.get_ref();
        if let Some(swarm) = &decl.swarm {
            if decl.vm.is_some() {
                return Err(at.error(
                    swarm.span().start,
                    &format!("{field}.swarm"),
                    "the stack is placed both on a VM and on a swarm",
                    "keep one: `vm = \"...\"` runs it on VMs, `swarm = \"...\"` as Swarm services",
                ));
            }
            if !swarms.contains_key(swarm.get_ref()) {
                return Err(at.error(
                    swarm.span().start,
                    &format!("{field}.swarm"),
                    format!("swarm '{}' is not in the plan", swarm.get_ref()),
                    "declare it under [swarms.NAME] with its managers and workers",
                ));
            }
        }
        if let Some(vm) = &decl.vm {
            let wanted = vm.get_ref();
            if named(vms, wanted).is_empty() {
                return Err(at.error(
                    vm.span().start,
                    &format!("{field}.vm"),
                    format!("VM '{}' is not in the plan", vm.get_ref()),
                    "name one of the plan's VMs (with count > 1: NAME for all of them, or NAME-1, NAME-2, ...)",
                ));
            }
        }
        stacks.insert(
            name.clone(),
            PlanStack {
                name: name.clone(),
                line: at.line(offset),
                file: folder.join(&decl.file),
                vm: decl.vm.as_ref().map(|v| v.get_ref().clone()),
                swarm: decl.swarm.as_ref().map(|v| v.get_ref().clone()),
            },
        );
    }
    Ok(stacks)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"name = "lab"

[networks.lab]
subnet = "10.80.0.0/24"
mode = "isolated"

[vms.db]
template = "debian-12"
net = "lab"
memory = "1G"
cpus = 2
disk = "10G"
[vms.db.engine]
storage = "btrfs"
data_disk = "8G"
version = "20.10.24"

[vms.web]
template = "debian-12-docker"
net = "lab"
count = 2

[stacks.metadata]
file = "stacks/metadata.toml"
vm = "db"
"#;

    fn parse(text: &str) -> Result<Plan> {
        Plan::parse(Path::new("plans/lab.toml"), text)
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().message().to_string()
    }

    #[test]
    fn the_example_plan_reads_as_written() {
        let plan = parse(LAB).unwrap();
        assert_eq!(plan.name, "lab");
        let lab = &plan.networks["lab"];
        assert_eq!(
            (lab.subnet.to_string().as_str(), lab.mode, lab.line),
            ("10.80.0.0/24", NetworkMode::Isolated, 3)
        );
        assert_eq!(
            plan.vms.keys().collect::<Vec<_>>(),
            ["db", "web-1", "web-2"]
        );
        let db = &plan.vms["db"];
        assert_eq!(
            (db.memory, db.cpus, db.disk, db.line),
            (Some(1 << 30), Some(2), Some(10 << 30), 7)
        );
        assert_eq!(
            db.engine,
            Some(PlanEngine {
                storage: StoragePolicy::Btrfs,
                data_disk: Some(8 << 30),
                version: Some("20.10.24".into()),
            })
        );
        assert_eq!(plan.vms["web-2"].declared_as, "web");
        assert_eq!(plan.vms["web-2"].engine, None);
        let stack = &plan.stacks["metadata"];
        assert_eq!(stack.file, Path::new("plans/stacks/metadata.toml"));
        assert_eq!(stack.vm.as_deref(), Some("db"));
    }

    #[test]
    fn the_name_defaults_to_the_file_name() {
        let plan = parse(&LAB.replace("name = \"lab\"\n", "")).unwrap();
        assert_eq!(plan.name, "lab");
        let err = Plan::parse(Path::new("plans/Lab Plan.toml"), "").unwrap_err();
        assert!(err.message().contains("is not a plan name"), "{err}");
    }

    #[test]
    fn bad_plans_are_one_error_naming_file_line_and_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("cpus = 2", "cpus = 2\nram = \"1G\"", "plans/lab.toml:12:1: unknown field `ram`"),
            ("subnet = \"10.80.0.0/24\"", "subnet = \"10.80.0.0/33\"", "plans/lab.toml:4: networks.lab.subnet: '10.80.0.0/33' is not an IPv4 subnet"),
            ("subnet = \"10.80.0.0/24\"", "subnet = \"10.80.0.5/24\"", "plans/lab.toml:4: networks.lab.subnet: '10.80.0.5/24' is not a network of /8 to /29"),
            ("mode = \"isolated\"", "mode = \"bridge\"", "plans/lab.toml:5: networks.lab.mode: 'bridge' is not a network mode"),
            ("net = \"lab\"\nmemory", "net = \"lan\"\nmemory", "plans/lab.toml:9: vms.db.net: network 'lan' is not in the plan"),
            ("memory = \"1G\"", "memory = \"lots\"", "plans/lab.toml:10: vms.db.memory: 'lots' is not a size"),
            ("cpus = 2", "cpus = 0", "plans/lab.toml:11: vms.db.cpus: 0 is out of range"),
            ("count = 2", "count = 1000", "plans/lab.toml:21: vms.web.count: 1000 is out of range"),
            ("storage = \"btrfs\"", "storage = \"zfs\"", "plans/lab.toml:14: vms.db.engine.storage:"),
            ("version = \"20.10.24\"", "version = \"$(reboot)\"", "plans/lab.toml:16: vms.db.engine.version: '$(reboot)' is not a package version"),
            ("vm = \"db\"", "vm = \"web-3\"", "plans/lab.toml:25: stacks.metadata.vm: VM 'web-3' is not in the plan"),
            ("[vms.web]", "[vms.\"web/../x\"]", "plans/lab.toml:18: vms.web/../x: VM name 'web/../x' is not allowed"),
            ("[networks.lab]", "[networks.\"../lab\"]", "plans/lab.toml:3: networks.../lab: network name '../lab' is not allowed"),
        ];
        for (from, to, expected) in cases {
            assert!(LAB.contains(from), "{from}");
            let err = error_of(&LAB.replacen(from, to, 1));
            assert!(
                err.starts_with(expected),
                "{to}:\n  got      {err}\n  expected {expected}"
            );
        }
    }

    #[test]
    fn names_colliding_after_count_are_refused() {
        let text = format!("{LAB}\n[vms.web-2]\ntemplate = \"debian-12\"\nnet = \"lab\"\n");
        let err = error_of(&text);
        assert!(err.contains("makes VM 'web-2', which [vms.web"), "{err}");
        assert!(err.starts_with("plans/lab.toml:"), "{err}");
    }

    #[test]
    fn overlapping_subnets_are_refused() {
        let text = LAB.replace(
            "[vms.db]",
            "[networks.more]\nsubnet = \"10.80.0.128/25\"\n\n[vms.db]",
        );
        let err = error_of(&text);
        assert!(
            err.contains("overlaps network 'lab' (10.80.0.0/24, line 3)"),
            "{err}"
        );
    }

    fn known_templates(name: &str) -> Option<TemplateKind> {
        match name {
            "debian-12" => Some(TemplateKind::Plain),
            "debian-12-docker" => Some(TemplateKind::WithDocker),
            _ => None,
        }
    }

    #[test]
    fn what_the_host_knows_is_checked_too() {
        let stack_on = |_: &Path| -> Result<StackOn> { Ok(StackOn::Vm("web-1".to_string())) };
        let known = Known {
            template: &known_templates,
            stack_on: &stack_on,
        };
        parse(LAB).unwrap().check_against(&known).unwrap();

        let err = parse(&LAB.replace("template = \"debian-12\"", "template = \"centos\""))
            .unwrap()
            .check_against(&known)
            .unwrap_err();
        assert!(
            err.message()
                .starts_with("plans/lab.toml:7: vms.db.template: no template named 'centos'"),
            "{err}"
        );

        // A stack on a VM without Docker.
        let no_engine = LAB.replace(
            "[vms.db.engine]\nstorage = \"btrfs\"\ndata_disk = \"8G\"\nversion = \"20.10.24\"\n",
            "",
        );
        let err = parse(&no_engine)
            .unwrap()
            .check_against(&known)
            .unwrap_err();
        assert!(
            err.message()
                .contains("stacks.metadata.vm: VM 'db' has no Docker"),
            "{err}"
        );

        // Without `vm`, the stack file's own VM counts; a baked template has Docker.
        let own_vm = LAB.replace("vm = \"db\"\n", "");
        parse(&own_vm).unwrap().check_against(&known).unwrap();
        let elsewhere = |_: &Path| -> Result<StackOn> { Ok(StackOn::Vm("other".to_string())) };
        let err = parse(&own_vm)
            .unwrap()
            .check_against(&Known {
                template: &known_templates,
                stack_on: &elsewhere,
            })
            .unwrap_err();
        assert!(
            err.message().contains("VM 'other' is not in the plan"),
            "{err}"
        );
    }

    #[test]
    fn a_stack_on_a_count_runs_on_every_vm_of_it() {
        let text = format!("{LAB}\n[stacks.web]\nfile = \"stacks/web.toml\"\nvm = \"web\"\n");
        let plan = parse(&text).unwrap();
        let names: Vec<&str> = plan
            .vms_named("web")
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(names, ["web-1", "web-2"]);
        let one: Vec<&str> = plan
            .vms_named("web-2")
            .iter()
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(one, ["web-2"]);
        assert!(plan.vms_named("nothing").is_empty());
        let err = error_of(&text.replace("vm = \"web\"", "vm = \"webs\""));
        assert!(
            err.contains("stacks.web.vm: VM 'webs' is not in the plan"),
            "{err}"
        );
    }

    /// `text` parsed and checked against the test's templates, every stack file saying `on`.
    fn checked(text: &str, on: StackOn) -> Result<Plan> {
        let mut plan = parse(text)?;
        let stack_on = move |_: &Path| -> Result<StackOn> { Ok(on.clone()) };
        plan.check_against(&Known {
            template: &known_templates,
            stack_on: &stack_on,
        })?;
        Ok(plan)
    }

    /// LAB with the web VMs (a count of two) in a swarm, and a stack on it.
    fn with_swarm(swarm: &str, stack: &str) -> String {
        format!("{LAB}\n[swarms.lab]\n{swarm}\n[stacks.spread]\nfile = \"stacks/spread.toml\"\n{stack}\n")
    }

    #[test]
    fn swarms_take_the_plans_vms_count_expanded_and_stacks_on_them() {
        let mut plan = parse(&with_swarm("managers = [\"web\"]", "swarm = \"lab\"")).unwrap();
        let lab = &plan.swarms["lab"];
        assert_eq!(lab.managers, ["web-1", "web-2"]);
        assert!(lab.workers.is_empty());
        assert_eq!(plan.swarm_of("web-2").map(|s| s.name.as_str()), Some("lab"));
        assert!(plan.swarm_of("db").is_none());
        // A stack on a swarm is on no VM of its own, and goes with its swarm's host part.
        let on_swarm: Vec<&str> = plan
            .stacks_on_swarm("lab")
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(on_swarm, ["spread"]);
        assert!(plan.stacks_on("web-1").is_empty());
        plan.fill_stack_targets(&|_| Ok(StackOn::Vm("db".into())))
            .unwrap();
        assert_eq!(plan.stacks["spread"].vm, None, "the plan's swarm is kept");
        let here = plan.part(None);
        assert_eq!(here.swarms.keys().collect::<Vec<_>>(), ["lab"]);
        assert_eq!(
            here.stacks.keys().collect::<Vec<_>>(),
            ["metadata", "spread"]
        );

        // Without a placement in the plan, the stack file's own swarm counts.
        let both = "managers = [\"web-1\"]\nworkers = [\"web-2\"]";
        let own = checked(&with_swarm(both, ""), StackOn::Swarm("lab".into())).unwrap();
        assert_eq!(own.stacks["spread"].swarm.as_deref(), Some("lab"));
        assert_eq!(own.swarms["lab"].workers, ["web-2"]);
        let err = checked(&with_swarm(both, ""), StackOn::Swarm("other".into())).unwrap_err();
        assert!(err.message().contains("stacks.spread: its file plans/stacks/spread.toml runs it on swarm 'other', which is not in the plan"), "{err}");

        // Every VM of a swarm has Docker: db's engine table removed, it has none.
        let no_engine = with_swarm(
            "managers = [\"db\"]\nworkers = [\"web\"]",
            "swarm = \"lab\"",
        )
        .replace(
            "[vms.db.engine]\nstorage = \"btrfs\"\ndata_disk = \"8G\"\nversion = \"20.10.24\"\n",
            "",
        );
        let err = checked(&no_engine, StackOn::Vm("db".into())).unwrap_err();
        assert!(
            err.message().contains("swarms.lab: VM 'db' has no Docker"),
            "{err}"
        );
    }

    #[test]
    fn bad_swarms_are_refused_where_they_are_written() {
        let line_of =
            |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        for (swarm, stack, field, says) in [
            (
                "managers = []",
                "swarm = \"lab\"",
                "swarms.lab.managers",
                "a swarm needs a manager",
            ),
            (
                "managers = [\"cache\"]",
                "swarm = \"lab\"",
                "swarms.lab.managers",
                "VM 'cache' is not in the plan",
            ),
            (
                "managers = [\"web\"]\nworkers = [\"web-2\"]",
                "swarm = \"lab\"",
                "swarms.lab.workers",
                "VM 'web-2' is already in swarm 'lab'",
            ),
            (
                "managers = [\"web-1\"]",
                "swarm = \"lab2\"",
                "stacks.spread.swarm",
                "swarm 'lab2' is not in the plan",
            ),
            (
                "managers = [\"web-1\"]",
                "swarm = \"lab\"\nvm = \"db\"",
                "stacks.spread.swarm",
                "placed both on a VM and on a swarm",
            ),
            (
                "workers = [\"web-1\"]",
                "swarm = \"lab\"",
                "swarms.lab",
                "managers",
            ),
        ] {
            let text = with_swarm(swarm, stack);
            let err = error_of(&text);
            assert!(
                err.contains(field) && err.contains(says),
                "{swarm} / {stack}: {err}"
            );
            if field != "swarms.lab" {
                let written = if field.starts_with("swarms") {
                    swarm.lines().last().unwrap()
                } else {
                    stack.lines().next().unwrap()
                };
                let line = line_of(&text, written);
                assert!(
                    err.starts_with(&format!("plans/lab.toml:{line}: ")),
                    "{err}"
                );
            }
        }
        // Two networks in one swarm: refused, naming both.
        let split = with_swarm(
            "managers = [\"db\"]\nworkers = [\"web-1\"]",
            "swarm = \"lab\"",
        )
        .replace(
            "[vms.web]\ntemplate = \"debian-12-docker\"\nnet = \"lab\"",
            "[vms.web]\ntemplate = \"debian-12-docker\"\nnet = \"edge\"",
        ) + "\n[networks.edge]\nsubnet = \"10.81.0.0/24\"\n";
        let err = error_of(&split);
        assert!(
            err.contains("VM 'web-1' is on network 'edge', VM 'db' on 'lab'"),
            "{err}"
        );
        // A swarm name is never a path.
        let err = error_of(&LAB.replace(
            "[stacks.metadata]",
            "[swarms.\"../x\"]\nmanagers = [\"db\"]\n[stacks.metadata]",
        ));
        assert!(err.contains("swarm name '../x' is not allowed"), "{err}");
    }

    /// LAB with a second host taking the web VMs on a network of their own.
    fn two_hosts() -> String {
        LAB.replace(
            "[vms.web]\ntemplate = \"debian-12-docker\"\nnet = \"lab\"",
            "[vms.web]\ntemplate = \"debian-12-docker\"\nnet = \"edge\"",
        ) + "\n[hosts.hv2]\nuri = \"qemu+ssh://root@hv2/system\"\n\n[networks.edge]\nsubnet = \"10.80.0.0/24\"\nhost = \"hv2\"\n\n[stacks.web]\nfile = \"stacks/web.toml\"\nvm = \"web\"\n"
    }

    #[test]
    fn a_plan_spans_hosts_each_part_on_its_own() {
        let mut plan = parse(&two_hosts()).unwrap();
        assert_eq!(plan.hosts["hv2"].uri, "qemu+ssh://root@hv2/system");
        // The same range on two hosts is two networks, not an overlap.
        assert_eq!(plan.networks["edge"].subnet, plan.networks["lab"].subnet);
        assert_eq!(plan.vms["web-1"].host.as_deref(), Some("hv2"));
        assert_eq!(plan.vms["db"].host, None);
        assert_eq!(plan.host_parts(), [None, Some("hv2".to_string())]);
        assert_eq!(
            plan.uri_of(Some("hv2"), "qemu:///system"),
            "qemu+ssh://root@hv2/system"
        );
        assert_eq!(plan.uri_of(None, "qemu:///system"), "qemu:///system");
        plan.fill_stack_targets(&|_| Ok(StackOn::Vm("unused".into())))
            .unwrap();
        let here = plan.part(None);
        assert_eq!(here.vms.keys().collect::<Vec<_>>(), ["db"]);
        assert_eq!(here.networks.keys().collect::<Vec<_>>(), ["lab"]);
        assert_eq!(here.stacks.keys().collect::<Vec<_>>(), ["metadata"]);
        let there = plan.part(Some("hv2"));
        assert_eq!(there.vms.keys().collect::<Vec<_>>(), ["web-1", "web-2"]);
        assert_eq!(there.networks.keys().collect::<Vec<_>>(), ["edge"]);
        assert_eq!(there.stacks.keys().collect::<Vec<_>>(), ["web"]);
        assert_eq!(there.name, "lab");
    }

    #[test]
    fn hosts_are_checked_where_they_are_written() {
        let cases: &[(String, &str)] = &[
            (
                two_hosts().replace("host = \"hv2\"", "host = \"hv3\""),
                "networks.edge.host: host 'hv3' is not in the plan",
            ),
            (
                two_hosts().replace(
                    "uri = \"qemu+ssh://root@hv2/system\"",
                    "uri = \"qemu+tls://hv2/system\"",
                ),
                "hosts.hv2.uri: strata reaches remote hosts over SSH",
            ),
            (
                two_hosts().replace(
                    "uri = \"qemu+ssh://root@hv2/system\"",
                    "uri = \"not a uri\"",
                ),
                "hosts.hv2.uri: libvirt URI 'not a uri'",
            ),
            (
                two_hosts()
                    .replace("[hosts.hv2]", "[hosts.\"h/v\"]")
                    .replace("host = \"hv2\"", "host = \"h/v\""),
                "hosts.h/v",
            ),
            (
                two_hosts().replace(
                    "net = \"lab\"\nmemory",
                    "net = \"lab\"\nhost = \"hv2\"\nmemory",
                ),
                "vms.db.host: host 'hv2', but its network 'lab' is on the host strata connects to",
            ),
            (
                two_hosts().replace(
                    "[hosts.hv2]\nuri = \"qemu+ssh://root@hv2/system\"\n",
                    "[hosts.hv2]\nuri = \"qemu+ssh://root@hv2/system\"\nport = 2\n",
                ),
                "unknown field `port`",
            ),
        ];
        for (text, expected) in cases {
            let err = error_of(text);
            assert!(err.contains(expected), "{expected}: {err}");
            assert!(err.starts_with("plans/lab.toml:"), "{err}");
        }
        let twice = two_hosts().replace(
            "[networks.edge]",
            "[hosts.hv2b]\nuri = \"qemu+ssh://root@hv2:22/system\"\n\n[networks.edge]",
        );
        assert!(
            error_of(&twice).contains("hosts.hv2b.uri: the same host as [hosts.hv2]"),
            "{}",
            error_of(&twice)
        );
        // Overlaps still count on one host.
        let same_host = two_hosts().replace(
            "[networks.edge]\nsubnet = \"10.80.0.0/24\"\nhost = \"hv2\"",
            "[networks.edge]\nsubnet = \"10.80.0.0/25\"",
        );
        assert!(
            error_of(&same_host).contains("overlaps network"),
            "{}",
            error_of(&same_host)
        );
    }
}
