//! What swarm.ports reads: whether VMs reach each other on the ports Docker Swarm needs,
//! probed from inside the guests (the host's rules, a guest's firewall and the bridge all
//! stand in the way of real packets, so only real packets tell). Each VM listens on the ports
//! that are free in it (engine-templates/reach-listen.pl, perl-base only), then each VM
//! connects to (tcp) or sends datagrams to (udp) every other one, and the listeners say what
//! arrived. A port the VM already uses (its swarm's own) is not probed for udp; for tcp the
//! connection itself answers. One SSH login per VM; nothing stays in the guest.

use crate::error::{Error, Result};
use crate::guest::{sftp, ssh, Route};
use crate::ssh_exec::{exec, sh_quote};
use ssh2::Session;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const LISTEN_SCRIPT: &str = include_str!("../../../engine-templates/reach-listen.pl");
const SEND_SCRIPT: &str = include_str!("../../../engine-templates/reach-send.pl");

/// The ports a swarm's nodes use between each other: the managers' API (2377/tcp), the
/// nodes' gossip (7946/tcp and udp) and the overlay networks' VXLAN (4789/udp).
pub const SWARM_PORTS: [(Proto, u16); 4] = [
    (Proto::Tcp, 2377),
    (Proto::Tcp, 7946),
    (Proto::Udp, 7946),
    (Proto::Udp, 4789),
];

/// Seconds a tcp probe waits for an answer; a blocked one costs this much.
const TCP_TIMEOUT_SECS: u32 = 3;
/// How long the listeners keep listening at most (they are stopped once the senders are done).
const LISTEN_SECS: u32 = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
    fn parse(word: &str) -> Option<Proto> {
        match word {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }
}

/// One VM taking part: its name, its address on the network the others share, its route.
#[derive(Debug, Clone)]
pub struct Peer {
    pub vm: String,
    pub address: Ipv4Addr,
    pub route: Route,
}

/// What one probe came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The packets got there (a tcp connection, or a refusal, which came back; a datagram
    /// the listener saw).
    Reached,
    /// Nothing came back (tcp) or arrived (udp).
    Silent,
    /// Not probed, and why.
    NotProbed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub from: String,
    pub to: String,
    pub proto: Proto,
    pub port: u16,
    pub outcome: Outcome,
}

/// Every probe between the peers, and the VMs that could not take part (with why).
#[derive(Debug, Clone, Default)]
pub struct ReachSnapshot {
    pub probes: Vec<Probe>,
    pub unreadable: Vec<(String, String)>,
}

/// What the sending side said of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Connected,
    Refused,
    Silent,
    /// udp: the datagrams went out (whether they arrived is the listener's to say).
    Datagrams,
    /// udp: no socket could be made.
    Unsent,
}

/// The sender's lines, "PROTO ADDRESS PORT OUTCOME" (pure; lines it does not know are
/// ignored).
pub fn parse_sent(text: &str) -> Vec<(Proto, Ipv4Addr, u16, Sent)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let proto = Proto::parse(words.next()?)?;
            let address = words.next()?.parse().ok()?;
            let port = words.next()?.parse().ok()?;
            let sent = match words.next()? {
                "connected" => Sent::Connected,
                "refused" => Sent::Refused,
                "silent" => Sent::Silent,
                "sent" => Sent::Datagrams,
                "unsent" => Sent::Unsent,
                _ => return None,
            };
            words
                .next()
                .is_none()
                .then_some((proto, address, port, sent))
        })
        .collect()
}

/// What a listener said: whether it got ready, the ports it found in use, and each probe it
/// heard (protocol, port, source address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heard {
    pub ready: bool,
    pub busy: Vec<(Proto, u16)>,
    pub heard: Vec<(Proto, u16, Ipv4Addr)>,
}

/// The listener's lines (pure; lines it does not know are ignored).
pub fn parse_heard(text: &str) -> Heard {
    let mut out = Heard::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["ready"] => out.ready = true,
            ["busy", proto, port] => {
                if let (Some(proto), Ok(port)) = (Proto::parse(proto), port.parse()) {
                    out.busy.push((proto, port));
                }
            }
            ["heard", proto, port, source] => {
                if let (Some(proto), Ok(port), Ok(source)) =
                    (Proto::parse(proto), port.parse(), source.parse())
                {
                    out.heard.push((proto, port, source));
                }
            }
            _ => {}
        }
    }
    out
}

/// The probes between every ordered pair of `peers` on `ports`, from what each side said
/// (pure). `sent[i]` and `heard[i]` belong to `peers[i]`.
pub fn assemble(
    peers: &[(String, Ipv4Addr)],
    ports: &[(Proto, u16)],
    sent: &[Vec<(Proto, Ipv4Addr, u16, Sent)>],
    heard: &[Heard],
) -> Vec<Probe> {
    let mut probes = Vec::new();
    for (i, (from, from_address)) in peers.iter().enumerate() {
        for (j, (to, to_address)) in peers.iter().enumerate() {
            if i == j {
                continue;
            }
            for &(proto, port) in ports {
                let said = sent[i]
                    .iter()
                    .find(|(p, a, n, _)| *p == proto && a == to_address && *n == port)
                    .map(|(_, _, _, s)| *s);
                let outcome = match (proto, said) {
                    (_, None) => Outcome::NotProbed(format!("{from} did not send the probe")),
                    (Proto::Tcp, Some(Sent::Connected | Sent::Refused)) => Outcome::Reached,
                    (Proto::Tcp, Some(_)) => Outcome::Silent,
                    (Proto::Udp, Some(Sent::Unsent)) => {
                        Outcome::NotProbed(format!("{from} could not send udp"))
                    }
                    (Proto::Udp, Some(_)) if heard[j].busy.contains(&(proto, port)) => {
                        Outcome::NotProbed(format!(
                            "{port}/udp is in use in {to} (its swarm's own), so nothing listened for the probe"
                        ))
                    }
                    (Proto::Udp, Some(_))
                        if heard[j].heard.contains(&(proto, port, *from_address)) =>
                    {
                        Outcome::Reached
                    }
                    (Proto::Udp, Some(_)) => Outcome::Silent,
                };
                probes.push(Probe {
                    from: from.clone(),
                    to: to.clone(),
                    proto,
                    port,
                    outcome,
                });
            }
        }
    }
    probes
}

/// Probe between every ordered pair of `peers` on the swarm's ports. A VM that cannot take
/// part (no SSH, no perl) is listed with why, and the others still probe each other.
pub fn gather(peers: &[Peer]) -> ReachSnapshot {
    let mut snapshot = ReachSnapshot::default();
    // Each VM listening, with its private folder and the listener's pid.
    let listening: Vec<Result<Listening>> = std::thread::scope(|scope| {
        let started: Vec<_> = peers
            .iter()
            .map(|peer| scope.spawn(move || Listening::start(peer)))
            .collect();
        started
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::failed("the probe's listener panicked")))
            })
            .collect()
    });
    let mut taking_part = Vec::new();
    for (peer, listening) in peers.iter().zip(listening) {
        match listening {
            Ok(l) => taking_part.push((peer, l)),
            Err(why) => snapshot.unreadable.push((peer.vm.clone(), why.to_string())),
        }
    }
    let addresses: Vec<(String, Ipv4Addr)> = taking_part
        .iter()
        .map(|(peer, _)| (peer.vm.clone(), peer.address))
        .collect();
    let said: Vec<Vec<(Proto, Ipv4Addr, u16, Sent)>> = std::thread::scope(|scope| {
        let sending: Vec<_> = taking_part
            .iter()
            .map(|(peer, listening)| {
                let targets: Vec<String> = addresses
                    .iter()
                    .filter(|(vm, _)| *vm != peer.vm)
                    .flat_map(|(_, address)| {
                        SWARM_PORTS.iter().map(move |(proto, port)| {
                            format!("{}:{address}:{port}", proto.as_str())
                        })
                    })
                    .collect();
                scope.spawn(move || listening.send(&targets))
            })
            .collect();
        sending
            .into_iter()
            .map(|h| h.join().ok().and_then(|r| r.ok()).unwrap_or_default())
            .collect()
    });
    // The last datagrams a moment to arrive.
    std::thread::sleep(Duration::from_millis(500));
    let heard: Vec<Heard> = taking_part
        .iter()
        .map(|(_, listening)| listening.finish().unwrap_or_default())
        .collect();
    snapshot.probes = assemble(&addresses, &SWARM_PORTS, &said, &heard);
    snapshot
}

/// One VM's listener, running.
struct Listening {
    session: Session,
    vm: String,
    dir: String,
    pid: u32,
}

impl Listening {
    fn start(peer: &Peer) -> Result<Listening> {
        let session = ssh::connect(&peer.route, Duration::from_secs(15))?;
        let dir = run(
            &session,
            "command -v perl >/dev/null || { echo 'no perl in the VM (perl-base)' >&2; exit 1; }; mktemp -d /run/strata-reach.XXXXXX",
        )
        .map_err(|e| e.context(format!("preparing the probes in {}", peer.vm)))?
        .trim()
        .to_string();
        for (name, script) in [("listen.pl", LISTEN_SCRIPT), ("send.pl", SEND_SCRIPT)] {
            sftp::upload(
                &session,
                &mut script.as_bytes(),
                &format!("{dir}/{name}"),
                0o600,
            )?;
        }
        let specs: Vec<String> = SWARM_PORTS
            .iter()
            .map(|(proto, port)| format!("{}:{port}", proto.as_str()))
            .collect();
        let d = sh_quote(&dir);
        let pid = run(
            &session,
            &format!(
                "perl {d}/listen.pl {LISTEN_SECS} {} </dev/null >{d}/heard 2>&1 & echo $!",
                specs.join(" ")
            ),
        )?
        .trim()
        .parse()
        .map_err(|_| Error::failed(format!("the probe's listener in {} did not start", peer.vm)))?;
        let listening = Listening {
            session,
            vm: peer.vm.clone(),
            dir,
            pid,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = run(&listening.session, &format!("cat {d}/heard"))?;
            if parse_heard(&text).ready {
                return Ok(listening);
            }
            if Instant::now() > deadline {
                let _ = listening.finish();
                return Err(Error::failed(format!(
                    "the probe's listener in {} was not ready within 30 s: {}",
                    listening.vm,
                    text.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn send(&self, targets: &[String]) -> Result<Vec<(Proto, Ipv4Addr, u16, Sent)>> {
        let text = run(
            &self.session,
            &format!(
                "perl {}/send.pl {TCP_TIMEOUT_SECS} {}",
                sh_quote(&self.dir),
                targets.join(" ")
            ),
        )?;
        Ok(parse_sent(&text))
    }

    /// Stop the listener, remove the folder, and say what it heard.
    fn finish(&self) -> Result<Heard> {
        let d = sh_quote(&self.dir);
        let text = run(
            &self.session,
            &format!("cat {d}/heard; kill {} 2>/dev/null; rm -rf {d}", self.pid),
        )?;
        Ok(parse_heard(&text))
    }
}

/// A command that must succeed (short ones: the error quotes only its stderr).
fn run(session: &Session, command: &str) -> Result<String> {
    let out = exec(session, command, false)?;
    if out.status != 0 {
        return Err(Error::failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    #[test]
    fn the_sides_lines_are_read_and_strays_ignored() {
        let sent = parse_sent(
            "tcp 10.0.0.2 2377 refused\nudp 10.0.0.2 4789 sent\ntcp 10.0.0.2 7946 silent\nnoise\ntcp 10.0.0.2 99999 connected\ntcp 10.0.0.2 1 connected extra\n",
        );
        assert_eq!(
            sent,
            vec![
                (Proto::Tcp, ip(2), 2377, Sent::Refused),
                (Proto::Udp, ip(2), 4789, Sent::Datagrams),
                (Proto::Tcp, ip(2), 7946, Sent::Silent),
            ]
        );
        let heard =
            parse_heard("busy udp 4789\nready\nheard udp 7946 10.0.0.1\nheard tcp x 10.0.0.1\n");
        assert!(heard.ready);
        assert_eq!(heard.busy, vec![(Proto::Udp, 4789)]);
        assert_eq!(heard.heard, vec![(Proto::Udp, 7946, ip(1))]);
    }

    #[test]
    fn each_probe_is_judged_from_both_sides() {
        let peers = vec![("a".to_string(), ip(1)), ("b".to_string(), ip(2))];
        let ports = [(Proto::Tcp, 2377), (Proto::Udp, 7946), (Proto::Udp, 4789)];
        let sent = vec![
            vec![
                (Proto::Tcp, ip(2), 2377, Sent::Silent),
                (Proto::Udp, ip(2), 7946, Sent::Datagrams),
                (Proto::Udp, ip(2), 4789, Sent::Datagrams),
            ],
            vec![
                (Proto::Tcp, ip(1), 2377, Sent::Refused),
                (Proto::Udp, ip(1), 7946, Sent::Datagrams),
            ],
        ];
        let heard = vec![
            Heard {
                ready: true,
                busy: vec![],
                heard: vec![(Proto::Udp, 7946, ip(2))],
            },
            Heard {
                ready: true,
                busy: vec![(Proto::Udp, 4789)],
                heard: vec![],
            },
        ];
        let probes = assemble(&peers, &ports, &sent, &heard);
        let of = |from: &str, proto, port| {
            probes
                .iter()
                .find(|p| p.from == from && p.proto == proto && p.port == port)
                .unwrap()
                .outcome
                .clone()
        };
        // a → b: tcp silent; 7946/udp never arrived; 4789/udp busy in b.
        assert_eq!(of("a", Proto::Tcp, 2377), Outcome::Silent);
        assert_eq!(of("a", Proto::Udp, 7946), Outcome::Silent);
        assert!(
            matches!(of("a", Proto::Udp, 4789), Outcome::NotProbed(why) if why.contains("in use in b"))
        );
        // b → a: a refusal came back; the datagram arrived from b's address; 4789 was never sent.
        assert_eq!(of("b", Proto::Tcp, 2377), Outcome::Reached);
        assert_eq!(of("b", Proto::Udp, 7946), Outcome::Reached);
        assert!(matches!(of("b", Proto::Udp, 4789), Outcome::NotProbed(_)));
        assert_eq!(probes.len(), 6);
    }
}
