//! The layering holds: every module of src/ imports only its own layer's shared pieces and the
//! layers below it (DESIGN.md, docs/architecture.md). Read from the source text, so a new
//! upward `use` (or `crate::x::` path) fails this test, with the file, line and the rule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module and its layer, bottom up. Modules of one layer are siblings: the
/// shared pieces at the bottom may use each other, siblings above them may not.
const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("units", 0),
    ("digest", 0),
    ("explain", 0),
    ("command", 0),
    ("state", 0),
    ("progress", 0),
    ("interrupt", 0),
    ("console", 0),
    ("atomic_write", 0),
    ("names", 0),
    ("ssh_exec", 0),
    ("template", 0),
    ("host", 1),
    ("vm", 2),
    ("image", 3),
    ("guest", 3),
    ("engine", 4),
    ("check", 4),
    ("stack", 4),
    ("swarm", 4),
    ("lifecycle", 5),
    ("plan", 6),
    ("cli", 7),
];

/// Modules whose siblings in the same layer they may use (the bottom layer's small pieces).
const SHARED_LAYER: u32 = 0;

/// Outside the layers: the crate root, the binary, and the fuzzing entry points, which may
/// reach any parser.
const UNLAYERED: &[&str] = &["lib", "main", "fuzz"];

fn layer_of(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to: `src/vm/domain.rs` -> vm, `src/units.rs` -> units.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("a file under src/");
    let first = relative.components().next().expect("a path");
    Path::new(first.as_os_str())
        .file_stem()
        .expect("a name")
        .to_string_lossy()
        .into_owned()
}

/// Every `crate::MODULE` named outside comments, with its line number; a `use crate::{a, b}`
/// group names each of its top-level modules, also when rustfmt spreads it over lines.
fn crate_references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    // An open `use crate::{` group: its brace depth, and the name being read at depth 1.
    let mut group: Option<(usize, String, bool)> = None;
    for (index, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((index + 1, name));
            }
            rest = after;
        }
        let mut chars = code;
        if group.is_none() {
            if let Some(at) = code.find("use crate::{") {
                group = Some((1, String::new(), true));
                chars = &code[at + "use crate::{".len()..];
            }
        }
        let Some((depth, name, reading)) = group.as_mut() else {
            continue;
        };
        // At depth 1, a segment's first word is a module; `a::{b, c}` goes one level down.
        for c in chars.chars() {
            let word = c.is_ascii_alphanumeric() || c == '_';
            if !word && !name.is_empty() {
                if layer_of(name).is_some() {
                    found.push((index + 1, name.clone()));
                }
                name.clear();
                *reading = false;
            }
            match c {
                '{' => *depth += 1,
                '}' => *depth -= 1,
                ',' if *depth == 1 => *reading = true,
                c if word && *depth == 1 && *reading => name.push(c),
                _ => {}
            }
            if *depth == 0 {
                group = None;
                break;
            }
        }
    }
    found
}

#[test]
fn every_module_imports_only_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 50, "src/ holds only {} files", files.len());
    let mut unknown = BTreeMap::new();
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if UNLAYERED.contains(&module.as_str()) {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            unknown.insert(module, file.display().to_string());
            continue;
        };
        let text = std::fs::read_to_string(file).expect("reading a source file");
        for (line, used) in crate_references(&text) {
            if used == module {
                continue;
            }
            let Some(theirs) = layer_of(&used) else {
                continue; // a macro or item at the crate root (crate::outln!)
            };
            let allowed = theirs < own || (theirs == own && own == SHARED_LAYER);
            if !allowed {
                violations.push(format!(
                    "{}:{line}: {module} (layer {own}) uses {used} (layer {theirs})",
                    file.strip_prefix(&src).unwrap_or(file).display()
                ));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "modules without a layer (add them to LAYERS here and to docs/architecture.md): {unknown:?}"
    );
    assert!(
        violations.is_empty(),
        "imports against the layering (a module may use only layers below its own):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_reader_finds_upward_imports() {
    let text = "use crate::lifecycle::checks;\n// crate::cli in a comment\nlet x = crate::vm::domain::list(c);\nuse crate::{guest, units};\nuse crate::{\n    host::{accel, sysctl},\n    stack,\n};\n";
    let found: Vec<(usize, String)> = crate_references(text);
    assert_eq!(
        found,
        vec![
            (1, "lifecycle".to_string()),
            (3, "vm".to_string()),
            (4, "guest".to_string()),
            (4, "units".to_string()),
            (6, "host".to_string()),
            (7, "stack".to_string())
        ]
    );
}
