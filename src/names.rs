//! The name rule for everything a file written by someone else names and strata then turns
//! into a folder path, a Docker object name or a DNS alias: container templates, stacks,
//! services, stack networks and volumes. A name that passes can be joined onto a folder
//! without leaving it ('/', '.', '..' cannot occur) and is a valid Docker name and DNS label.

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
}
