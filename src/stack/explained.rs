//! `up` and `down` explained: each step as the docker CLI commands that do the same in the
//! VM, run there through the pinned SSH login that the script defines first
//! (explain-templates/stack-*.bash.j2). A container request becomes `docker create` with one
//! flag per setting; a setting this module has no flag for is an error, never a command that
//! would quietly make a different container.

use crate::error::{Error, Result};
use crate::explain::{self, Step};
use crate::stack::container::{ContainerPlan, LABEL_CONFIG};
use crate::template::shell_command_line as command_line;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfig, HostConfigLogConfig,
    RestartPolicy,
};
use serde_json::json;
use std::path::Path;

/// An environment variable whose value strata never writes into an explanation (a script
/// file, or a terminal that may be logged): by its name, as templates name such things, or by
/// a value that carries a password in a URL (`scheme://user:password@host`).
pub fn is_secret(name: &str, value: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let by_name = [
        "PASS",
        "SECRET",
        "TOKEN",
        "KEY",
        "CREDENTIAL",
        "AUTH",
        "PRIVATE",
    ]
    .iter()
    .any(|word| upper.contains(word));
    let in_url = value.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority
            .rsplit_once('@')
            .is_some_and(|(user_info, _)| user_info.contains(':'))
    });
    by_name || in_url
}

/// The names of `body`'s secret variables; a name that is not a plain identifier cannot be
/// written as `--env NAME` safely, so it is refused.
fn secret_names(plan: &ContainerPlan) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for pair in plan.body.env.iter().flatten() {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !is_secret(name, value) {
            continue;
        }
        let plain = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !plain {
            return Err(Error::failed(format!(
                "container {} has a secret variable whose name --explain cannot write safely",
                plan.name
            ))
            .with_hint("name it with letters, digits and _ only, or run without --explain"));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// `docker create` for `plan`, and the `docker network connect` of its further networks.
/// Secret variables are passed by name from the guest script's environment, which must set
/// them: the script stops at once, saying which, when one is not set.
pub fn create_commands(plan: &ContainerPlan) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for name in secret_names(plan)? {
        lines.push(format!(
            "# {name} is a secret, so its value is not written here: put export {name}='...' above this line"
        ));
        lines.push(format!(": \"${{{name}:?set {name} in this script: its value is a secret strata does not write}}\""));
    }
    if let Some(test) = plan.body.healthcheck.as_ref().and_then(|h| h.test.as_ref()) {
        if test.first().map(String::as_str) == Some("CMD") {
            lines.push(
                "# the health check runs through the image's /bin/sh: the docker CLI has no exec form of it"
                    .to_string(),
            );
        }
    }
    lines.push(command_line(&create_args(plan)?));
    let aliases = aliases_of(&plan.body);
    for network in &plan.more_networks {
        let mut words = vec!["docker".to_string(), "network".into(), "connect".into()];
        for alias in &aliases {
            words.extend(["--alias".to_string(), alias.clone()]);
        }
        words.extend([network.clone(), plan.name.clone()]);
        lines.push(command_line(&words));
    }
    Ok(lines)
}

fn aliases_of(body: &ContainerCreateBody) -> Vec<String> {
    body.networking_config
        .as_ref()
        .and_then(|n| n.endpoints_config.as_ref())
        .and_then(|endpoints| endpoints.values().next())
        .and_then(|e| e.aliases.clone())
        .unwrap_or_default()
}

/// The words of `docker create` that make the container `plan` asks Docker for.
pub fn create_args(plan: &ContainerPlan) -> Result<Vec<String>> {
    let body = &plan.body;
    refuse_unwritten(plan)?;
    let mut words = Words(vec!["docker".into(), "create".into()]);
    words.with("--name", plan.name.clone());
    if let Some(hostname) = &body.hostname {
        words.with("--hostname", hostname.clone());
    }
    if let Some(user) = &body.user {
        words.with("--user", user.clone());
    }
    let secrets = secret_names(plan)?;
    let mut labels: Vec<_> = body.labels.iter().flatten().collect();
    labels.sort();
    for (key, value) in labels {
        // The config hash covers the secret values too: written out, it would let a guessed
        // password be checked offline. Withheld, the next `up` recreates the container.
        let value = match key.as_str() {
            LABEL_CONFIG if !secrets.is_empty() => "withheld",
            _ => value.as_str(),
        };
        words.with("--label", format!("{key}={value}"));
    }
    for pair in body.env.iter().flatten() {
        match pair.split_once('=') {
            // The value stays out of the explanation: `--env NAME` takes it from the
            // environment of the docker command, where whoever runs the script puts it.
            Some((name, _)) if secrets.iter().any(|s| s == name) => {
                words.with("--env", name.to_string())
            }
            _ => words.with("--env", pair.clone()),
        }
    }
    if let Some(endpoints) = body
        .networking_config
        .as_ref()
        .and_then(|n| n.endpoints_config.as_ref())
    {
        for (network, endpoint) in endpoints {
            words.with("--network", network.clone());
            for alias in endpoint.aliases.iter().flatten() {
                words.with("--network-alias", alias.clone());
            }
        }
    }
    if let Some(host) = &body.host_config {
        host_flags(host, &mut words);
    }
    let published: Vec<&String> = body
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref())
        .map(|b| b.keys().collect())
        .unwrap_or_default();
    for port in body.exposed_ports.iter().flatten() {
        if !published.contains(&port) {
            words.with("--expose", port.clone());
        }
    }
    if let Some(health) = &body.healthcheck {
        health_flags(health, &mut words)?;
    }
    // `--entrypoint` takes one word: the rest of an entrypoint goes before the command, where
    // Docker passes it to that word just the same.
    let (entry, entry_rest) = match body.entrypoint.as_deref() {
        Some([first, rest @ ..]) => (Some(first.clone()), rest.to_vec()),
        Some([]) => (Some(String::new()), Vec::new()),
        None => (None, Vec::new()),
    };
    if let Some(entry) = entry {
        words.with("--entrypoint", entry);
    }
    let mut args = words.0;
    args.push(body.image.clone().unwrap_or_default());
    args.extend(entry_rest);
    args.extend(body.cmd.iter().flatten().cloned());
    Ok(args)
}

/// A command's words, flag by flag.
struct Words(Vec<String>);

impl Words {
    fn with(&mut self, flag: &str, value: String) {
        self.0.push(flag.to_string());
        self.0.push(value);
    }

    fn switch(&mut self, flag: &str) {
        self.0.push(flag.to_string());
    }
}

fn host_flags(host: &HostConfig, words: &mut Words) {
    if let Some(memory) = host.memory {
        words.with("--memory", memory.to_string());
    }
    if let Some(swap) = host.memory_swap {
        words.with("--memory-swap", swap.to_string());
    }
    for bind in host.binds.iter().flatten() {
        words.with("--volume", bind.clone());
    }
    let mut ports: Vec<_> = host.port_bindings.iter().flatten().collect();
    ports.sort_by(|a, b| a.0.cmp(b.0));
    for (inside, bindings) in ports {
        for binding in bindings.iter().flatten() {
            let ip = binding.host_ip.as_deref().unwrap_or_default();
            let port = binding.host_port.as_deref().unwrap_or_default();
            let published = match ip {
                "" => format!("{port}:{inside}"),
                ip if ip.contains(':') => format!("[{ip}]:{port}:{inside}"),
                ip => format!("{ip}:{port}:{inside}"),
            };
            words.with("--publish", published);
        }
    }
    if let Some(HostConfigLogConfig { typ, config }) = &host.log_config {
        if let Some(driver) = typ {
            words.with("--log-driver", driver.clone());
        }
        let mut options: Vec<_> = config.iter().flatten().collect();
        options.sort();
        for (key, value) in options {
            words.with("--log-opt", format!("{key}={value}"));
        }
    }
    if let Some(RestartPolicy {
        name: Some(name),
        maximum_retry_count,
    }) = &host.restart_policy
    {
        let policy = match maximum_retry_count {
            Some(count) if *count > 0 => format!("{name}:{count}"),
            _ => name.to_string(),
        };
        words.with("--restart", policy);
    }
    if host.readonly_rootfs == Some(true) {
        words.switch("--read-only");
    }
    let mut tmpfs: Vec<_> = host.tmpfs.iter().flatten().collect();
    tmpfs.sort();
    for (path, options) in tmpfs {
        let mount = match options.as_str() {
            "" => path.clone(),
            options => format!("{path}:{options}"),
        };
        words.with("--tmpfs", mount);
    }
}

fn health_flags(health: &HealthConfig, words: &mut Words) -> Result<()> {
    // The CLI's health command always runs through the image's /bin/sh (CMD-SHELL); an
    // exec-form test is written as the same words for that shell.
    match health.test.as_deref() {
        Some([kind, test @ ..]) if kind == "CMD" => words.with("--health-cmd", command_line(test)),
        Some([kind, line]) if kind == "CMD-SHELL" => words.with("--health-cmd", line.clone()),
        Some([kind]) if kind == "NONE" => {
            words.switch("--no-healthcheck");
            return Ok(());
        }
        None => {}
        Some(other) => {
            return Err(Error::failed(format!(
                "a health check test {other:?} has no docker CLI form"
            )))
        }
    }
    let durations = [
        ("--health-interval", health.interval),
        ("--health-timeout", health.timeout),
        ("--health-start-period", health.start_period),
    ];
    for (name, nanos) in durations {
        if let Some(nanos) = nanos.filter(|n| *n > 0) {
            words.with(name, go_duration(nanos));
        }
    }
    if let Some(retries) = health.retries {
        words.with("--health-retries", retries.to_string());
    }
    Ok(())
}

/// Nanoseconds as a Go duration, the form the docker CLI parses.
fn go_duration(nanos: i64) -> String {
    match nanos {
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n => format!("{n}ns"),
    }
}

/// Fail when the request sets anything `create_args` does not write: the explanation would
/// make another container than strata did.
fn refuse_unwritten(plan: &ContainerPlan) -> Result<()> {
    let body = &plan.body;
    let rest = ContainerCreateBody {
        image: None,
        entrypoint: None,
        cmd: None,
        env: None,
        user: None,
        hostname: None,
        labels: None,
        exposed_ports: None,
        healthcheck: None,
        host_config: None,
        networking_config: None,
        ..body.clone()
    };
    let host_rest = body.host_config.clone().map(|host| HostConfig {
        memory: None,
        memory_swap: None,
        binds: None,
        port_bindings: None,
        log_config: None,
        restart_policy: None,
        readonly_rootfs: None,
        tmpfs: None,
        ..host
    });
    let endpoints = body
        .networking_config
        .as_ref()
        .and_then(|n| n.endpoints_config.as_ref());
    let plain_endpoints = endpoints.is_none_or(|e| {
        e.len() <= 1
            && e.values().all(|endpoint| {
                *endpoint
                    == EndpointSettings {
                        aliases: endpoint.aliases.clone(),
                        ..Default::default()
                    }
            })
    });
    let start_interval = body.healthcheck.as_ref().and_then(|h| h.start_interval);
    if rest != ContainerCreateBody::default()
        || host_rest.is_some_and(|h| h != HostConfig::default())
        || !plain_endpoints
        || start_interval.is_some()
    {
        return Err(Error::failed(format!(
            "container {} has settings that --explain cannot write as docker flags yet",
            plan.name
        ))
        .with_hint("run without --explain; strata itself creates it through the Docker API"));
    }
    Ok(())
}

/// The image a service uses, and how it got into the VM.
pub fn image(service: &str, how: ImageExplained<'_>) -> Result<()> {
    let context = match how {
        ImageExplained::Present { id } => json!({"how": "present", "id": id}),
        ImageExplained::Pull { reference } => json!({
            "how": "pull",
            "remote": command_line(&["docker", "pull", reference]),
        }),
        ImageExplained::Load { tarball, tag } => json!({
            "how": "load",
            "tarball": tarball,
            "remote": command_line(&["docker", "load"]),
            "tag": tag,
        }),
        ImageExplained::Build { dir, added, tag } => {
            refuse_unsafe_context_names(&added)?;
            json!({
            "how": "build",
            "dir": dir,
            "added": added
                .iter()
                .map(|(inside, host)| json!({"inside": inside, "host": host}))
                .collect::<Vec<_>>(),
            "remote": command_line(&["docker", "build", "--rm", "--force-rm", "-t", tag, "-"]),
            })
        }
    };
    let mut context = context;
    context["service"] = json!(service);
    explain::step(Step::StackImage, &context)
}

/// A name in the build context must stay inside it when the script copies the file there
/// (strata itself only names a tar entry with it).
fn refuse_unsafe_context_names(added: &[(&str, &Path)]) -> Result<()> {
    use std::path::Component;
    for (inside, _) in added {
        let path = Path::new(inside);
        let plain = !inside.is_empty()
            && path.components().all(|c| matches!(c, Component::Normal(_)))
            && !inside.chars().any(char::is_control);
        if !plain {
            return Err(Error::failed(format!(
                "context file '{}' is not a plain path inside the build context",
                inside.escape_debug()
            ))
            .with_hint(
                "name context files with relative paths, no '..'; or run without --explain",
            ));
        }
    }
    Ok(())
}

/// How a service's image got into the VM, for `image`.
pub enum ImageExplained<'a> {
    Present {
        id: &'a str,
    },
    Pull {
        reference: &'a str,
    },
    /// An image archive on the host, loaded, and tagged by its hash.
    Load {
        tarball: &'a Path,
        tag: &'a str,
    },
    /// A context folder, files added to it (name in the context, file on the host), the tag.
    Build {
        dir: &'a Path,
        added: Vec<(&'a str, &'a Path)>,
        tag: &'a str,
    },
}

/// A network or a volume of the stack, made.
pub fn object(kind: &str, words: &[String]) -> Result<()> {
    explain::step(
        Step::StackObject,
        &json!({"kind": kind, "command": command_line(words)}),
    )
}

/// A container of the stack, or a network or volume, removed (`what` says why).
pub fn removal(what: &str, words: &[&str]) -> Result<()> {
    explain::step(
        Step::StackRemove,
        &json!({"what": what, "command": command_line(words)}),
    )
}

/// One service's container: made (after removing the old one for a recreate) and started,
/// started, or left as it is.
pub fn container(service: &str, action: &str, plan: &ContainerPlan) -> Result<()> {
    let mut commands = Vec::new();
    if action == "recreated" {
        commands.push(command_line(&["docker", "rm", "--force", &plan.name]));
    }
    if matches!(action, "recreated" | "created") {
        commands.extend(create_commands(plan)?);
    }
    if action != "unchanged" {
        commands.push(command_line(&["docker", "start", &plan.name]));
    }
    explain::step(
        Step::StackContainer,
        &json!({
            "service": service,
            "name": plan.name,
            "action": action,
            "commands": commands,
        }),
    )
}

/// The wait for a wave's containers: healthy where they have a health check, running where
/// they have none.
pub fn wait(wave: usize, waits: &[(String, bool, u64)]) -> Result<()> {
    explain::step(
        Step::StackWait,
        &json!({
            "wave": wave + 1,
            "containers": waits
                .iter()
                .map(|(name, healthy, seconds)| json!({
                    "name": name,
                    "want": if *healthy { "healthy" } else { "running" },
                    "seconds": seconds,
                }))
                .collect::<Vec<_>>(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::container;
    use crate::stack::file::StackFile;
    use crate::template::container::ServiceSpec;

    fn plan_of(service_toml: &str) -> ContainerPlan {
        let stack = StackFile::parse(
            Path::new("s.toml"),
            "vm = \"v\"\n[services.web]\ntemplate = \"t\"\nnetworks = [\"front\", \"back\"]\n[networks.front]\n[networks.back]\n",
        )
        .unwrap();
        let spec: ServiceSpec = toml::from_str(service_toml).unwrap();
        container::plan(&stack, &stack.services["web"], &spec, "sha256:abc").unwrap()
    }

    const SPEC: &str = r#"
entrypoint = ["/bin/sh", "-c"]
command = ["echo \"$CONTENT\" && exec httpd -f"]
memory = "32M"
read_only = true
tmpfs = ["/www"]
restart = "unless-stopped"
[image]
reference = "x"
[env]
CONTENT = "it's $HOME"
[[ports]]
container = 80
host = 8080
[log]
driver = "local"
max_size = "5m"
max_file = 2
[healthcheck]
test = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
interval = "2s"
timeout = "500ms"
retries = 12
"#;

    #[test]
    fn a_container_request_becomes_docker_create_with_every_setting() {
        let plan = plan_of(SPEC);
        let args = create_args(&plan).unwrap();
        let line = args.join(" ");
        for expected in [
            "--name s-web",
            "--hostname web",
            "--label strata.service=web",
            "--label strata.stack=s",
            "--env CONTENT=it's $HOME",
            "--network s-front --network-alias web",
            "--memory 33554432 --memory-swap 33554432",
            "--publish 127.0.0.1:8080:80/tcp",
            "--log-driver local --log-opt max-file=2 --log-opt max-size=5m",
            "--restart unless-stopped",
            "--read-only",
            "--tmpfs /www",
            "--health-cmd wget -q -O /dev/null http://127.0.0.1/",
            "--health-interval 2s --health-timeout 500ms",
            "--health-retries 12",
            "--entrypoint /bin/sh sha256:abc -c echo \"$CONTENT\" && exec httpd -f",
        ] {
            assert!(line.contains(expected), "{expected} not in {line}");
        }
        assert!(line.contains("--label strata.config="), "{line}");
        let commands = create_commands(&plan).unwrap();
        let connect = commands.last().unwrap();
        assert_eq!(connect, "docker network connect --alias web s-back s-web");
    }

    #[test]
    fn the_create_line_is_words_bash_gives_back_unchanged() {
        let plan = plan_of(SPEC);
        let args = create_args(&plan).unwrap();
        let line = command_line(&args);
        let out = std::process::Command::new("bash")
            .args(["-c", &format!("printf '%s\\n' {line}")])
            .output()
            .unwrap();
        let words: Vec<&str> = std::str::from_utf8(&out.stdout)
            .unwrap()
            .strip_suffix('\n')
            .unwrap()
            .split('\n')
            .collect();
        let expected: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(words, expected);
    }

    #[test]
    fn a_setting_without_a_flag_is_refused_not_dropped() {
        let mut plan = plan_of(SPEC);
        plan.body.working_dir = Some("/srv".into());
        let err = create_args(&plan).unwrap_err();
        assert!(err.message().contains("cannot write"), "{}", err.message());
        let mut plan = plan_of(SPEC);
        plan.body.host_config.as_mut().unwrap().privileged = Some(true);
        assert!(create_args(&plan).is_err());
    }

    #[test]
    fn a_secret_value_is_never_written() {
        let spec = SPEC.replace(
            "CONTENT = \"it's $HOME\"",
            "POSTGRES_PASSWORD = \"hunter2\"\nPLAIN = \"shown\"",
        );
        let plan = plan_of(&spec);
        let text = create_commands(&plan).unwrap().join("\n");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("--env PLAIN=shown --env POSTGRES_PASSWORD --network"),
            "{text}"
        );
        assert!(
            text.starts_with("# POSTGRES_PASSWORD is a secret"),
            "{text}"
        );
        assert!(text.contains("--label strata.config=withheld"), "{text}");
        // Run as the script runs it: without the variable it stops, naming it.
        let unset = std::process::Command::new("bash")
            .args([
                "-euc",
                &format!("{}\necho reached", text.lines().nth(1).unwrap()),
            ])
            .output()
            .unwrap();
        assert!(!unset.status.success());
        assert!(String::from_utf8_lossy(&unset.stderr).contains("set POSTGRES_PASSWORD"));
    }

    #[test]
    fn a_password_in_a_url_is_a_secret_and_odd_secret_names_are_refused() {
        assert!(is_secret(
            "BACKEND_URL",
            "postgres://app:hunter2@db:5432/meta"
        ));
        assert!(!is_secret("BACKEND_URL", "http://db:5432/meta"));
        assert!(!is_secret("URL", "http://user@db/"));
        assert!(is_secret("DB_PASS", "x"));
        let spec = SPEC.replace("CONTENT = \"it's $HOME\"", "\"A\\nB_TOKEN\" = \"x\"");
        let err = create_commands(&plan_of(&spec)).unwrap_err();
        assert!(
            err.message().contains("cannot write safely"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn no_healthcheck_is_one_flag_alone() {
        let mut plan = plan_of(SPEC);
        plan.body.healthcheck.as_mut().unwrap().test = Some(vec!["NONE".into()]);
        let line = create_args(&plan).unwrap().join(" ");
        assert!(line.contains("--no-healthcheck"), "{line}");
        assert!(!line.contains("--health-"), "{line}");
    }

    #[test]
    fn context_files_outside_the_context_are_refused() {
        for bad in ["../x", "/etc/x", "a/../../x", "", "a\nb"] {
            let added = [(bad, Path::new("/bin/busybox"))];
            assert!(refuse_unsafe_context_names(&added).is_err(), "{bad:?}");
        }
        let added = [
            ("busybox", Path::new("/bin/busybox")),
            ("bin/sh", Path::new("/bin/sh")),
        ];
        refuse_unsafe_context_names(&added).unwrap();
    }

    #[test]
    fn durations_are_written_as_go_parses_them() {
        assert_eq!(go_duration(10_000_000_000), "10s");
        assert_eq!(go_duration(1_500_000_000), "1500ms");
        assert_eq!(go_duration(1_500), "1500ns");
    }
}
