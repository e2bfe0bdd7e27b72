//! A template built on this machine, onto a remote hypervisor (`--connect qemu+ssh://…`): its
//! image, and the kernel and initrd of a direct-boot template, go into the host's strata pool
//! through libvirt's stream API, one upload per host at a time (a lock here, so parallel runs
//! never race). Each file is sent under a staging name, its sha256 computed on the host and
//! compared with the build's before it takes the template's name; a file already there with
//! the same sha256 is not sent again; a template that VMs on that host are cloned from is
//! never replaced under them.

use crate::error::{Error, Result};
use crate::host::remote::Login;
use crate::image::BuildRecord;
use crate::progress::Progress;
use crate::ssh_exec::{run_checked, sh_quote};
use crate::state::Paths;
use crate::vm::remote_file::{self, HostFile};
use crate::vm::{domain, pool, Libvirt};
use std::time::Duration;

/// One file of the template on the remote host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Placed {
    pub volume: String,
    pub bytes: u64,
    /// Sent now (false: the host already had these bytes).
    pub sent: bool,
}

/// The remote volume names of a template's kernel and initrd.
pub fn boot_file_volumes(template: &str) -> [String; 2] {
    [
        format!("template-{template}.vmlinuz"),
        format!("template-{template}.initrd"),
    ]
}

fn files_of(paths: &Paths, template: &str, record: &BuildRecord) -> Result<Vec<HostFile>> {
    let mut files = vec![HostFile {
        volume: record.volume.clone(),
        local: paths.pool_dir().join(&record.volume),
        sha256: record.sha256.clone(),
    }];
    let [kernel_volume, initrd_volume] = boot_file_volumes(template);
    for (volume, local) in [
        (kernel_volume, &record.kernel),
        (initrd_volume, &record.initrd),
    ] {
        if let Some(local) = local {
            files.push(HostFile {
                volume,
                sha256: crate::digest::sha256_file(local)?,
                local: local.clone(),
            });
        }
    }
    Ok(files)
}

/// Put `template` (built here, `record`) on the remote host behind `remote`.
pub fn upload(
    remote: &Libvirt,
    login: &Login,
    paths: &Paths,
    template: &str,
    record: &BuildRecord,
    progress: &Progress,
) -> Result<Vec<Placed>> {
    let files = files_of(paths, template, record)?;
    let host = login.display();
    paths.with_named_lock(
        &remote_file::upload_lock(login),
        &|| progress.stage(&format!("waiting for another upload to {host}")),
        || {
            progress.stage(&format!("connecting to {host}"));
            let session = login.connect(Duration::from_secs(15))?;
            let pool_handle = pool::ensure_remote(&remote.conn())?;
            let dir = pool::dir_of(&pool_handle)?;
            let mut changed = Vec::new();
            for file in &files {
                let there = remote_file::stamped_sha256_on_host(&session, &dir.join(&file.volume))?;
                if there.as_deref() != Some(file.sha256.as_str()) {
                    changed.push((file, there.is_some()));
                }
            }
            if changed.iter().any(|(_, replaces)| *replaces) {
                domain::refuse_while_used(
                    &remote.conn(),
                    &format!("template '{template}' on {host}"),
                    |vm| vm.template == template,
                )?;
            }
            let mut placed: Vec<Placed> = files
                .iter()
                .filter(|f| !changed.iter().any(|(c, _)| c.volume == f.volume))
                .map(|f| Placed {
                    volume: f.volume.clone(),
                    bytes: remote_file::file_len(&f.local),
                    sent: false,
                })
                .collect();
            let needed: u64 = changed
                .iter()
                .map(|(file, _)| remote_file::file_len(&file.local))
                .sum();
            remote_file::refuse_without_room(&pool_handle, needed, &host)?;
            for (file, _) in changed {
                remote_file::send_verified(
                    &remote.conn(),
                    &session,
                    &pool_handle,
                    &dir,
                    file,
                    progress,
                )?;
                placed.push(Placed {
                    volume: file.volume.clone(),
                    bytes: remote_file::file_len(&file.local),
                    sent: true,
                });
            }
            pool::refresh(&pool_handle)?;
            Ok(placed)
        },
    )
}

/// Remove `template`'s files from the remote host behind `remote` (refused while VMs there are
/// cloned from it); the names of the volumes removed.
pub fn remove(remote: &Libvirt, login: &Login, template: &str) -> Result<Vec<String>> {
    crate::names::check_object_name("template", template)?;
    domain::refuse_while_used(&remote.conn(), &format!("template '{template}'"), |vm| {
        vm.template == template
    })?;
    let not_there = || {
        Error::not_found(format!("template '{template}' is not on {}", remote.uri))
            .with_hint("`strata --connect URI template build NAME` puts it there")
    };
    let Ok(pool_handle) = remote
        .conn()
        .lookup_storage_pool_by_name(pool::REMOTE_POOL_NAME)
    else {
        return Err(not_there());
    };
    let mut removed = Vec::new();
    let dir = pool::dir_of(&pool_handle)?;
    let [kernel, initrd] = boot_file_volumes(template);
    let volumes = [pool::template_volume_name(template), kernel, initrd];
    for volume in &volumes {
        if let Some(found) = pool::find_volume(&pool_handle, volume) {
            found.delete(0)?;
            removed.push(volume.clone());
        }
    }
    // Their verified sums go with them.
    let stamps: Vec<String> = volumes
        .iter()
        .map(|v| sh_quote(&remote_file::stamp_path(&dir.join(v)).to_string_lossy()))
        .collect();
    let session = login.connect(Duration::from_secs(15))?;
    run_checked(&session, &format!("rm -f -- {}", stamps.join(" ")))?;
    if removed.is_empty() {
        return Err(not_there());
    }
    Ok(removed)
}
