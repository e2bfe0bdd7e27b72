//! Version numbers strata reads from machines and compares: Docker engine versions (from
//! `docker info`, dpkg and apt) and Linux kernel versions (`uname -r`), reduced to the numbers
//! that decide which storage drivers and features exist.

use crate::error::{Error, Result};
use serde::Serialize;
use std::fmt;

/// A Docker engine version, reduced to the numbers that decide which drivers exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct EngineVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl EngineVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        EngineVersion {
            major,
            minor,
            patch,
        }
    }

    /// `parse`, for a version strata must understand to go on (a package's own version).
    pub fn parse_required(s: &str) -> Result<Self> {
        Self::parse(s).ok_or_else(|| Error::failed(format!("cannot read the engine version '{s}'")))
    }

    /// Reads upstream versions ("29.0.1", "24.0") and Debian package versions
    /// ("5:27.3.1-1~debian.12~bookworm", "20.10.24+dfsg1-1+deb12u1"). Packaging suffixes are
    /// dropped: they never change which drivers the engine has.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        // A dpkg epoch ("5:") only orders package builds; it is not part of Docker's version.
        let s = match s.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => rest,
            _ => s,
        };
        match leading_numbers(s, &['+', '-', '~'])?.as_slice() {
            [major, minor] => Some(Self::new(*major, *minor, 0)),
            [major, minor, patch] => Some(Self::new(*major, *minor, *patch)),
            _ => None,
        }
    }
}

impl fmt::Display for EngineVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The guest kernel's major.minor: the rules (overlay2 >= 4.0) never look further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// Reads `uname -r` ("6.1.0-28-cloud-amd64", "3.10.0-514.el7.x86_64", "4.7.0").
    pub fn parse(s: &str) -> Option<Self> {
        match leading_numbers(s.trim(), &['-', '+', '_', '~'])?.as_slice() {
            [major, minor, ..] => Some(KernelVersion {
                major: *major,
                minor: *minor,
            }),
            _ => None,
        }
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The dot-separated numbers at the start of `s`, provided what follows starts with one of
/// `seps` or nothing: "20.10x", "1..2" and "" are not versions.
fn leading_numbers(s: &str, seps: &[char]) -> Option<Vec<u32>> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (core, rest) = s.split_at(end);
    if !(rest.is_empty() || rest.starts_with(seps)) {
        return None;
    }
    core.split('.').map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::facts::samples::*;

    #[test]
    #[rustfmt::skip]
    fn engine_versions_parse_from_dpkg_and_api() {
        let v = |a, b, c| Some(EngineVersion::new(a, b, c));
        for (s, want) in [
            ("20.10.24+dfsg1-1+deb12u1", v(20, 10, 24)),
            ("20.10.24+dfsg1", v(20, 10, 24)),
            ("26.1.5+dfsg1-9+b3", v(26, 1, 5)),
            ("29.0.1", v(29, 0, 1)),
            ("28.5.2-1~debian.12~bookworm", v(28, 5, 2)),
            ("5:27.3.1-1~debian.12~bookworm", v(27, 3, 1)),
            ("24.0", v(24, 0, 0)),
            (" 29.0.1\n", v(29, 0, 1)),
            ("", None), ("docker", None), ("29", None), ("20.10x", None), ("1..2", None),
            ("1.2.3.4", None), ("x:29.0.1", None), ("99999999999.1.0", None),
        ] {
            assert_eq!(EngineVersion::parse(s), want, "{s:?}");
        }
        assert_eq!(EngineVersion::new(27, 3, 1).to_string(), "27.3.1");
        assert!(EngineVersion::new(9, 0, 0) < EngineVersion::new(10, 0, 0));
        assert!(E20 < E25 && E25 < E29 && EngineVersion::new(24, 0, 9) < E25);
    }

    #[test]
    #[rustfmt::skip]
    fn kernel_versions_parse_from_uname() {
        let k = |major, minor| Some(KernelVersion { major, minor });
        for (s, want) in [
            ("6.1.0-28-cloud-amd64", k(6, 1)), ("3.10.0-514.el7.x86_64", k(3, 10)),
            ("4.7.0", k(4, 7)), ("6.8.0+", k(6, 8)),
            ("", None), ("Linux", None), ("6", None), ("6.x", None),
        ] {
            assert_eq!(KernelVersion::parse(s), want, "{s:?}");
        }
        assert_eq!(K310.to_string(), "3.10");
        assert!(K310 < K40 && K40 < K61);
    }
}
