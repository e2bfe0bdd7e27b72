//! The create journal: each undo step is written to disk before the step it undoes is taken,
//! so a failure, Ctrl-C, or even a killed process can be rolled back (the last by the next
//! strata run). Every undo is a no-op when its object is already gone.

use crate::error::{Error, ErrorKind, Result};
use crate::state::{remove_dir_if_present, Paths};
use crate::vm::network::{self, DhcpHost};
use crate::vm::{domain, pool, Libvirt};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One undo step, journaled before the step it undoes is carried out.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Undo {
    Volume { name: String },
    File { path: PathBuf },
    Reservation { network: String, host: DhcpHost },
    VmDir { path: PathBuf },
    Domain { name: String, uuid: String },
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Journal {
    vm: String,
    pid: u32,
    steps: Vec<Undo>,
    #[serde(skip)]
    path: PathBuf,
}

fn journal_dir(paths: &Paths) -> PathBuf {
    paths.state.join("journal")
}

impl Journal {
    /// Start the journal of a create. Made exclusively: two processes creating the same name
    /// must not share (and roll back) each other's steps.
    pub(super) fn begin(paths: &Paths, vm: &str) -> Result<Journal> {
        let dir = journal_dir(paths);
        paths.ensure_dir(&dir)?;
        let journal = Journal {
            vm: vm.to_string(),
            pid: std::process::id(),
            steps: Vec::new(),
            path: dir.join(format!("{vm}.json")),
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&journal.path)
        {
            Ok(mut file) => {
                use std::io::Write;
                file.write_all(&serde_json::to_vec(&journal)?)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("another strata process is creating '{vm}' right now"),
                )
                .with_hint("wait for it to finish, or pick another name"));
            }
            Err(e) => {
                return Err(Error::from(e).context(format!("writing {}", journal.path.display())))
            }
        }
        Ok(journal)
    }

    fn save(&self) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(&tmp, &self.path)?;
        Ok(())
    }

    /// Record the undo of a step about to be taken.
    pub(super) fn push(&mut self, undo: Undo) -> Result<()> {
        self.steps.push(undo);
        self.save()
    }

    pub(super) fn commit(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Undo every step, newest first; every undo is a no-op when its object is gone.
    pub(super) fn rollback(self, lv: &Libvirt, paths: &Paths) -> Vec<String> {
        let mut problems = Vec::new();
        for step in self.steps.iter().rev() {
            if let Err(e) = undo(lv, paths, step) {
                problems.push(format!("{step:?}: {e}"));
            }
        }
        if problems.is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
        problems
    }
}

fn undo(lv: &Libvirt, paths: &Paths, step: &Undo) -> Result<()> {
    match step {
        Undo::Domain { name, uuid } => {
            if let Ok(dom) = lv.conn.lookup_domain_by_name(name) {
                // Only the domain this create defined, never a namesake.
                if dom.uuid_string()? == *uuid {
                    domain::undefine(&lv.conn, name)?;
                }
            }
            Ok(())
        }
        Undo::VmDir { path } => remove_dir_if_present(path),
        Undo::File { path } => remove_pool_file(lv, paths, path),
        Undo::Reservation { network: net, host } => network::release(&lv.conn, net, host),
        Undo::Volume { name } => {
            let pool_handle = pool::ensure(&lv.conn, &paths.pool_dir())?;
            pool::delete_vm_volume(&pool_handle, name)
        }
    }
}

/// Roll back creates whose process died (killed, power loss). Returns the VMs cleaned.
pub fn recover_abandoned(lv: &Libvirt, paths: &Paths) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(journal_dir(paths)) else {
        return Ok(Vec::new());
    };
    let mut cleaned = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(mut journal) = serde_json::from_str::<Journal>(&text) else {
            continue;
        };
        let alive =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(journal.pid as i32), None).is_ok();
        if alive && journal.pid != std::process::id() {
            continue;
        }
        journal.path = path;
        let vm = journal.vm.clone();
        let problems = journal.rollback(lv, paths);
        if !problems.is_empty() {
            return Err(Error::failed(format!(
                "cleaning up the abandoned create of '{vm}' failed: {}",
                problems.join("; ")
            )));
        }
        cleaned.push(vm);
    }
    Ok(cleaned)
}

/// Remove a file strata put in the pool directory and let libvirt forget it.
pub(super) fn remove_pool_file(lv: &Libvirt, paths: &Paths, path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::from(e).context(format!("removing {}", path.display()))),
    }
    if !lv.is_test_driver() {
        pool::ensure(&lv.conn, &paths.pool_dir())?.refresh(0)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_create_of_the_same_name_is_refused_while_the_first_runs() {
        let dir = std::env::temp_dir().join(format!("strata-journal-{}", std::process::id()));
        let paths = Paths {
            state: dir.join("state"),
            cache: dir.join("cache"),
        };
        let first = Journal::begin(&paths, "a").unwrap();
        let err = Journal::begin(&paths, "a").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert!(Journal::begin(&paths, "b").is_ok());
        first.commit();
        assert!(Journal::begin(&paths, "a").is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
