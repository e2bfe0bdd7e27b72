//! A stack's services rendered before anything is touched: each service's container template
//! found by name, its parameters typed and rendered into a spec, the spec's values held to
//! their bounds, and the request it makes planned. Every error names the stack file, the
//! service's line and the service; `strata up --validate` stops here.

use crate::error::{Error, Result};
use crate::stack::file::{Service, StackFile};
use crate::stack::order::waves;
use crate::stack::{bounds, container};
use crate::template::container::{
    self as templates, ContainerTemplate, RenderContext, ServiceSpec,
};

/// A service with its template and rendered spec.
pub struct Resolved<'a> {
    pub service: &'a Service,
    /// Which start wave it belongs to (see order::waves).
    pub wave: usize,
    pub template: ContainerTemplate,
    pub spec: ServiceSpec,
}

/// Render every service of the stack (templates found, parameters typed, values within their
/// bounds), in start order.
pub fn resolve(stack: &StackFile) -> Result<Vec<Resolved<'_>>> {
    let waves = waves(stack)?;
    let search = templates::search_path();
    waves
        .iter()
        .enumerate()
        .flat_map(|(wave, names)| names.iter().map(move |name| (wave, name)))
        .map(|(wave, name)| {
            let service = &stack.services[name];
            let in_service = |e: Error, otherwise: &str| {
                let hint = e.hint().unwrap_or(otherwise).to_string();
                stack.error_at(service, e.message(), hint)
            };
            let template = templates::find(&search, &service.decl.template)
                .map_err(|e| in_service(e, "see container-templates/"))?;
            let context = RenderContext {
                stack: stack.name.clone(),
                service: name.clone(),
            };
            let spec = template
                .render(&service.decl.params, &context)
                .map_err(|e| in_service(e, "see params.toml of the template for its parameters"))?;
            bounds::check(&spec)
                .map_err(|e| in_service(e, "see the template's service.toml.j2"))?;
            Ok(Resolved {
                service,
                wave,
                template,
                spec,
            })
        })
        .collect()
}

/// Check a stack file without touching any VM: templates, parameters, order, requests.
pub fn validate(stack: &StackFile) -> Result<Vec<String>> {
    let resolved = resolve(stack)?;
    for r in &resolved {
        container::plan(stack, r.service, &r.spec, "sha256:validate")?;
    }
    Ok(resolved.iter().map(|r| r.service.name.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_parameter_of_the_wrong_type_names_file_line_service_given_and_expected() {
        let text = "vm = \"v\"\n\n[services.web]\ntemplate = \"busybox-httpd\"\nparams = { port = \"80\\n[[volumes]]\" }\n";
        let stack = StackFile::parse(Path::new("stacks/shop.toml"), text).unwrap();
        let err = validate(&stack).unwrap_err();
        assert_eq!(
            err.message(),
            r#"stacks/shop.toml:3: service 'web': parameter 'port' is "80\n[[volumes]]" (a string); expected an integer in 0..=65535"#
        );
        assert!(err.hint().unwrap().contains("port in the VM"), "{err:?}");
    }

    #[test]
    fn values_out_of_bounds_name_file_line_service_and_field() {
        let text = "vm = \"v\"\n[volumes.data]\n[services.app]\ntemplate = \"busybox-poller\"\nparams = { url = \"http://x/\", memory = \"1M\" }\n";
        let stack = StackFile::parse(Path::new("stacks/shop.toml"), text).unwrap();
        let err = validate(&stack).unwrap_err();
        assert!(
            err.message()
                .starts_with("stacks/shop.toml:3: service 'app': memory '1M' is out of range"),
            "{err}"
        );
        let at_the_bound = text.replace("memory = \"1M\"", "health_retries = 1000");
        assert!(validate(&StackFile::parse(Path::new("s.toml"), &at_the_bound).unwrap()).is_ok());
    }
}
