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

/// Removes what the guide makes, whatever stage a run stopped at, and the folder that puts
/// this build's strata on PATH.
struct GuideCleanup {
    bin: PathBuf,
}

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
        let _ = std::fs::remove_dir_all(&self.bin);
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

/// The lines of an `--explain` excerpt that the run must have printed: all but comments,
/// blank lines and lines with `...` (the marks of what the excerpt leaves out).
fn excerpt_lines(excerpt: &str) -> Vec<&str> {
    excerpt
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.contains("..."))
        .collect()
}

/// `line` with what differs from run to run made equal: every run of 8 or more hex digits
/// (hashes, image ids; colons inside a run join it, so a MAC is one) becomes `H`.
fn normalized(line: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().filter(char::is_ascii_hexdigit).count() >= 8 {
            out.push('H');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in line.chars() {
        if c.is_ascii_digit() || ('a'..='f').contains(&c) || c == ':' {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[test]
fn blocks_excerpt_lines_and_what_varies_are_found() {
    let sample = "text\n```sh\necho one\n```\n\n```bash explain\nvirsh net-start x\n  guest \"docker info\"\nls\n```\n";
    let found = blocks(sample);
    assert_eq!(found.len(), 2);
    assert_eq!((found[0].info.as_str(), found[0].line), ("sh", 3));
    assert_eq!(found[0].text, "echo one\n");
    assert_eq!(
        excerpt_lines(&found[1].text),
        ["virsh net-start x", "guest \"docker info\"", "ls"]
    );
    assert_eq!(
        excerpt_lines("# c\n\n  ...\n--name x ... y\ndone\n"),
        ["done"]
    );
    assert_eq!(
        normalized("mac='52:54:00:06:c5:2a' id=sha256:1fceddce2822b6 -p 8080:80 path-1 10.254.1.2"),
        "mac='H' id=shH -p 8080:80 path-1 10.254.1.2"
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
    let (bin, path) = this_strata_on_path();
    let cleanup = GuideCleanup { bin };
    cleanup.run();
    assert!(
        !vm_exists() && !network_exists(),
        "{VM} or {NETWORK} exists and strata did not remove it (not strata's?): the guide needs both names"
    );

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
        // The explanations go to stderr; stdout (a grep of a dry run's file) is not one.
        printed.push_str(&stderr);
    }

    // Each line an excerpt shows was printed by this run's explanations.
    let said: Vec<String> = printed.lines().map(|l| normalized(l.trim())).collect();
    let excerpts: Vec<&Block> = all.iter().filter(|b| b.info == "bash explain").collect();
    assert!(
        excerpts.len() >= 3,
        "{GUIDE}: only {} explain excerpts",
        excerpts.len()
    );
    for excerpt in excerpts {
        for line in excerpt_lines(&excerpt.text) {
            assert!(
                said.contains(&normalized(line)),
                "{GUIDE}, the excerpt at line {}: `{line}` was not printed by any explanation of this run",
                excerpt.line
            );
        }
    }

    // The last block removed everything the guide made.
    assert!(!vm_exists(), "the guide left {VM}");
    assert!(!network_exists(), "the guide left {NETWORK}");
    assert!(!Path::new(WORK).exists(), "the guide left {WORK}");
    drop(cleanup);
}
