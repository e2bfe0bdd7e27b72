//! libvirt networks: reading their subnets and DHCP hosts, creating strata's own (isolated or
//! NAT, with DHCP), refusing overlapping subnets, and adding/removing DHCP reservations.

use crate::error::{Error, ErrorKind, Result};
use crate::host::runner::Runner;
use crate::vm::{alloc, xml, NETWORK_METADATA_NS};
use ipnet::Ipv4Net;
use serde::Serialize;
use std::net::Ipv4Addr;
use virt::connect::Connect;
use virt::network::Network;

/// A DHCP reservation: this MAC always gets this IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DhcpHost {
    pub mac: String,
    pub name: String,
    pub ip: Ipv4Addr,
}

/// What strata needs to know about a libvirt network.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkInfo {
    pub name: String,
    pub bridge: Option<String>,
    /// "isolated" when there is no <forward>, else libvirt's forward mode (nat, route...).
    pub mode: String,
    pub subnet: Option<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub dynamic: Option<(Ipv4Addr, Ipv4Addr)>,
    pub hosts: Vec<DhcpHost>,
    pub active: bool,
    /// Created by strata (carries strata's metadata element).
    pub strata: bool,
    /// The plan that made it (`strata plan apply`); only that plan changes or removes it.
    pub plan: Option<String>,
    /// The MTU libvirt gives its bridge (`<mtu size=.../>`; None: the default, 1500).
    pub mtu: Option<u32>,
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children()
        .find(|c| c.is_element() && c.has_tag_name(tag))
}

/// Parse a network's XML description (pure; the unit tests feed it libvirt's output).
pub fn parse_network_xml(text: &str) -> Result<NetworkInfo> {
    let doc = roxmltree::Document::parse(text).map_err(|e| {
        Error::failed(format!(
            "libvirt returned network XML strata cannot read: {e}"
        ))
    })?;
    let root = doc.root_element();
    let name = child(root, "name")
        .and_then(|n| n.text())
        .unwrap_or_default()
        .to_string();
    let bridge = child(root, "bridge")
        .and_then(|b| b.attribute("name"))
        .map(str::to_string);
    let mode = child(root, "forward")
        .map(|f| f.attribute("mode").unwrap_or("nat").to_string())
        .unwrap_or_else(|| "isolated".to_string());
    let ours = child(root, "metadata").and_then(|m| {
        m.children()
            .find(|c| c.tag_name().namespace() == Some(NETWORK_METADATA_NS))
    });
    let strata = ours.is_some();
    // A plan name that is not a name was not written by strata: no plan owns that network.
    let plan = ours
        .and_then(|n| child(n, "plan"))
        .and_then(|p| p.text())
        .map(|p| p.trim().to_string())
        .filter(|p| crate::names::is_valid_name(p));
    let mut info = NetworkInfo {
        name,
        bridge,
        mode,
        subnet: None,
        gateway: None,
        dynamic: None,
        hosts: Vec::new(),
        active: false,
        strata,
        plan,
        mtu: child(root, "mtu")
            .and_then(|m| m.attribute("size"))
            .and_then(|size| size.parse().ok()),
    };
    let ipv4 = root.children().find(|c| {
        c.has_tag_name("ip") && c.attribute("family").map(|f| f == "ipv4").unwrap_or(true)
    });
    if let Some(ip) = ipv4 {
        let address: Option<Ipv4Addr> = ip.attribute("address").and_then(|a| a.parse().ok());
        let prefix: Option<u8> =
            ip.attribute("prefix")
                .and_then(|p| p.parse().ok())
                .or_else(|| {
                    let mask: Ipv4Addr = ip.attribute("netmask")?.parse().ok()?;
                    ipnet::ipv4_mask_to_prefix(mask).ok()
                });
        if let (Some(address), Some(prefix)) = (address, prefix) {
            info.gateway = Some(address);
            info.subnet = Ipv4Net::new(address, prefix).ok().map(|n| n.trunc());
        }
        if let Some(dhcp) = child(ip, "dhcp") {
            if let Some(range) = child(dhcp, "range") {
                let start = range.attribute("start").and_then(|a| a.parse().ok());
                let end = range.attribute("end").and_then(|a| a.parse().ok());
                info.dynamic = start.zip(end);
            }
            info.hosts = dhcp
                .children()
                .filter(|c| c.has_tag_name("host"))
                .filter_map(|h| {
                    Some(DhcpHost {
                        mac: h.attribute("mac")?.to_ascii_lowercase(),
                        name: h.attribute("name").unwrap_or_default().to_string(),
                        ip: h.attribute("ip")?.parse().ok()?,
                    })
                })
                .collect();
        }
    }
    Ok(info)
}

fn describe(net: &Network) -> Result<NetworkInfo> {
    let mut info = parse_network_xml(&net.xml_desc(0)?)?;
    info.active = net.is_active()?;
    Ok(info)
}

/// Every libvirt network on this connection.
pub fn list(conn: &Connect) -> Result<Vec<NetworkInfo>> {
    let mut nets = Vec::new();
    for net in conn.list_all_networks(0)? {
        match describe(&net) {
            Ok(info) => nets.push(info),
            // Destroyed by someone else between listing and reading it: not there any more
            // (a `plan show` beside another strata's `net destroy` failed on it).
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nets)
}

/// Look a network up by name, with a hint when it is not there.
pub fn lookup(conn: &Connect, name: &str) -> Result<(Network, NetworkInfo)> {
    let net = conn.lookup_network_by_name(name).map_err(|e| match Error::from(e) {
        // Only libvirt's "no such network" is one; an unreachable libvirtd stays what it is.
        err if err.kind() == ErrorKind::NotFound => {
            Error::not_found(format!("network '{name}' does not exist")).with_hint(format!(
                "create it with `strata net create {name} --subnet 10.77.0.0/24`, or list networks with `strata net list`"
            ))
        }
        err => err.context(format!("looking up network '{name}'")),
    })?;
    let info = describe(&net)?;
    Ok((net, info))
}

/// Something a new subnet would collide with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub what: String,
    pub subnet: Ipv4Net,
}

/// Whether two IPv4 ranges share an address (one holds the other's start).
pub fn overlap(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Everything in `taken` that overlaps `subnet` (pure).
pub fn find_overlaps(subnet: Ipv4Net, taken: &[Taken]) -> Vec<Taken> {
    taken
        .iter()
        .filter(|t| overlap(subnet, t.subnet))
        .cloned()
        .collect()
}

/// Libvirt networks, and the routes and Docker networks of the host `host` runs on (the
/// libvirt host's, local or remote), as subnets in use.
pub fn subnets_in_use(conn: &Connect, host: &Runner) -> Result<(Vec<Taken>, Vec<String>)> {
    let mut taken = Vec::new();
    let mut unchecked = Vec::new();
    let nets = list(conn)?;
    let bridges: Vec<String> = nets.iter().filter_map(|n| n.bridge.clone()).collect();
    for n in &nets {
        if let Some(subnet) = n.subnet {
            taken.push(Taken {
                what: format!("libvirt network '{}'", n.name),
                subnet,
            });
        }
    }
    for r in crate::host::routes::read_with(host)? {
        // A running libvirt network's own route is already reported as that network.
        if !bridges.contains(&r.dev) {
            taken.push(Taken {
                what: format!("host route {} dev {}", r.subnet, r.dev),
                subnet: r.subnet,
            });
        }
    }
    match crate::host::docker::networks_with(host) {
        Ok(docker) => {
            for d in docker {
                for subnet in d.subnets {
                    taken.push(Taken {
                        what: format!("Docker network '{}'", d.name),
                        subnet,
                    });
                }
            }
        }
        Err(why) => unchecked.push(format!("Docker networks ({})", why.message())),
    }
    Ok((taken, unchecked))
}

/// How a new network reaches the outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// No <forward>: guests reach the host and each other only.
    Isolated,
    /// NAT to the host's uplink.
    Nat,
}

impl NetworkMode {
    fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Isolated => "isolated",
            NetworkMode::Nat => "nat",
        }
    }
}

/// Define, start and autostart a strata network; refuse overlapping subnets, naming them.
pub fn create(
    conn: &Connect,
    name: &str,
    subnet: Ipv4Net,
    mode: NetworkMode,
    taken: &[Taken],
    plan: Option<&str>,
) -> Result<NetworkInfo> {
    let xml_text = draft(conn, name, subnet, mode, taken, plan)?;
    explain_create(name, subnet, mode, &xml_text)?;
    let net = conn.define_network_xml(&xml_text)?;
    let started = net.create().and_then(|_| net.set_autostart(true));
    if let Err(e) = started {
        let _ = net.undefine();
        return Err(Error::from(e).context(format!("starting network '{name}'")));
    }
    describe(&net)
}

/// `net create --dry-run --explain`: check as a create does and write the commands that make
/// the network; change nothing.
pub fn dry_run_create(
    conn: &Connect,
    name: &str,
    subnet: Ipv4Net,
    mode: NetworkMode,
    taken: &[Taken],
) -> Result<()> {
    let xml_text = draft(conn, name, subnet, mode, taken, None)?;
    explain_create(name, subnet, mode, &xml_text)
}

fn explain_create(name: &str, subnet: Ipv4Net, mode: NetworkMode, xml_text: &str) -> Result<()> {
    crate::explain::step(
        crate::explain::Step::NetCreate,
        &serde_json::json!({
            "name": name,
            "subnet": subnet.to_string(),
            "mode": mode.as_str(),
            "xml": crate::explain::heredoc(xml_text.trim_end(), "STRATA_XML", &[])?,
        }),
    )
}

/// The checked definition of a new network: its name is free, its subnet large enough and
/// overlapping nothing in `taken`.
fn draft(
    conn: &Connect,
    name: &str,
    subnet: Ipv4Net,
    mode: NetworkMode,
    taken: &[Taken],
    plan: Option<&str>,
) -> Result<String> {
    crate::names::check_object_name("network", name)?;
    if conn.lookup_network_by_name(name).is_ok() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!("network '{name}' already exists"),
        )
        .with_hint("pick another name, or remove it with `strata net destroy NAME`"));
    }
    let (gateway, dhcp_start, dhcp_end) = alloc::layout(subnet)?;
    let clashes = find_overlaps(subnet.trunc(), taken);
    if !clashes.is_empty() {
        let list: Vec<String> = clashes
            .iter()
            .map(|c| format!("{} ({})", c.what, c.subnet))
            .collect();
        return Err(Error::bad_input(format!(
            "--subnet {subnet} overlaps {}",
            list.join(", ")
        ))
        .with_hint("choose a subnet that is free, e.g. another 10.x.y.0/24; `strata net list` and `ip route` show what is taken"));
    }
    xml::render(
        xml::NETWORK,
        &serde_json::json!({
            "name": name,
            "metadata_ns": NETWORK_METADATA_NS,
            "created": crate::units::now_rfc3339(),
            "plan": plan,
            "mode": mode.as_str(),
            "gateway": gateway.to_string(),
            "prefix": subnet.prefix_len(),
            "dhcp_start": dhcp_start.to_string(),
            "dhcp_end": dhcp_end.to_string(),
        }),
    )
}

/// Stop and remove a network strata created. Networks strata did not create are refused.
pub fn destroy(conn: &Connect, name: &str) -> Result<()> {
    let (net, info) = lookup(conn, name)?;
    if !info.strata {
        return Err(Error::bad_input(format!(
            "network '{name}' was not created by strata; refusing to remove it"
        ))
        .with_hint("remove it with virsh net-destroy/net-undefine if you really mean to"));
    }
    if info.active {
        net.destroy()?;
    }
    if net.is_persistent()? {
        net.undefine()?;
    }
    Ok(())
}

fn update_flags(net: &Network) -> Result<u32> {
    let mut flags = virt::sys::VIR_NETWORK_UPDATE_AFFECT_CONFIG;
    if net.is_active()? {
        flags |= virt::sys::VIR_NETWORK_UPDATE_AFFECT_LIVE;
    }
    Ok(flags)
}

/// A DHCP host entry as libvirt's network XML writes it.
pub fn host_xml(host: &DhcpHost) -> Result<String> {
    xml::render(
        xml::DHCP_HOST,
        &serde_json::json!({"mac": host.mac, "name": host.name, "ip": host.ip.to_string()}),
    )
}

/// Reserve `host.ip` for `host.mac` in the network's DHCP hosts (live and persistent).
pub fn reserve(net: &Network, host: &DhcpHost) -> Result<()> {
    net.update(
        virt::sys::VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
        virt::sys::VIR_NETWORK_SECTION_IP_DHCP_HOST,
        -1,
        &host_xml(host)?,
        update_flags(net)?,
    )?;
    Ok(())
}

/// Addresses dnsmasq has handed out and not yet expired, with their MACs. A destroyed VM's
/// lease outlives it (an hour by default), and dnsmasq will not give a reserved address to a
/// new MAC while another MAC holds it, so the allocator must skip these. `virt` has no safe
/// wrapper for virNetworkGetDHCPLeases; drivers without leases (the test driver) give none.
pub fn leases(net: &Network) -> Result<Vec<(String, Ipv4Addr)>> {
    use std::ffi::CStr;
    let mut raw: *mut virt::sys::virNetworkDHCPLeasePtr = std::ptr::null_mut();
    // SAFETY: `net` is a live network handle; libvirt allocates `raw` and each lease, which are
    // read once and freed below with libvirt's own free functions.
    let count =
        unsafe { virt::sys::virNetworkGetDHCPLeases(net.as_ptr(), std::ptr::null(), &mut raw, 0) };
    if count < 0 {
        let e = virt::error::Error::last_error();
        if e.code().known() == Some(virt::error::ErrorNumber::NoSupport) {
            return Ok(Vec::new());
        }
        return Err(e.into());
    }
    let mut found = Vec::new();
    for i in 0..count as usize {
        // SAFETY: libvirt returned `count` valid lease pointers in `raw`.
        unsafe {
            let lease = *raw.add(i);
            let text = |p: *mut std::os::raw::c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            };
            if let Ok(ip) = text((*lease).ipaddr).parse::<Ipv4Addr>() {
                found.push((text((*lease).mac).to_ascii_lowercase(), ip));
            }
            virt::sys::virNetworkDHCPLeaseFree(lease);
        }
    }
    if !raw.is_null() {
        // SAFETY: the array itself was allocated by libvirt with malloc.
        unsafe { nix::libc::free(raw as *mut std::ffi::c_void) };
    }
    Ok(found)
}

/// Remove a reservation; one that is already gone is not an error.
pub fn release(conn: &Connect, network: &str, host: &DhcpHost) -> Result<()> {
    let (net, info) = match lookup(conn, network) {
        Ok(found) => found,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !info
        .hosts
        .iter()
        .any(|h| h.mac.eq_ignore_ascii_case(&host.mac))
    {
        return Ok(());
    }
    net.update(
        virt::sys::VIR_NETWORK_UPDATE_COMMAND_DELETE,
        virt::sys::VIR_NETWORK_SECTION_IP_DHCP_HOST,
        -1,
        &host_xml(host)?,
        update_flags(&net)?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // `virsh net-dumpxml default` on this machine (Debian 12, libvirt 9.0).
    const DEFAULT_NET: &str = r#"<network>
  <name>default</name>
  <uuid>1b7e3a9e-4f5a-4a53-9b7d-9c1a2e0f4c11</uuid>
  <forward mode='nat'>
    <nat>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:4e:71:0a'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>"#;

    #[test]
    fn parses_libvirts_default_network() {
        let n = parse_network_xml(DEFAULT_NET).unwrap();
        assert_eq!(n.name, "default");
        assert_eq!(n.mode, "nat");
        assert_eq!(n.bridge.as_deref(), Some("virbr0"));
        assert_eq!(n.subnet, Some("192.168.122.0/24".parse().unwrap()));
        assert_eq!(n.gateway, Some("192.168.122.1".parse().unwrap()));
        assert!(!n.strata);
        assert!(n.hosts.is_empty());
        assert_eq!(n.mtu, None);
        let jumbo = DEFAULT_NET.replace("<mac ", "<mtu size='9000'/>\n  <mac ");
        assert_eq!(parse_network_xml(&jumbo).unwrap().mtu, Some(9000));
    }

    #[test]
    fn parses_strata_network_with_hosts() {
        let xml = format!(
            "<network><name>t</name><metadata><strata:network xmlns:strata='{NETWORK_METADATA_NS}'/></metadata>\
             <ip address='10.77.0.1' prefix='24'><dhcp><range start='10.77.0.128' end='10.77.0.254'/>\
             <host mac='52:54:00:AA:00:01' name='a' ip='10.77.0.2'/></dhcp></ip></network>"
        );
        let n = parse_network_xml(&xml).unwrap();
        assert!(n.strata);
        assert_eq!(n.mode, "isolated");
        assert_eq!(
            n.hosts,
            vec![DhcpHost {
                mac: "52:54:00:aa:00:01".into(),
                name: "a".into(),
                ip: "10.77.0.2".parse().unwrap()
            }]
        );
    }

    #[test]
    fn overlap_finds_both_directions() {
        let taken = vec![
            Taken {
                what: "libvirt network 'default'".into(),
                subnet: "192.168.122.0/24".parse().unwrap(),
            },
            Taken {
                what: "Docker network 'bridge'".into(),
                subnet: "172.17.0.0/16".parse().unwrap(),
            },
        ];
        // Docker's default-address-pools 192.168.112.0/20 covers libvirt's 192.168.122.0/24.
        let hits = find_overlaps("192.168.112.0/20".parse().unwrap(), &taken);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].what, "libvirt network 'default'");
        assert_eq!(
            find_overlaps("172.17.3.0/24".parse().unwrap(), &taken)[0].what,
            "Docker network 'bridge'"
        );
        assert!(find_overlaps("10.77.0.0/24".parse().unwrap(), &taken).is_empty());
        assert!(find_overlaps("192.168.123.0/24".parse().unwrap(), &taken).is_empty());
    }
}
