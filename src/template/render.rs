//! minijinja rendering in strict mode: a variable the caller did not provide is an error,
//! never an empty string in a libvirt XML. Files named *.xml.j2 are XML-escaped, files named
//! *.toml.j2 TOML-escaped (toml_escape.rs), *.bash.j2 as shell words (shell_escape.rs); values
//! rendered into the guest's *.sh.j2 scripts are the caller's to quote.

use super::{shell_escape, toml_escape};
use crate::error::{Context, Result};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;
use std::path::Path;

/// The work one render may do, in minijinja's fuel (about one unit per instruction and per 64
/// bytes of data made). Templates may come from other people: a loop in a loop or a string
/// repeated a hundred million times must end in an error, not a hang or gigabytes of memory.
/// strata's own templates render with under 2% of it.
const RENDER_FUEL: u64 = 1_000_000;

fn environment<'a>() -> Environment<'a> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(RENDER_FUEL));
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".xml.j2") || name.ends_with(".xml") {
            minijinja::AutoEscape::Html
        } else if let Some(toml) = toml_escape::mode_for(name) {
            toml
        } else if let Some(shell) = shell_escape::mode_for(name) {
            shell
        } else {
            minijinja::AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        let in_shell = matches!(state.auto_escape(),
            minijinja::AutoEscape::Custom(mode) if mode == shell_escape::SHELL);
        if in_shell && !value.is_safe() {
            return out
                .write_str(&shell_escape::word(value)?)
                .map_err(minijinja::Error::from);
        }
        toml_escape::formatter(out, state, value)
    });
    env
}

/// Render `source` as a template called `name` (the name decides escaping).
pub fn render_str(name: &str, source: &str, context: &impl Serialize) -> Result<String> {
    let mut env = environment();
    env.add_template(name, source)?;
    let value = minijinja::Value::from(minijinja::value::Serde(context));
    Ok(env.get_template(name)?.render(value)?)
}

/// Render the template file at `path`.
pub fn render_file(path: &Path, context: &impl Serialize) -> Result<String> {
    let source = std::fs::read_to_string(path).context(format!("reading {}", path.display()))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("template");
    render_str(name, &source, context).map_err(|e| e.context(path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn undefined_variable_is_an_error() {
        let err =
            render_str("d.xml.j2", "<name>{{ nmae }}</name>", &json!({"name": "a"})).unwrap_err();
        assert!(err.message().contains("undefined"), "{err}");
    }

    #[test]
    fn xml_templates_escape_values() {
        let out = render_str("d.xml.j2", "<d>{{ v }}</d>", &json!({"v": "a<b&'c"})).unwrap();
        assert_eq!(out, "<d>a&lt;b&amp;&#x27;c</d>");
    }

    /// Found by probing the service_template fuzz target: nested loops ran for minutes and a
    /// repeated string took gigabytes; both now stop with an error.
    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let nested =
            "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}";
        let huge = "{% set s = \"a\" * 100000000 %}{{ s ~ s ~ s }}";
        for source in [nested, huge] {
            let started = std::time::Instant::now();
            let err = render_str("service.toml.j2", source, &json!({})).unwrap_err();
            assert!(err.message().contains("fuel"), "{err}");
            assert!(started.elapsed() < std::time::Duration::from_secs(10));
        }
    }

    #[test]
    fn other_templates_do_not_escape() {
        let out = render_str("s.sh.j2", "echo {{ v }}", &json!({"v": "a<b"})).unwrap();
        assert_eq!(out, "echo a<b");
    }
}
