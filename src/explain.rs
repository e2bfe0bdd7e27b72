//! `--explain` and `--dry-run`: every step of strata's pipelines written as the classic
//! commands a person would type for it (virsh, ssh-keygen, ssh), with the run's real values,
//! so that a student or a wary admin can read, learn and redo it by hand. The commands are
//! data: one template per step in explain-templates/, named *.bash.j2, so every value is
//! printed as one shell word (template/shell_escape.rs).
//!
//! The output is a bash script: a header (`set -euo pipefail`), then each step with a comment
//! saying what it does and why. With `--dry-run` nothing is changed and the script, run as
//! root on the same host, does the job itself.

use crate::error::{Error, Result};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// A step strata explains. Each has its template; a unit test renders every one and has bash
/// parse the result, so a step cannot be added without its explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    NetCreate,
    NetDestroy,
    VmClone,
    VmReserveAddress,
    VmKeys,
    VmDefine,
    VmStart,
    VmWaitForSsh,
    VmStop,
    VmBoot,
    VmDestroy,
    GuestLogin,
    EngineDataDisk,
    EngineStorage,
    EngineBundle,
    EngineOnline,
    EngineDaemonJson,
    EngineRecord,
    EngineVerify,
    StackImage,
    StackObject,
    StackContainer,
    StackWait,
    StackRemove,
    CheckFix,
}

impl Step {
    pub const ALL: [Step; 25] = [
        Step::NetCreate,
        Step::NetDestroy,
        Step::VmClone,
        Step::VmReserveAddress,
        Step::VmKeys,
        Step::VmDefine,
        Step::VmStart,
        Step::VmWaitForSsh,
        Step::VmStop,
        Step::VmBoot,
        Step::VmDestroy,
        Step::GuestLogin,
        Step::EngineDataDisk,
        Step::EngineStorage,
        Step::EngineBundle,
        Step::EngineOnline,
        Step::EngineDaemonJson,
        Step::EngineRecord,
        Step::EngineVerify,
        Step::StackImage,
        Step::StackObject,
        Step::StackContainer,
        Step::StackWait,
        Step::StackRemove,
        Step::CheckFix,
    ];

    /// The template's name (which makes it shell-escaped) and text.
    fn template(self) -> (&'static str, &'static str) {
        macro_rules! file {
            ($name:literal) => {
                ($name, include_str!(concat!("../explain-templates/", $name)))
            };
        }
        match self {
            Step::NetCreate => file!("net-create.bash.j2"),
            Step::NetDestroy => file!("net-destroy.bash.j2"),
            Step::VmClone => file!("vm-clone.bash.j2"),
            Step::VmReserveAddress => file!("vm-reserve-address.bash.j2"),
            Step::VmKeys => file!("vm-keys.bash.j2"),
            Step::VmDefine => file!("vm-define.bash.j2"),
            Step::VmStart => file!("vm-start.bash.j2"),
            Step::VmWaitForSsh => file!("vm-wait-for-ssh.bash.j2"),
            Step::VmStop => file!("vm-stop.bash.j2"),
            Step::VmBoot => file!("vm-boot.bash.j2"),
            Step::VmDestroy => file!("vm-destroy.bash.j2"),
            Step::GuestLogin => file!("engine-login.bash.j2"),
            Step::EngineDataDisk => file!("engine-data-disk.bash.j2"),
            Step::EngineStorage => file!("engine-storage.bash.j2"),
            Step::EngineBundle => file!("engine-bundle.bash.j2"),
            Step::EngineOnline => file!("engine-online.bash.j2"),
            Step::EngineDaemonJson => file!("engine-daemon-json.bash.j2"),
            Step::EngineRecord => file!("engine-record.bash.j2"),
            Step::EngineVerify => file!("engine-verify.bash.j2"),
            Step::StackImage => file!("stack-image.bash.j2"),
            Step::StackObject => file!("stack-object.bash.j2"),
            Step::StackContainer => file!("stack-container.bash.j2"),
            Step::StackWait => file!("stack-wait.bash.j2"),
            Step::StackRemove => file!("stack-remove.bash.j2"),
            Step::CheckFix => file!("check-fix.bash.j2"),
        }
    }

    /// The step's commands with `context`'s values.
    pub fn render(self, context: &impl Serialize) -> Result<String> {
        let (name, source) = self.template();
        crate::template::render_str(name, source, context)
            .map_err(|e| e.context(format!("explaining step {self:?}")))
    }
}

/// Where the explanation goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stderr,
    /// `--explain=-`
    Stdout,
    File(PathBuf),
}

struct Sink {
    out: Box<dyn Write + Send>,
    target: Target,
    dry_run: bool,
    /// False for a command whose steps are not all explained yet: it writes none rather than
    /// a script with holes (or, for a plan's parallel creates, steps of several VMs mixed).
    explained: bool,
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// virsh's own default, which the script then need not set.
const DEFAULT_URI: &str = "qemu:///system";

/// The commands whose every step is explained; `--explain` of any other says so in its script.
pub const EXPLAINED: &str =
    "net create, net destroy, vm create, vm start, vm stop, vm destroy, engine install, up (of a stack in a VM), down and check --fix (its host fixes)";

/// Begin the script for this run of `command_line` against libvirt at `uri`; `explained`
/// says whether the command is one of EXPLAINED.
pub fn start(
    target: &Target,
    dry_run: bool,
    explained: bool,
    command_line: &str,
    uri: &str,
) -> Result<()> {
    let out: Box<dyn Write + Send> = match target {
        Target::Stderr => Box::new(std::io::stderr()),
        Target::Stdout => Box::new(std::io::stdout()),
        Target::File(path) => Box::new(create_script_file(path)?),
    };
    let mut sink = Sink {
        out,
        target: target.clone(),
        dry_run,
        explained,
    };
    write_to(&mut sink, &header(dry_run, command_line, uri))?;
    if !explained {
        write_to(
            &mut sink,
            &format!("\n# note: this command is not explained yet; explained are {EXPLAINED}\n"),
        )?;
    }
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = Some(sink);
    Ok(())
}

/// The script file of `--explain=FILE`: made new or emptied, executable by its owner only (it
/// names the host's paths and addresses, though never a secret).
///
/// A symlink is refused rather than followed: strata runs as root, and a link planted in a
/// shared folder such as /tmp would otherwise have it empty the file the link points at.
fn create_script_file(path: &std::path::Path) -> Result<std::fs::File> {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let failed = |e: std::io::Error| {
        Error::from(e)
            .context(format!("--explain={}", path.display()))
            .with_hint("name a file (not a symlink) in a folder that exists, or use --explain alone for stderr")
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(failed)?;
    // `mode` applies to a file made now; one that was there keeps its own until set.
    file.set_permissions(std::fs::Permissions::from_mode(0o700))
        .map_err(failed)?;
    Ok(file)
}

/// The script's first lines: what it is, and how it fails (at the first failing command).
fn header(dry_run: bool, command_line: &str, uri: &str) -> String {
    let what = if dry_run {
        "What it would do (a dry run: nothing was changed). Run as root on the same host, this script does it."
    } else {
        "What it did, step by step, as it ran."
    };
    let mut text = format!(
        "#!/bin/bash\n# {}\n# {what}\nset -euo pipefail\n",
        comment_safe(command_line)
    );
    // virsh's commands then reach the same libvirt as strata did.
    if uri != DEFAULT_URI {
        text.push_str(&format!(
            "export LIBVIRT_DEFAULT_URI={}\n",
            crate::template::shell_quote(uri)
        ));
    }
    text
}

/// `text` with its control characters (a line break above all) shown, so it stays one comment.
fn comment_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn write_to(sink: &mut Sink, text: &str) -> Result<()> {
    sink.out
        .write_all(text.as_bytes())
        .and_then(|_| sink.out.flush())
        .map_err(|e| Error::from(e).context("writing the --explain output"))
}

/// Whether this run explains its steps.
pub fn is_on() -> bool {
    SINK.lock()
        .map(|s| s.as_ref().is_some_and(|s| s.explained))
        .unwrap_or(false)
}

/// Whether this run only explains (`--dry-run`): the pipelines stop before changing anything.
pub fn is_dry_run() -> bool {
    SINK.lock()
        .map(|s| s.as_ref().is_some_and(|s| s.dry_run))
        .unwrap_or(false)
}

/// Write `step`'s commands with `context`'s values; nothing when this run does not explain.
pub fn step(step: Step, context: &impl Serialize) -> Result<()> {
    let mut guard = SINK.lock().unwrap_or_else(|p| p.into_inner());
    let Some(sink) = guard.as_mut().filter(|s| s.explained) else {
        return Ok(());
    };
    let text = step.render(context)?;
    write_to(sink, &format!("\n{}\n", text.trim_end()))
}

/// A dry run's closing line for the person at the terminal: on stdout, unless the script
/// itself goes there (`--explain=-`), where a line that is not bash would break it.
pub fn say_dry_run_done(text: &str) {
    let to_stdout = SINK
        .lock()
        .map(|s| s.as_ref().is_some_and(|s| s.target == Target::Stdout))
        .unwrap_or(false);
    if to_stdout {
        crate::errln!("{text}");
    } else {
        crate::outln!("{text}");
    }
}

/// The end of the run: the script is complete and its file closed.
pub fn finish() {
    SINK.lock().unwrap_or_else(|p| p.into_inner()).take();
}

/// Stop explaining this run, saying why in the script: the steps after this point could not
/// be written as commands that work (a script with holes would mislead more than an end).
pub fn stop_here(reason: &str) -> Result<()> {
    let mut guard = SINK.lock().unwrap_or_else(|p| p.into_inner());
    let Some(sink) = guard.as_mut().filter(|s| s.explained) else {
        return Ok(());
    };
    sink.explained = false;
    write_to(
        sink,
        &format!(
            "\n# note: {}; what this run does from here is not explained\n",
            comment_safe(reason)
        ),
    )
}

/// A remark in the script, as a comment (what was not explained, and why).
pub fn note(text: &str) -> Result<()> {
    let mut guard = SINK.lock().unwrap_or_else(|p| p.into_inner());
    match guard.as_mut().filter(|s| s.explained) {
        Some(sink) => write_to(sink, &format!("\n# note: {}\n", comment_safe(text))),
        None => Ok(()),
    }
}

/// `body` as the text of an unquoted here-document ending at a line `marker`: `\`, `$` and
/// `` ` `` escaped so the shell prints it as it is, except where `variables` put a shell
/// variable: each (placeholder, variable) pair turns the placeholder into `${variable}`, which
/// the shell fills in when the script runs (a key that exists only then).
pub fn heredoc(body: &str, marker: &str, variables: &[(&str, &str)]) -> Result<String> {
    if body.lines().any(|line| line == marker) {
        return Err(Error::failed(format!(
            "the text to explain holds a line '{marker}', which would end its here-document"
        )));
    }
    let mut text = String::with_capacity(body.len());
    for c in body.chars() {
        if matches!(c, '\\' | '$' | '`') {
            text.push('\\');
        }
        text.push(c);
    }
    for (placeholder, variable) in variables {
        text = text.replace(placeholder, &format!("${{{variable}}}"));
    }
    Ok(text)
}

/// `body` as the text of a quoted here-document (`<<'MARKER'`), which the shell passes on as
/// it is: only a line equal to the marker could end it early.
pub fn quoted_heredoc(body: &str, marker: &str) -> Result<String> {
    if body.lines().any(|line| line == marker) {
        return Err(Error::failed(format!(
            "the text to explain holds a line '{marker}', which would end its here-document"
        )));
    }
    Ok(body.trim_end_matches('\n').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Values for each step's template, as the pipelines give them.
    fn sample(step: Step) -> serde_json::Value {
        let xml = heredoc(
            "<domain>\n  <name>a</name>\n  <sysinfo><entry>key=LOGIN_PUB</entry></sysinfo>\n  <p>$x `y` \\z</p>\n</domain>",
            "STRATA_XML",
            &[("LOGIN_PUB", "login_pub")],
        )
        .unwrap();
        match step {
            Step::NetCreate => json!({
                "name": "lab net", "xml": "<network/>", "mode": "isolated", "subnet": "10.77.0.0/24"
            }),
            Step::NetDestroy => json!({
                "name": "lab",
                "rules": [["-D", "DOCKER-USER", "-i", "virbr1", "-m", "comment", "--comment", "strata check --fix", "-j", "ACCEPT"]]
            }),
            Step::VmClone => json!({
                "pool": "strata", "volume": "vm-a.qcow2", "capacity": 10737418240u64,
                "backing_path": "/var/lib/strata/pool/debian-12.qcow2",
            }),
            Step::VmReserveAddress => json!({
                "network": "strata", "mac": "52:54:00:00:00:01", "name": "a", "ip": "10.77.0.2",
                "host_xml": "<host mac='52:54:00:00:00:01' name='a' ip='10.77.0.2'/>",
                "live": true,
            }),
            Step::VmKeys => json!({
                "name": "a", "vm_dir": "/var/lib/strata/vms/a",
                "login_key": "/var/lib/strata/vms/a/id_ed25519",
                "known_hosts": "/var/lib/strata/vms/a/known_hosts", "ip": "10.77.0.2",
            }),
            Step::VmDefine => json!({
                "name": "a", "handover_dir": "/var/lib/strata/handover",
                "xml": xml, "first_boot_xml": xml,
            }),
            Step::VmStart => json!({"name": "a"}),
            Step::StackImage => json!({
                "service": "web", "how": "build", "dir": "/c/busybox httpd/context",
                "added": [{"inside": "busybox", "host": "/bin/busybox"}],
                "remote": "docker build --rm --force-rm -t strata-build/busybox:0123 -",
            }),
            Step::StackObject => json!({
                "kind": "network", "command": "docker network create --internal --label 'a=it'\\''s' s_back",
            }),
            Step::StackContainer => json!({
                "service": "web", "name": "s-web", "action": "recreated",
                "commands": ["docker rm --force s-web", "docker create --name s-web --env 'A=$x `y`' sha256:ab", "docker start s-web"],
            }),
            Step::StackWait => json!({
                "wave": 1, "containers": [{"name": "s-db", "want": "healthy", "seconds": 400}],
            }),
            Step::StackRemove => {
                json!({"what": "container s-web", "command": "docker rm --force s-web"})
            }
            Step::CheckFix => json!({
                "kind": "iptables", "chain": "DOCKER-USER", "bridge": "virbr1",
                "rules": ["-i virbr1 -o virbr1 -m comment --comment 'strata check --fix' -j ACCEPT"],
            }),
            Step::VmStop => json!({"name": "a b", "running": true, "timeout": 60}),
            Step::VmBoot => json!({"name": "a", "running": false}),
            Step::VmWaitForSsh => json!({
                "name": "a", "ip": "10.77.0.2", "user": "root", "timeout": 300,
                "key": "/var/lib/strata/vms/a/id_ed25519",
                "known_hosts": "/var/lib/strata/vms/a/known_hosts",
            }),
            Step::GuestLogin => json!({
                "name": "a", "ip": "10.77.0.2", "user": "root",
                "key": "/var/lib/strata/vms/a/id_ed25519",
                "known_hosts": "/var/lib/strata/vms/a/known_hosts",
            }),
            Step::EngineDataDisk => json!({
                "vm": "a", "pool": "strata", "volume": "vm_a-data.qcow2", "capacity": 21474836480u64,
                "create": true, "record_xml": "<strata:vm/>", "attach": true, "disk_xml": "<disk/>",
                "live": true, "namespace": "https://strata.dev/xmlns/vm/1", "serial": "strata-data",
            }),
            Step::EngineStorage => {
                json!({"layout": "disk-ext4", "script": "set -e\nmkfs.ext4 /dev/vdb"})
            }
            Step::EngineBundle => json!({
                "build": true, "debs": ["/var/cache/strata/bundle/bookworm/docker.io_20.10.24.deb"],
                "cache": "/var/cache/strata/bundle/bookworm", "image": "/var/lib/strata/pool/bundle-1.img",
                "kib": 90000, "disk_xml": "<disk/>", "vm": "a", "script": "apt-get install -y x",
            }),
            Step::EngineOnline => json!({"script": "apt-get install -y docker.io"}),
            Step::EngineDaemonJson => json!({
                "write": true, "daemon_json": "{\"storage-driver\": \"overlay2\"}", "script": "systemctl restart docker",
            }),
            Step::EngineRecord => json!({"record": "{}"}),
            Step::EngineVerify => json!({"expected": "overlay2 /var/lib/docker"}),
            Step::VmDestroy => json!({
                "name": "a", "running": true, "pool": "strata",
                "volumes": ["vm-a.qcow2", "vm-a-data.qcow2"], "files": ["/x/seed.img"],
                "network": "strata", "host_xml": "<host mac='52:54:00:00:00:01' name='a' ip='10.77.0.2'/>",
                "live": true, "vm_dir": "/var/lib/strata/vms/a",
            }),
        }
    }

    /// Every step has an explanation: a comment saying what it does and at least one command,
    /// and bash reads it (`bash -n`) with its values in it.
    #[test]
    fn every_step_explains_itself_as_a_script_bash_reads() {
        for step in Step::ALL {
            let text = step.render(&sample(step)).unwrap();
            let first = text.lines().next().unwrap_or_default();
            assert!(
                first.starts_with("# "),
                "{step:?} starts without a comment: {text}"
            );
            assert!(
                text.lines()
                    .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')),
                "{step:?} has no command: {text}"
            );
            assert_bash_reads(step, &text);
        }
    }

    /// `text` after the script's header is a script `bash -n` accepts.
    fn assert_bash_reads(step: Step, text: &str) {
        let script = format!("{}{text}\n", header(true, "vm create a", "qemu:///system"));
        let checked = std::process::Command::new("bash")
            .args(["-n", "-c", &script])
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "{step:?}: bash -n: {}\n{script}",
            String::from_utf8_lossy(&checked.stderr)
        );
    }

    /// The other branches of the templates that have them: each still a script bash reads.
    #[test]
    fn every_branch_of_a_step_is_bash_too() {
        let others = [
            (
                Step::VmStop,
                json!({"name": "a", "running": false, "timeout": 60}),
            ),
            (Step::VmBoot, json!({"name": "a", "running": true})),
            (Step::CheckFix, json!({"kind": "kvm"})),
            (
                Step::StackImage,
                json!({"service": "s", "how": "present", "id": "sha256:ab"}),
            ),
            (
                Step::StackImage,
                json!({"service": "s", "how": "pull", "remote": "docker pull 'a b'"}),
            ),
            (
                Step::StackImage,
                json!({"service": "s", "how": "load", "remote": "docker load", "tarball": "/t/a b.tar", "tag": "strata-tarball:0a"}),
            ),
            (
                Step::StackContainer,
                json!({"service": "s", "name": "x-s", "action": "unchanged", "commands": []}),
            ),
            (
                Step::StackContainer,
                json!({"service": "s", "name": "x-s", "action": "started", "commands": ["docker start x-s"]}),
            ),
            (
                Step::StackWait,
                json!({"wave": 2, "containers": [{"name": "x-s", "want": "running", "seconds": 10}]}),
            ),
            (Step::EngineDaemonJson, json!({"write": false})),
        ];
        for (step, context) in others {
            let text = step.render(&context).unwrap();
            assert!(
                text.starts_with("# "),
                "{step:?} starts without a comment: {text}"
            );
            assert_bash_reads(step, &text);
        }
    }

    /// A here-document body comes out of the shell exactly as it went in, with the variables
    /// filled in.
    #[test]
    fn a_heredoc_body_is_printed_unchanged_but_for_its_variables() {
        let body = "<a>$HOME `id` \\n $(x) ${y}</a>\n<b>KEY</b>";
        let text = heredoc(body, "EOF", &[("KEY", "key")]).unwrap();
        let script = format!("key='ssh-ed25519 AAAA'\ncat <<EOF\n{text}\nEOF\n");
        let out = std::process::Command::new("bash")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "<a>$HOME `id` \\n $(x) ${y}</a>\n<b>ssh-ed25519 AAAA</b>\n"
        );
        assert!(heredoc("a\nEOF\nb", "EOF", &[]).is_err());
    }

    #[test]
    fn the_header_stops_at_the_first_failure_and_names_another_libvirt() {
        let text = header(false, "net create a\nrm -rf /", "qemu+ssh://root@h/system");
        assert!(text.starts_with("#!/bin/bash\n"));
        assert!(text.contains("set -euo pipefail\n"));
        assert!(text.contains("export LIBVIRT_DEFAULT_URI=qemu+ssh://root@h/system\n"));
        assert!(text.lines().all(|l| !l.starts_with("rm")), "{text}");
        assert!(!header(true, "x", "qemu:///system").contains("LIBVIRT_DEFAULT_URI"));
    }
}
