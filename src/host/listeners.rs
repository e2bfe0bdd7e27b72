//! Sockets listening on this host (TCP LISTEN and bound UDP sockets), from the kernel's socket
//! tables (/proc/net/{tcp,tcp6,udp,udp6}) with the process that owns each (matched through
//! the socket inodes of /proc/PID/fd), both read with the `procfs` crate. Used by strata's
//! check that something other than libvirt's dnsmasq holds the wildcard address on port 53 or
//! 67 (which stops libvirt networks from starting). Reading /proc avoids scraping `ss`, which
//! has no JSON form.
//!
//! /proc/net is per network namespace (it is a link to /proc/self/net), so this sees the
//! sockets of the namespace strata runs in — the host's, where libvirt binds its dnsmasq.
//! Without root, the fds of other users' processes cannot be read, so their sockets are
//! still listed but with no owner.

use crate::error::{Error, Result};
use crate::host::runner::Runner;
use procfs::net::{TcpNetEntries, TcpState, UdpNetEntries, UdpState};
use procfs::FromBufReadSI;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

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

    fn new(protocol: &str, local: SocketAddr, inode: u64) -> Listener {
        Listener {
            protocol: protocol.to_string(),
            address: local.ip(),
            port: local.port(),
            inode,
            owner: None,
        }
    }
}

/// A v6 socket table: empty when the kernel has no IPv6 (the file is missing), else read.
fn without_ipv6_empty<T>(table: procfs::ProcResult<Vec<T>>, what: &str) -> Result<Vec<T>> {
    match table {
        Err(procfs::ProcError::NotFound(_)) => Ok(Vec::new()),
        other => other.map_err(|e| proc_error(what, e)),
    }
}

fn proc_error(what: &str, e: procfs::ProcError) -> Error {
    Error::failed(format!("reading {what}: {e}"))
}

/// The listeners in one socket table's text (`protocol` "tcp" or "udp"), as the kernel of
/// this machine's byte order prints it (pure).
pub fn parse_proc_net(text: &str, protocol: &str) -> Result<Vec<Listener>> {
    let si = procfs::ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    };
    match protocol {
        "tcp" => Ok(TcpNetEntries::from_buf_read(text.as_bytes(), &si)
            .map_err(|e| proc_error("a TCP socket table", e))?
            .0
            .into_iter()
            .filter(|e| e.state == TcpState::Listen)
            .map(|e| Listener::new("tcp", e.local_address, e.inode))
            .collect()),
        "udp" => Ok(UdpNetEntries::from_buf_read(text.as_bytes(), &si)
            .map_err(|e| proc_error("a UDP socket table", e))?
            .0
            .into_iter()
            .filter(|e| e.state == UdpState::Close)
            .map(|e| Listener::new("udp", e.local_address, e.inode))
            .collect()),
        other => Err(Error::failed(format!("no socket table for '{other}'"))),
    }
}

/// Every listener on the given ports (all ports when `ports` is empty), with owners filled in
/// from one pass over /proc (processes that vanish or whose fds cannot be read are skipped).
/// An error when a table cannot be read or parsed (a check must not pass on a table it could
/// not read); only the v6 tables may be missing (a kernel without IPv6).
pub fn read(ports: &[u16]) -> Result<Vec<Listener>> {
    let mut listeners: Vec<Listener> = procfs::net::tcp()
        .map_err(|e| proc_error("/proc/net/tcp", e))?
        .into_iter()
        .filter(|e| e.state == TcpState::Listen)
        .map(|e| Listener::new("tcp", e.local_address, e.inode))
        .collect();
    let udp = procfs::net::udp().map_err(|e| proc_error("/proc/net/udp", e))?;
    let tcp6 = without_ipv6_empty(procfs::net::tcp6(), "/proc/net/tcp6")?;
    let udp6 = without_ipv6_empty(procfs::net::udp6(), "/proc/net/udp6")?;
    listeners.extend(
        tcp6.into_iter()
            .filter(|e| e.state == TcpState::Listen)
            .map(|e| Listener::new("tcp", e.local_address, e.inode)),
    );
    listeners.extend(
        udp.into_iter()
            .chain(udp6)
            .filter(|e| e.state == UdpState::Close)
            .map(|e| Listener::new("udp", e.local_address, e.inode)),
    );
    listeners.retain(|l| ports.is_empty() || ports.contains(&l.port));
    attach_owners(&mut listeners);
    sort_dedup(&mut listeners);
    Ok(listeners)
}

/// The listeners of `runner`'s host: its socket tables read there (`cat`), and the owners of
/// the wanted sockets found there by one `find` over /proc/*/fd and their command lines.
pub fn read_on(runner: &Runner, ports: &[u16]) -> Result<Vec<Listener>> {
    if runner.is_local() {
        return read(ports);
    }
    let mut listeners = Vec::new();
    for (table, protocol, required) in [
        ("/proc/net/tcp", "tcp", true),
        ("/proc/net/udp", "udp", true),
        ("/proc/net/tcp6", "tcp", false),
        ("/proc/net/udp6", "udp", false),
    ] {
        match runner.read_file(table) {
            Ok(text) => listeners.extend(parse_proc_net(&text, protocol)?),
            Err(e) if required => return Err(e),
            Err(_) => {} // a kernel without IPv6
        }
    }
    listeners.retain(|l| ports.is_empty() || ports.contains(&l.port));
    let wanted: Vec<u64> = listeners
        .iter()
        .map(|l| l.inode)
        .filter(|&i| i != 0)
        .collect();
    if !wanted.is_empty() {
        let owners = parse_owner_lines(&runner.run("sh", &["-c", &owner_script(&wanted)])?.stdout);
        for listener in listeners.iter_mut() {
            listener.owner = owners.get(&listener.inode).cloned();
        }
    }
    sort_dedup(&mut listeners);
    Ok(listeners)
}

/// A shell script printing "PID socket:[INODE] COMMAND LINE" for each fd that holds one of
/// `inodes` (numbers only: nothing else goes into it).
fn owner_script(inodes: &[u64]) -> String {
    let names: Vec<String> = inodes
        .iter()
        .map(|i| format!("-lname 'socket:\\[{i}\\]'"))
        .collect();
    format!(
        "find /proc/[0-9]*/fd -mindepth 1 -maxdepth 1 -type l \\( {} \\) -printf '%h %l\\n' 2>/dev/null | \
         while read -r dir link; do pid=${{dir#/proc/}}; pid=${{pid%/fd}}; \
         printf '%s %s ' \"$pid\" \"$link\"; tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null; echo; done",
        names.join(" -o ")
    )
}

/// The owners in `owner_script`'s output, the lowest pid for each inode (forked children share
/// their parent's sockets) (pure).
pub fn parse_owner_lines(text: &str) -> HashMap<u64, Owner> {
    let mut owners: HashMap<u64, Owner> = HashMap::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, ' ');
        let (Some(pid), Some(link)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let Some(inode) = link
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let command = fields.next().unwrap_or_default().trim().to_string();
        match owners.get(&inode) {
            Some(known) if known.pid <= pid => {}
            _ => {
                owners.insert(inode, Owner { pid, command });
            }
        }
    }
    owners
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
    let owners = find_owners(&wanted);
    for listener in listeners.iter_mut() {
        listener.owner = owners.get(&listener.inode).cloned();
    }
}

/// Map each wanted socket inode to the process holding it. Forked children share their
/// parent's sockets (dnsmasq does this), so the lowest pid wins: usually the parent, and
/// independent of the order /proc lists processes in.
fn find_owners(wanted: &HashSet<u64>) -> HashMap<u64, Owner> {
    let mut owners: HashMap<u64, Owner> = HashMap::new();
    let Ok(all) = procfs::process::all_processes() else {
        return owners;
    };
    let mut processes: Vec<procfs::process::Process> = all.flatten().collect();
    processes.sort_by_key(|p| p.pid);
    for process in processes {
        let Ok(fds) = process.fd() else { continue };
        let held: Vec<u64> = fds
            .flatten()
            .filter_map(|fd| match fd.target {
                procfs::process::FDTarget::Socket(inode) => Some(inode),
                _ => None,
            })
            .filter(|inode| wanted.contains(inode) && !owners.contains_key(inode))
            .collect();
        if held.is_empty() {
            continue;
        }
        let owner = Owner {
            pid: process.pid as u32,
            command: command_line(&process),
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

/// The command line with its arguments joined by spaces. When it is empty (kernel threads, a
/// process exiting) fall back to "[comm]", as ps does, so the owner is still named.
fn command_line(process: &procfs::process::Process) -> String {
    let command = process
        .cmdline()
        .map(|args| args.join(" "))
        .unwrap_or_default();
    if !command.is_empty() {
        return command;
    }
    match process.stat() {
        Ok(stat) if !stat.comm.is_empty() => format!("[{}]", stat.comm),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};

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
        let got = parse_proc_net(&text, "tcp").unwrap();
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
    fn owners_of_a_remote_host_lowest_pid_first() {
        let owners = parse_owner_lines(
            "912 socket:[31337] /usr/sbin/dnsmasq --conf-file=/var/lib/libvirt/dnsmasq/default.conf \n\
             911 socket:[31337] /usr/sbin/dnsmasq --conf-file=/var/lib/libvirt/dnsmasq/default.conf \n\
             40 socket:[21430] /usr/sbin/sshd -D \n\
             x socket:[1] junk\n\
             41 pipe:[7] not a socket\n",
        );
        assert_eq!(owners.len(), 2);
        assert_eq!(owners[&31337].pid, 911);
        assert!(owners[&31337]
            .command
            .contains("libvirt/dnsmasq/default.conf"));
        assert_eq!(owners[&21430].command, "/usr/sbin/sshd -D");
        let script = owner_script(&[1, 22]);
        assert!(
            script.contains("-lname 'socket:\\[1\\]' -o -lname 'socket:\\[22\\]'"),
            "{script}"
        );
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
        let got = parse_proc_net(&text, "udp").unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].protocol, "udp");
        assert_eq!(got[0].address, v4(0, 0, 0, 0));
        assert_eq!(got[0].port, 67);
        assert_eq!(got[0].inode, 28811);
        assert!(got[0].is_wildcard());
        // A udp file read as tcp has no LISTEN rows.
        assert!(parse_proc_net(&text, "tcp").unwrap().is_empty());
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
        let got = parse_proc_net(&text, "tcp").unwrap();
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
        let got = parse_proc_net(CAPTURED_TCP, "tcp").unwrap();
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
    fn malformed_tables_are_errors_not_guesses() {
        for row in [
            "   0: 0000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1",
            "   3: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 x 1",
            "   4: 00000000:0016 00000000:0000 0A",
            "   garbage",
        ] {
            let text = with_header(HEADER, &[row]);
            assert!(parse_proc_net(&text, "tcp").is_err(), "{row}");
        }
        assert!(parse_proc_net(&with_header(HEADER, &[]), "sctp").is_err());
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
