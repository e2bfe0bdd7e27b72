//! Start order of a stack's services, in waves: a wave holds the services whose dependencies
//! are all in earlier waves, so a wave can start at once and be waited for together (as
//! compose does). Within a wave, by name, so the order is the same on every run; a dependency
//! cycle is an error naming it.

use crate::error::Result;
use crate::stack::file::StackFile;
use std::collections::BTreeSet;

/// Service names in an order where each comes after all of its depends_on.
pub fn start_order(stack: &StackFile) -> Result<Vec<String>> {
    Ok(waves(stack)?.into_iter().flatten().collect())
}

/// The services in waves: each wave only depends on earlier ones.
pub fn waves(stack: &StackFile) -> Result<Vec<Vec<String>>> {
    let mut waves: Vec<Vec<String>> = Vec::new();
    let mut placed: Vec<String> = Vec::new();
    let mut waiting: BTreeSet<&str> = stack.services.keys().map(String::as_str).collect();
    while !waiting.is_empty() {
        let ready: Vec<&str> = waiting
            .iter()
            .copied()
            .filter(|name| {
                stack.services[*name]
                    .decl
                    .depends_on
                    .iter()
                    .all(|dep| placed.contains(dep))
            })
            .collect();
        if ready.is_empty() {
            let cycle = find_cycle(stack, &waiting);
            let first = &stack.services[&cycle[0]];
            return Err(stack.error_at(
                first,
                format!("dependency cycle: {}", cycle.join(" → ")),
                "remove one depends_on of the cycle; services wait for their dependencies to be healthy, so a cycle never starts",
            ));
        }
        for name in &ready {
            waiting.remove(name);
            placed.push(name.to_string());
        }
        waves.push(ready.iter().map(|n| n.to_string()).collect());
    }
    Ok(waves)
}

/// A cycle among `waiting` (each of them waits on another one of them), first name repeated
/// at the end: ["a", "b", "a"].
fn find_cycle(stack: &StackFile, waiting: &BTreeSet<&str>) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    let mut at = waiting
        .iter()
        .next()
        .copied()
        .unwrap_or_default()
        .to_string();
    loop {
        if let Some(start) = path.iter().position(|p| *p == at) {
            let mut cycle = path[start..].to_vec();
            cycle.push(at);
            return cycle;
        }
        path.push(at.clone());
        let next = stack.services[&at]
            .decl
            .depends_on
            .iter()
            .find(|d| waiting.contains(d.as_str()))
            .cloned();
        match next {
            Some(n) => at = n,
            None => return path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn stack(text: &str) -> StackFile {
        StackFile::parse(Path::new("s.toml"), text).unwrap()
    }

    #[test]
    fn dependencies_come_first_and_ties_by_name() {
        let s = stack(
            r#"vm = "v"
[services.web]
template = "t"
depends_on = ["amb"]
[services.amb]
template = "t"
depends_on = ["db"]
[services.db]
template = "t"
[services.cache]
template = "t"
"#,
        );
        assert_eq!(start_order(&s).unwrap(), ["cache", "db", "amb", "web"]);
        let waves = waves(&s).unwrap();
        assert_eq!(waves, [vec!["cache", "db"], vec!["amb"], vec!["web"]]);
    }

    #[test]
    fn a_cycle_is_named_with_the_file_and_line() {
        let s = stack(
            r#"vm = "v"
[services.db]
template = "t"
[services.a]
template = "t"
depends_on = ["b", "db"]
[services.b]
template = "t"
depends_on = ["a"]
"#,
        );
        let err = start_order(&s).unwrap_err();
        assert!(
            err.message()
                .starts_with("s.toml:4: service 'a': dependency cycle: a → b → a"),
            "{err}"
        );
    }
}
