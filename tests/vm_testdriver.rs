//! The vm layer and the create/destroy pipeline against libvirt's in-process test driver
//! (test:///default): every object strata makes is checked through the libvirt API, and a
//! create that fails halfway must leave nothing behind.

use std::path::{Path, PathBuf};
use std::time::Duration;
use strata::error::ErrorKind;
use strata::host::accel::AccelRequest;
use strata::image::BuildRecord;
use strata::lifecycle::{self, CreateRequest};
use strata::progress::Progress;
use strata::state::Paths;
use strata::vm::alloc::KeptAddress;
use strata::vm::network::{self, NetworkMode};
use strata::vm::{domain, pool, Libvirt};

/// test:///default is one shared in-process instance: the tests take turns.
static DRIVER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn driver() -> std::sync::MutexGuard<'static, ()> {
    DRIVER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("strata-td-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir }
    }
    fn paths(&self) -> Paths {
        Paths {
            state: self.dir.join("state"),
            cache: self.dir.join("cache"),
            remote_host: None,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A built-looking template in the test driver: a qcow2 volume in strata's pool and a build
/// record with (fake) kernel and initrd files.
fn register_fake_template(lv: &Libvirt, paths: &Paths, template: &str) {
    let pool_handle = pool::ensure(&lv.conn(), paths).unwrap();
    let volume = pool::template_volume_name(template);
    let xml = format!(
        "<volume><name>{volume}</name><capacity unit='G'>3</capacity><target><format type='qcow2'/></target></volume>"
    );
    if pool::find_volume(&pool_handle, &volume).is_none() {
        virt::storage_vol::StorageVol::create_xml(&pool_handle, &xml, 0).unwrap();
    }
    let dir = paths.template_dir(template);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["vmlinuz", "initrd.img"] {
        std::fs::write(dir.join(f), b"x").unwrap();
    }
    let record = BuildRecord {
        template: template.into(),
        recipe_hash: "r".into(),
        sha256: "s".into(),
        volume,
        virtual_size: 3 << 30,
        file_size: 1 << 20,
        kernel: Some(dir.join("vmlinuz")),
        initrd: Some(dir.join("initrd.img")),
        built: "now".into(),
        build_seconds: 1.0,
    };
    std::fs::write(
        dir.join("build.json"),
        serde_json::to_string(&record).unwrap(),
    )
    .unwrap();
}

/// The isolated network every test-driver test attaches its VMs to.
fn make_tnet(lv: &Libvirt) {
    let subnet = "10.77.0.0/24".parse().unwrap();
    network::create(&lv.conn(), "tnet", subnet, NetworkMode::Isolated, &[], None).unwrap();
}

fn request(name: &str, template: &str, net: &str) -> CreateRequest {
    CreateRequest {
        name: name.into(),
        template: template.into(),
        cpus: Some(1),
        memory: Some("512M".into()),
        disk: Some("8G".into()),
        network: net.into(),
        accel: AccelRequest::Auto,
        ssh_timeout: Some(Duration::from_secs(1)),
        plan: None,
        keep_address: None,
    }
}

fn reservations(lv: &Libvirt, net: &str) -> Vec<network::DhcpHost> {
    network::lookup(&lv.conn(), net).unwrap().1.hosts
}

/// The VM volumes in strata's pool (templates registered by other tests are left out).
fn volume_names(lv: &Libvirt, paths: &Paths) -> Vec<String> {
    let pool_handle = pool::ensure(&lv.conn(), paths).unwrap();
    let mut names: Vec<String> = pool_handle
        .list_volumes()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("vm_"))
        .collect();
    names.sort();
    names
}

/// A plan's rebuild hands the old VM's MAC and IP to its successor, but only while nothing
/// else took them: then the successor gets a fresh pair, and no one loses theirs.
#[test]
fn a_kept_address_comes_back_unless_someone_took_it() {
    let scratch = Scratch::new("keep");
    let paths = scratch.paths();
    let _turn = driver();
    let lv = Libvirt::open("test:///default").unwrap();
    register_fake_template(&lv, &paths, "debian-12");
    make_tnet(&lv);
    let create = |name: &str, keep: Option<KeptAddress>| {
        let req = CreateRequest {
            keep_address: keep,
            ..request(name, "debian-12", "tnet")
        };
        lifecycle::create(&lv, &paths, &req, &Progress::new(name)).unwrap();
        let (_, info) = domain::lookup(&lv.conn(), name).unwrap();
        KeptAddress {
            mac: info.record.mac,
            ip: info.record.ip,
        }
    };
    let first_a = create("a", None);
    let first_b = create("b", None);
    assert_eq!(first_b.ip.to_string(), "10.77.0.3");
    lifecycle::destroy(&lv, &paths, "a").unwrap();
    lifecycle::destroy(&lv, &paths, "b").unwrap();

    // .2 is the first free address, yet b gets its own .3 and MAC back, reserved as before.
    let again_b = create("b", Some(first_b.clone()));
    assert_eq!(again_b, first_b);
    assert!(reservations(&lv, "tnet")
        .iter()
        .any(|h| h.mac == first_b.mac && h.ip == first_b.ip && h.name == "b"));

    // Taken meanwhile: c gets .2 and d b's old .3; b's successor gets neither, nor its MAC.
    lifecycle::destroy(&lv, &paths, "b").unwrap();
    let c = create("c", None);
    let d = create("d", None);
    assert_eq!((c.ip, d.ip), (first_a.ip, first_b.ip));
    let third_b = create("b", Some(first_b.clone()));
    assert_eq!(third_b.ip.to_string(), "10.77.0.4");
    assert_ne!(third_b.mac, first_b.mac);
    for name in ["b", "c", "d"] {
        lifecycle::destroy(&lv, &paths, name).unwrap();
    }
    assert!(reservations(&lv, "tnet").is_empty());
    network::destroy(&lv.conn(), "tnet").unwrap();
}

#[test]
fn create_then_destroy_leaves_only_the_template() {
    let scratch = Scratch::new("cd");
    let paths = scratch.paths();
    let _turn = driver();
    let lv = Libvirt::open("test:///default").unwrap();
    register_fake_template(&lv, &paths, "debian-12");
    make_tnet(&lv);

    let created = lifecycle::create(
        &lv,
        &paths,
        &request("a", "debian-12", "tnet"),
        &Progress::new("a"),
    )
    .unwrap();
    assert_eq!(created.ip.to_string(), "10.77.0.2");
    let created_b = lifecycle::create(
        &lv,
        &paths,
        &request("b", "debian-12", "tnet"),
        &Progress::new("b"),
    )
    .unwrap();
    assert_eq!(created_b.ip.to_string(), "10.77.0.3");

    // libvirt holds the truth: metadata, reservation, thin clone on the template.
    let vms = domain::list(&lv.conn()).unwrap();
    let a = vms.iter().find(|v| v.name == "a").unwrap();
    assert_eq!(a.record.template, "debian-12");
    assert_eq!(a.record.ip.to_string(), "10.77.0.2");
    assert_eq!(a.record.network, "tnet");
    let hosts = reservations(&lv, "tnet");
    assert!(hosts
        .iter()
        .any(|h| h.mac == a.record.mac && h.ip.to_string() == "10.77.0.2"));
    let pool_handle = pool::ensure(&lv.conn(), &paths).unwrap();
    let vol = pool_handle
        .lookup_storage_vol_by_name("vm_a.qcow2")
        .unwrap();
    let vol_xml = vol.xml_desc(0).unwrap();
    assert!(vol_xml.contains("<backingStore>"), "{vol_xml}");
    assert!(vol_xml.contains("template-debian-12.qcow2"), "{vol_xml}");
    assert_eq!(vol.info().unwrap().capacity, 8 << 30);
    let dom_xml = lv
        .conn()
        .lookup_domain_by_name("a")
        .unwrap()
        .xml_desc(0)
        .unwrap();
    assert!(
        dom_xml.contains("strata.hostname=a"),
        "SMBIOS first-boot data missing"
    );
    // The record can be updated in place (a data disk is recorded before it is made).
    let (dom_a, info) = domain::lookup(&lv.conn(), "a").unwrap();
    let mut record = info.record.clone();
    record.volumes.push(strata::vm::record::VmVolume {
        role: strata::vm::record::VolumeRole::Data,
        name: "vm_a_data.qcow2".into(),
    });
    domain::set_record(&dom_a, &record).unwrap();
    assert_eq!(domain::lookup(&lv.conn(), "a").unwrap().1.record, record);
    // The guest's private host key is in no definition and no file once the VM started.
    let dom = lv.conn().lookup_domain_by_name("a").unwrap();
    for flags in [0, virt::sys::VIR_DOMAIN_XML_INACTIVE] {
        let xml = dom.xml_desc(flags).unwrap();
        assert!(!xml.contains("PRIVATE KEY"), "{xml}");
        assert!(!xml.contains("host_key="), "{xml}");
    }
    // The running domain names the file QEMU read at its start; the next start has none.
    let inactive = dom.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE).unwrap();
    assert!(
        !inactive.contains("fwcfg"),
        "the handover outlived the start: {inactive}"
    );
    let handover: Vec<_> = std::fs::read_dir(paths.state.join("handover"))
        .unwrap()
        .collect();
    assert!(handover.is_empty(), "{handover:?}");
    assert!(
        dom_xml.contains("tb-cache"),
        "TCG domains need the tb-cache limit"
    );
    let key = paths.vm_key("a");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // Duplicate name: one clear error, nothing changed.
    let before = volume_names(&lv, &paths);
    let err = lifecycle::create(
        &lv,
        &paths,
        &request("a", "debian-12", "tnet"),
        &Progress::new("a"),
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(volume_names(&lv, &paths), before);

    // A record that names another VM's volume (edited, or not strata's): destroy removes
    // nothing and says why.
    let (dom_b, info_b) = domain::lookup(&lv.conn(), "b").unwrap();
    let mut forged = info_b.record.clone();
    forged.volumes[0].name = "vm_a.qcow2".into();
    domain::set_record(&dom_b, &forged).unwrap();
    let before = volume_names(&lv, &paths);
    let err = lifecycle::destroy(&lv, &paths, "b").unwrap_err();
    assert!(err.message().contains("not a name strata gives"), "{err}");
    assert_eq!(volume_names(&lv, &paths), before);
    assert_eq!(domain::list(&lv.conn()).unwrap().len(), 2);
    domain::set_record(&dom_b, &info_b.record).unwrap();

    // A domain libvirt will not undefine (here: it has a snapshot): its disks, keys and
    // address stay, and the destroy can be finished once the snapshot is gone.
    let snapshot = dom_b
        .create_snapshot_xml("<domainsnapshot><name>s1</name></domainsnapshot>", 0)
        .unwrap();
    let err = lifecycle::destroy(&lv, &paths, "b").unwrap_err();
    assert!(err.message().contains("stopped halfway"), "{err}");
    assert_eq!(volume_names(&lv, &paths), before);
    assert!(
        paths.vm_key("b").exists(),
        "the key of a defined VM was removed"
    );
    assert_eq!(reservations(&lv, "tnet").len(), 2);
    snapshot.delete(0).unwrap();

    // The network is in use: refuse to remove it.
    lifecycle::destroy(&lv, &paths, "a").unwrap();
    lifecycle::destroy(&lv, &paths, "b").unwrap();
    assert!(domain::list(&lv.conn()).unwrap().is_empty());
    assert!(reservations(&lv, "tnet").is_empty());
    assert!(volume_names(&lv, &paths).is_empty());
    assert!(
        pool::find_volume(&pool_handle, "template-debian-12.qcow2").is_some(),
        "template must stay"
    );
    assert!(!paths.vm_dir("a").exists());
    network::destroy(&lv.conn(), "tnet").unwrap();
}

#[test]
fn bad_input_changes_nothing() {
    let scratch = Scratch::new("bad");
    let paths = scratch.paths();
    let _turn = driver();
    let lv = Libvirt::open("test:///default").unwrap();
    register_fake_template(&lv, &paths, "debian-12");
    make_tnet(&lv);
    let before = volume_names(&lv, &paths);

    let cases: Vec<(CreateRequest, ErrorKind, &str)> = vec![
        (
            request("x", "no-such-template", "tnet"),
            ErrorKind::NotFound,
            "unknown template 'no-such-template'",
        ),
        (
            request("x", "debian-12", "no-such-net"),
            ErrorKind::NotFound,
            "network 'no-such-net' does not exist",
        ),
        (
            CreateRequest {
                memory: Some("lots".into()),
                ..request("x", "debian-12", "tnet")
            },
            ErrorKind::BadInput,
            "--memory: 'lots' is not a size",
        ),
        (
            CreateRequest {
                memory: Some("64T".into()),
                ..request("x", "debian-12", "tnet")
            },
            ErrorKind::BadInput,
            "--memory 64 TiB",
        ),
        (
            CreateRequest {
                disk: Some("1G".into()),
                ..request("x", "debian-12", "tnet")
            },
            ErrorKind::BadInput,
            "smaller than the template",
        ),
        (
            request("bad name", "debian-12", "tnet"),
            ErrorKind::BadInput,
            "VM name 'bad name'",
        ),
    ];
    for (req, kind, text) in cases {
        let err = lifecycle::create(&lv, &paths, &req, &Progress::new("x")).unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert!(err.message().contains(text), "expected '{text}' in: {err}");
        assert!(err.hint().is_some(), "no hint in: {err}");
        assert_eq!(volume_names(&lv, &paths), before);
        assert!(reservations(&lv, "tnet").is_empty());
        assert!(lv.conn().lookup_domain_by_name("x").is_err());
        assert!(!paths.vm_dir("x").exists());
    }

    // Overlapping subnet: refused, naming what it overlaps.
    let (taken, _) = (network::list(&lv.conn()).unwrap(), ());
    let taken: Vec<network::Taken> = taken
        .iter()
        .filter_map(|n| {
            Some(network::Taken {
                what: format!("libvirt network '{}'", n.name),
                subnet: n.subnet?,
            })
        })
        .collect();
    let err = network::create(
        &lv.conn(),
        "t2",
        "10.77.0.128/25".parse().unwrap(),
        NetworkMode::Nat,
        &taken,
        None,
    )
    .unwrap_err();
    assert!(err.message().contains("libvirt network 'tnet'"), "{err}");
    assert!(lv.conn().lookup_network_by_name("t2").is_err());

    // A network made for a plan carries the plan's name; others carry none.
    assert_eq!(network::lookup(&lv.conn(), "tnet").unwrap().1.plan, None);
    let made = network::create(
        &lv.conn(),
        "t3",
        "10.79.0.0/24".parse().unwrap(),
        NetworkMode::Isolated,
        &[],
        Some("lab"),
    )
    .unwrap();
    assert_eq!(made.plan.as_deref(), Some("lab"));
    network::destroy(&lv.conn(), "t3").unwrap();
    network::destroy(&lv.conn(), "tnet").unwrap();
}

/// A reservation strata did not make, under the name of a VM being created, is never taken
/// over: the VM gets an address of its own (or the create fails), and the reservation stays.
#[test]
fn a_foreign_reservation_of_the_same_name_is_left_alone() {
    let scratch = Scratch::new("fr");
    let paths = scratch.paths();
    let _turn = driver();
    let lv = Libvirt::open("test:///default").unwrap();
    register_fake_template(&lv, &paths, "debian-12");
    make_tnet(&lv);
    let foreign = network::DhcpHost {
        mac: "52:54:00:12:34:56".into(),
        name: "c".into(),
        ip: "10.77.0.200".parse().unwrap(),
    };
    let (net, _) = network::lookup(&lv.conn(), "tnet").unwrap();
    network::reserve(&net, &foreign).unwrap();
    if let Ok(created) = lifecycle::create(
        &lv,
        &paths,
        &request("c", "debian-12", "tnet"),
        &Progress::new("c"),
    ) {
        assert_ne!(created.ip, foreign.ip);
        lifecycle::destroy(&lv, &paths, "c").unwrap();
    }
    assert_eq!(reservations(&lv, "tnet"), vec![foreign.clone()]);
    network::release(&lv.conn(), "tnet", &foreign).unwrap();
    network::destroy(&lv.conn(), "tnet").unwrap();
}

/// A template whose domain XML cannot be rendered fails at the define step, after the clone,
/// the reservation and the keys were made: all three must be rolled back.
#[test]
fn failure_halfway_rolls_back() {
    let scratch = Scratch::new("rb");
    let paths = scratch.paths();
    let _turn = driver();
    let lv = Libvirt::open("test:///default").unwrap();
    let broken = paths.state.join("imported/broken");
    std::fs::create_dir_all(&broken).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm-templates/debian-12");
    let manifest = std::fs::read_to_string(source.join("template.toml")).unwrap();
    std::fs::write(
        broken.join("template.toml"),
        manifest.replace("name = \"debian-12\"", "name = \"broken\""),
    )
    .unwrap();
    std::fs::write(
        broken.join("domain.xml.j2"),
        "<domain>{{ no_such_variable }}</domain>",
    )
    .unwrap();
    register_fake_template(&lv, &paths, "broken");
    make_tnet(&lv);

    let err = lifecycle::create(
        &lv,
        &paths,
        &request("half", "broken", "tnet"),
        &Progress::new("half"),
    )
    .unwrap_err();
    assert!(err.message().contains("undefined"), "{err}");
    assert!(volume_names(&lv, &paths).is_empty(), "clone left behind");
    assert!(reservations(&lv, "tnet").is_empty());
    assert!(!paths.vm_dir("half").exists());
    assert!(lv.conn().lookup_domain_by_name("half").is_err());
    assert!(
        std::fs::read_dir(paths.state.join("journal"))
            .unwrap()
            .next()
            .is_none(),
        "journal left behind"
    );
    network::destroy(&lv.conn(), "tnet").unwrap();
}

/// `template remove` (and build, find) take names, never paths: `..` must not reach the state
/// folder (keys, pool, every VM disk) through remove_dir_all.
#[test]
fn template_names_that_are_paths_are_refused() {
    let scratch = Scratch::new("tn");
    let paths = scratch.paths();
    let _turn = driver();
    let lv = Libvirt::open("test:///default").unwrap();
    std::fs::create_dir_all(paths.vm_dir("precious")).unwrap();
    std::fs::write(paths.vm_key("precious"), b"key").unwrap();
    for bad in ["..", "../..", "/tmp", ".", "a/b"] {
        let err = strata::image::remove(&lv, &paths, bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput, "{bad}: {err}");
        let search = strata::template::search_path(&paths.state.join("imported"));
        let err = strata::template::find(&search, bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadInput, "{bad}: {err}");
    }
    assert!(
        paths.vm_key("precious").is_file(),
        "the state folder was touched"
    );
}

/// An import under the name of a template that exists (built, its manifest elsewhere) is
/// refused before anything is made, and the existing template keeps its record and volume.
#[test]
fn import_never_removes_a_template_it_did_not_make() {
    let scratch = Scratch::new("imp");
    let paths = scratch.paths();
    let _turn = driver();
    let lv = Libvirt::open("test:///default").unwrap();
    register_fake_template(&lv, &paths, "ghost");
    let volume_file = paths.pool_dir().join(pool::template_volume_name("ghost"));
    std::fs::create_dir_all(paths.pool_dir()).unwrap();
    std::fs::write(&volume_file, b"the clones' backing file").unwrap();
    let image = scratch.dir.join("cloud.qcow2");
    let made = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&image)
        .arg("16M")
        .status()
        .unwrap();
    assert!(made.success(), "qemu-img create");
    let err = strata::image::import(
        &lv,
        &paths,
        &strata::image::ImportRequest {
            name: "ghost".into(),
            from: image,
            kernel: None,
            initrd: None,
            cmdline: None,
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    assert!(paths.template_dir("ghost").join("build.json").is_file());
    assert!(paths.template_dir("ghost").join("vmlinuz").is_file());
    assert_eq!(
        std::fs::read(&volume_file).unwrap(),
        b"the clones' backing file"
    );
    let pool_handle = pool::ensure(&lv.conn(), &paths).unwrap();
    assert!(pool::find_volume(&pool_handle, &pool::template_volume_name("ghost")).is_some());
}

/// `plan show` against the test driver: what the plan made is compared, what it did not make
/// is refused, what is missing is created; nothing is changed by showing.
#[test]
fn plan_show_tells_what_apply_would_do_and_changes_nothing() {
    let scratch = Scratch::new("plan");
    let paths = scratch.paths();
    let _turn = driver();
    let lv = Libvirt::open("test:///default").unwrap();
    register_fake_template(&lv, &paths, "debian-12");
    make_tnet(&lv);
    let made = |name: &str, plan: Option<&str>| {
        let req = CreateRequest {
            plan: plan.map(str::to_string),
            ..request(name, "debian-12", "tnet")
        };
        lifecycle::create(&lv, &paths, &req, &Progress::new(name)).unwrap();
    };
    made("a", Some("lab"));
    made("b", None);
    made("gone", Some("lab"));
    let file = scratch.dir.join("lab.toml");
    std::fs::write(
        &file,
        "[networks.tnet]\nsubnet = \"10.77.0.0/24\"\n[networks.lab]\nsubnet = \"10.78.0.0/24\"\n\
         [vms.a]\ntemplate = \"debian-12\"\nnet = \"lab\"\n\
         [vms.b]\ntemplate = \"debian-12\"\nnet = \"tnet\"\n\
         [vms.c]\ntemplate = \"debian-12\"\nnet = \"lab\"\n",
    )
    .unwrap();
    let before = (volume_names(&lv, &paths), reservations(&lv, "tnet"));
    let shown = strata::plan::show::show(&lv, &paths, &file).unwrap();
    let actions: Vec<(String, String)> = shown
        .steps
        .iter()
        .map(|s| {
            let json = serde_json::to_value(s).unwrap();
            (s.name.clone(), json["action"].as_str().unwrap().to_string())
        })
        .collect();
    let expected = [
        ("lab", "create"),
        ("tnet", "refused"),
        ("a", "replace"),
        ("b", "refused"),
        ("c", "create"),
        ("gone", "delete"),
    ];
    assert_eq!(
        actions,
        expected.map(|(n, a)| (n.to_string(), a.to_string())),
        "{:?}",
        shown.steps
    );
    assert_eq!(
        strata::plan::summary(&shown.steps),
        "2 to create, 1 to replace, 1 to delete, 2 refused"
    );
    assert_eq!(
        (volume_names(&lv, &paths), reservations(&lv, "tnet")),
        before
    );
    assert!(
        lv.conn().lookup_network_by_name("lab").is_err(),
        "show made a network"
    );

    // A bad plan is one error naming its line; so is a network on a range the host uses.
    std::fs::write(&file, "[networks.x]\nsubnet = \"10.77.0.0/25\"\n").unwrap();
    let err = strata::plan::show::show(&lv, &paths, &file).unwrap_err();
    assert!(
        err.message().ends_with("lab.toml:2: networks.x.subnet: 10.77.0.0/25 overlaps libvirt network 'tnet' (10.77.0.0/24)"),
        "{err}"
    );
    for vm in ["a", "b", "gone"] {
        lifecycle::destroy(&lv, &paths, vm).unwrap();
    }
    network::destroy(&lv.conn(), "tnet").unwrap();
}

/// The steps a script of `--explain` holds: the blocks after its header, each opened by its
/// comment.
fn explained_steps(script: &str) -> Vec<String> {
    script
        .split("\n\n")
        .skip(1)
        .filter(|block| block.starts_with("# ") && !block.starts_with("# note:"))
        .map(|block| block.lines().next().unwrap_or_default().to_string())
        .collect()
}

fn bash_reads(script: &str) {
    let checked = std::process::Command::new("bash")
        .args(["-n", "-c", script])
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "bash -n: {}\n{script}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// `--explain` writes one step for every stage a create goes through, so a new stage cannot
/// go unexplained; `--dry-run` writes the same steps and changes nothing.
#[test]
fn every_stage_of_a_create_is_explained_and_a_dry_run_changes_nothing() {
    use strata::explain::{self, Target};
    let scratch = Scratch::new("explain");
    let paths = scratch.paths();
    let _turn = driver();
    let lv = Libvirt::open("test:///default").unwrap();
    register_fake_template(&lv, &paths, "debian-12");
    make_tnet(&lv);
    let script_file = scratch.dir.join("create.sh");

    explain::start(
        &Target::File(script_file.clone()),
        false,
        true,
        "strata vm create ex",
        "test:///default",
    )
    .unwrap();
    let created = lifecycle::create(
        &lv,
        &paths,
        &request("ex", "debian-12", "tnet"),
        &Progress::new("ex"),
    );
    explain::finish();
    let created = created.unwrap();
    let script = std::fs::read_to_string(&script_file).unwrap();
    let steps = explained_steps(&script);
    assert_eq!(
        steps.len(),
        created.stages.len(),
        "stages {:?}, explained steps {steps:?}",
        created.stages.iter().map(|s| &s.stage).collect::<Vec<_>>()
    );
    bash_reads(&script);
    assert!(script.contains("export LIBVIRT_DEFAULT_URI=test:///default\n"));
    assert!(script.contains("virsh start ex\n"), "{script}");

    // A dry run of a second VM: the same steps with its own values, and nothing made.
    let domains = || {
        let mut names: Vec<String> = domain::list(&lv.conn())
            .unwrap()
            .into_iter()
            .map(|v| v.name)
            .collect();
        names.sort();
        names
    };
    let state_files = || {
        let mut files = Vec::new();
        let mut dirs = vec![paths.state.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path.clone());
                }
                files.push(path);
            }
        }
        files.sort();
        files
    };
    let before = (
        domains(),
        volume_names(&lv, &paths),
        reservations(&lv, "tnet"),
        state_files(),
    );
    let dry_file = scratch.dir.join("dry.sh");
    explain::start(
        &Target::File(dry_file.clone()),
        true,
        true,
        "strata vm create ex2",
        "test:///default",
    )
    .unwrap();
    let chosen = lifecycle::dry_run_create(&lv, &paths, &request("ex2", "debian-12", "tnet"));
    explain::finish();
    let chosen = chosen.unwrap();
    let after = (
        domains(),
        volume_names(&lv, &paths),
        reservations(&lv, "tnet"),
        state_files(),
    );
    assert_eq!(before, after, "the dry run changed something");
    let dry = std::fs::read_to_string(&dry_file).unwrap();
    bash_reads(&dry);
    // Every step a real create goes through, and the wait for SSH the test driver skips.
    let dry_steps = explained_steps(&dry);
    assert_eq!(dry_steps.len(), steps.len() + 1, "{dry_steps:?}");
    assert!(dry.contains(&format!("ip='\\''{chosen}'\\''")), "{dry}");
    assert!(dry.contains("virsh start ex2\n"), "{dry}");
    assert!(!dry.contains("PRIVATE KEY"), "{dry}");

    lifecycle::destroy(&lv, &paths, "ex").unwrap();
    network::destroy(&lv.conn(), "tnet").unwrap();
}
