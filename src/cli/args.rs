//! The typed values of strata's flags (sizes, counts, seconds, ports, subnets): each is parsed
//! and bounded while clap reads the command line, so a bad value is refused before anything
//! is touched. The parsers only see the text; `input_error` puts the option's name (which
//! clap knows) in front of their message, so the user reads strata's error, not clap's.

use crate::error::{Error, Result};
use clap::error::{ContextKind, ContextValue, ErrorKind as ClapErrorKind};
use std::ops::RangeInclusive;

/// KVM's own ceiling on vCPUs per guest on x86 (KVM_MAX_VCPUS); the host's count is checked
/// again when the VM is planned.
const CPUS: RangeInclusive<u64> = 1..=4096;

/// Waits are bounded so a slip of the keyboard (an extra digit group) is caught; a day is
/// longer than any boot or shutdown strata waits for.
const SECONDS: RangeInclusive<u64> = 1..=86_400;

/// `--tail 0` is meaningful (with -f: only lines written from now on); the ceiling only
/// catches typos, no container log strata runs is that long.
const LOG_LINES: RangeInclusive<u64> = 0..=1_000_000_000;

const SIZE_HINT: &str = "write a size with a unit K, M, G or T (binary), e.g. 512M or 10G";

/// A memory or disk size that names its unit, in bytes. A bare number would be bytes, and
/// `--memory 2048` meaning 2 KiB is never what was meant, so the unit is required.
pub fn size_with_unit(text: &str) -> Result<u64> {
    if text.trim_start().starts_with('-') {
        return Err(Error::bad_input(format!("'{text}' is negative")).with_hint(SIZE_HINT));
    }
    let bytes = crate::units::parse_bytes(text).map_err(|e| e.with_hint(SIZE_HINT))?;
    if !text.trim_end().ends_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(Error::bad_input(format!("'{text}' has no unit"))
            .with_hint(format!("{SIZE_HINT}; a plain number would be bytes")));
    }
    Ok(bytes)
}

/// `size_with_unit`, handed on as the text the user wrote: the create pipeline reads the
/// VM's sizes together with the template's defaults, which are text too.
pub fn size_text(text: &str) -> Result<String> {
    size_with_unit(text).map(|_| text.to_string())
}

/// How many vCPUs a VM gets.
pub fn cpus(text: &str) -> Result<u32> {
    let count = whole_number(text, CPUS, "CPUs")?;
    // CPUS ends far below u32::MAX.
    u32::try_from(count).map_err(|_| out_of_range(text, CPUS, "CPUs"))
}

/// A wait, in whole seconds.
pub fn seconds(text: &str) -> Result<u64> {
    whole_number(text, SECONDS, "seconds")
}

/// How many of the last log lines to show.
pub fn log_lines(text: &str) -> Result<usize> {
    let lines = whole_number(text, LOG_LINES, "lines")?;
    usize::try_from(lines).map_err(|_| out_of_range(text, LOG_LINES, "lines"))
}

/// The (local, remote) ports of `vm forward`: "8080" (the same on both sides) or
/// "18080:8080". Port 0 is refused on both sides: remotely it names nothing, and locally it
/// would listen on a port the user did not choose.
pub fn forward_ports(text: &str) -> Result<(u16, u16)> {
    let port = |p: &str| {
        p.parse::<u16>().ok().filter(|&n| n > 0).ok_or_else(|| {
            Error::bad_input(format!("'{text}' is not REMOTE or LOCAL:REMOTE"))
                .with_hint("ports are whole numbers from 1 to 65535, e.g. 8080 or 18080:8080")
        })
    };
    match text.split_once(':') {
        Some((local, remote)) => Ok((port(local)?, port(remote)?)),
        None => Ok((port(text)?, port(text)?)),
    }
}

/// An IPv4 network in CIDR form; whether it is large enough and free is decided on creation.
pub fn subnet(text: &str) -> Result<ipnet::Ipv4Net> {
    text.parse().map_err(|_| {
        Error::bad_input(format!("'{text}' is not an IPv4 CIDR"))
            .with_hint("write it like 10.77.0.0/24")
    })
}

/// A count within `range`; `unit` says what is counted, for the hint.
fn whole_number(text: &str, range: RangeInclusive<u64>, unit: &str) -> Result<u64> {
    let hint = range_hint(&range, unit);
    if let Some(magnitude) = text.strip_prefix('-') {
        if !magnitude.is_empty() && magnitude.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::bad_input(format!("'{text}' is negative")).with_hint(hint));
        }
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::bad_input(format!("'{text}' is not a whole number")).with_hint(hint));
    }
    // Only digits: the parse fails only on overflow, which is out of range too.
    match text.parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(out_of_range(text, range, unit)),
    }
}

fn out_of_range(text: &str, range: RangeInclusive<u64>, unit: &str) -> Error {
    let side = match text.parse::<u64>() {
        Ok(n) if n < *range.start() => format!("less than {}", range.start()),
        _ => format!("more than {}", range.end()),
    };
    Error::bad_input(format!("'{text}' is {side}")).with_hint(range_hint(&range, unit))
}

fn range_hint(range: &RangeInclusive<u64>, unit: &str) -> String {
    format!(
        "write a whole number of {unit} from {} to {}",
        range.start(),
        range.end()
    )
}

/// strata's error for a value one of the parsers above refused, named after its option
/// ("--disk: '-5G' is negative"). None for everything else clap reports (an unknown flag, a
/// missing argument, --help): clap's own message serves those.
pub fn input_error(err: &clap::Error) -> Option<Error> {
    if err.kind() != ClapErrorKind::ValueValidation {
        return None;
    }
    let refused = std::error::Error::source(err)?.downcast_ref::<Error>()?;
    let option = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(rendered)) => option_name(rendered),
        _ => return None,
    };
    let mut named = Error::new(refused.kind(), format!("{option}: {}", refused.message()));
    if let Some(hint) = refused.hint() {
        named = named.with_hint(hint);
    }
    Some(named)
}

/// The option as the user typed it, from clap's rendering of the argument: "--disk <DISK>"
/// is "--disk", the positional "<PORTS>" is "PORTS".
fn option_name(rendered: &str) -> &str {
    let first = rendered
        .split(|c: char| c.is_whitespace() || c == '=')
        .next()
        .unwrap_or(rendered);
    first.trim_start_matches('<').trim_end_matches('>')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{parse_args, ArgsError, Cli, Command};

    fn parse(argv: &[&str]) -> std::result::Result<Cli, ArgsError> {
        parse_args(std::iter::once("strata").chain(argv.iter().copied()))
    }

    /// The error strata prints for `argv`, which must be strata's own and name `option`.
    fn refused(option: &str, argv: &[&str]) -> Error {
        let err = match parse(argv) {
            Err(ArgsError::Input(e)) => e,
            Err(ArgsError::Clap(e)) => panic!("{argv:?}: clap's error, not strata's: {e}"),
            Ok(cli) => panic!("{argv:?} was accepted: {cli:?}"),
        };
        assert!(
            err.message().starts_with(&format!("{option}: '")),
            "{argv:?}: {err}"
        );
        assert!(err.hint().is_some(), "{argv:?}: no hint");
        assert_eq!(err.exit_code(), 2, "{argv:?}");
        err
    }

    /// Each bad value for `option`, placed where `argv_with` puts it, is refused naming it.
    fn refuses_all(option: &str, argv_with: impl Fn(&str) -> Vec<String>, bad: &[&str]) {
        for value in bad {
            let argv = argv_with(value);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            refused(option, &argv);
        }
    }

    fn vm_create_with(option: &str) -> impl Fn(&str) -> Vec<String> + '_ {
        move |value| {
            ["vm", "create", "x", "-t", "debian-12", option, value]
                .map(String::from)
                .to_vec()
        }
    }

    const BAD_COUNTS: &[&str] = &[
        "-1",
        "0",
        "99999999999",
        "18446744073709551616", // 2^64
        "two",
        "1.5",
        "",
        "+2",
    ];
    const BAD_SIZES: &[&str] = &[
        "-5G",
        "-1",
        "0",
        "0G",
        "99999999999T",
        "2048",
        "1.5",
        "lots",
        "12Q",
        "",
    ];

    #[test]
    fn vm_create_numbers() {
        refuses_all("--cpus", vm_create_with("--cpus"), BAD_COUNTS);
        refuses_all("--memory", vm_create_with("--memory"), BAD_SIZES);
        refuses_all("--disk", vm_create_with("--disk"), BAD_SIZES);
        refuses_all("--ssh-timeout", vm_create_with("--ssh-timeout"), BAD_COUNTS);
        // Written as one word, too.
        refused("--disk", &["vm", "create", "x", "-t", "t", "--disk=-5G"]);
    }

    #[test]
    fn vm_stop_start_and_forward_numbers() {
        let stop = |v: &str| {
            ["vm", "stop", "x", "--timeout", v]
                .map(String::from)
                .to_vec()
        };
        refuses_all("--timeout", stop, BAD_COUNTS);
        let start = |v: &str| {
            ["vm", "start", "x", "--ssh-timeout", v]
                .map(String::from)
                .to_vec()
        };
        refuses_all("--ssh-timeout", start, BAD_COUNTS);
        let forward = |v: &str| ["vm", "forward", "x", v].map(String::from).to_vec();
        let bad_ports = [
            "-8080", "0", "70000", "8080:0", "0:80", "x:80", "80:", ":", "",
        ];
        refuses_all("PORTS", forward, &bad_ports);
    }

    #[test]
    fn engine_logs_and_net_numbers() {
        let data_disk = |v: &str| {
            ["engine", "install", "vm", "--data-disk", v]
                .map(String::from)
                .to_vec()
        };
        refuses_all("--data-disk", data_disk, BAD_SIZES);
        let tail = |v: &str| {
            ["logs", "s.toml", "web", "--tail", v]
                .map(String::from)
                .to_vec()
        };
        refuses_all(
            "--tail",
            tail,
            &["-1", "99999999999999", "18446744073709551616", "ten", ""],
        );
        let subnet = |v: &str| {
            ["net", "create", "n", "--subnet", v]
                .map(String::from)
                .to_vec()
        };
        refuses_all("--subnet", subnet, &["10.0.0.0/33", "10.0.0/24", "-1", "x"]);
    }

    #[test]
    fn messages_say_what_is_wrong() {
        let err = refused("--disk", &["vm", "create", "x", "-t", "t", "--disk", "-5G"]);
        assert_eq!(err.message(), "--disk: '-5G' is negative");
        let err = refused(
            "--memory",
            &["vm", "create", "x", "-t", "t", "--memory", "512"],
        );
        assert_eq!(err.message(), "--memory: '512' has no unit");
        assert!(err.hint().unwrap().contains("512M or 10G"), "{err}");
        let err = refused("--cpus", &["vm", "create", "x", "-t", "t", "--cpus", "0"]);
        assert_eq!(err.message(), "--cpus: '0' is less than 1");
        assert_eq!(
            err.hint(),
            Some("write a whole number of CPUs from 1 to 4096")
        );
        let err = refused(
            "--timeout",
            &["vm", "stop", "x", "--timeout", "99999999999"],
        );
        assert_eq!(err.message(), "--timeout: '99999999999' is more than 86400");
    }

    #[test]
    fn good_values_are_typed() {
        let cli = parse(&[
            "vm", "create", "x", "-t", "t", "--cpus", "2", "--memory", "1G", "--disk", "10GiB",
        ])
        .unwrap();
        match cli.command {
            Command::Vm(crate::cli::vm::VmCommand::Create(args)) => {
                assert_eq!(args.cpus, Some(2));
                assert_eq!(args.memory.as_deref(), Some("1G"));
                assert_eq!(args.disk.as_deref(), Some("10GiB"));
                assert_eq!(
                    args.ssh_timeout, 300,
                    "the default goes through the parser too"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(&["logs", "s.toml", "web", "-f", "--tail", "0"]).is_ok());
        assert_eq!(size_with_unit("20G").unwrap(), 20 << 30);
        assert_eq!(forward_ports("18080:80").unwrap(), (18080, 80));
        assert_eq!(forward_ports("8080").unwrap(), (8080, 8080));
    }

    #[test]
    fn a_port_may_come_before_or_after_the_flags() {
        for argv in [
            ["vm", "forward", "x", "8080", "--to", "10.0.0.1"],
            ["vm", "forward", "x", "--to", "10.0.0.1", "8080"],
        ] {
            match parse(&argv).map(|cli| cli.command) {
                Ok(Command::Vm(crate::cli::vm::VmCommand::Forward { ports, to, .. })) => {
                    assert_eq!((ports, to.as_str()), ((8080, 8080), "10.0.0.1"));
                }
                other => panic!("{argv:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn clap_keeps_its_own_errors() {
        for argv in [
            &["vm", "create", "x", "--bogus"][..],
            &["vm", "create", "x"][..],
            &["vm", "create", "x", "-t", "t", "--accel", "warp"][..],
        ] {
            match parse(argv) {
                Err(ArgsError::Clap(e)) => assert_eq!(e.exit_code(), 2, "{argv:?}"),
                other => panic!("{argv:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn option_names_from_clap_renderings() {
        assert_eq!(option_name("--disk <DISK>"), "--disk");
        assert_eq!(option_name("--level=<LEVEL>"), "--level");
        assert_eq!(option_name("<PORTS>"), "PORTS");
        assert_eq!(option_name("-t <T>"), "-t");
    }
}
