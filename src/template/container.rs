//! Container templates as data: each folder under container-templates/ holds params.toml (the
//! parameters a stack may set, with defaults and docs) and service.toml.j2, rendered with
//! minijinja in strict mode into a ServiceSpec: image, command, environment, ports, volumes,
//! memory limit, log options, restart policy, read-only root, health check.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// params.toml of a container template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamsFile {
    pub description: String,
    #[serde(default)]
    pub params: BTreeMap<String, ParamDecl>,
}

/// One parameter: without a default the stack must set it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDecl {
    pub default: Option<toml::Value>,
    pub doc: String,
}

/// A container template found on disk.
#[derive(Debug, Clone)]
pub struct ContainerTemplate {
    pub name: String,
    pub dir: PathBuf,
    pub params: ParamsFile,
}

/// Where the image comes from: exactly one of the three.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageSource {
    /// A registry reference ("postgres:15"), used when present in the VM, else pulled.
    pub reference: Option<String>,
    /// A build context folder, relative to the template's folder.
    pub build: Option<String>,
    /// Files from the host put into the build context: context path = host path.
    #[serde(default)]
    pub context_files: BTreeMap<String, String>,
    /// An image tarball (`docker save` format) on the host, loaded into the VM.
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
/// (colon-separated), ./container-templates, the installed share folder, the source tree.
pub fn search_path() -> Vec<PathBuf> {
    super::search_dirs("STRATA_CONTAINER_TEMPLATE_PATH", "container-templates")
}

impl ContainerTemplate {
    pub fn load(dir: &Path) -> Result<ContainerTemplate> {
        let path = dir.join("params.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::from(e).context(format!("reading {}", path.display())))?;
        let params: ParamsFile = super::parse_toml(&path, &text)?;
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        Ok(ContainerTemplate {
            name,
            dir: dir.to_path_buf(),
            params,
        })
    }

    /// Render service.toml.j2 with the stack's parameters over the defaults. An unknown or
    /// missing parameter is an error naming the parameters the template has.
    pub fn render(
        &self,
        given: &toml::Table,
        context: &RenderContext,
    ) -> std::result::Result<ServiceSpec, String> {
        let known = || {
            self.params
                .params
                .iter()
                .map(|(k, p)| format!("{k} ({})", p.doc))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if let Some(unknown) = given.keys().find(|k| !self.params.params.contains_key(*k)) {
            return Err(format!(
                "template '{}' has no parameter '{unknown}'; it has: {}",
                self.name,
                known()
            ));
        }
        let mut values = toml::Table::new();
        for (key, decl) in &self.params.params {
            match given.get(key).or(decl.default.as_ref()) {
                Some(v) => {
                    values.insert(key.clone(), v.clone());
                }
                None => {
                    return Err(format!(
                        "template '{}' needs parameter '{key}' ({})",
                        self.name, decl.doc
                    ))
                }
            }
        }
        let path = self.dir.join("service.toml.j2");
        let source = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        render_service(&path, &source, &values, &self.dir, context)
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
) -> std::result::Result<ServiceSpec, String> {
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
    let text =
        super::render_str(name, source, &ctx).map_err(|e| e.context(path.display()).to_string())?;
    toml::from_str(&text).map_err(|e| {
        format!(
            "{} rendered to TOML that does not describe a service: {}",
            path.display(),
            e.message()
        )
    })
}

/// What a service template may use besides its parameters.
#[derive(Debug, Clone, Serialize)]
pub struct RenderContext {
    pub stack: String,
    pub service: String,
}

/// Find one container template by name, or say which exist.
pub fn find(search: &[PathBuf], name: &str) -> Result<ContainerTemplate> {
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
            let mut given = toml::Table::new();
            // Required parameters get a value the way a stack would give one.
            for (key, decl) in &t.params.params {
                if decl.default.is_none() {
                    given.insert(key.clone(), toml::Value::String("x".into()));
                }
            }
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

    #[test]
    fn parameters_override_defaults_and_unknown_ones_are_refused() {
        let t = find(&shipped(), "busybox-httpd").unwrap();
        let mut given = toml::Table::new();
        given.insert("port".into(), toml::Value::Integer(8081));
        let spec = t.render(&given, &ctx()).unwrap();
        assert_eq!(spec.ports[0].host, 8081);
        given.insert("prot".into(), toml::Value::Integer(1));
        let err = t.render(&given, &ctx()).unwrap_err();
        assert!(
            err.contains("no parameter 'prot'") && err.contains("port ("),
            "{err}"
        );
    }

    #[test]
    fn unknown_template_lists_the_known_ones() {
        let err = find(&shipped(), "tomcat").unwrap_err();
        assert!(err.hint().unwrap().contains("tomcat-webapp"), "{err:?}");
    }
}
