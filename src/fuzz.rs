//! Entry points for fuzzing: each feeds arbitrary bytes to one parser of outside input and must
//! never panic. Errors are fine (they are discarded); a panic, a hang or a blow-up is a bug.
//!
//! The cargo-fuzz targets in fuzz/fuzz_targets/ and the stable property test
//! tests/fuzz_corpus.rs call only these functions (through [`TARGETS`]), so when a parser moves
//! to another module only this file changes. Bytes become text the way strata receives that
//! input: command output and libvirt's XML are read lossily (invalid UTF-8 becomes U+FFFD),
//! files strata reads with `read_to_string` are refused whole when they are not UTF-8, so
//! those entry points skip such input; JSON from the Docker API is parsed from the bytes, as
//! bollard does.

use crate::stack::file::StackFile;
use crate::template::container::{self, ContainerTemplate, HealthSpec, RenderContext};
use std::borrow::Cow;
use std::path::Path;
use std::sync::OnceLock;

/// An entry point: bytes in, nothing out, never a panic.
pub type EntryPoint = fn(&[u8]);

/// Every entry point by name; the name is also the cargo-fuzz target's and its corpus folder's.
pub const TARGETS: &[(&str, EntryPoint)] = &[
    ("stack_file", stack_file),
    ("plan_file", plan_file),
    ("container_params", container_params),
    ("container_render", container_render),
    ("service_template", service_template),
    ("healthcheck", healthcheck),
    ("vm_template_manifest", vm_template_manifest),
    ("size", size),
    ("iptables_save", iptables_save),
    ("nft_tables", nft_tables),
    ("firewalld_zones", firewalld_zones),
    ("libvirt_conf_value", libvirt_conf_value),
    ("proc_net", proc_net),
    ("ip_routes", ip_routes),
    ("guest_facts", guest_facts),
    ("check_script", check_script),
    ("docker_info", docker_info),
    ("domain_xml", domain_xml),
    ("network_xml", network_xml),
    ("vm_metadata", vm_metadata),
    ("qemu_conf_user", qemu_conf_user),
    ("cpuinfo", cpuinfo),
    ("dev_kvm_stat", dev_kvm_stat),
    ("apt_sources", apt_sources),
    ("known_hosts", known_hosts),
    ("connect_uri", connect_uri),
    ("docker_network_inspect", docker_network_inspect),
    ("apt_simulation", apt_simulation),
    ("apt_madison", apt_madison),
    ("dpkg_status", dpkg_status),
    ("os_release", os_release),
    ("engine_version", engine_version),
    ("kernel_version", kernel_version),
    ("swarm_probe_output", swarm_probe_output),
];

/// A file strata reads with `read_to_string`: not UTF-8 means an I/O error before any parser.
fn file_text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Command output and libvirt strings: invalid UTF-8 is replaced, then parsed.
fn output_text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// A stack file (stacks/*.toml), parsed as `strata up` does.
pub fn stack_file(data: &[u8]) {
    if let Some(text) = file_text(data) {
        let _ = StackFile::parse(Path::new("stacks/fuzz.toml"), text);
    }
}

/// A plan file (plans/*.toml), parsed as `strata plan` does before it asks the host anything.
/// A plan that parses keeps its swarms' promises: each VM of a swarm is the plan's, in one
/// swarm once, all of a swarm on one network; a stack placed on a swarm names one of them.
pub fn plan_file(data: &[u8]) {
    let Some(text) = file_text(data) else { return };
    let Ok(plan) = crate::plan::Plan::parse(Path::new("plans/fuzz.toml"), text) else {
        return;
    };
    let mut seen = std::collections::BTreeSet::new();
    for swarm in plan.swarms.values() {
        assert!(!swarm.managers.is_empty(), "a swarm without a manager");
        let nets: std::collections::BTreeSet<&str> = swarm
            .members()
            .map(|vm| plan.vms[vm].net.as_str())
            .collect();
        assert_eq!(nets.len(), 1, "swarm {} spans networks", swarm.name);
        for vm in swarm.members() {
            assert!(seen.insert(vm.clone()), "VM {vm} in two swarms");
        }
    }
    for stack in plan.stacks.values() {
        if let Some(swarm) = &stack.swarm {
            assert!(plan.swarms.contains_key(swarm) && stack.vm.is_none());
        }
    }
}

/// A container template's params.toml.
pub fn container_params(data: &[u8]) {
    if let Some(text) = file_text(data) {
        let _ =
            container::ParamsFile::parse(Path::new("container-templates/fuzz/params.toml"), text);
    }
}

/// A stack's `params` table (the input, read as a TOML document) given to every shipped
/// container template; what renders is then planned as a container, which reads its sizes,
/// durations and restart policy.
pub fn container_render(data: &[u8]) {
    let Some(text) = file_text(data) else { return };
    let Ok(given) = toml::from_str::<toml::Table>(text) else {
        return;
    };
    for template in shipped_templates() {
        if let Ok(spec) = template.render(&given, &render_context()) {
            plan(&spec);
        }
    }
}

/// The text of a service.toml.j2 (templates may come from other people), rendered with fixed
/// parameters, read as a ServiceSpec and planned as a container.
pub fn service_template(data: &[u8]) {
    let Some(source) = file_text(data) else {
        return;
    };
    let rendered = container::render_service(
        Path::new("container-templates/fuzz/service.toml.j2"),
        source,
        fixed_params(),
        Path::new("container-templates/fuzz"),
        &render_context(),
    );
    if let Ok(spec) = rendered {
        plan(&spec);
    }
}

/// A rendered service's `[healthcheck]` table (the input is its body): its durations and
/// retries are read when the container is planned and when `up` waits for it.
pub fn healthcheck(data: &[u8]) {
    let Some(text) = file_text(data) else { return };
    let Ok(health) = toml::from_str::<HealthSpec>(text) else {
        return;
    };
    let mut spec = base_spec().clone();
    spec.healthcheck = Some(health);
    plan(&spec);
}

/// A VM template's template.toml (without `extends`, which reads a sibling file).
pub fn vm_template_manifest(data: &[u8]) {
    let Some(text) = file_text(data) else { return };
    let path = Path::new("vm-templates/fuzz/template.toml");
    let _ = crate::template::parse_toml::<toml::Table>(path, text);
    if let Ok(manifest) =
        crate::template::parse_toml::<crate::template::TemplateManifest>(path, text)
    {
        // What validation lets through goes into the domain XML as it is: no markup.
        if manifest.validate(path).is_ok() {
            assert!(
                !manifest.boot.tcg_cpu.contains(['<', '>', '&', '\'', '"']),
                "tcg_cpu {:?} passed validation",
                manifest.boot.tcg_cpu
            );
        }
    }
}

/// A size as a flag or a manifest field gives it ("512M", "1.5G").
pub fn size(data: &[u8]) {
    if let Some(text) = file_text(data) {
        let _ = crate::units::parse_size("size", text);
    }
}

/// `iptables-save` output, parsed and then walked for the flows strata's checks ask about.
pub fn iptables_save(data: &[u8]) {
    use crate::host::iptables::{FilterTable, Flow};
    use std::net::Ipv4Addr;
    let Ok(table) = FilterTable::parse(&output_text(data)) else {
        return;
    };
    let _ = table.forward_jumps();
    let _ = table.has_rule("DOCKER-USER", "-i br0 -o br0 -j ACCEPT");
    let flows = [
        (
            "br0",
            "br0",
            Ipv4Addr::new(10, 249, 0, 11),
            Ipv4Addr::new(10, 249, 0, 12),
        ),
        (
            "virbr1",
            "eth0",
            Ipv4Addr::new(10, 251, 3, 2),
            Ipv4Addr::new(192, 0, 2, 1),
        ),
        (
            "docker0",
            "virbr0",
            Ipv4Addr::new(172, 17, 0, 2),
            Ipv4Addr::new(192, 168, 122, 2),
        ),
    ];
    for (in_iface, out_iface, src, dst) in flows {
        for new_connection in [true, false] {
            let _ = table.evaluate_forward(&Flow {
                in_iface: in_iface.to_string(),
                out_iface: out_iface.to_string(),
                src,
                dst,
                new_connection,
            });
        }
    }
}

/// `nft -j list tables` output.
pub fn nft_tables(data: &[u8]) {
    let _ = crate::host::nft::parse_nft_tables(&output_text(data));
}

/// `firewall-cmd --get-active-zones` output.
pub fn firewalld_zones(data: &[u8]) {
    let _ = crate::host::firewalld::parse_active_zones(&output_text(data));
}

/// A libvirt config file (/etc/libvirt/network.conf) searched for `firewall_backend`.
pub fn libvirt_conf_value(data: &[u8]) {
    if let Some(text) = file_text(data) {
        let _ = crate::host::nft::config_value(text, "firewall_backend");
    }
}

/// /proc/net/{tcp,tcp6,udp,udp6}, read as both protocols.
pub fn proc_net(data: &[u8]) {
    if let Some(text) = file_text(data) {
        for protocol in ["tcp", "udp"] {
            let _ = crate::host::listeners::parse_proc_net(text, protocol);
        }
        // A remote host's socket owners, as its `find /proc/*/fd` script prints them.
        let _ = crate::host::listeners::parse_owner_lines(text);
    }
}

/// `ip -j route` output.
pub fn ip_routes(data: &[u8]) {
    let _ = crate::host::routes::parse_routes(&output_text(data));
}

/// The guest facts script's output (engine-templates/facts.sh).
pub fn guest_facts(data: &[u8]) {
    let _ = crate::guest::facts::parse(&output_text(data));
}

/// The guest check script's output (engine-templates/check-facts.sh).
pub fn check_script(data: &[u8]) {
    let _ = crate::check::snapshot::guest::parse_check_script(&output_text(data));
}

/// `docker info` as the API returns it (bollard's SystemInfo), reduced as the install's
/// verification reduces it, and its version read.
pub fn docker_info(data: &[u8]) {
    // A remote host's `docker info --format '{{json .}}'`.
    let _ = crate::host::docker::parse_info(&output_text(data));
    let Ok(info) = serde_json::from_slice::<bollard::models::SystemInfo>(data) else {
        return;
    };
    let observed = crate::engine::verify::from_api(&info, None);
    let _ = crate::guest::facts::EngineVersion::parse(&observed.server_version);
    // A guest's swarm membership, read from the same answer.
    let _ = crate::swarm::member_of(&info);
}

/// A libvirt domain's XML, searched for NICs on host bridges.
pub fn domain_xml(data: &[u8]) {
    let _ = crate::check::snapshot::host::parse_bridged_nics(&output_text(data));
}

/// A libvirt network's XML.
pub fn network_xml(data: &[u8]) {
    let _ = crate::vm::network::parse_network_xml(&output_text(data));
}

/// strata's <metadata> element as libvirt returns it.
pub fn vm_metadata(data: &[u8]) {
    let _ = crate::vm::record::VmRecord::parse(&output_text(data));
}

/// /etc/libvirt/qemu.conf, searched for `user`.
pub fn qemu_conf_user(data: &[u8]) {
    if let Some(text) = file_text(data) {
        let _ = crate::host::qemu_user::configured_user(text);
    }
}

/// A remote host's `stat -Lc '%u %g %a %U:%G' /dev/kvm`, as accel reads it over SSH.
pub fn dev_kvm_stat(data: &[u8]) {
    let _ = crate::host::accel::parse_stat_line(&output_text(data));
}

/// /proc/cpuinfo, searched for vmx/svm.
pub fn cpuinfo(data: &[u8]) {
    if let Some(text) = file_text(data) {
        let _ = crate::host::accel::cpu_has_virt_flag(text);
    }
}

/// The host's apt sources, as deb822 and as a legacy sources.list.
pub fn apt_sources(data: &[u8]) {
    if let Some(text) = file_text(data) {
        let _ = crate::image::host_mirror(text, "");
        let _ = crate::image::host_mirror("", text);
    }
}

/// A VM's known_hosts file, and the pinned key it holds as ssh-key reads it.
pub fn known_hosts(data: &[u8]) {
    let Some(text) = file_text(data) else { return };
    let path = Path::new("/var/lib/strata/vms/fuzz/known_hosts");
    if let Ok(key) = crate::guest::route::parse_known_hosts(path, text) {
        let _ = crate::guest::keys::public_key_blob(&key);
    }
}

/// A libvirt connection URI (--connect, LIBVIRT_DEFAULT_URI, a plan's hosts): where its host
/// is, and the SSH login to a remote one.
pub fn connect_uri(data: &[u8]) {
    let Some(text) = file_text(data) else { return };
    if let Ok(site) = crate::host::remote::Site::of_uri(text) {
        if let Ok(login) = site.login() {
            let _ = (login.display(), login.known_hosts_files());
            // The host's state folder is one plain name, whatever the URI held.
            let folder = login.folder_name();
            assert!(
                !folder.contains('/') && !folder.starts_with('.') && !folder.is_empty(),
                "{folder:?}"
            );
            // It goes into ssh_config lines: no line break may get in.
            assert!(!login.proxy_command().chars().any(char::is_control));
        }
    }
}

/// `docker network inspect` output from a remote host's docker CLI.
pub fn docker_network_inspect(data: &[u8]) {
    let _ = crate::host::docker::parse_network_inspect(&output_text(data));
}

/// `apt-get install -s` output.
pub fn apt_simulation(data: &[u8]) {
    let _ = crate::engine::bundle::parse_simulation(&output_text(data));
}

/// `apt-cache madison docker.io` output.
pub fn apt_madison(data: &[u8]) {
    let _ = crate::engine::bundle::madison_versions(&output_text(data), "bookworm", "docker.io");
}

/// dpkg's status file, searched for docker.io.
pub fn dpkg_status(data: &[u8]) {
    if let Some(text) = file_text(data) {
        let _ = crate::engine::bundle::installed_version(text, "docker.io");
    }
}

/// /etc/os-release.
pub fn os_release(data: &[u8]) {
    if let Some(text) = file_text(data) {
        let _ = crate::engine::bundle::os_release_codename(text);
    }
}

/// A Docker version: the API's ServerVersion or a Debian package version.
pub fn engine_version(data: &[u8]) {
    let text = output_text(data);
    let _ = crate::guest::facts::EngineVersion::parse(&text);
    let _ = crate::engine::bundle::version_matches("20.10", &text);
}

/// `uname -r` in a guest.
pub fn kernel_version(data: &[u8]) {
    let _ = crate::guest::facts::KernelVersion::parse(&output_text(data));
}

/// Plan `spec` as a container of a fixed stack and as a service of a fixed stack on a swarm,
/// as `up` does (memory size, restart policy, volumes, health durations, ports, placement),
/// and compute how long `up` would wait for it.
fn plan(spec: &container::ServiceSpec) {
    let stack = fixed_stack();
    if let Some(service) = stack.services.get("web") {
        let _ = crate::stack::container::plan(stack, service, spec, "sha256:fuzz");
    }
    let on_swarm = fixed_swarm_stack();
    let nodes = ["n1".to_string(), "n2".to_string(), "n3".to_string()];
    for service in on_swarm.services.values() {
        let _ = crate::stack::service_spec::plan(on_swarm, service, spec, "sha256:fuzz", &nodes);
    }
    let _ = crate::stack::container::health_deadline(spec);
}

fn fixed_swarm_stack() -> &'static StackFile {
    static STACK: OnceLock<StackFile> = OnceLock::new();
    STACK.get_or_init(|| {
        let text = "swarm = \"fuzz\"\n[volumes.data]\n\
                    [services.web]\ntemplate = \"busybox-httpd\"\nreplicas = 3\n\
                    [services.all]\ntemplate = \"busybox-httpd\"\nmode = \"global\"\nplacement = [\"n1\", \"n3\"]\n";
        StackFile::parse(Path::new("stacks/fuzz.toml"), text)
            .unwrap_or_else(|e| panic!("fuzz fixture: stack on a swarm: {e}"))
    })
}

fn render_context() -> RenderContext {
    RenderContext {
        stack: "fuzz".to_string(),
        service: "web".to_string(),
    }
}

// The fixtures below are the project's own files; failing to read them is a broken checkout,
// not an input the fuzzer found, so it panics loudly instead of fuzzing nothing.

/// The container templates shipped in container-templates/.
fn shipped_templates() -> &'static [ContainerTemplate] {
    static TEMPLATES: OnceLock<Vec<ContainerTemplate>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("container-templates");
        let templates = container::list(&[dir])
            .unwrap_or_else(|e| panic!("fuzz fixture: shipped container templates: {e}"));
        assert!(
            !templates.is_empty(),
            "fuzz fixture: no container templates"
        );
        templates
    })
}

/// A value for every parameter any shipped template has: its default, or "x" when it has none
/// (as a stack would give one), so each shipped service.toml.j2 renders with them.
fn fixed_params() -> &'static toml::Table {
    static PARAMS: OnceLock<toml::Table> = OnceLock::new();
    PARAMS.get_or_init(|| {
        let mut values = toml::Table::new();
        for template in shipped_templates() {
            for (key, decl) in &template.params.params {
                let value = decl
                    .default
                    .clone()
                    .unwrap_or_else(|| toml::Value::String("x".to_string()));
                values.entry(key.clone()).or_insert(value);
            }
        }
        values
    })
}

/// busybox-httpd rendered with its defaults: the service a fuzzed health check is put into.
fn base_spec() -> &'static container::ServiceSpec {
    static SPEC: OnceLock<container::ServiceSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let template = shipped_templates()
            .iter()
            .find(|t| t.name == "busybox-httpd")
            .unwrap_or_else(|| panic!("fuzz fixture: busybox-httpd is not shipped"));
        template
            .render(&toml::Table::new(), &render_context())
            .unwrap_or_else(|e| panic!("fuzz fixture: busybox-httpd: {e}"))
    })
}

/// The stack the fuzzed services are planned in: one service with a declared volume.
fn fixed_stack() -> &'static StackFile {
    static STACK: OnceLock<StackFile> = OnceLock::new();
    STACK.get_or_init(|| {
        let text = "vm = \"fuzz\"\n[volumes.data]\n[services.web]\ntemplate = \"busybox-httpd\"\n";
        StackFile::parse(Path::new("stacks/fuzz.toml"), text)
            .unwrap_or_else(|e| panic!("fuzz fixture: stack: {e}"))
    })
}

/// What the swarm.ports probes print inside a guest (the sender's and the listener's lines),
/// read over SSH, and the probes assembled from them.
pub fn swarm_probe_output(data: &[u8]) {
    use crate::check::snapshot::reach::{assemble, parse_heard, parse_sent, SWARM_PORTS};
    let text = output_text(data);
    let sent = parse_sent(&text);
    let heard = parse_heard(&text);
    let peers: Vec<(String, std::net::Ipv4Addr)> = sent
        .iter()
        .map(|(_, address, _, _)| (address.to_string(), *address))
        .chain(heard.heard.iter().map(|(_, _, a)| (a.to_string(), *a)))
        .take(4)
        .collect();
    let sides = peers.len();
    let _ = assemble(
        &peers,
        &SWARM_PORTS,
        &vec![sent; sides],
        &vec![heard; sides],
    );
}
