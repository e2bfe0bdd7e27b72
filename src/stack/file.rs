//! The stack file (TOML): where the services run — one VM (`vm = "NAME"`) or a swarm of
//! strata's VMs (`swarm = "NAME"`, where services also take replicas, a mode and placement by
//! VM) —, the stack's networks and volumes, and each service as a container-template with
//! parameters, its networks and what it depends on. Parsing keeps each service's line so
//! that every later error can name it.

use crate::error::{Error, Result};
use crate::names::{is_valid_name, NAME_RULE};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A stack file as written, checked for shape (unknown fields are errors).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStack {
    name: Option<String>,
    vm: Option<String>,
    swarm: Option<String>,
    #[serde(default)]
    networks: BTreeMap<String, NetworkDecl>,
    #[serde(default)]
    volumes: BTreeMap<String, VolumeDecl>,
    services: BTreeMap<String, toml::Spanned<ServiceDecl>>,
}

/// A user network of the stack (Docker bridge network in the VM).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkDecl {
    /// e.g. "172.31.7.0/24"; Docker picks one from its pools when absent.
    pub subnet: Option<ipnet::Ipv4Net>,
    /// No route out of the VM for containers on it.
    #[serde(default)]
    pub internal: bool,
}

/// A named volume of the stack; kept by `strata down` unless --volumes.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VolumeDecl {}

/// One service as the stack file names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDecl {
    pub template: String,
    #[serde(default)]
    pub params: toml::Table,
    /// Stack networks to join (the service's name is its alias on each). Default: "default".
    #[serde(default)]
    pub networks: Vec<String>,
    /// Services that must be healthy (or running, without a health check) first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// On a swarm: how many tasks (default 1). Not with mode = "global".
    pub replicas: Option<u32>,
    /// On a swarm: "replicated" (the default) or "global" (one task on every allowed VM).
    pub mode: Option<String>,
    /// On a swarm: the VMs its tasks may run on (by the node label strata.vm); all when empty.
    #[serde(default)]
    pub placement: Vec<String>,
}

/// How a service's tasks are spread over a swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwarmMode {
    Replicated(u32),
    Global,
}

impl ServiceDecl {
    /// The service's mode on a swarm (checked when the file was parsed).
    pub fn swarm_mode(&self) -> SwarmMode {
        match self.mode.as_deref() {
            Some("global") => SwarmMode::Global,
            _ => SwarmMode::Replicated(self.replicas.unwrap_or(1)),
        }
    }
}

/// A parsed stack file.
#[derive(Debug, Clone)]
pub struct StackFile {
    pub path: PathBuf,
    pub name: String,
    /// The VM of a stack on one VM; empty for a stack on a swarm (see `require_vm`).
    pub vm: String,
    /// The swarm of a stack on a swarm.
    pub swarm: Option<String>,
    pub networks: BTreeMap<String, NetworkDecl>,
    pub volumes: BTreeMap<String, VolumeDecl>,
    pub services: BTreeMap<String, Service>,
}

/// Where a stack runs: on one VM (`vm = "..."`) or as services of a swarm (`swarm = "..."`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StackOn {
    Vm(String),
    Swarm(String),
}

/// A service with the line it starts on in the stack file.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub line: usize,
    pub decl: ServiceDecl,
}

/// More tasks of one service than this is a typo on the VMs strata makes.
pub const MAX_REPLICAS: u32 = 100;

/// The network a service joins when it names none.
pub const DEFAULT_NETWORK: &str = "default";

impl StackFile {
    pub fn load(path: &Path) -> Result<StackFile> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::from(e)
                .context(format!("reading stack file {}", path.display()))
                .with_hint("give the path of a stack file (TOML), e.g. stacks/demo.toml")
        })?;
        StackFile::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<StackFile> {
        let raw: RawStack = crate::template::parse_toml(path, text)?;
        let name = match raw.name {
            Some(n) => n,
            None => path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("stack")
                .to_string(),
        };
        check_name(path, "name", &name)?;
        for network in raw.networks.keys() {
            check_name(path, "network", network)?;
        }
        for volume in raw.volumes.keys() {
            check_name(path, "volume", volume)?;
        }
        let (vm, swarm) = match (raw.vm, raw.swarm) {
            (Some(vm), None) => {
                check_name(path, "vm", &vm)?;
                (vm, None)
            }
            (None, Some(swarm)) => {
                check_name(path, "swarm", &swarm)?;
                (String::new(), Some(swarm))
            }
            (vm, _) => {
                return Err(Error::bad_input(format!(
                    "{}: {}",
                    path.display(),
                    if vm.is_some() {
                        "the stack names both a vm and a swarm"
                    } else {
                        "the stack names no vm and no swarm"
                    }
                ))
                .with_hint(
                    "give one: vm = \"NAME\" (one VM) or swarm = \"NAME\" (a swarm made by `strata swarm create`)",
                ))
            }
        };
        let services: BTreeMap<String, Service> = raw
            .services
            .into_iter()
            .map(|(service, spanned)| {
                let line = line_of(text, spanned.span().start);
                let entry = Service {
                    name: service.clone(),
                    line,
                    decl: spanned.into_inner(),
                };
                (service, entry)
            })
            .collect();
        let mut networks = raw.networks;
        let stack = StackFile {
            path: path.to_path_buf(),
            name,
            vm,
            swarm,
            networks: BTreeMap::new(),
            volumes: raw.volumes,
            services,
        };
        if stack.services.is_empty() {
            return Err(Error::bad_input(format!(
                "{}: the stack has no [services.NAME]",
                path.display()
            ))
            .with_hint(
                "add at least one service, e.g. [services.web] template = \"busybox-httpd\"",
            ));
        }
        for service in stack.services.values() {
            check_name(path, "service", &service.name)?;
            // The template name becomes a folder path: a name, never a path.
            if !is_valid_name(&service.decl.template) {
                return Err(stack.error_at(
                    service,
                    format!(
                        "template '{}' is not a container template name",
                        service.decl.template
                    ),
                    format!("name a folder of container-templates; {NAME_RULE}"),
                ));
            }
            stack.check_swarm_fields(service)?;
            if service.decl.networks.is_empty() {
                networks.entry(DEFAULT_NETWORK.into()).or_default();
            }
            for net in &service.decl.networks {
                if !networks.contains_key(net) {
                    return Err(stack.error_at(
                        service,
                        format!("network '{net}' is not declared"),
                        format!("add [networks.{net}] to the stack file"),
                    ));
                }
            }
            for dep in &service.decl.depends_on {
                if !stack.services.contains_key(dep) {
                    return Err(stack.error_at(
                        service,
                        format!("depends_on names '{dep}', which is not a service of this stack"),
                        format!("services here: {}", stack.service_names()),
                    ));
                }
            }
        }
        Ok(StackFile { networks, ..stack })
    }

    /// Where the stack file at `path` says it runs: its VM, or its swarm.
    pub fn placement_of_file(path: &Path) -> Result<StackOn> {
        let file = StackFile::load(path)?;
        Ok(match file.swarm {
            Some(swarm) => StackOn::Swarm(swarm),
            None => StackOn::Vm(file.vm),
        })
    }

    /// The VM of a stack on one VM; a stack on a swarm is refused with where it belongs.
    pub fn require_vm(&self) -> Result<&str> {
        match &self.swarm {
            None => Ok(&self.vm),
            Some(swarm) => Err(Error::bad_input(format!(
                "{}: the stack runs on swarm '{swarm}', not on one VM",
                self.path.display()
            ))
            .with_hint("a stack on a swarm runs with `strata up`, `ps`, `logs` and `down`, or from a plan with `swarm = \"...\"` in its [stacks] entry")),
        }
    }

    /// replicas, mode and placement belong to a stack on a swarm, and agree with each other.
    fn check_swarm_fields(&self, service: &Service) -> Result<()> {
        let decl = &service.decl;
        let swarm_only = [
            ("replicas", decl.replicas.is_some()),
            ("mode", decl.mode.is_some()),
            ("placement", !decl.placement.is_empty()),
        ];
        if self.swarm.is_none() {
            if let Some((field, _)) = swarm_only.iter().find(|(_, set)| *set) {
                return Err(self.error_at(
                    service,
                    format!(
                        "{field} is for a stack on a swarm; this stack runs on VM '{}'",
                        self.vm
                    ),
                    "remove it, or put the stack on a swarm with swarm = \"NAME\" in place of vm",
                ));
            }
            return Ok(());
        }
        match decl.mode.as_deref() {
            None | Some("replicated") => {}
            Some("global") if decl.replicas.is_some() => {
                return Err(self.error_at(
                    service,
                    "replicas with mode = \"global\" (one task on every allowed VM)",
                    "remove replicas, or the mode",
                ))
            }
            Some("global") => {}
            Some(other) => {
                return Err(self.error_at(
                    service,
                    format!("mode '{other}' is not a swarm mode"),
                    "use \"replicated\" (with replicas = N) or \"global\"",
                ))
            }
        }
        if decl.replicas == Some(0) || decl.replicas.is_some_and(|n| n > MAX_REPLICAS) {
            return Err(self.error_at(
                service,
                format!("replicas {} is out of range", decl.replicas.unwrap_or(0)),
                format!("give 1 to {MAX_REPLICAS}; `strata down` stops a stack"),
            ));
        }
        if let Some(vm) = decl.placement.iter().find(|vm| !is_valid_name(vm)) {
            return Err(self.error_at(
                service,
                format!("placement '{vm}' is not a VM name"),
                NAME_RULE,
            ));
        }
        Ok(())
    }

    /// An error about `service`, naming the stack file and the service's line.
    pub fn error_at(
        &self,
        service: &Service,
        what: impl AsRef<str>,
        hint: impl Into<String>,
    ) -> Error {
        Error::bad_input(format!(
            "{}:{}: service '{}': {}",
            self.path.display(),
            service.line,
            service.name,
            what.as_ref()
        ))
        .with_hint(hint)
    }

    /// "db, web, ..." for hints.
    pub fn service_names(&self) -> String {
        self.services.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// Docker's name for a stack object: "STACK-NAME".
    pub fn scoped(&self, name: &str) -> String {
        format!("{}-{name}", self.name)
    }
}

/// Stack, service, network and volume names become Docker object names and DNS aliases.
fn check_name(path: &Path, what: &str, name: &str) -> Result<()> {
    if is_valid_name(name) {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "{}: {what} '{name}' is not a valid name",
        path.display()
    ))
    .with_hint(NAME_RULE))
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    crate::template::line_and_column(text, offset).0
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
vm = "demo"

[networks.back]

[volumes.data]

[services.db]
template = "busybox-httpd"
networks = ["back"]

[services.web]
template = "busybox-httpd"
depends_on = ["db"]
params = { port = 8080 }
"#;

    fn parse(text: &str) -> Result<StackFile> {
        StackFile::parse(Path::new("stacks/shop.toml"), text)
    }

    #[test]
    fn reads_services_with_their_lines_and_adds_the_default_network() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.name, "shop");
        assert_eq!(s.vm, "demo");
        assert_eq!(s.services["db"].line, 8);
        assert_eq!(s.services["web"].line, 12);
        assert_eq!(
            s.services["web"].decl.params["port"].as_integer(),
            Some(8080)
        );
        // web names no network: it joins "default", which the stack then has.
        assert!(s.networks.contains_key("default") && s.networks.contains_key("back"));
        assert_eq!(s.scoped("web"), "shop-web");
    }

    #[test]
    fn unknown_dependency_names_file_line_and_service() {
        let err =
            parse(&GOOD.replace("depends_on = [\"db\"]", "depends_on = [\"dbb\"]")).unwrap_err();
        assert!(
            err.message()
                .starts_with("stacks/shop.toml:12: service 'web': depends_on names 'dbb'"),
            "{err}"
        );
    }

    #[test]
    fn typos_and_undeclared_networks_are_refused() {
        let err = parse(&GOOD.replace(
            "template = \"busybox-httpd\"\ndepends_on",
            "templte = \"x\"\ndepends_on",
        ))
        .unwrap_err();
        assert!(err.message().contains("stacks/shop.toml:"), "{err}");
        let err =
            parse(&GOOD.replace("networks = [\"back\"]", "networks = [\"front\"]")).unwrap_err();
        assert!(
            err.message().contains("network 'front' is not declared"),
            "{err}"
        );
        let err = parse("vm = \"x\"\n[services.Web]\ntemplate = \"t\"\n").unwrap_err();
        assert!(err.message().contains("'Web' is not a valid name"), "{err}");
    }

    #[test]
    fn a_template_is_named_never_a_path() {
        for path in ["/tmp/x", "../..", "../contexts/busybox", "busybox-httpd/.."] {
            let text = GOOD.replace(
                "template = \"busybox-httpd\"\ndepends_on",
                &format!("template = {path:?}\ndepends_on"),
            );
            let err = parse(&text).unwrap_err();
            assert!(
                err.message().starts_with(&format!(
                    "stacks/shop.toml:12: service 'web': template '{path}' is not a container template name"
                )),
                "{err}"
            );
            assert!(err.hint().unwrap().contains("lowercase letters"), "{err:?}");
        }
    }

    #[test]
    fn network_and_volume_names_follow_the_name_rule() {
        for (bad, what) in [
            ("[networks.back]", "[networks.\"../x\"]"),
            ("[volumes.data]", "[volumes.\"/srv\"]"),
            ("[volumes.data]", "[volumes.Data]"),
        ] {
            let err = parse(&GOOD.replace(bad, what)).unwrap_err();
            assert!(
                err.message().contains("is not a valid name"),
                "{what}: {err}"
            );
        }
    }

    const ON_SWARM: &str = r#"
swarm = "lab"

[networks.back]
internal = true

[services.web]
template = "busybox-httpd"
replicas = 3
networks = ["back"]

[services.agent]
template = "busybox-poller"
mode = "global"
placement = ["n1", "n2"]
networks = ["back"]
params = { url = "http://web/" }
"#;

    #[test]
    fn a_stack_on_a_swarm_has_modes_and_no_vm() {
        let s = parse(ON_SWARM).unwrap();
        assert_eq!(s.swarm.as_deref(), Some("lab"));
        assert_eq!(
            s.services["web"].decl.swarm_mode(),
            SwarmMode::Replicated(3)
        );
        assert_eq!(s.services["agent"].decl.swarm_mode(), SwarmMode::Global);
        let err = s.require_vm().unwrap_err();
        assert!(err.message().contains("runs on swarm 'lab'"), "{err}");
        let plain = parse(GOOD).unwrap();
        assert_eq!(plain.require_vm().unwrap(), "demo");
        assert_eq!(
            plain.services["db"].decl.swarm_mode(),
            SwarmMode::Replicated(1)
        );
    }

    #[test]
    fn where_a_stack_runs_is_one_vm_or_one_swarm() {
        let both = format!("vm = \"demo\"\n{ON_SWARM}");
        let err = parse(&both).unwrap_err();
        assert!(err.message().contains("both a vm and a swarm"), "{err}");
        let neither = ON_SWARM.replace("swarm = \"lab\"", "");
        let err = parse(&neither).unwrap_err();
        assert!(err.message().contains("no vm and no swarm"), "{err}");
        assert!(err.hint().unwrap().contains("swarm = \"NAME\""), "{err:?}");
        let err = parse(&ON_SWARM.replace("\"lab\"", "\"../lab\"")).unwrap_err();
        assert!(
            err.message().contains("swarm '../lab' is not a valid name"),
            "{err}"
        );
    }

    #[test]
    fn swarm_fields_are_checked_where_they_are_written() {
        let cases = [
            (
                GOOD.replace("depends_on = [\"db\"]", "replicas = 2"),
                "stacks/shop.toml:12: service 'web': replicas is for a stack on a swarm",
            ),
            (
                ON_SWARM.replace("mode = \"global\"", "mode = \"global\"\nreplicas = 2"),
                "service 'agent': replicas with mode = \"global\"",
            ),
            (
                ON_SWARM.replace("mode = \"global\"", "mode = \"everywhere\""),
                "mode 'everywhere' is not a swarm mode",
            ),
            (
                ON_SWARM.replace("replicas = 3", "replicas = 0"),
                "service 'web': replicas 0 is out of range",
            ),
            (
                ON_SWARM.replace("replicas = 3", "replicas = 101"),
                "replicas 101 is out of range",
            ),
            (
                ON_SWARM.replace("\"n2\"", "\"n/2\""),
                "placement 'n/2' is not a VM name",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(&text).unwrap_err();
            assert!(
                err.message().contains(expected),
                "expected {expected:?} in {err}"
            );
            assert!(err.hint().is_some(), "{err:?}");
        }
    }
}
