//! What a rendered `[[volumes]] source` may be: the name of a stack volume (the name rule), or
//! an absolute path in the VM that the template itself wrote. A parameter may name a volume,
//! never a path in the VM: `volume = "/"` for a template that mounts `{{ params.volume }}`
//! would otherwise mount the VM's root. Where a path came from is told by rendering the
//! template again with every string parameter replaced by a plain word: a path the template
//! wrote is still there, one a parameter made is not.

use super::container::{ContainerTemplate, RenderContext, ServiceSpec};
use crate::error::{Error, Result};
use crate::names::{is_valid_name, NAME_RULE};

/// What every non-empty string parameter becomes in the second rendering, numbered so that
/// no two are alike (they may be keys): a valid name, so the template renders as it would for
/// a volume name. Empty strings stay empty, so tests like `{% if params.x %}` take the same
/// branch.
const PROBE: &str = "strata-probe";

/// Check each volume source of `spec`, rendered by `template` from `values`.
pub(super) fn check(
    template: &ContainerTemplate,
    spec: &ServiceSpec,
    values: &toml::Table,
    context: &RenderContext,
) -> Result<()> {
    let mut own_paths: Option<Vec<String>> = None;
    for (index, volume) in spec.volumes.iter().enumerate() {
        let source = &volume.source;
        if !source.starts_with('/') {
            if is_valid_name(source) {
                continue;
            }
            return Err(Error::bad_input(format!(
                "template '{}': volume source '{source}' (for {}) is neither a stack volume name nor an absolute path",
                template.name, volume.target
            ))
            .with_hint(format!("a volume name: {NAME_RULE}")));
        }
        let own = match &mut own_paths {
            Some(own) => own,
            none => none.insert(template_paths(template, values, context).map_err(|e| {
                Error::bad_input(format!(
                    "template '{}': cannot tell whether volume source '{source}' is the template's own: rendered with plain words for its parameters it fails: {}",
                    template.name,
                    e.message()
                ))
                .with_hint("a template's absolute volume sources must not depend on its parameters")
            })?),
        };
        // The same entry, not just any: a path the template mounts read-only in one entry
        // must not be what a parameter puts into another.
        if own.get(index) != Some(source) {
            return Err(Error::bad_input(format!(
                "template '{}': volume source '{source}' (for {}) comes from a parameter",
                template.name, volume.target
            ))
            .with_hint(
                "a parameter may name a stack volume ([volumes.NAME] in the stack file), never a path in the VM",
            ));
        }
    }
    Ok(())
}

/// The volume sources, entry by entry, the template renders with every string parameter
/// replaced by a probe word: the absolute ones are the paths it writes itself.
fn template_paths(
    template: &ContainerTemplate,
    values: &toml::Table,
    context: &RenderContext,
) -> Result<Vec<String>> {
    let mut count = 0;
    let probed: toml::Table = values
        .iter()
        .map(|(key, value)| (key.clone(), probe(value, &mut count)))
        .collect();
    Ok(template
        .render_values(&probed, context)?
        .volumes
        .into_iter()
        .map(|v| v.source)
        .collect())
}

fn probe(value: &toml::Value, count: &mut usize) -> toml::Value {
    match value {
        toml::Value::String(s) if !s.is_empty() => {
            *count += 1;
            toml::Value::String(format!("{PROBE}-{count}"))
        }
        toml::Value::Array(items) => {
            toml::Value::Array(items.iter().map(|item| probe(item, count)).collect())
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::container::find;
    use super::*;
    use std::path::{Path, PathBuf};

    fn shipped() -> Vec<PathBuf> {
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("container-templates")]
    }

    fn ctx() -> RenderContext {
        RenderContext {
            stack: "shop".into(),
            service: "app".into(),
        }
    }

    fn poller(volume: &str) -> Result<ServiceSpec> {
        let t = find(&shipped(), "busybox-poller").unwrap();
        let given = toml::Table::from_iter([
            ("url".to_string(), toml::Value::from("http://web/")),
            ("volume".to_string(), toml::Value::from(volume)),
        ]);
        t.render(&given, &ctx())
    }

    #[test]
    fn a_parameter_names_a_volume_never_a_path_in_the_vm() {
        assert_eq!(poller("data").unwrap().volumes[0].source, "data");
        for path in ["/", "/etc", "/var/run/docker.sock", "/data/../.."] {
            let err = poller(path).unwrap_err();
            assert_eq!(
                err.message(),
                format!("template 'busybox-poller': volume source '{path}' (for /data) comes from a parameter"),
            );
            assert!(err.hint().unwrap().contains("[volumes.NAME]"), "{err:?}");
        }
        for bad in ["../data", "Data", "a:b", ""] {
            let err = poller(bad).unwrap_err();
            assert!(
                err.message()
                    .contains("is neither a stack volume name nor an absolute path"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_parameter_cannot_take_the_path_of_another_entry() {
        let top = std::env::temp_dir().join(format!("strata-vs-{}", std::process::id()));
        let dir = top.join("two-mounts");
        std::fs::create_dir_all(&dir).unwrap();
        // The shipped socket proxy (its socket mounted read-only) with one more mount whose
        // source is a parameter.
        let proxy =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("container-templates/docker-socket-proxy");
        let service = std::fs::read_to_string(proxy.join("service.toml.j2")).unwrap()
            + "\n[[volumes]]\nsource = \"{{ params.volume }}\"\ntarget = \"/rw\"\n";
        std::fs::write(dir.join("service.toml.j2"), service).unwrap();
        let params = std::fs::read_to_string(proxy.join("params.toml")).unwrap()
            + "\n[params.volume]\ndefault = \"data\"\ndoc = \"mounted at /rw\"\n";
        std::fs::write(dir.join("params.toml"), params).unwrap();
        let t = find(std::slice::from_ref(&top), "two-mounts").unwrap();
        assert!(t.render(&toml::Table::new(), &ctx()).is_ok());
        let given = toml::Table::from_iter([(
            "volume".to_string(),
            toml::Value::from("/var/run/docker.sock"),
        )]);
        let err = t.render(&given, &ctx()).unwrap_err();
        assert!(
            err.message().contains("(for /rw) comes from a parameter"),
            "{err}"
        );
        std::fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn paths_the_template_writes_itself_stay_allowed() {
        let t = find(&shipped(), "docker-socket-proxy").unwrap();
        let spec = t.render(&toml::Table::new(), &ctx()).unwrap();
        assert_eq!(spec.volumes[0].source, "/var/run/docker.sock");
        // Even when a parameter happens to hold the same text.
        let given = toml::Table::from_iter([(
            "image".to_string(),
            toml::Value::from("/var/run/docker.sock"),
        )]);
        assert!(t.render(&given, &ctx()).is_ok());
    }
}
