//! Auto-escaping for templates named *.toml.j2: every value printed with `{{ }}` is written
//! so that it stays inside the TOML string the template put it in. A stack's parameter can
//! then not end its string or its line and add a table or a key of its own (a `[[volumes]]`
//! with the VM's root, a port on 0.0.0.0). Strings are escaped for a TOML basic string
//! ("..."); numbers and booleans print as themselves; lists and maps print as TOML inline
//! arrays and tables; values the template marked safe (`tojson`, `|safe`) are left alone.

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Error, ErrorKind, Output, State};
use std::fmt::Write;

/// The name of the custom auto-escape mode (minijinja's AutoEscape::Custom).
const TOML: &str = "toml";

/// The auto-escape mode for a template file: TOML for *.toml.j2.
pub(super) fn mode_for(name: &str) -> Option<AutoEscape> {
    name.ends_with(".toml.j2")
        .then(|| AutoEscape::Custom(TOML.into()))
}

/// The environment's formatter: TOML escaping in TOML mode, minijinja's own otherwise.
pub(super) fn formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    let in_toml = matches!(state.auto_escape(), AutoEscape::Custom(name) if name == TOML);
    if !in_toml || value.is_safe() {
        return minijinja::escape_formatter(out, state, value);
    }
    let mut text = String::new();
    write_bare(&mut text, value)?;
    out.write_str(&text).map_err(Error::from)
}

/// A value printed where the template wrote it: a string's characters escaped (the template
/// supplies the quotes), anything else as a TOML value.
fn write_bare(text: &mut String, value: &Value) -> Result<(), Error> {
    match value.as_str() {
        Some(s) => {
            escape_into(text, s);
            Ok(())
        }
        None => write_value(text, value),
    }
}

/// A value as TOML: strings quoted, lists and maps inline.
fn write_value(text: &mut String, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::String => {
            text.push('"');
            escape_into(text, value.as_str().unwrap_or_default());
            text.push('"');
        }
        ValueKind::Bool => text.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number if value.is_integer() => {
            let _ = write!(text, "{value}");
        }
        ValueKind::Number => write_float(text, value)?,
        ValueKind::Seq | ValueKind::Iterable => {
            text.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    text.push_str(", ");
                }
                write_value(text, &item)?;
            }
            text.push(']');
        }
        ValueKind::Map => {
            text.push_str("{ ");
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    text.push_str(", ");
                }
                // Keys are always quoted: a bare key could not hold every string.
                text.push('"');
                match key.as_str() {
                    Some(k) => escape_into(text, k),
                    None => escape_into(text, &key.to_string()),
                }
                text.push_str("\" = ");
                write_value(text, &value.get_item(&key)?)?;
            }
            text.push_str(" }");
        }
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("a value of kind {other} cannot be written into TOML"),
            ))
        }
    }
    Ok(())
}

fn write_float(text: &mut String, value: &Value) -> Result<(), Error> {
    let f = f64::try_from(value.clone())?;
    if f.is_nan() {
        text.push_str("nan");
    } else if f.is_infinite() {
        text.push_str(if f > 0.0 { "inf" } else { "-inf" });
    } else {
        // Debug always keeps a '.' or an exponent, so TOML reads a float back.
        let _ = write!(text, "{f:?}");
    }
    Ok(())
}

/// `s` as the inside of a TOML basic string: `\` and `"` escaped, `'` as \u0027 (so that
/// in a literal string it cannot close one either), and every control character escaped.
fn escape_into(text: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            '\'' => text.push_str("\\u0027"),
            '\n' => text.push_str("\\n"),
            '\t' => text.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(text, "\\u{:04X}", c as u32);
            }
            c => text.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::template::render_str;
    use serde_json::json;

    fn toml(source: &str, v: serde_json::Value) -> String {
        render_str("service.toml.j2", source, &json!({ "v": v })).unwrap()
    }

    const NASTY: [&str; 8] = [
        "plain",
        "a\"b",
        "back\\slash\\",
        "it's",
        "two\nlines\r\n",
        "tab\there",
        "nul\u{0}bell\u{7}esc\u{1b}del\u{7f}nel\u{85}",
        "'''\"\"\"",
    ];

    #[test]
    fn strings_are_escaped_for_a_basic_string_and_read_back_unchanged() {
        assert_eq!(
            toml("x = \"{{ v }}\"", json!("a\"b\\c'd\ne\tf\u{1}\u{7f}")),
            r#"x = "a\"b\\c\u0027d\ne\tf\u0001\u007F""#
        );
        for s in NASTY {
            let text = toml("x = \"{{ v }}\"\n", json!(s));
            let back: toml::Table = toml::from_str(&text).unwrap();
            assert_eq!(back["x"].as_str(), Some(s), "{text}");
        }
    }

    #[test]
    fn numbers_booleans_lists_and_maps_are_toml_values() {
        assert_eq!(toml("p = {{ v }}", json!(8080)), "p = 8080");
        assert_eq!(toml("p = {{ v }}", json!(-3)), "p = -3");
        assert_eq!(toml("p = {{ v }}", json!(true)), "p = true");
        assert_eq!(toml("p = {{ v }}", json!(1.5)), "p = 1.5");
        assert_eq!(toml("p = {{ v }}", json!(2.0)), "p = 2.0");
        let list = toml("l = {{ v }}", json!(["a", "b\"\n[x]", 3]));
        assert_eq!(list, r#"l = ["a", "b\"\n[x]", 3]"#);
        let back: toml::Table = toml::from_str(&list).unwrap();
        assert_eq!(back["l"][1].as_str(), Some("b\"\n[x]"));
        let map = toml("m = {{ v }}", json!({"k\" = 1": "v\n", "n": [true]}));
        let back: toml::Table = toml::from_str(&map).unwrap();
        assert_eq!(back["m"]["k\" = 1"].as_str(), Some("v\n"));
        assert_eq!(back["m"]["n"][0].as_bool(), Some(true));
    }

    #[test]
    fn values_marked_safe_are_left_alone() {
        assert_eq!(toml("e = {{ v | tojson }}", json!("a\"b")), r#"e = "a\"b""#);
        assert_eq!(toml("{{ v | safe }}", json!("k = 'raw'")), "k = 'raw'");
        // Other files keep their own rules.
        let sh = render_str("s.sh.j2", "echo {{ v }}", &json!({"v": "a\"b"})).unwrap();
        assert_eq!(sh, "echo a\"b");
    }

    #[test]
    fn a_value_cannot_leave_its_string_or_line() {
        let template = "memory = \"{{ v }}\"\nlabel = '{{ v }}'\nnote = '''{{ v }}'''\n# {{ v }}\n[image]\nreference = \"busybox\"\n";
        for attack in [
            "1G\"\n[[volumes]]\nsource = \"/\"\ntarget = \"/host\"\n[x]\ny = \"",
            "1G'\n[[ports]]\nhost_ip = '0.0.0.0'\n",
            "'''\n[image]\nreference = 'evil'\n",
            "\r\n[[volumes]]\r\nsource = \"/\"",
        ] {
            let text = toml(template, json!(attack));
            let parsed: toml::Table = toml::from_str(&text).unwrap();
            let keys: Vec<&String> = parsed.keys().collect();
            assert_eq!(keys, ["image", "label", "memory", "note"], "{text}");
            assert_eq!(parsed["memory"].as_str(), Some(attack));
            assert_eq!(parsed["image"]["reference"].as_str(), Some("busybox"));
        }
    }
}
