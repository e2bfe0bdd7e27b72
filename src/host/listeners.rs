//! Sockets listening on this host (TCP LISTEN and bound UDP sockets), read from
//! /proc/net/{tcp,tcp6,udp,udp6}, with the process that owns each (matched through
//! /proc/PID/fd socket inodes). Used by strata's check that something other than libvirt's
//! dnsmasq holds the wildcard address on port 53 or 67 (which stops libvirt networks from
//! starting). Reading /proc avoids scraping `ss`, which has no JSON form.
//!
//! /proc/net is per network namespace (it is a link to /proc/self/net), so this sees the
//! sockets of the namespace strata runs in — the host's, where libvirt binds its dnsmasq.
//! Without root, the fds of other users' processes cannot be read, so their sockets are
//! still listed but with no owner.

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// A socket that accepts traffic on a local address: a TCP socket in LISTEN or a bound,
/// unconnected UDP socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listener {
    /// "tcp" or "udp" (v4 and v6 both; the address tells which)
    pub protocol: String,
    pub address: IpAddr,
    pub port: u16,
    pub inode: u64,
    /// The owning process (pid and its command line, arguments joined with spaces), when it
    /// could be found.
    pub owner: Option<Owner>,
}

/// A process holding a socket open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub pid: u32,
    pub command: String,
}

impl Listener {
    /// Bound to 0.0.0.0 or ::. A wildcard bind on a port conflicts with every later bind of
    /// that port on a specific address, which is what breaks libvirt's dnsmasq.
    pub fn is_wildcard(&self) -> bool {
        self.address.is_unspecified()
    }
}

/// TCP_LISTEN in the kernel's state numbering.
const TCP_LISTEN: u8 = 0x0A;
/// TCP_CLOSE: what an unconnected UDP socket reports; a connected one shows ESTABLISHED.
const UDP_UNCONNECTED: u8 = 0x07;

/// The socket state that makes a row a listener for `protocol`; None for protocols this
/// module does not read.
fn listening_state(protocol: &str) -> Option<u8> {
    match protocol {
        "tcp" => Some(TCP_LISTEN),
        "udp" => Some(UDP_UNCONNECTED),
        _ => None,
    }
}

/// Parse one /proc/net/{tcp,tcp6,udp,udp6} file (pure). `protocol` is "tcp" or "udp"; for
/// tcp only state 0A (LISTEN) rows are kept, for udp state 07 (unconnected, i.e. bound) rows.
/// Addresses are in the kernel's hex form: IPv4 "0100007F:0035" = 127.0.0.1:53 (the 32-bit
/// word is in host byte order, little-endian on x86: bytes reversed); IPv6 is four 32-bit
/// words each in host order. Returns listeners with owner None. Malformed rows are skipped
/// (the kernel format is fixed; a row we cannot read is not a listener we can judge).
pub fn parse_proc_net(text: &str, protocol: &str) -> Vec<Listener> {
    let Some(state) = listening_state(protocol) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| parse_row(line, protocol, state))
        .collect()
}

/// One row: "sl: local rem st tx:rx tr:when retrnsmt uid timeout inode ...". The header
/// line fails the "sl:" check, so it needs no special case.
fn parse_row(line: &str, protocol: &str, wanted_state: u8) -> Option<Listener> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let slot = fields.first()?.strip_suffix(':')?;
    if slot.is_empty() || !slot.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
    if state != wanted_state {
        return None;
    }
    let (address, port) = parse_endpoint(fields.get(1)?)?;
    let inode = fields.get(9)?.parse().ok()?;
    Some(Listener {
        protocol: protocol.to_string(),
        address,
        port,
        inode,
        owner: None,
    })
}

/// "ADDR:PORT" in hex; the port is printed in ordinary (network-value) form, the address
/// as raw host-order words.
fn parse_endpoint(text: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = text.split_once(':')?;
    if port.len() != 4 || !is_hex(port) {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    let address = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(hex_word_bytes(addr)?)),
        32 => IpAddr::V6(parse_ipv6(addr)?),
        _ => return None,
    };
    Some((address, port))
}

/// Four host-order words, each converted back to the bytes as they lay in memory.
fn parse_ipv6(text: &str) -> Option<Ipv6Addr> {
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
        let word = text.get(i * 8..i * 8 + 8)?;
        chunk.copy_from_slice(&hex_word_bytes(word)?);
    }
    Some(Ipv6Addr::from(bytes))
}

/// The kernel prints a 32-bit word with %08X as read from memory in host order; its
/// native-endian bytes are therefore the address bytes in network order.
fn hex_word_bytes(text: &str) -> Option<[u8; 4]> {
    if text.len() != 8 || !is_hex(text) {
        return None;
    }
    let word = u32::from_str_radix(text, 16).ok()?;
    Some(word.to_ne_bytes())
}

/// Strict hex check: from_str_radix alone would accept a leading '+'.
fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parse a /proc/PID/fd link target such as "socket:[12345]" into the inode (pure).
pub fn socket_inode(link: &str) -> Option<u64> {
    let digits = link.strip_prefix("socket:[")?.strip_suffix(']')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The /proc/net files and the protocol each belongs to. Only tcp is required: the v6 files
/// are missing when IPv6 is disabled, and a kernel without /proc/net/tcp has no /proc at all.
const SOURCES: [(&str, &str, bool); 4] = [
    ("/proc/net/tcp", "tcp", true),
    ("/proc/net/tcp6", "tcp", false),
    ("/proc/net/udp", "udp", false),
    ("/proc/net/udp6", "udp", false),
];

/// Every listener on the given ports (all ports when `ports` is empty), with owners filled in
/// by scanning /proc/*/fd (processes that vanish or whose fds cannot be read are skipped).
/// Errors (as a String saying which file) only when /proc/net/tcp itself cannot be read.
pub fn read(ports: &[u16]) -> Result<Vec<Listener>, String> {
    let mut listeners = Vec::new();
    for (path, protocol, required) in SOURCES {
        match std::fs::read_to_string(path) {
            Ok(text) => listeners.extend(parse_proc_net(&text, protocol)),
            Err(e) if required => return Err(format!("reading {path}: {e}")),
            Err(_) => {}
        }
    }
    listeners.retain(|l| ports.is_empty() || ports.contains(&l.port));
    attach_owners(&mut listeners);
    sort_dedup(&mut listeners);
    Ok(listeners)
}

/// Order by (port, protocol, address) for stable output; the inode breaks ties so that exact
/// duplicates end up adjacent for dedup (the owner follows from the inode).
fn sort_dedup(listeners: &mut Vec<Listener>) {
    listeners.sort_by(|a, b| {
        (a.port, &a.protocol, a.address, a.inode).cmp(&(b.port, &b.protocol, b.address, b.inode))
    });
    listeners.dedup();
}

/// Fill in owners from one pass over /proc; skipped entirely when there is nothing to match.
fn attach_owners(listeners: &mut [Listener]) {
    let wanted: HashSet<u64> = listeners
        .iter()
        .map(|l| l.inode)
        .filter(|&i| i != 0)
        .collect();
    if wanted.is_empty() {
        return;
    }
    let owners = find_owners(Path::new("/proc"), &wanted);
    for listener in listeners.iter_mut() {
        listener.owner = owners.get(&listener.inode).cloned();
    }
}

/// Map each wanted socket inode to the process holding it. Forked children share their
/// parent's sockets (dnsmasq does this), so the lowest pid wins: usually the parent, and
/// independent of the order /proc lists processes in.
fn find_owners(proc_root: &Path, wanted: &HashSet<u64>) -> HashMap<u64, Owner> {
    let mut owners: HashMap<u64, Owner> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return owners;
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let held: Vec<u64> = socket_inodes(proc_root, pid)
            .into_iter()
            .filter(|i| wanted.contains(i) && !owners.contains_key(i))
            .collect();
        if held.is_empty() {
            continue;
        }
        let owner = Owner {
            pid,
            command: command_line(proc_root, pid),
        };
        for inode in held {
            owners.insert(inode, owner.clone());
        }
        if owners.len() == wanted.len() {
            break;
        }
    }
    owners
}

/// Socket inodes among a process's open fds; empty when the process is gone or its fds are
/// not ours to read.
fn socket_inodes(proc_root: &Path, pid: u32) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let target = std::fs::read_link(e.ok()?.path()).ok()?;
            socket_inode(target.to_str()?)
        })
        .collect()
}

/// The command line with NUL-separated arguments joined by spaces. When it is empty (kernel
/// threads, a process exiting) fall back to "[comm]", as ps does, so the owner is still named.
fn command_line(proc_root: &Path, pid: u32) -> String {
    let dir = proc_root.join(pid.to_string());
    let raw = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    let command = join_cmdline(&raw);
    if !command.is_empty() {
        return command;
    }
    match std::fs::read_to_string(dir.join("comm")) {
        Ok(comm) if !comm.trim().is_empty() => format!("[{}]", comm.trim()),
        _ => String::new(),
    }
}

/// /proc/PID/cmdline is NUL-separated with a trailing NUL; arguments need not be UTF-8.
fn join_cmdline(raw: &[u8]) -> String {
    raw.split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(String::from_utf8_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};

    /// The /proc/net/tcp and /proc/net/udp header as the kernel prints it.
    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    /// Rows in the kernel's layout, leading spaces included, after the header.
    fn with_header(header: &str, rows: &[&str]) -> String {
        let mut text = format!("{header}\n");
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        text
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_tcp_listen_rows_and_skips_established() {
        let text = with_header(
            HEADER,
            &[
                "   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 21430 1 0000000000000000 100 0 0 10 0",
                "   1: 017AA8C0:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 5",
                "   2: 0100007F:0016 0100007F:B4C2 01 00000000:00000000 02:0009A3B4 00000000     0        0 40001 2 0000000000000000 20 4 30 10 -1",
            ],
        );
        let got = parse_proc_net(&text, "tcp");
        assert_eq!(got.len(), 2, "{got:?}");

        assert_eq!(got[0].protocol, "tcp");
        assert_eq!(got[0].address, v4(0, 0, 0, 0));
        assert_eq!(got[0].port, 22);
        assert_eq!(got[0].inode, 21430);
        assert_eq!(got[0].owner, None);
        assert!(got[0].is_wildcard());

        assert_eq!(got[1].address, v4(192, 168, 122, 1));
        assert_eq!(got[1].port, 53);
        assert_eq!(got[1].inode, 31337);
        assert!(!got[1].is_wildcard());
    }

    #[test]
    fn parses_udp_bound_row() {
        let text = with_header(
            "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops",
            &[
                "  511: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 28811 2 0000000000000000 0",
                "  512: 0100007F:D431 0100007F:0035 01 00000000:00000000 00:00000000 00000000  1000        0 28999 2 0000000000000000 0",
            ],
        );
        let got = parse_proc_net(&text, "udp");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].protocol, "udp");
        assert_eq!(got[0].address, v4(0, 0, 0, 0));
        assert_eq!(got[0].port, 67);
        assert_eq!(got[0].inode, 28811);
        assert!(got[0].is_wildcard());
        // A udp file read as tcp has no LISTEN rows.
        assert!(parse_proc_net(&text, "tcp").is_empty());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_tcp6_rows() {
        let text = with_header(
            "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
            &[
                "   0: 00000000000000000000000000000000:0035 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 33001 1 0000000000000000 100 0 0 10 0",
                "   1: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 33002 1 0000000000000000 100 0 0 10 0",
                "   2: 0000000000000000FFFF00000100007F:0277 0000000000000000FFFF00000100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 33003 1 0000000000000000 20 4 0 10 -1",
            ],
        );
        let got = parse_proc_net(&text, "tcp");
        assert_eq!(got.len(), 2, "{got:?}");

        assert_eq!(got[0].address, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(got[0].port, 53);
        assert_eq!(got[0].inode, 33001);
        assert!(got[0].is_wildcard());

        assert_eq!(got[1].address, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(got[1].port, 631);
        assert_eq!(got[1].inode, 33002);
        assert!(!got[1].is_wildcard());
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_v4_mapped_and_byte_order() {
        // ::ffff:127.0.0.1 in tcp6 form; the last word holds the IPv4 address reversed.
        let (addr, port) = parse_endpoint("0000000000000000FFFF00000100007F:0277").unwrap();
        assert_eq!(addr, "::ffff:127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(port, 631);
        let (addr, port) = parse_endpoint("0100007F:0035").unwrap();
        assert_eq!(addr, v4(127, 0, 0, 1));
        assert_eq!(port, 53);
    }

    /// Captured on the machine this module was written on (x86_64) with `cat /proc/net/tcp`:
    /// the header and first two rows, with the kernel's trailing padding kept.
    const CAPTURED_TCP: &str = concat!(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     \n",
        "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1590 1 000000007d6234e5 100 0 0 10 0                      \n",
        "   1: 020200C0:ADFC 507100CB:01BB 01 00000000:00000000 00:00000000 00000000     0        0 7102 1 00000000b86ee021 20 4 1 148 -1                     \n",
    );

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_captured_sample() {
        let got = parse_proc_net(CAPTURED_TCP, "tcp");
        assert_eq!(
            got,
            vec![Listener {
                protocol: "tcp".to_string(),
                address: v4(0, 0, 0, 0),
                port: 2024,
                inode: 1590,
                owner: None,
            }]
        );
    }

    #[test]
    fn skips_malformed_rows() {
        let text = with_header(
            HEADER,
            &[
                "   0: 0000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
                "   1: 00000000:016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1",
                "   2: +0000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1",
                "   3: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 x 1",
                "   4: 00000000:0016 00000000:0000 0A",
                "   garbage",
                "",
                "   5: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1",
            ],
        );
        let got = parse_proc_net(&text, "tcp");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].inode, 6);
        assert!(parse_proc_net(&text, "sctp").is_empty());
    }

    #[test]
    fn socket_inode_parses_only_sockets() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("pipe:[1]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[]"), None);
        assert_eq!(socket_inode("socket:[12a]"), None);
        assert_eq!(socket_inode("anon_inode:[eventpoll]"), None);
    }

    #[test]
    fn cmdline_joins_arguments() {
        assert_eq!(
            join_cmdline(b"/usr/sbin/dnsmasq\0--conf-file=/x.conf\0"),
            "/usr/sbin/dnsmasq --conf-file=/x.conf"
        );
        assert_eq!(join_cmdline(b""), "");
    }

    #[test]
    fn sort_orders_and_removes_exact_duplicates() {
        let l = |protocol: &str, address: IpAddr, port: u16, inode: u64| Listener {
            protocol: protocol.to_string(),
            address,
            port,
            inode,
            owner: None,
        };
        let mut list = vec![
            l("udp", v4(0, 0, 0, 0), 53, 3),
            l("tcp", v4(10, 0, 0, 1), 53, 2),
            l("tcp", v4(0, 0, 0, 0), 67, 4),
            l("tcp", v4(0, 0, 0, 0), 53, 1),
            l("udp", v4(0, 0, 0, 0), 53, 3),
        ];
        sort_dedup(&mut list);
        let keys: Vec<(u16, &str, u64)> = list
            .iter()
            .map(|l| (l.port, l.protocol.as_str(), l.inode))
            .collect();
        assert_eq!(
            keys,
            vec![
                (53, "tcp", 1),
                (53, "tcp", 2),
                (53, "udp", 3),
                (67, "tcp", 4)
            ]
        );
    }

    fn assert_found_as_ours(found: &[Listener], protocol: &str, port: u16) {
        let mine = found
            .iter()
            .find(|l| l.protocol == protocol && l.port == port && l.address == v4(127, 0, 0, 1))
            .unwrap_or_else(|| panic!("{protocol} 127.0.0.1:{port} not in {found:?}"));
        let owner = mine.owner.as_ref().expect("owner found");
        assert_eq!(owner.pid, std::process::id());
        assert!(!owner.command.is_empty());
        assert!(found.iter().all(|l| l.port == port));
    }

    #[test]
    fn read_finds_our_tcp_listener() {
        let socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let found = read(&[port]).unwrap();
        assert_found_as_ours(&found, "tcp", port);
    }

    #[test]
    fn read_finds_our_udp_socket() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let found = read(&[port]).unwrap();
        assert_found_as_ours(&found, "udp", port);
    }

    #[test]
    fn read_all_ports_is_sorted() {
        let _socket = TcpListener::bind("127.0.0.1:0").unwrap();
        let found = read(&[]).unwrap();
        assert!(!found.is_empty());
        assert!(found.windows(2).all(|w| {
            (w[0].port, &w[0].protocol, w[0].address) <= (w[1].port, &w[1].protocol, w[1].address)
        }));
    }
}
