//! net.dns-listeners (DNS-1): libvirt's dnsmasq binds each network's address on port 53 and
//! the wildcard on 67 (bound to the bridge). Another server on the wildcard address of port 53
//! (a system dnsmasq in its default mode, bind, a container published with -p 53:53) makes
//! libvirt networks fail to start with "Address already in use".

use crate::check::{Finding, Fix, HostCheck, HostSnapshot, Subject, Verdict};
use crate::host::listeners::Listener;

const ID: &str = "net.dns-listeners";

pub const CHECK: HostCheck = HostCheck {
    id: ID,
    reads: "/proc/net/{tcp,tcp6,udp,udp6} sockets on ports 53 and 67 and their processes (/proc/PID/fd, cmdline)",
    verdict,
};

/// libvirt starts one dnsmasq per network with its own conf file under this directory.
fn is_libvirt_dnsmasq(l: &Listener) -> bool {
    l.owner
        .as_ref()
        .map(|o| o.command.contains("/var/lib/libvirt/dnsmasq/"))
        .unwrap_or(false)
}

fn describe(l: &Listener) -> String {
    let owner = l
        .owner
        .as_ref()
        .map(|o| format!("pid {} {}", o.pid, o.command))
        .unwrap_or_else(|| "owner unknown".into());
    format!("{} {}:{} ({owner})", l.protocol, l.address, l.port)
}

fn verdict(facts: &HostSnapshot) -> Vec<Finding> {
    let listeners = match &facts.dns_dhcp_listeners {
        Ok(l) => l,
        Err(why) => return vec![Finding::skipped(ID, Subject::Host, why)],
    };
    let evidence: Vec<String> = listeners.iter().map(describe).collect();
    let foreign_dns: Vec<&Listener> = listeners
        .iter()
        .filter(|l| l.port == 53 && l.is_wildcard() && !is_libvirt_dnsmasq(l))
        .collect();
    let foreign_dhcp: Vec<&Listener> = listeners
        .iter()
        .filter(|l| l.port == 67 && l.is_wildcard() && !is_libvirt_dnsmasq(l))
        .collect();
    let fix = Fix::manual(
        "make that server bind specific addresses: dnsmasq `bind-interfaces` + `except-interface=virbr*` (Debian ships /etc/dnsmasq.d/libvirt-daemon for this); publish container DNS on one host address (-p 192.0.2.10:53:53/udp), never the wildcard",
    );
    if !foreign_dns.is_empty() {
        return vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Fail,
            format!(
                "{} holds the wildcard address on port 53: libvirt's dnsmasq cannot bind its networks' DNS",
                describe(foreign_dns[0])
            ),
        )
        .evidence(evidence)
        .with_fix(fix)];
    }
    if !foreign_dhcp.is_empty() {
        return vec![Finding::new(
            ID,
            Subject::Host,
            Verdict::Warn,
            format!(
                "{} listens on port 67: a second DHCP server next to libvirt's",
                describe(foreign_dhcp[0])
            ),
        )
        .evidence(evidence)
        .with_fix(fix)];
    }
    vec![Finding::new(
        ID,
        Subject::Host,
        Verdict::Ok,
        "nothing but libvirt's dnsmasq holds the wildcard address on ports 53/67".into(),
    )
    .evidence(evidence)]
}

#[cfg(test)]
mod tests {
    use super::super::test_facts::*;
    use super::*;
    use crate::host::listeners::{parse_proc_net, Owner};

    // /proc/net/tcp rows: libvirt's dnsmasq on 10.250.77.1:53, something on 0.0.0.0:53.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 014DFA0A:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n   1: 00000000:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0\n";

    fn listeners(libvirt_only: bool) -> Vec<Listener> {
        let mut l = parse_proc_net(TCP, "tcp").unwrap();
        l[0].owner = Some(Owner {
            pid: 900,
            command: "/usr/sbin/dnsmasq --conf-file=/var/lib/libvirt/dnsmasq/cap-t.conf".into(),
        });
        l[1].owner = Some(Owner {
            pid: 901,
            command: "/usr/sbin/named -u bind".into(),
        });
        if libvirt_only {
            l.truncate(1);
        }
        l
    }

    #[test]
    fn a_wildcard_dns_server_fails() {
        let mut facts = host_facts(DOCKER_20_10);
        facts.dns_dhcp_listeners = Ok(listeners(false));
        let found = verdict(&facts);
        assert_eq!(found[0].verdict, Verdict::Fail);
        assert!(found[0].summary.contains("named"), "{}", found[0].summary);
        facts.dns_dhcp_listeners = Ok(listeners(true));
        assert_eq!(verdict(&facts)[0].verdict, Verdict::Ok);
    }
}
