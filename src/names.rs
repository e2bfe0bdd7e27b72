//! The name rules: a name is never a path. Everything strata turns into a folder path, a
//! volume name, a libvirt object, a Docker object or a DNS name passes one of these first, so
//! that it can be joined onto a folder without leaving it ('/' never occurs, and a name never
//! is or starts with '.'):
//! - stack names, services, stack networks and volumes, container templates: lowercase
//!   letters, digits, '-' (valid Docker names and DNS labels);
//! - VM names: also the guest's hostname;
//! - libvirt object names (networks, VM templates): letters, digits, '-', '_', '.'.

use crate::error::{Error, Result};

/// The longest name accepted: room for "STACK-NAME" in Docker's and DNS's limits.
pub const MAX_NAME_LEN: usize = 40;

/// Lowercase ASCII letters, digits and '-', starting with a letter, at most MAX_NAME_LEN.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The hint that goes with a refused name.
pub const NAME_RULE: &str =
    "use lowercase letters, digits and '-', starting with a letter (at most 40)";

/// A VM's name becomes its hostname, its folder under the state directory and part of its
/// volumes' names: letters, digits and '-' only, at most 63, not starting or ending with '-'.
pub fn check_vm_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::bad_input(format!("VM name '{name}' is not allowed"))
            .with_hint("the name is also the guest's hostname: use 1-63 letters, digits or '-', not starting or ending with '-'"))
    }
}

/// A libvirt network's or a VM template's name (it is also a folder under strata's state):
/// 1-50 letters, digits, '-', '_' or '.', not starting with '-' or '.'.
pub fn check_object_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(
            Error::bad_input(format!("{kind} name '{name}' is not allowed")).with_hint(
                "use 1-50 letters, digits, '-', '_' or '.', not starting with '-' or '.'",
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_a_folder_are_refused() {
        for good in ["busybox-httpd", "a", "db2", "x-1-y"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            "/tmp/x",
            "..",
            "../contexts",
            ".",
            "a/b",
            "Web",
            "1db",
            "-x",
            "a_b",
            "a b",
            "a\0b",
            "é",
            &"a".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn vm_names_must_be_hostnames() {
        for good in ["a", "web-1", "E2E-x-42"] {
            assert!(check_vm_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(64);
        for bad in [
            "",
            "a_b",
            "a.b",
            "-a",
            "a-",
            "a b",
            "..",
            "../x",
            long.as_str(),
        ] {
            let err = check_vm_name(bad).unwrap_err();
            assert!(err.hint().unwrap().contains("hostname"), "{bad}");
        }
    }

    #[test]
    fn object_names_never_leave_a_folder() {
        for good in ["strata-test_1", "debian-12", "debian-12.v2"] {
            assert!(check_object_name("template", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-x",
            "a b",
            "a/b",
            "..",
            ".",
            ".hidden",
            "../../etc",
            "x".repeat(51).as_str(),
        ] {
            assert!(check_object_name("template", bad).is_err(), "{bad}");
        }
    }
}
