//! Human sizes ("512M", "1G", "10GiB", "2048") for memory and disks: parse and print.
//! Suffixes are binary (K = 1024), as in libvirt's and qemu-img's own units. Also the one
//! timestamp format strata writes into records.

use crate::error::{Error, Result};

/// Now, as RFC 3339 UTC seconds: the format of every timestamp strata records.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Parse a size like `10G`, `512M`, `1.5G`, `2048K` or a plain byte count.
/// `field` names the flag or manifest field, so the error can say where the bad value was.
pub fn parse_size(field: &str, text: &str) -> Result<u64> {
    parse_bytes(text).map_err(|e| e.context(field))
}

/// `parse_size` for a caller that names the field itself (the command-line parsers, which
/// learn the option's name only from clap).
pub fn parse_bytes(text: &str) -> Result<u64> {
    let bad = || {
        Error::bad_input(format!("'{text}' is not a size")).with_hint(
            "write a number with an optional unit K, M, G or T (binary), e.g. 512M or 10G",
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    if number.is_empty() {
        return Err(bad());
    }
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(bad()),
    };
    let bytes = if number.contains('.') {
        let value: f64 = number.parse().map_err(|_| bad())?;
        let bytes = value * (1u64 << shift) as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(bad());
        }
        bytes as u64
    } else {
        let value: u64 = number.parse().map_err(|_| bad())?;
        value
            .checked_shl(shift)
            .filter(|b| b >> shift == value)
            .ok_or_else(bad)?
    };
    if bytes == 0 {
        return Err(Error::bad_input(format!("'{text}' is zero")).with_hint("e.g. 1G"));
    }
    Ok(bytes)
}

/// Print a byte count with the largest binary unit that keeps one decimal meaningful.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_as_binary() {
        assert_eq!(parse_size("memory", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("memory", "512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("memory", "512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("disk", "10gb").unwrap(), 10 << 30);
        assert_eq!(parse_size("disk", "2048").unwrap(), 2048);
        assert_eq!(parse_size("disk", "1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("disk", " 4T ").unwrap(), 4 << 40);
    }

    #[test]
    fn rejects_garbage_naming_the_field() {
        for bad in ["", "G", "12Q", "1..5G", "-1G", "1 G B", "99999999999T"] {
            let err = parse_size("--disk", bad).unwrap_err();
            assert!(err.message().starts_with("--disk: "), "{bad}: {err}");
            assert!(err.hint().is_some());
        }
        assert!(parse_size("--memory", "0").is_err());
    }

    #[test]
    fn formats_round_trip_readably() {
        assert_eq!(format_size(1 << 30), "1 GiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(620 << 20), "620 MiB");
    }
}
