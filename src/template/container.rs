//! Container templates as data: each folder under container-templates/ holds params.toml (the
//! parameters a stack may set, typed, with defaults and docs: params.rs) and service.toml.j2,
//! rendered with minijinja in strict mode, values TOML-escaped, into a ServiceSpec: image,
//! command, environment, ports, volumes, memory limit, log options, restart policy, read-only
//! root, health check. A template is found by name, never by path, and what its [image] reads
//! on the host (confine.rs) and mounts in the VM (volume_sources.rs) is checked at render.

pub use super::params::{ParamDecl, ParamType, ParamsFile};
use crate::error::{Error, Result};
use crate::names::{is_valid_name, NAME_RULE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A container template found on disk.
#[derive(Debug, Clone)]
pub struct ContainerTemplate {
    pub name: String,
    pub dir: PathBuf,
    pub params: ParamsFile,
}

/// Where the image comes from: exactly one of reference, build, tarball. Every host path
/// here is held to the template's folder or to public system files (confine.rs).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageSource {
    /// A registry reference ("postgres:15"), used when present in the VM, else pulled.
    pub reference: Option<String>,
    /// A build context folder inside the template's folder, relative to it.
    pub build: Option<String>,
    /// The built image's name (strata-build/NAME:HASH); default: the template's. Templates
    /// with identical contexts share one image by giving the same name.
    pub name: Option<String>,
    /// Public system files copied into the build context: context path = host path.
    #[serde(default)]
    pub context_files: BTreeMap<String, String>,
    /// An image tarball (`docker save` format) inside the template's folder, loaded into
    /// the VM.
    pub tarball: Option<String>,
}

/// Log options; every service gets rotation (the paper's full-disk lesson).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    #[serde(default = "default_log_driver")]
    pub driver: String,
    pub max_size: String,
    pub max_file: u32,
}

fn default_log_driver() -> String {
    "local".into()
}

/// Docker's health check, with durations as "2s", "500ms".
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HealthSpec {
    pub test: Vec<String>,
    pub interval: String,
    pub timeout: String,
    pub retries: u32,
    #[serde(default = "zero_duration")]
    pub start_period: String,
}

fn zero_duration() -> String {
    "0s".into()
}

/// A published port: `host_ip:host_port` in the VM to the container's port.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    pub container: u16,
    pub host: u16,
    #[serde(default = "loopback")]
    pub host_ip: String,
}

fn loopback() -> String {
    "127.0.0.1".into()
}

/// A mount: a stack volume by name, or an absolute path in the VM.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}

/// What a rendered service.toml.j2 says about one container.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub image: ImageSource,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
    /// Required: a container without a memory limit can take the VM down (the OOM lesson).
    pub memory: String,
    pub log: LogSpec,
    #[serde(default = "default_restart")]
    pub restart: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub tmpfs: Vec<String>,
    pub user: Option<String>,
    pub healthcheck: Option<HealthSpec>,
}

fn default_restart() -> String {
    "unless-stopped".into()
}

/// Where container templates are looked up, first match wins: STRATA_CONTAINER_TEMPLATE_PATH
/// (colon-separated), the installed share folder, the source tree (never the current folder).
pub fn search_path() -> Vec<PathBuf> {
    super::search_dirs("STRATA_CONTAINER_TEMPLATE_PATH", "container-templates")
}

impl ContainerTemplate {
    /// Load the template in `dir`; its folder is kept with symlinks resolved, as the one
    /// place its image paths must stay in.
    pub fn load(dir: &Path) -> Result<ContainerTemplate> {
        let path = dir.join("params.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::from(e).context(format!("reading {}", path.display())))?;
        let params = ParamsFile::parse(&path, &text)?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::from(e).context(format!("resolving {}", dir.display())))?;
        Ok(ContainerTemplate { name, dir, params })
    }

    /// Render service.toml.j2 with the stack's parameters over the defaults. An unknown or
    /// missing parameter, or one of the wrong type or out of its bounds, is an error naming
    /// the parameter, checked before anything is rendered.
    pub fn render(&self, given: &toml::Table, context: &RenderContext) -> Result<ServiceSpec> {
        let params_file = self.dir.join("params.toml");
        if let Some(unknown) = given.keys().find(|k| !self.params.params.contains_key(*k)) {
            let known = self
                .params
                .params
                .iter()
                .map(|(k, p)| format!("{k} ({})", p.doc))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Error::bad_input(format!(
                "template '{}' has no parameter '{unknown}'",
                self.name
            ))
            .with_hint(format!("it has: {known}")));
        }
        let mut values = toml::Table::new();
        for (key, decl) in &self.params.params {
            let value = match (given.get(key), &decl.default) {
                (Some(value), _) => {
                    decl.accepts(value).map_err(|expected| {
                        Error::bad_input(format!(
                            "parameter '{key}' is {}; expected {expected}",
                            super::params::shown(value)
                        ))
                        .with_hint(format!(
                            "{key}: {}; see {}",
                            decl.doc,
                            params_file.display()
                        ))
                    })?;
                    value
                }
                (None, Some(default)) => default,
                (None, None) => {
                    return Err(Error::bad_input(format!(
                        "template '{}' needs parameter '{key}' ({})",
                        self.name, decl.kind
                    ))
                    .with_hint(format!("set params.{key}: {}", decl.doc)))
                }
            };
            values.insert(key.clone(), value.clone());
        }
        let spec = self.render_values(&values, context)?;
        super::confine::check_image(&self.name, &self.dir, &spec.image)?;
        super::volume_sources::check(self, &spec, &values, context)?;
        Ok(spec)
    }

    /// service.toml.j2 rendered with exactly these parameter values, read as a ServiceSpec.
    pub(super) fn render_values(
        &self,
        values: &toml::Table,
        context: &RenderContext,
    ) -> Result<ServiceSpec> {
        let path = self.dir.join("service.toml.j2");
        let source = std::fs::read_to_string(&path)
            .map_err(|e| Error::from(e).context(format!("reading {}", path.display())))?;
        render_service(&path, &source, values, &self.dir, context)
    }
}

/// Render the text of a service.toml.j2 (read from `path`, which names it in errors) with the
/// parameter values decided, and read the result as a ServiceSpec. Kept apart from the file
/// read so that the fuzz targets can feed it template text from other people.
pub fn render_service(
    path: &Path,
    source: &str,
    values: &toml::Table,
    template_dir: &Path,
    context: &RenderContext,
) -> Result<ServiceSpec> {
    let ctx = serde_json::json!({
        "params": values,
        "stack": context.stack,
        "service": context.service,
        "template_dir": template_dir,
    });
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("service.toml.j2");
    let text = super::render_str(name, source, &ctx).map_err(|e| e.context(path.display()))?;
    toml::from_str(&text).map_err(|e| {
        Error::bad_input(format!(
            "{} rendered to TOML that does not describe a service: {}",
            path.display(),
            e.message()
        ))
        .with_hint(
            "a parameter's value may not fit where the template puts it; see service.toml.j2",
        )
    })
}

/// What a service template may use besides its parameters.
#[derive(Debug, Clone, Serialize)]
pub struct RenderContext {
    pub stack: String,
    pub service: String,
}

/// Find one container template by name, or say which exist. A name, never a path: it is
/// joined onto each search folder.
pub fn find(search: &[PathBuf], name: &str) -> Result<ContainerTemplate> {
    if !is_valid_name(name) {
        return Err(
            Error::bad_input(format!("'{name}' is not a container template name"))
                .with_hint(NAME_RULE),
        );
    }
    for dir in search {
        let folder = dir.join(name);
        if folder.join("service.toml.j2").is_file() {
            return ContainerTemplate::load(&folder);
        }
    }
    let known = list(search)?
        .into_iter()
        .map(|t| t.name)
        .collect::<Vec<_>>();
    Err(
        Error::not_found(format!("unknown container template '{name}'")).with_hint(format!(
            "container templates: {}",
            if known.is_empty() {
                "none found".to_string()
            } else {
                known.join(", ")
            }
        )),
    )
}

/// Every container template on the search path, first occurrence of each name.
pub fn list(search: &[PathBuf]) -> Result<Vec<ContainerTemplate>> {
    let mut found: Vec<ContainerTemplate> = Vec::new();
    for folder in super::folders_with(search, "service.toml.j2") {
        // A folder whose name no stack could ask for is not a template.
        let named = folder.file_name().and_then(|n| n.to_str());
        if !named.is_some_and(is_valid_name) {
            continue;
        }
        let t = ContainerTemplate::load(&folder)?;
        if !found.iter().any(|f| f.name == t.name) {
            found.push(t);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Vec<PathBuf> {
        vec![PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/container-templates"
        ))]
    }

    fn ctx() -> RenderContext {
        RenderContext {
            stack: "shop".into(),
            service: "web".into(),
        }
    }

    #[test]
    fn every_shipped_template_renders_with_its_defaults_and_has_a_memory_limit() {
        let all = list(&shipped()).unwrap();
        for name in [
            "tomcat-webapp",
            "apache-python",
            "postgres-metadata",
            "socat-ambassador",
            "ssh-ambassador",
            "docker-socket-proxy",
            "busybox-httpd",
            "busybox-tcp-ambassador",
        ] {
            assert!(all.iter().any(|t| t.name == name), "{name} missing");
        }
        for t in all {
            let given = required_values(&t);
            let spec = t
                .render(&given, &ctx())
                .unwrap_or_else(|e| panic!("{}: {e}", t.name));
            crate::units::parse_size("memory", &spec.memory).unwrap();
            assert!(!spec.log.max_size.is_empty(), "{}", t.name);
            let sources = [
                &spec.image.reference,
                &spec.image.build,
                &spec.image.tarball,
            ];
            assert_eq!(
                sources.iter().filter(|s| s.is_some()).count(),
                1,
                "{}",
                t.name
            );
        }
    }

    /// Required parameters with a value the way a stack would give one.
    fn required_values(t: &ContainerTemplate) -> toml::Table {
        t.params
            .params
            .iter()
            .filter(|(_, decl)| decl.default.is_none())
            .map(|(key, decl)| {
                let value = match decl.kind {
                    ParamType::Integer => toml::Value::Integer(decl.min.unwrap_or(1).max(1)),
                    ParamType::Bool => toml::Value::Boolean(true),
                    ParamType::List => toml::Value::Array(vec!["x".into()]),
                    ParamType::String => toml::Value::String("x".into()),
                };
                (key.clone(), value)
            })
            .collect()
    }

    #[test]
    fn parameters_override_defaults_and_unknown_ones_are_refused() {
        let t = find(&shipped(), "busybox-httpd").unwrap();
        let mut given = toml::Table::new();
        given.insert("port".into(), toml::Value::Integer(8081));
        let spec = t.render(&given, &ctx()).unwrap();
        assert_eq!(spec.ports[0].host, 8081);
        given.insert("prot".into(), toml::Value::Integer(1));
        let err = t.render(&given, &ctx()).unwrap_err();
        assert!(err.message().contains("no parameter 'prot'"), "{err}");
        assert!(err.hint().unwrap().contains("port ("), "{err}");
    }

    #[test]
    fn parameters_of_the_wrong_type_or_out_of_range_are_refused_before_rendering() {
        let t = find(&shipped(), "busybox-httpd").unwrap();
        for (value, says) in [
            (
                toml::Value::String("8080\n[[volumes]]".into()),
                r#"parameter 'port' is "8080\n[[volumes]]" (a string); expected an integer in 0..=65535"#,
            ),
            (
                toml::Value::Integer(70000),
                "parameter 'port' is 70000 (an integer); expected an integer in 0..=65535",
            ),
            (
                toml::Value::Boolean(true),
                "parameter 'port' is true (a bool); expected an integer in 0..=65535",
            ),
        ] {
            let given = toml::Table::from_iter([("port".to_string(), value)]);
            let err = t.render(&given, &ctx()).unwrap_err();
            assert_eq!(err.message(), says);
            assert!(err.hint().unwrap().contains("params.toml"), "{err:?}");
        }
        let given = toml::Table::from_iter([("content".to_string(), toml::Value::Integer(1))]);
        let err = t.render(&given, &ctx()).unwrap_err();
        assert!(err.message().contains("expected a string"), "{err}");
    }

    #[test]
    fn every_shipped_port_and_retry_parameter_is_bounded() {
        for t in list(&shipped()).unwrap() {
            for (key, decl) in &t.params.params {
                if key.contains("port") || key.contains("retries") {
                    assert_eq!(decl.kind, ParamType::Integer, "{}: {key}", t.name);
                    assert!(
                        decl.min.is_some() && decl.max.is_some_and(|m| m <= 65535),
                        "{}: {key} has no bounds",
                        t.name
                    );
                }
            }
        }
    }

    /// Values that try to leave their TOML string, for every string parameter of every
    /// shipped template: each render fails, or gives the template's own image, volumes and
    /// ports (never one the value wrote).
    #[test]
    fn injected_parameters_add_no_volume_port_or_image() {
        const ATTACKS: [&str; 7] = [
            // The rest of the template's line closes the injected string: these parse when
            // nothing is escaped.
            "x\"\n[[volumes]]\nsource = \"/\"\ntarget = \"/host",
            "x\"\n[[ports]]\ncontainer = 22\nhost = 2222\nhost_ip = \"0.0.0.0",
            "x\"\n[[volumes]]\nsource = \"/\"\ntarget = \"/host\"\n[x]\ny = \"",
            "x\"\n[[ports]]\ncontainer = 22\nhost = 2222\nhost_ip = \"0.0.0.0\"\n#",
            "x'''\n[image]\nreference = 'evil'\ncontext_files = { k = '/etc/shadow' }\n'''",
            "x\"]\nvolumes = [{ source = \"/\", target = \"/host\" }]\n#",
            "x\r\n[[volumes]]\r\nsource = '/'\r\ntarget = '/host'",
        ];
        for t in list(&shipped()).unwrap() {
            let base = required_values(&t);
            let own = t.render(&base, &ctx()).unwrap();
            for (key, decl) in &t.params.params {
                if decl.kind != ParamType::String {
                    continue;
                }
                for attack in ATTACKS {
                    let mut given = base.clone();
                    given.insert(key.clone(), toml::Value::String(attack.into()));
                    let Ok(spec) = t.render(&given, &ctx()) else {
                        continue;
                    };
                    let what = format!("{}: {key} = {attack:?}", t.name);
                    assert_eq!(spec.image.build, own.image.build, "{what}");
                    assert_eq!(spec.image.tarball, own.image.tarball, "{what}");
                    assert_eq!(spec.image.context_files, own.image.context_files, "{what}");
                    assert_eq!(spec.ports, own.ports, "{what}");
                    assert_eq!(spec.volumes.len(), own.volumes.len(), "{what}");
                    for (v, o) in spec.volumes.iter().zip(&own.volumes) {
                        assert_eq!((&v.target, v.read_only), (&o.target, o.read_only), "{what}");
                        assert!(
                            v.source == o.source || !v.source.starts_with('/'),
                            "{what}: volume source {}",
                            v.source
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_template_name_that_is_a_path_is_refused_before_any_lookup() {
        for path in [
            "/tmp/x",
            "..",
            "../contexts",
            "busybox-httpd/../busybox-poller",
        ] {
            let err = find(&shipped(), path).unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::BadInput, "{path}");
            assert!(
                err.message().contains("is not a container template name"),
                "{path}: {err}"
            );
        }
    }

    #[test]
    fn unknown_template_lists_the_known_ones() {
        let err = find(&shipped(), "tomcat").unwrap_err();
        assert!(err.hint().unwrap().contains("tomcat-webapp"), "{err:?}");
    }

    #[test]
    fn a_template_whose_build_context_leaves_its_folder_does_not_render() {
        // A template (in a folder the test makes) whose build context is someone else's.
        let top = std::env::temp_dir().join(format!("strata-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        std::fs::create_dir_all(top.join("evil")).unwrap();
        std::fs::write(top.join("evil/params.toml"), "description = \"e\"\n").unwrap();
        std::fs::write(
            top.join("evil/service.toml.j2"),
            "memory = \"32M\"\n[image]\nbuild = \"../../..\"\n[log]\nmax_size = \"1m\"\nmax_file = 1\n",
        )
        .unwrap();
        let search = vec![top.clone()];
        let t = find(&search, "evil").unwrap();
        let ctx = RenderContext {
            stack: "s".into(),
            service: "web".into(),
        };
        let err = t.render(&toml::Table::new(), &ctx).unwrap_err();
        assert!(
            err.message()
                .starts_with("template 'evil': image.build '../../..' is /")
                && err.message().contains("outside the template's folder"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&top);
    }
}
