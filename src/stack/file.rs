//! The stack file (TOML): which VM the services run on, the stack's networks and volumes, and
//! each service as a container-template with parameters, its networks and what it depends on.
//! Parsing keeps each service's line so that every later error can name it.

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
    vm: String,
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
}

/// A parsed stack file.
#[derive(Debug, Clone)]
pub struct StackFile {
    pub path: PathBuf,
    pub name: String,
    pub vm: String,
    pub networks: BTreeMap<String, NetworkDecl>,
    pub volumes: BTreeMap<String, VolumeDecl>,
    pub services: BTreeMap<String, Service>,
}

/// A service with the line it starts on in the stack file.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub line: usize,
    pub decl: ServiceDecl,
}

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
            vm: raw.vm,
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
}
