//! What a plan would change on the host: the plan against what libvirt has, object by object
//! (networks, VMs, and what is inside them and made of them: engines, stacks, swarms), as a
//! pure function of both. `plan show` prints it, `plan apply` carries it out. Drift is nothing
//! special: a VM destroyed by hand is a create, memory changed by hand an update, a VM with
//! the plan's mark gone from the file a delete. An object of a plan's name that does not carry
//! the plan's mark is never taken over: it is refused, with why.

use super::file::{Plan, PlanNetwork, PlanSwarm, PlanVm};
use crate::units::format_size;
use crate::vm::network::NetworkMode;
use ipnet::Ipv4Net;
use serde::Serialize;

/// A libvirt network as the host has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenNetwork {
    pub name: String,
    pub subnet: Option<Ipv4Net>,
    /// "isolated", "nat", or another of libvirt's forward modes.
    pub mode: String,
    /// The plan named in its metadata; None when no plan made it.
    pub plan: Option<String>,
}

/// A domain as the host has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenVm {
    pub name: String,
    pub template: String,
    pub network: String,
    pub memory: u64,
    pub cpus: u32,
    pub disk: u64,
    /// The plan named in its metadata; None when no plan made it (or strata did not).
    pub plan: Option<String>,
    pub running: bool,
    /// What the plan last brought up in it in full (its record's `applied`).
    pub applied: Option<String>,
}

/// What a VM gets where the plan says nothing: the template's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmDefaults {
    pub memory: u64,
    pub cpus: u32,
    pub disk: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Network,
    Vm,
    /// Docker in a VM (named by the VM).
    Engine,
    /// A stack in a VM (named STACK@VM), or on a swarm (STACK@SWARM).
    Stack,
    /// A Docker Swarm of the plan's VMs.
    Swarm,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "action")]
pub enum Action {
    Create,
    /// Changed in place; `restart` when the change takes effect only at the next boot.
    Update {
        changes: Vec<String>,
        restart: bool,
    },
    /// Made again (its data disk kept): what cannot change in place.
    Replace {
        why: Vec<String>,
    },
    /// The plan's, but gone from the file.
    Delete,
    Unchanged,
    /// The name is taken by something the plan did not make: left alone.
    Refused {
        why: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub kind: ObjectKind,
    pub name: String,
    /// The plan's host it is on (None: the host strata connects to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(flatten)]
    pub action: Action,
}

/// Every network and VM of the plan or carrying its mark, with what apply would do to it, and
/// each VM's engine and stacks: networks first, then each VM by name followed by its engine
/// and stacks. `brought_up` is what apply would record as brought up in a VM (see
/// `apply`); None when it cannot be known (a stack file unreadable), which is never
/// "unchanged".
pub fn diff(
    plan: &Plan,
    defaults: &dyn Fn(&str) -> VmDefaults,
    brought_up: &dyn Fn(&PlanVm) -> Option<String>,
    networks: &[SeenNetwork],
    vms: &[SeenVm],
) -> Vec<Step> {
    let ours = |owner: &Option<String>| owner.as_deref() == Some(plan.name.as_str());
    let mut steps = Vec::new();
    for wanted in plan.networks.values() {
        let action = match networks.iter().find(|n| n.name == wanted.name) {
            None => Action::Create,
            Some(seen) if !ours(&seen.plan) => Action::Refused {
                why: not_the_plans("network", &seen.name, &seen.plan, &plan.name),
            },
            Some(seen) => network_action(wanted, seen),
        };
        steps.push(step(ObjectKind::Network, &wanted.name, action));
    }
    for seen in networks {
        if ours(&seen.plan) && !plan.networks.contains_key(&seen.name) {
            steps.push(step(ObjectKind::Network, &seen.name, Action::Delete));
        }
    }
    // Each VM's steps (its own first), and what apply would do inside it.
    let mut vm_steps: Vec<(String, Vec<Step>, Option<Action>)> = Vec::new();
    for wanted in plan.vms.values() {
        let seen = vms.iter().find(|v| v.name == wanted.name);
        let action = match seen {
            None => Action::Create,
            Some(seen) if !ours(&seen.plan) => Action::Refused {
                why: not_the_plans("VM", &seen.name, &seen.plan, &plan.name),
            },
            Some(seen) => vm_action(wanted, &defaults(&wanted.template), seen),
        };
        let mut group = vec![step(ObjectKind::Vm, &wanted.name, action.clone())];
        let inside = inside_action(&action, seen, brought_up(wanted));
        if let Some(inside) = &inside {
            if wanted.engine.is_some() {
                group.push(step(ObjectKind::Engine, &wanted.name, inside.clone()));
            }
            for stack in plan.stacks_on(&wanted.name) {
                let name = stack_object_name(&stack.name, &wanted.name);
                group.push(step(ObjectKind::Stack, &name, inside.clone()));
            }
        }
        vm_steps.push((wanted.name.clone(), group, inside));
    }
    for seen in vms {
        if ours(&seen.plan) && !plan.vms.contains_key(&seen.name) {
            let group = vec![step(ObjectKind::Vm, &seen.name, Action::Delete)];
            vm_steps.push((seen.name.clone(), group, None));
        }
    }
    steps.sort_by(|a, b| a.name.cmp(&b.name));
    vm_steps.sort_by(|a, b| a.0.cmp(&b.0));
    let swarm_steps: Vec<Step> = plan
        .swarms
        .values()
        .flat_map(|swarm| {
            let action = swarm_action(swarm, &vm_steps);
            let stacks = plan.stacks_on_swarm(&swarm.name).into_iter().map({
                let action = action.clone();
                move |stack| {
                    let name = stack_object_name(&stack.name, &swarm.name);
                    step(ObjectKind::Stack, &name, action.clone())
                }
            });
            std::iter::once(step(ObjectKind::Swarm, &swarm.name, action.clone())).chain(stacks)
        })
        .collect();
    steps.extend(vm_steps.into_iter().flat_map(|(_, group, _)| group));
    steps.extend(swarm_steps);
    steps
}

/// What apply would do to a swarm of the plan (and so to its stacks), from what it does to
/// its VMs: made when one of them is made; unchanged when each VM is, inside too (what a
/// member last brought up includes its swarm and the swarm's stack files, see `apply`);
/// otherwise converged through the guests (`swarm create` and `up` add what is missing).
fn swarm_action(swarm: &PlanSwarm, vm_steps: &[(String, Vec<Step>, Option<Action>)]) -> Action {
    let members: Vec<(&Step, &Option<Action>)> = swarm
        .members()
        .filter_map(|m| vm_steps.iter().find(|(name, _, _)| name == m))
        .map(|(_, group, inside)| (&group[0], inside))
        .collect();
    if let Some((refused, _)) = members
        .iter()
        .find(|(vm, _)| matches!(vm.action, Action::Refused { .. }))
    {
        return Action::Refused {
            why: format!("its VM '{}' is not the plan's", refused.name),
        };
    }
    if members
        .iter()
        .any(|(vm, _)| matches!(vm.action, Action::Create | Action::Replace { .. }))
    {
        return Action::Create;
    }
    if members
        .iter()
        .all(|(vm, inside)| vm.action == Action::Unchanged && *inside == &Some(Action::Unchanged))
    {
        return Action::Unchanged;
    }
    Action::Update {
        changes: vec!["converged through its VMs (each node and service checked)".to_string()],
        restart: false,
    }
}

/// What apply would do to a VM's engine and stacks, given what it does to the VM: made with
/// it, or unchanged when the VM runs and the plan last brought up exactly this in it, or
/// converged in the guest (an update). None when the VM is refused: nothing happens inside.
fn inside_action(vm: &Action, seen: Option<&SeenVm>, wanted: Option<String>) -> Option<Action> {
    let converge = |why: &str| Action::Update {
        changes: vec![why.to_string()],
        restart: false,
    };
    Some(match (vm, seen) {
        (Action::Refused { .. } | Action::Delete, _) => return None,
        (Action::Create | Action::Replace { .. }, _) | (_, None) => Action::Create,
        (_, Some(seen)) => match (&seen.applied, wanted) {
            (None, _) => converge("not brought up by this plan yet"),
            (Some(_), None) => converge("its stack files cannot be read now"),
            (Some(_), Some(_)) if !seen.running => {
                converge("the VM is not running: started, then checked")
            }
            (Some(had), Some(wants)) if *had == wants => Action::Unchanged,
            (Some(_), Some(_)) => {
                converge("the engine section or a stack file changed since the last apply")
            }
        },
    })
}

/// The name of a stack's object in a plan's steps and result rows: "STACK@VM" (a stack on a
/// `count` name has one object per VM).
pub fn stack_object_name(stack: &str, vm: &str) -> String {
    format!("{stack}@{vm}")
}

/// Whether the stack object `name` (see [`stack_object_name`]) runs on `vm`. Neither stack
/// nor VM names may hold '@', so the last one splits them.
pub fn stack_object_on(name: &str, vm: &str) -> bool {
    name.rsplit_once('@').is_some_and(|(_, on)| on == vm)
}

fn step(kind: ObjectKind, name: &str, action: Action) -> Step {
    Step {
        kind,
        name: name.to_string(),
        host: None,
        action,
    }
}

fn not_the_plans(kind: &str, name: &str, owner: &Option<String>, plan: &str) -> String {
    match owner {
        Some(other) => format!("{kind} '{name}' belongs to plan '{other}', not '{plan}'"),
        None => format!(
            "{kind} '{name}' exists and no plan made it (it was made by hand or by `strata` alone)"
        ),
    }
}

fn network_action(wanted: &PlanNetwork, seen: &SeenNetwork) -> Action {
    let mut why = Vec::new();
    if seen.subnet != Some(wanted.subnet) {
        let was = seen.subnet.map_or("none".to_string(), |s| s.to_string());
        why.push(format!("subnet {was} -> {}", wanted.subnet));
    }
    if seen.mode != mode_name(wanted.mode) {
        why.push(format!("mode {} -> {}", seen.mode, mode_name(wanted.mode)));
    }
    if why.is_empty() {
        Action::Unchanged
    } else {
        Action::Replace { why }
    }
}

fn mode_name(mode: NetworkMode) -> &'static str {
    match mode {
        NetworkMode::Isolated => "isolated",
        NetworkMode::Nat => "nat",
    }
}

fn vm_action(wanted: &PlanVm, defaults: &VmDefaults, seen: &SeenVm) -> Action {
    let memory = wanted.memory.unwrap_or(defaults.memory);
    let cpus = wanted.cpus.unwrap_or(defaults.cpus);
    let disk = wanted.disk.unwrap_or(defaults.disk);
    let mut why = Vec::new();
    if seen.template != wanted.template {
        why.push(format!("template {} -> {}", seen.template, wanted.template));
    }
    if seen.network != wanted.net {
        why.push(format!("network {} -> {}", seen.network, wanted.net));
    }
    if disk < seen.disk {
        why.push(format!(
            "disk shrinks {} -> {} (a disk is never shrunk in place)",
            format_size(seen.disk),
            format_size(disk)
        ));
    }
    if !why.is_empty() {
        return Action::Replace { why };
    }
    let mut changes = Vec::new();
    if memory != seen.memory {
        changes.push(format!(
            "memory {} -> {}",
            format_size(seen.memory),
            format_size(memory)
        ));
    }
    if cpus != seen.cpus {
        changes.push(format!("cpus {} -> {cpus}", seen.cpus));
    }
    if disk > seen.disk {
        changes.push(format!(
            "disk grows {} -> {}",
            format_size(seen.disk),
            format_size(disk)
        ));
    }
    if changes.is_empty() {
        Action::Unchanged
    } else {
        // Memory, vCPUs and the disk's size are taken at the next boot.
        Action::Update {
            changes,
            restart: true,
        }
    }
}

/// One line: how many objects get each action.
pub fn summary(steps: &[Step]) -> String {
    let count = |f: fn(&Action) -> bool| steps.iter().filter(|s| f(&s.action)).count();
    let parts = [
        (count(|a| matches!(a, Action::Create)), "to create"),
        (count(|a| matches!(a, Action::Update { .. })), "to update"),
        (count(|a| matches!(a, Action::Replace { .. })), "to replace"),
        (count(|a| matches!(a, Action::Delete)), "to delete"),
        (count(|a| matches!(a, Action::Refused { .. })), "refused"),
        (count(|a| matches!(a, Action::Unchanged)), "unchanged"),
    ];
    let said: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if said.is_empty() {
        "nothing in the plan".to_string()
    } else {
        said.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const PLAN: &str = r#"name = "lab"
[networks.lab]
subnet = "10.80.0.0/24"
[vms.db]
template = "debian-12"
net = "lab"
memory = "1G"
disk = "10G"
[vms.web]
template = "debian-12-docker"
net = "lab"
count = 2
"#;

    const GIB: u64 = 1 << 30;

    fn plan() -> Plan {
        Plan::parse(Path::new("plans/lab.toml"), PLAN).unwrap()
    }

    fn defaults(_: &str) -> VmDefaults {
        VmDefaults {
            memory: GIB / 2,
            cpus: 2,
            disk: 8 * GIB,
        }
    }

    /// What apply would bring up in a VM: a stand-in digest per VM.
    fn brought_up(vm: &PlanVm) -> Option<String> {
        Some(format!("digest-{}", vm.name))
    }

    fn net(name: &str, subnet: &str, plan: Option<&str>) -> SeenNetwork {
        SeenNetwork {
            name: name.into(),
            subnet: Some(subnet.parse().unwrap()),
            mode: "isolated".into(),
            plan: plan.map(str::to_string),
        }
    }

    /// The host as a successful apply leaves it.
    fn applied() -> (Vec<SeenNetwork>, Vec<SeenVm>) {
        let vm = |name: &str, template: &str, memory: u64, disk: u64| SeenVm {
            name: name.into(),
            template: template.into(),
            network: "lab".into(),
            memory,
            cpus: 2,
            disk,
            plan: Some("lab".into()),
            running: true,
            applied: Some(format!("digest-{name}")),
        };
        (
            vec![
                net("lab", "10.80.0.0/24", Some("lab")),
                net("default", "192.168.122.0/24", None),
            ],
            vec![
                vm("db", "debian-12", GIB, 10 * GIB),
                vm("web-1", "debian-12-docker", GIB / 2, 8 * GIB),
                vm("web-2", "debian-12-docker", GIB / 2, 8 * GIB),
            ],
        )
    }

    fn actions(networks: &[SeenNetwork], vms: &[SeenVm]) -> Vec<(String, Action)> {
        diff(&plan(), &defaults, &brought_up, networks, vms)
            .into_iter()
            .map(|s| (s.name, s.action))
            .collect()
    }

    fn action_of(steps: &[(String, Action)], name: &str) -> Action {
        steps.iter().find(|(n, _)| n == name).unwrap().1.clone()
    }

    #[test]
    fn an_empty_host_gets_everything_created_networks_first() {
        let steps = diff(&plan(), &defaults, &brought_up, &[], &[]);
        let order: Vec<(ObjectKind, &str)> =
            steps.iter().map(|s| (s.kind, s.name.as_str())).collect();
        assert_eq!(
            order,
            [
                (ObjectKind::Network, "lab"),
                (ObjectKind::Vm, "db"),
                (ObjectKind::Vm, "web-1"),
                (ObjectKind::Vm, "web-2")
            ]
        );
        assert!(steps.iter().all(|s| s.action == Action::Create));
        assert_eq!(summary(&steps), "4 to create");
    }

    #[test]
    fn an_applied_plan_is_unchanged_and_foreign_objects_are_not_listed() {
        let (networks, vms) = applied();
        let steps = diff(&plan(), &defaults, &brought_up, &networks, &vms);
        assert_eq!(steps.len(), 4, "{steps:?}");
        assert!(
            steps.iter().all(|s| s.action == Action::Unchanged),
            "{steps:?}"
        );
        assert_eq!(summary(&steps), "4 unchanged");
    }

    #[test]
    fn the_engine_and_stacks_converge_unless_the_plan_last_brought_up_exactly_this() {
        let plan = Plan::parse(
            Path::new("plans/lab.toml"),
            &format!(
                "{}[stacks.front]\nfile = \"front.toml\"\nvm = \"web\"\n",
                PLAN.replace("disk = \"10G\"\n", "disk = \"10G\"\n[vms.db.engine]\n")
            ),
        )
        .unwrap();
        let inside = |networks: &[SeenNetwork], vms: &[SeenVm]| -> Vec<(String, Action)> {
            diff(&plan, &defaults, &brought_up, networks, vms)
                .into_iter()
                .filter(|s| matches!(s.kind, ObjectKind::Engine | ObjectKind::Stack))
                .map(|s| (s.name, s.action))
                .collect()
        };
        let (networks, mut vms) = applied();
        let now = inside(&networks, &vms);
        let names: Vec<&str> = now.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["db", "front@web-1", "front@web-2"]);
        assert!(now.iter().all(|(_, a)| *a == Action::Unchanged), "{now:?}");
        // Edited files (another digest), a stopped VM, a VM never brought up: converged.
        vms[0].applied = Some("older".into());
        vms[1].running = false;
        vms[2].applied = None;
        let why = |name: &str| match action_of(&inside(&networks, &vms), name) {
            Action::Update { changes, restart } => {
                assert!(!restart);
                changes[0].clone()
            }
            other => panic!("{name}: {other:?}"),
        };
        assert!(why("db").contains("changed since the last apply"));
        assert!(why("front@web-1").contains("not running"));
        assert!(why("front@web-2").contains("not brought up"));
        // A VM to be made is made with its engine and stacks; a refused one has none.
        vms.retain(|v| v.name != "web-1");
        vms[0].plan = None;
        let after = inside(&networks, &vms);
        assert_eq!(action_of(&after, "front@web-1"), Action::Create);
        assert!(!after.iter().any(|(n, _)| n == "db"), "{after:?}");
    }

    #[test]
    fn drift_shows_as_create_update_and_delete() {
        let (networks, mut vms) = applied();
        // web-2 destroyed by hand, db's memory changed by hand, a VM of the plan gone from the file.
        vms.retain(|v| v.name != "web-2");
        vms[0].memory = 2 * GIB;
        vms.push(SeenVm {
            name: "old".into(),
            ..vms[1].clone()
        });
        let steps = actions(&networks, &vms);
        assert_eq!(action_of(&steps, "web-2"), Action::Create);
        assert_eq!(
            action_of(&steps, "db"),
            Action::Update {
                changes: vec!["memory 2 GiB -> 1 GiB".into()],
                restart: true
            }
        );
        assert_eq!(action_of(&steps, "old"), Action::Delete);
        assert_eq!(action_of(&steps, "web-1"), Action::Unchanged);
    }

    #[test]
    fn what_cannot_change_in_place_is_a_replace_with_why() {
        let (mut networks, mut vms) = applied();
        vms[0].template = "debian-11".into();
        vms[1].disk = 20 * GIB;
        networks[0].subnet = Some("10.81.0.0/24".parse().unwrap());
        let steps = actions(&networks, &vms);
        assert_eq!(
            action_of(&steps, "db"),
            Action::Replace {
                why: vec!["template debian-11 -> debian-12".into()]
            }
        );
        match action_of(&steps, "web-1") {
            Action::Replace { why } => assert!(
                why[0].starts_with("disk shrinks 20 GiB -> 8 GiB"),
                "{why:?}"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            action_of(&steps, "lab"),
            Action::Replace {
                why: vec!["subnet 10.81.0.0/24 -> 10.80.0.0/24".into()]
            }
        );
        // A bigger disk grows in place.
        let (networks, mut vms) = applied();
        vms[0].disk = 5 * GIB;
        assert_eq!(
            action_of(&actions(&networks, &vms), "db"),
            Action::Update {
                changes: vec!["disk grows 5 GiB -> 10 GiB".into()],
                restart: true
            }
        );
    }

    #[test]
    fn objects_the_plan_did_not_make_are_refused_never_taken_over() {
        let (mut networks, mut vms) = applied();
        vms[0].plan = None;
        vms[1].plan = Some("other".into());
        networks[0].plan = None;
        // A VM of another plan, not named in this one: not this plan's to delete.
        vms.push(SeenVm {
            name: "theirs".into(),
            plan: Some("other".into()),
            ..vms[2].clone()
        });
        let steps = actions(&networks, &vms);
        match action_of(&steps, "db") {
            Action::Refused { why } => assert!(why.contains("no plan made it"), "{why}"),
            other => panic!("{other:?}"),
        }
        match action_of(&steps, "web-1") {
            Action::Refused { why } => assert!(why.contains("belongs to plan 'other'"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(action_of(&steps, "lab"), Action::Refused { .. }));
        assert!(!steps.iter().any(|(n, _)| n == "theirs"), "{steps:?}");
        assert_eq!(
            summary(&diff(&plan(), &defaults, &brought_up, &networks, &vms)),
            "3 refused, 1 unchanged"
        );
    }

    #[test]
    fn a_swarm_follows_its_vms_and_what_they_last_brought_up() {
        let plan = Plan::parse(
            Path::new("plans/lab.toml"),
            &format!(
                "{}[swarms.lab]\nmanagers = [\"web-1\"]\nworkers = [\"web-2\"]\n\
                 [stacks.spread]\nfile = \"spread.toml\"\nswarm = \"lab\"\n",
                PLAN.replace("disk = \"10G\"\n", "disk = \"10G\"\n[vms.db.engine]\n")
            ),
        )
        .unwrap();
        let swarm_steps = |vms: &[SeenVm]| -> Vec<(ObjectKind, String, Action)> {
            let (networks, _) = applied();
            diff(&plan, &defaults, &brought_up, &networks, vms)
                .into_iter()
                .skip_while(|s| s.kind != ObjectKind::Swarm)
                .map(|s| (s.kind, s.name, s.action))
                .collect()
        };
        // Last, after every VM: the swarm, then its stacks (STACK@SWARM), with one action.
        let (_, mut vms) = applied();
        let all = |action: Action| {
            vec![
                (ObjectKind::Swarm, "lab".to_string(), action.clone()),
                (ObjectKind::Stack, "spread@lab".to_string(), action),
            ]
        };
        assert_eq!(swarm_steps(&[]), all(Action::Create));
        assert_eq!(swarm_steps(&vms), all(Action::Unchanged));
        // db is not in the swarm: what happens to it does not count.
        vms[0].applied = Some("older".into());
        assert_eq!(swarm_steps(&vms), all(Action::Unchanged));
        // A member that last brought up something else (say the swarm's stack file changed,
        // which is in its digest), or that stopped: converged through the guests.
        vms[2].applied = Some("older".into());
        assert!(matches!(swarm_steps(&vms)[0].2, Action::Update { .. }));
        vms[2].applied = Some("digest-web-2".into());
        vms[1].running = false;
        assert!(matches!(swarm_steps(&vms)[1].2, Action::Update { .. }));
        // A member made again makes it again; a member not the plan's refuses it.
        vms[1].running = true;
        vms.retain(|v| v.name != "web-2");
        assert_eq!(swarm_steps(&vms), all(Action::Create));
        let (_, mut vms) = applied();
        vms[1].plan = None;
        match &swarm_steps(&vms)[0].2 {
            Action::Refused { why } => assert!(why.contains("'web-1'"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn stack_objects_name_their_vm_and_match_only_it() {
        let name = stack_object_name("front", "web-1");
        assert_eq!(name, "front@web-1");
        assert!(stack_object_on(&name, "web-1"));
        assert!(!stack_object_on(&name, "web"));
        assert!(!stack_object_on(&name, "1"));
        assert!(!stack_object_on("front", "front"));
    }
}
