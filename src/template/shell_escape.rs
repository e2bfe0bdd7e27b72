//! Auto-escaping for templates named *.bash.j2 (the scripts `--explain` prints): every value
//! printed with `{{ }}` becomes one shell word, so a name, path or comment from a plan or a
//! stack file can never end its word and start a command of its own. Strings are single-quoted
//! (`'` written as `'\''`) unless they are plainly safe as they are; numbers print as
//! themselves; values the template marked safe (`|safe`) are left alone.

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Error, ErrorKind};

/// The name of the custom auto-escape mode (minijinja's AutoEscape::Custom).
pub(super) const SHELL: &str = "shell";

/// The auto-escape mode for a template file: shell words for *.bash.j2.
pub(super) fn mode_for(name: &str) -> Option<AutoEscape> {
    name.ends_with(".bash.j2")
        .then(|| AutoEscape::Custom(SHELL.into()))
}

/// A value as one shell word.
pub(super) fn word(value: &Value) -> Result<String, Error> {
    match value.kind() {
        ValueKind::String => Ok(quote(value.as_str().unwrap_or_default())),
        ValueKind::Number => Ok(value.to_string()),
        ValueKind::Bool => Ok(if value.is_true() { "true" } else { "false" }.to_string()),
        other => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("a {other} cannot be one shell word; the template must pick its parts"),
        )),
    }
}

/// Words as one command line for the shell, each quoted as `quote` does.
pub fn command_line<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` as one shell word: bare when every character is one the shell gives no meaning
/// (so the printed commands read like the ones a person types), single-quoted otherwise, and
/// ANSI-C quoted (`$'...'`) when it holds a control character, so that no value ever puts a
/// line break into a script (where it could end a comment and start a command).
pub fn quote(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !text.is_empty() && text.chars().all(plain) && !text.starts_with('=') {
        return text.to_string();
    }
    if !text.chars().any(char::is_control) {
        return format!("'{}'", text.replace('\'', r"'\''"));
    }
    let mut quoted = String::from("$'");
    for c in text.chars() {
        match c {
            '\\' => quoted.push_str(r"\\"),
            '\'' => quoted.push_str(r"\'"),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for byte in c.encode_utf8(&mut buf).bytes() {
                    quoted.push_str(&format!("\\x{byte:02x}"));
                }
            }
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::quote;
    use crate::template::render_str;
    use serde_json::json;

    fn bash(source: &str, v: serde_json::Value) -> String {
        render_str("t.bash.j2", source, &v).unwrap()
    }

    #[test]
    fn plain_words_stay_bare_and_the_rest_is_single_quoted() {
        assert_eq!(quote("vm-a"), "vm-a");
        assert_eq!(quote("/var/lib/strata/vms/a"), "/var/lib/strata/vms/a");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(quote("a\nb"), r"$'a\x0ab'");
        assert!(!quote("x\r\n# y\u{85}").contains(['\n', '\r', '\u{85}']));
    }

    #[test]
    fn values_become_one_word_each() {
        let out = bash(
            "echo {{ a }} {{ n }} {{ t }}",
            json!({"a": "x; rm -rf /", "n": 3, "t": true}),
        );
        assert_eq!(out, "echo 'x; rm -rf /' 3 true");
        let out = bash("{{ s|safe }}", json!({"s": "a b"}));
        assert_eq!(out, "a b");
    }

    #[test]
    fn a_list_is_refused_rather_than_joined() {
        let err = render_str("t.bash.j2", "{{ l }}", &json!({"l": ["a", "b"]})).unwrap_err();
        assert!(err.message().contains("shell word"), "{err}");
    }

    /// What bash reads back from a quoted word is the text itself, whatever it holds.
    #[test]
    fn bash_reads_back_every_word_unchanged() {
        let texts = [
            "plain",
            "a b",
            "it's",
            "$HOME `id` \\ \" '",
            "line\nbreak 'q' \\x",
            "tab\there\u{7f}é",
            "-n",
            "*",
        ];
        let script: String = texts
            .iter()
            .map(|t| format!("printf '%s\\0' {}\n", quote(t)))
            .collect();
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        let read: Vec<&str> = std::str::from_utf8(&out.stdout)
            .unwrap()
            .split_terminator('\0')
            .collect();
        assert_eq!(read, texts);
    }
}
