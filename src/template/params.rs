//! params.toml of a container template: the parameters a stack may set, each with a type
//! (string, integer, bool, or list of strings), optional bounds for integers, a default or
//! none (then the stack must set it), and a doc line. The declarations are checked when the
//! template is loaded, and a stack's values against them before anything is rendered, so a
//! value of the wrong kind never reaches the template.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// What kind of value a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Integer,
    Bool,
    /// A list of strings.
    List,
}

impl fmt::Display for ParamType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Bool => "bool",
            ParamType::List => "list",
        })
    }
}

/// params.toml as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParamsFile {
    description: String,
    #[serde(default)]
    params: BTreeMap<String, toml::Spanned<RawParamDecl>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParamDecl {
    #[serde(rename = "type")]
    kind: Option<ParamType>,
    default: Option<toml::Value>,
    min: Option<i64>,
    max: Option<i64>,
    doc: String,
}

/// params.toml of a container template, checked.
#[derive(Debug, Clone)]
pub struct ParamsFile {
    pub description: String,
    pub params: BTreeMap<String, ParamDecl>,
}

/// One parameter: without a default the stack must set it.
#[derive(Debug, Clone)]
pub struct ParamDecl {
    pub kind: ParamType,
    pub default: Option<toml::Value>,
    /// Bounds of an integer, both inclusive.
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub doc: String,
}

impl ParamsFile {
    /// Parse params.toml at `path`: errors name the file, the line and the parameter.
    pub fn parse(path: &Path, text: &str) -> Result<ParamsFile> {
        let raw: RawParamsFile = super::parse_toml(path, text)?;
        let mut params = BTreeMap::new();
        for (name, spanned) in raw.params {
            let line = text[..spanned.span().start.min(text.len())]
                .matches('\n')
                .count()
                + 1;
            let decl = ParamDecl::check(spanned.into_inner()).map_err(|(what, hint)| {
                Error::bad_input(format!(
                    "{}:{line}: parameter '{name}': {what}",
                    path.display()
                ))
                .with_hint(hint)
            })?;
            params.insert(name, decl);
        }
        Ok(ParamsFile {
            description: raw.description,
            params,
        })
    }
}

impl ParamDecl {
    /// The declaration's type (given, or the default's), bounds and default, checked.
    fn check(raw: RawParamDecl) -> std::result::Result<ParamDecl, (String, String)> {
        const TYPES: &str = "type is one of \"string\", \"integer\", \"bool\", \"list\"";
        let kind = match (raw.kind, &raw.default) {
            (None, None) => {
                return Err((
                    "has neither a type nor a default".into(),
                    format!("a parameter the stack must set says what it takes: {TYPES}"),
                ))
            }
            (Some(kind), None) => kind,
            (declared, Some(default)) => {
                let of_default = type_of(default).ok_or_else(|| {
                    (
                        format!("default {} is not a parameter value", shown(default)),
                        format!("a default is a string, an integer, true/false or a list of strings; {TYPES}"),
                    )
                })?;
                match declared {
                    Some(declared) if declared != of_default => {
                        return Err((
                            format!(
                                "type = \"{declared}\" but the default {} is not",
                                shown(default)
                            ),
                            "make the default a value of the declared type".into(),
                        ))
                    }
                    _ => of_default,
                }
            }
        };
        if kind != ParamType::Integer && (raw.min.is_some() || raw.max.is_some()) {
            return Err((
                format!("min and max bound integers, and this is a {kind}"),
                "remove min/max, or make it type = \"integer\"".into(),
            ));
        }
        if let (Some(min), Some(max)) = (raw.min, raw.max) {
            if min > max {
                return Err((format!("min {min} is above max {max}"), "swap them".into()));
            }
        }
        let decl = ParamDecl {
            kind,
            default: raw.default,
            min: raw.min,
            max: raw.max,
            doc: raw.doc,
        };
        if let Some(default) = &decl.default {
            decl.accepts(default).map_err(|expected| {
                (
                    format!("default {} is not {expected}", shown(default)),
                    "make the default fit the bounds".into(),
                )
            })?;
        }
        Ok(decl)
    }

    /// Ok when `value` is of this parameter's type and within its bounds; else what is
    /// expected, for the error.
    pub fn accepts(&self, value: &toml::Value) -> std::result::Result<(), String> {
        let fits = match (self.kind, value) {
            (ParamType::Integer, toml::Value::Integer(i)) => {
                self.min.is_none_or(|min| *i >= min) && self.max.is_none_or(|max| *i <= max)
            }
            (kind, value) => type_of(value) == Some(kind),
        };
        if fits {
            Ok(())
        } else {
            Err(self.expected())
        }
    }

    /// "an integer in 0..=65535", "a string", ...
    pub fn expected(&self) -> String {
        match (self.kind, self.min, self.max) {
            (ParamType::Integer, Some(min), Some(max)) => format!("an integer in {min}..={max}"),
            (ParamType::Integer, Some(min), None) => format!("an integer >= {min}"),
            (ParamType::Integer, None, Some(max)) => format!("an integer <= {max}"),
            (ParamType::Integer, None, None) => "an integer".into(),
            (ParamType::String, ..) => "a string".into(),
            (ParamType::Bool, ..) => "true or false".into(),
            (ParamType::List, ..) => "a list of strings".into(),
        }
    }
}

/// The parameter type a TOML value is, if it is one (floats, dates and tables are not).
fn type_of(value: &toml::Value) -> Option<ParamType> {
    match value {
        toml::Value::String(_) => Some(ParamType::String),
        toml::Value::Integer(_) => Some(ParamType::Integer),
        toml::Value::Boolean(_) => Some(ParamType::Bool),
        toml::Value::Array(items) if items.iter().all(|i| i.is_str()) => Some(ParamType::List),
        _ => None,
    }
}

/// A given value for an error: on one line (strings quoted and escaped as in JSON), cut
/// short, with what kind it is.
pub fn shown(value: &toml::Value) -> String {
    const MOST: usize = 60;
    let text = match value {
        toml::Value::Datetime(d) => d.to_string(),
        other => serde_json::to_string(other).unwrap_or_else(|_| other.to_string()),
    };
    let text = match text.char_indices().nth(MOST) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    };
    let kind = match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a bool",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    };
    format!("{text} ({kind})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ParamsFile> {
        ParamsFile::parse(Path::new("t/params.toml"), text)
    }

    const PARAMS: &str = r#"
description = "d"

[params.port]
default = 8080
min = 0
max = 65535
doc = "port"

[params.url]
type = "string"
doc = "url"

[params.allow]
default = ["A"]
doc = "sections"

[params.debug]
default = false
doc = "debug"
"#;

    #[test]
    fn types_come_from_the_declaration_or_the_default() {
        let p = parse(PARAMS).unwrap();
        assert_eq!(p.params["port"].kind, ParamType::Integer);
        assert_eq!(p.params["url"].kind, ParamType::String);
        assert_eq!(p.params["allow"].kind, ParamType::List);
        assert_eq!(p.params["debug"].kind, ParamType::Bool);
    }

    #[test]
    fn values_are_checked_against_type_and_bounds() {
        let p = parse(PARAMS).unwrap();
        let port = &p.params["port"];
        assert!(port.accepts(&toml::Value::Integer(0)).is_ok());
        assert!(port.accepts(&toml::Value::Integer(65535)).is_ok());
        assert_eq!(
            port.accepts(&toml::Value::Integer(65536)).unwrap_err(),
            "an integer in 0..=65535"
        );
        assert!(port.accepts(&toml::Value::Integer(-1)).is_err());
        assert!(port.accepts(&toml::Value::String("80".into())).is_err());
        let allow = &p.params["allow"];
        assert!(allow.accepts(&toml::Value::Array(vec![])).is_ok());
        let mixed = toml::Value::Array(vec!["A".into(), toml::Value::Integer(1)]);
        assert_eq!(allow.accepts(&mixed).unwrap_err(), "a list of strings");
        assert!(p.params["debug"].accepts(&"yes".into()).is_err());
        assert!(p.params["url"].accepts(&toml::Value::Float(1.0)).is_err());
    }

    #[test]
    fn bad_declarations_name_file_line_and_parameter() {
        for (bad, says) in [
            (
                PARAMS.replace("type = \"string\"\n", ""),
                "t/params.toml:10: parameter 'url': has neither a type nor a default",
            ),
            (
                PARAMS.replace("default = 8080", "type = \"string\"\ndefault = 8080"),
                "t/params.toml:4: parameter 'port': type = \"string\" but the default 8080 (an integer) is not",
            ),
            (
                PARAMS.replace("max = 65535", "max = 80"),
                "t/params.toml:4: parameter 'port': default 8080 (an integer) is not an integer in 0..=80",
            ),
            (
                PARAMS.replace("doc = \"url\"", "doc = \"url\"\nmin = 1"),
                "t/params.toml:10: parameter 'url': min and max bound integers",
            ),
            (
                PARAMS.replace("default = [\"A\"]", "default = [1]"),
                "t/params.toml:14: parameter 'allow': default [1] (a list) is not a parameter value",
            ),
        ] {
            let err = parse(&bad).unwrap_err();
            assert!(err.message().starts_with(says), "{err}");
            assert!(err.hint().is_some());
        }
        assert!(parse(&PARAMS.replace("type = \"string\"", "type = \"text\"")).is_err());
    }

    #[test]
    fn given_values_are_shown_short_with_their_kind() {
        assert_eq!(shown(&"abc".into()), "\"abc\" (a string)");
        let long = shown(&"x".repeat(100).into());
        assert!(
            long.ends_with("... (a string)") && long.len() < 80,
            "{long}"
        );
    }
}
