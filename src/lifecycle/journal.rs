//! The journal of a create or a destroy: each undo step is on disk before the step it undoes
//! is taken (a create), or every removal is on disk before the first one is made (a destroy),
//! so that a failure, Ctrl-C, a lost libvirtd or even a killed process can be finished later:
//! by the next strata run of any kind (`recover_abandoned`), or by `vm destroy NAME`. Every
//! step is a no-op when its object is already gone, and a domain is only undefined when it
//! is the very one (by UUID) that the journal names. A journal belongs to the libvirt URI it
//! was made on: only a run connected there finishes it, so a name's leftovers on one host
//! never remove a namesake's volume on another.

use crate::error::{Error, ErrorKind, Result};
use crate::state::{remove_dir_if_present, Paths};
use crate::vm::network::{self, DhcpHost};
use crate::vm::{domain, pool, Libvirt};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One undo (or removal) step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Undo {
    Volume {
        name: String,
    },
    File {
        path: PathBuf,
    },
    Reservation {
        network: String,
        host: DhcpHost,
    },
    VmDir {
        path: PathBuf,
    },
    Domain {
        name: String,
        uuid: String,
    },
    /// A data disk under the name VMs had before volumes were recorded (`vm-NAME-data.qcow2`):
    /// removed only while no VM `unless_vm` exists, whose root disk the name could also be.
    LegacyDataDisk {
        name: String,
        unless_vm: String,
    },
}

/// What the journal's process was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Rolled back if it does not finish.
    #[default]
    Create,
    /// Finished (every removal carried out) if it does not finish.
    Destroy,
}

/// Journals written before they carried a URI were made on the default one.
fn default_uri() -> String {
    crate::vm::connect::DEFAULT_URI.to_string()
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Journal {
    vm: String,
    /// The libvirt URI the run was connected to.
    #[serde(default = "default_uri")]
    uri: String,
    pid: u32,
    /// When that process started (clock ticks since boot): a pid the kernel gave to another
    /// process since is not this journal's process.
    #[serde(default)]
    started: u64,
    #[serde(default)]
    action: Action,
    steps: Vec<Undo>,
    #[serde(skip)]
    path: PathBuf,
}

/// A journal whose process is gone (or still working), as `vm list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PendingJournal {
    pub vm: String,
    /// The libvirt URI of its run.
    pub uri: String,
    pub action: Action,
    pub pid: u32,
    /// Its process still runs: the journal is being written now.
    pub running: bool,
}

fn journal_dir(paths: &Paths) -> PathBuf {
    paths.state.join("journal")
}

fn journal_path(paths: &Paths, vm: &str) -> PathBuf {
    journal_dir(paths).join(format!("{vm}.json"))
}

/// When process `pid` started, in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let process = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    process.stat().ok().map(|stat| stat.starttime)
}

/// Whether the process that wrote a journal still runs (the same pid, started at the same
/// time: after a reboot, or in a container, the pid may well be this very process's).
fn process_alive(pid: u32, started: u64) -> bool {
    match start_time(pid) {
        Some(now) => started == 0 || now == started,
        None => false,
    }
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Destroy => "destroy",
        }
    }
}

impl Journal {
    /// Start the journal of a create. Made exclusively: two processes working on the same
    /// name must not share (and roll back) each other's steps.
    pub(super) fn begin(lv: &Libvirt, paths: &Paths, vm: &str) -> Result<Journal> {
        Journal::begin_with(lv, paths, vm, Action::Create, Vec::new())
    }

    /// Start a journal that holds all its steps from the first moment (a destroy).
    pub(super) fn begin_with(
        lv: &Libvirt,
        paths: &Paths,
        vm: &str,
        action: Action,
        steps: Vec<Undo>,
    ) -> Result<Journal> {
        let dir = journal_dir(paths);
        paths.ensure_dir(&dir)?;
        let journal = Journal {
            vm: vm.to_string(),
            uri: lv.uri.clone(),
            pid: std::process::id(),
            started: start_time(std::process::id()).unwrap_or(0),
            action,
            steps,
            path: journal_path(paths, vm),
        };
        // Written whole under a private name, then linked into place: the link fails when the
        // name's journal exists, and a reader never sees a half-written one.
        let staged = dir.join(format!(".{vm}.{}.new", std::process::id()));
        std::fs::write(&staged, serde_json::to_vec(&journal)?)
            .map_err(|e| Error::from(e).context(format!("writing {}", staged.display())))?;
        let linked = std::fs::hard_link(&staged, &journal.path);
        let _ = std::fs::remove_file(&staged);
        match linked {
            Ok(()) => Ok(journal),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = read(&journal.path)
                    .map(|other| format!(" (pid {})", other.pid))
                    .unwrap_or_default();
                Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("another strata process{holder} is working on '{vm}' right now"),
                )
                .with_hint("wait for it to finish, or pick another name"))
            }
            Err(e) => Err(Error::from(e).context(format!("writing {}", journal.path.display()))),
        }
    }

    fn save(&self) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    /// The DHCP reservation this journal's run made (or was about to make) on `network`.
    pub(super) fn reserved(&self, network: &str) -> Option<&DhcpHost> {
        self.steps.iter().find_map(|step| match step {
            Undo::Reservation { network: on, host } if on == network => Some(host),
            _ => None,
        })
    }

    /// Record the undo of a step about to be taken.
    pub(super) fn push(&mut self, undo: Undo) -> Result<()> {
        self.steps.push(undo);
        self.save()
    }

    pub(super) fn commit(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Carry out every step, newest first; every step is a no-op when its object is gone.
    /// The journal stays on disk while any step failed, so a later run can finish it; after a
    /// domain that could not be removed, nothing older is touched.
    pub(super) fn rollback(self, lv: &Libvirt, paths: &Paths) -> Vec<String> {
        let mut problems = Vec::new();
        // A libvirtd that went away is waited for once; after that the other steps are tried
        // once each, and what fails stays journaled for the next strata command.
        let mut libvirt_gone = false;
        for step in self.steps.iter().rev() {
            let done = if libvirt_gone {
                undo(lv, paths, step)
            } else {
                lv.resilient(|| undo(lv, paths, step))
            };
            if let Err(e) = done {
                libvirt_gone |= e.kind() == ErrorKind::Unreachable && lv.went_away();
                problems.push(format!("{step:?}: {}", e.message()));
                // A domain that is still defined keeps what it uses: its disks, keys and
                // address stay until a later run removes the domain first.
                if matches!(step, Undo::Domain { .. }) {
                    break;
                }
            }
        }
        if problems.is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
        problems
    }
}

fn read(path: &Path) -> Option<Journal> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut journal: Journal = serde_json::from_str(&text).ok()?;
    journal.path = path.to_path_buf();
    Some(journal)
}

fn undo(lv: &Libvirt, paths: &Paths, step: &Undo) -> Result<()> {
    match step {
        Undo::Domain { name, uuid } => {
            if let Some(dom) = domain::find(&lv.conn(), name)? {
                // Only the domain this journal made or is removing, never a namesake.
                if dom.uuid_string()? == *uuid {
                    domain::undefine(&lv.conn(), name)?;
                }
            }
            Ok(())
        }
        Undo::VmDir { path } => remove_dir_if_present(path),
        Undo::File { path } => remove_pool_file(lv, paths, path),
        Undo::Reservation { network: net, host } => network::release(&lv.conn(), net, host),
        Undo::Volume { name } => {
            let pool_handle = pool::ensure_home(lv, paths)?;
            pool::delete_vm_volume(&pool_handle, name)
        }
        Undo::LegacyDataDisk { name, unless_vm } => {
            if domain::exists(&lv.conn(), unless_vm) {
                return Ok(());
            }
            let pool_handle = pool::ensure_home(lv, paths)?;
            pool::delete_vm_volume(&pool_handle, name)
        }
    }
}

/// Every journal on disk: creates and destroys that have not finished.
pub fn pending(paths: &Paths) -> Vec<PendingJournal> {
    let Ok(entries) = std::fs::read_dir(journal_dir(paths)) else {
        return Vec::new();
    };
    let mut found: Vec<PendingJournal> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("json"))
        .filter_map(|p| read(&p))
        .map(|j| PendingJournal {
            running: process_alive(j.pid, j.started),
            vm: j.vm,
            uri: j.uri,
            action: j.action,
            pid: j.pid,
        })
        .collect();
    found.sort_by(|a, b| a.vm.cmp(&b.vm));
    found
}

/// Finish the journals of `lv`'s URI whose process died (killed, power loss, a libvirtd that
/// went away): roll creates back, carry destroys through. Returns what it finished.
pub fn recover_abandoned(lv: &Libvirt, paths: &Paths) -> Result<Vec<PendingJournal>> {
    let mut finished = Vec::new();
    for p in pending(paths)
        .into_iter()
        .filter(|p| !p.running && p.uri == lv.uri)
    {
        if finish(lv, paths, &p.vm)? {
            finished.push(p);
        }
    }
    Ok(finished)
}

/// Finish the journal of `vm` if its process is gone; false when there is none to finish.
pub(super) fn finish(lv: &Libvirt, paths: &Paths, vm: &str) -> Result<bool> {
    let Some(journal) = read(&journal_path(paths, vm)) else {
        return Ok(false);
    };
    if journal.uri != lv.uri {
        // Its steps name that host's volumes and reservations: never carried out here. (Not
        // AlreadyExists: that says a live run holds the name, which a create waits out.)
        return Err(Error::new(
            ErrorKind::Failed,
            format!(
                "an unfinished {} of '{vm}' (pid {}) was on {}, not on {}",
                journal.action.as_str(),
                journal.pid,
                journal.uri,
                lv.uri
            ),
        )
        .with_hint(format!(
            "finish it there first: `strata --connect {} vm destroy {vm}`",
            journal.uri
        )));
    }
    if process_alive(journal.pid, journal.started) && journal.pid != std::process::id() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "strata process {} is still working on '{vm}' ({:?})",
                journal.pid, journal.action
            ),
        )
        .with_hint("wait for it to finish"));
    }
    let action = journal.action;
    let problems = journal.rollback(lv, paths);
    if !problems.is_empty() {
        let what = match action {
            Action::Create => "cleaning up the abandoned create",
            Action::Destroy => "finishing the interrupted destroy",
        };
        return Err(
            Error::failed(format!("{what} of '{vm}' failed: {}", problems.join("; "))).with_hint(
                "the next strata command tries again; `strata vm destroy NAME` does too",
            ),
        );
    }
    Ok(true)
}

/// Remove a file strata put in the pool directory and let libvirt forget it.
pub(super) fn remove_pool_file(lv: &Libvirt, paths: &Paths, path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::from(e).context(format!("removing {}", path.display()))),
    }
    if !lv.is_test_driver() {
        pool::refresh(&pool::ensure_home(lv, paths)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state folder of the test's own, and libvirt's in-process test driver.
    fn scratch(tag: &str) -> (PathBuf, Paths, Libvirt) {
        let dir = std::env::temp_dir().join(format!("{tag}{}", std::process::id()));
        let paths = Paths {
            state: dir.join("state"),
            cache: dir.join("cache"),
            remote_host: None,
        };
        (dir, paths, Libvirt::open("test:///default").unwrap())
    }

    #[test]
    fn a_second_journal_of_the_same_name_is_refused_while_the_first_runs() {
        let (dir, paths, lv) = scratch("strata-journal-");
        let first = Journal::begin(&lv, &paths, "a").unwrap();
        let err = Journal::begin(&lv, &paths, "a").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert!(
            err.message()
                .contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        assert!(Journal::begin(&lv, &paths, "b").is_ok());
        let listed = pending(&paths);
        assert_eq!(listed.len(), 2);
        assert!(listed
            .iter()
            .all(|p| p.running && p.action == Action::Create));
        first.commit();
        assert!(Journal::begin(&lv, &paths, "a").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_journal_is_finished_only_on_the_host_it_was_made_on() {
        let (dir, paths, lv) = scratch("strata-journal-uri-");
        // An abandoned create on another host (its process long gone), and one of an older
        // strata that wrote no URI: both name a volume a namesake here could have.
        let elsewhere = "qemu+ssh://root@hv2.example/system";
        std::fs::create_dir_all(journal_dir(&paths)).unwrap();
        for (vm, uri) in [("web", Some(elsewhere)), ("db", None)] {
            let mut journal = serde_json::json!({
                "vm": vm, "pid": u32::MAX, "action": "create",
                "steps": [{ "Volume": { "name": format!("vm_{vm}.qcow2") } }],
            });
            if let Some(uri) = uri {
                journal["uri"] = uri.into();
            }
            std::fs::write(journal_path(&paths, vm), journal.to_string()).unwrap();
        }
        assert!(recover_abandoned(&lv, &paths).unwrap().is_empty());
        let listed = pending(&paths);
        assert_eq!(
            listed.iter().map(|p| p.uri.as_str()).collect::<Vec<_>>(),
            ["qemu:///system", elsewhere]
        );
        let err = finish(&lv, &paths, "web").unwrap_err();
        assert!(err.message().contains(elsewhere), "{err}");
        assert!(
            err.hint()
                .unwrap_or_default()
                .contains(&format!("--connect {elsewhere} vm destroy web")),
            "{err}"
        );
        assert!(journal_path(&paths, "web").exists() && journal_path(&paths, "db").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
