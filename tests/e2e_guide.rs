//! End-to-end: docs/migration-path.md, run as a reader would run it. Its `sh` blocks run in
//! order, each with `bash -euo pipefail` from the project folder, with this build of strata
//! first on PATH; its `bash explain` blocks (abridged `--explain` output) must name only
//! commands that the run's explanations really printed. The guide uses fixed names (network
//! `path`, VM `path-1`, folder /tmp/strata-path); what a failed or killed run left of them is
//! removed before and after, by strata, which removes only what carries its mark.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const GUIDE: &str = "docs/migration-path.md";
const WORK: &str = "/tmp/strata-path";
const PLAN: &str = "/tmp/strata-path/host.toml";
const VM: &str = "path-1";
const NETWORK: &str = "path";
/// The longest block installs Docker in a TCG guest.
const BLOCK_DEADLINE: Duration = Duration::from_secs(1200);

/// A fenced block of the guide: its info string, its first line's number, its text.
struct Block {
    info: String,
    line: usize,
    text: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    line: index + 2,
                    text: String::new(),
                })
            }
            (Some(_), Some("")) => found.push(open.take().unwrap()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{GUIDE}: a block is not closed");
    found
}

/// Removes what the guide makes, whatever stage a run stopped at.
struct GuideCleanup;

impl GuideCleanup {
    fn run(&self) {
        if Path::new(PLAN).exists() {
            let _ = strata(&["plan", "destroy", PLAN, "--volumes"]);
        }
        if vm_exists() {
            let _ = strata(&["vm", "destroy", VM]);
        }
        if network_exists() {
            let _ = strata(&["net", "destroy", NETWORK]);
        }
        let _ = std::fs::remove_dir_all(WORK);
    }
}

impl Drop for GuideCleanup {
    fn drop(&mut self) {
        self.run();
    }
}

fn vm_exists() -> bool {
    system().conn().lookup_domain_by_name(VM).is_ok()
}

fn network_exists() -> bool {
    system().conn().lookup_network_by_name(NETWORK).is_ok()
}

/// A folder holding only `strata`, this build's binary, to put first on PATH.
fn this_strata_on_path() -> (PathBuf, String) {
    let bin = std::env::temp_dir().join(format!("strata-e2e-guide-bin-{}", std::process::id()));
    std::fs::create_dir_all(&bin).unwrap();
    let link = bin.join("strata");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_strata"), &link).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (bin, path)
}

/// The commands an `--explain` excerpt names: the first two words of each line that starts
/// with one of the classic tools.
fn explained_commands(excerpt: &str) -> Vec<String> {
    const TOOLS: &[&str] = &[
        "virsh",
        "qemu-img",
        "ssh-keygen",
        "ssh",
        "mke2fs",
        "guest",
        "systemctl",
        "apt-get",
    ];
    excerpt
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().take(2).collect();
            (words.len() == 2 && TOOLS.contains(&words[0])).then(|| words.join(" "))
        })
        .collect()
}

#[test]
fn blocks_are_found_and_excerpts_name_their_commands() {
    let sample = "text\n```sh\necho one\n```\n\n```bash explain\nvirsh net-start x\n  guest \"docker info\"\nls\n```\n";
    let found = blocks(sample);
    assert_eq!(found.len(), 2);
    assert_eq!((found[0].info.as_str(), found[0].line), ("sh", 3));
    assert_eq!(found[0].text, "echo one\n");
    assert_eq!(
        explained_commands(&found[1].text),
        ["virsh net-start", "guest \"docker"]
    );
}

#[test]
fn the_migration_guide_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join(GUIDE)).unwrap();
    let all = blocks(&guide);
    let runnable: Vec<&Block> = all.iter().filter(|b| b.info == "sh").collect();
    assert!(
        runnable.len() >= 8,
        "{GUIDE}: only {} sh blocks",
        runnable.len()
    );
    ok(&["template", "build", TEMPLATE]);
    let cleanup = GuideCleanup;
    cleanup.run();
    assert!(
        !vm_exists() && !network_exists(),
        "{VM} or {NETWORK} exists and strata did not remove it (not strata's?): the guide needs both names"
    );
    let (bin, path) = this_strata_on_path();

    let mut printed = String::new();
    for (number, block) in runnable.iter().enumerate() {
        let mut command = Command::new("bash");
        command
            .args(["-euo", "pipefail", "-c", &block.text])
            .current_dir(root)
            .env("PATH", &path);
        let what = format!("{GUIDE} block {} (line {})", number + 1, block.line);
        let out = run_bounded(command, &what, BLOCK_DEADLINE);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        eprintln!("--- {what}\n{}{stdout}{stderr}", block.text);
        assert!(
            out.status.success(),
            "{what} failed ({}):\n{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status,
            block.text
        );
        printed.push_str(&stdout);
        printed.push_str(&stderr);
    }

    // The excerpts show commands the explanations printed in this run.
    let said: Vec<&str> = printed.lines().map(str::trim_start).collect();
    let excerpts: Vec<&Block> = all.iter().filter(|b| b.info == "bash explain").collect();
    assert!(
        excerpts.len() >= 3,
        "{GUIDE}: only {} explain excerpts",
        excerpts.len()
    );
    for excerpt in excerpts {
        for command in explained_commands(&excerpt.text) {
            assert!(
                said.iter().any(|line| line.starts_with(&command)),
                "{GUIDE} line {}: `{command}` was not in any explanation of this run",
                excerpt.line
            );
        }
    }

    // The last block removed everything the guide made.
    assert!(!vm_exists(), "the guide left {VM}");
    assert!(!network_exists(), "the guide left {NETWORK}");
    assert!(!Path::new(WORK).exists(), "the guide left {WORK}");
    let _ = std::fs::remove_dir_all(bin);
    drop(cleanup);
}
