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
use crate::ssh_exec::{exec, run_checked, sh_c, sh_quote};
use crate::state::Paths;
use crate::units::format_size;
use crate::vm::{domain, pool, upload, Libvirt};
use ssh2::Session;
use std::path::{Path, PathBuf};
use std::time::Duration;
use virt::storage_pool::StoragePool;

/// One file of the template on the remote host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Placed {
    pub volume: String,
    pub bytes: u64,
    /// Sent now (false: the host already had these bytes).
    pub sent: bool,
}

/// A file of a built template and the volume it becomes on a remote host.
struct TemplateFile {
    volume: String,
    local: PathBuf,
    sha256: String,
}

/// The remote volume names of a template's kernel and initrd.
pub fn boot_file_volumes(template: &str) -> [String; 2] {
    [
        format!("template-{template}.vmlinuz"),
        format!("template-{template}.initrd"),
    ]
}

fn files_of(paths: &Paths, template: &str, record: &BuildRecord) -> Result<Vec<TemplateFile>> {
    let mut files = vec![TemplateFile {
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
            files.push(TemplateFile {
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
        &format!("upload to {host}"),
        &|| progress.stage(&format!("waiting for another upload to {host}")),
        || {
            progress.stage(&format!("connecting to {host}"));
            let session = login.connect(Duration::from_secs(15))?;
            let pool_handle = pool::ensure_at(
                &remote.conn(),
                pool::REMOTE_POOL_NAME,
                Path::new(pool::REMOTE_POOL_DIR),
            )?;
            let dir = pool::dir_of(&pool_handle)?;
            let mut changed = Vec::new();
            for file in &files {
                let there = stamped_sha256_on_host(&session, &dir.join(&file.volume))?;
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
                    bytes: file_len(&f.local),
                    sent: false,
                })
                .collect();
            for (file, _) in changed {
                send_one(remote, &session, &pool_handle, &dir, file, progress)?;
                placed.push(Placed {
                    volume: file.volume.clone(),
                    bytes: file_len(&file.local),
                    sent: true,
                });
            }
            pool::refresh(&pool_handle)?;
            Ok(placed)
        },
    )
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Send one file under a staging name (which libvirt does not list), check its sha256 on the
/// host, then give it the template's name, read-only.
fn send_one(
    remote: &Libvirt,
    session: &Session,
    pool_handle: &StoragePool,
    dir: &Path,
    file: &TemplateFile,
    progress: &Progress,
) -> Result<()> {
    let staged_name = format!(".{}.upload", file.volume);
    let staged = dir.join(&staged_name);
    let target = dir.join(&file.volume);
    // What an interrupted upload left under the staging name.
    run_checked(
        session,
        &format!("rm -f -- {}", sh_quote(&staged.to_string_lossy())),
    )?;
    let total = file_len(&file.local);
    progress.stage(&format!(
        "uploading {} ({})",
        file.volume,
        format_size(total)
    ));
    let last_quarter = std::cell::Cell::new(0u8);
    upload::upload_file(
        &remote.conn(),
        pool_handle,
        &staged_name,
        &file.local,
        &|done, total| {
            let quarter = (done.saturating_mul(4) / total.max(1)) as u8;
            let new_quarter = quarter > last_quarter.get();
            last_quarter.set(quarter);
            progress.detail(
                &format!("{}%", done.saturating_mul(100) / total.max(1)),
                new_quarter.then_some(quarter),
            );
        },
    )?;
    progress.stage(&format!("verifying {} on the host", file.volume));
    let there = sha256_on_host(session, &staged)?;
    if there.as_deref() != Some(file.sha256.as_str()) {
        let _ = run_checked(
            session,
            &format!("rm -f -- {}", sh_quote(&staged.to_string_lossy())),
        );
        return Err(Error::failed(format!(
            "{} arrived with sha256 {} instead of {}",
            file.volume,
            there.unwrap_or_else(|| "(none)".into()),
            file.sha256
        ))
        .with_hint("run the command again; the file is sent anew"));
    }
    let target_quoted = sh_quote(&target.to_string_lossy());
    run_checked(
        session,
        &sh_c(&format!(
            "chmod 0444 -- {staged} && mv -f -- {staged} {target_quoted} && {stamp}",
            staged = sh_quote(&staged.to_string_lossy()),
            stamp = write_stamp(&target, &file.sha256),
        )),
    )?;
    Ok(())
}

/// The file beside a template file on the host that keeps its verified sha256 with the
/// size, mtime and inode it had then (a name libvirt does not list).
fn stamp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.sha256"))
}

/// A shell command that records `sha256` as `path`'s verified sum, with its stat line.
fn write_stamp(path: &Path, sha256: &str) -> String {
    let stamp = sh_quote(&stamp_path(path).to_string_lossy());
    format!(
        "printf '%s\\n%s\\n' {sum} \"$(stat -c '%s %Y %i' -- {file})\" > {stamp}.new && mv -f -- {stamp}.new {stamp}",
        sum = sh_quote(sha256),
        file = sh_quote(&path.to_string_lossy()),
    )
}

/// The sha256 of a template file on the host, None when there is none: the stamp's when the
/// file still has the size, mtime and inode it had when it was verified (a re-run then hashes
/// nothing), else computed there and stamped anew.
fn stamped_sha256_on_host(session: &Session, path: &Path) -> Result<Option<String>> {
    let file = sh_quote(&path.to_string_lossy());
    let stamp = sh_quote(&stamp_path(path).to_string_lossy());
    let script = format!(
        "test -f {file} || exit 3; now=$(stat -c '%s %Y %i' -- {file}); \
         if [ -f {stamp} ] && [ \"$(sed -n 2p {stamp})\" = \"$now\" ]; then sed -n 1p {stamp}; exit 0; fi; \
         sum=$(sha256sum -- {file} | cut -d' ' -f1) && \
         printf '%s\\n%s\\n' \"$sum\" \"$now\" > {stamp}.new && mv -f -- {stamp}.new {stamp} && echo \"$sum\""
    );
    sum_from(session, path, &sh_c(&script))
}

/// The sha256 of `path` on the host, None when there is no such file.
fn sha256_on_host(session: &Session, path: &Path) -> Result<Option<String>> {
    let quoted = sh_quote(&path.to_string_lossy());
    sum_from(
        session,
        path,
        &format!("test -f {quoted} || exit 3; sha256sum -- {quoted}"),
    )
}

/// Run `script` (exit 3: no such file; else a sum first on its output) on the host.
fn sum_from(session: &Session, path: &Path, script: &str) -> Result<Option<String>> {
    let out = exec(session, script, false)?;
    match out.status {
        0 => Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .map(str::to_string)),
        3 => Ok(None),
        status => Err(Error::failed(format!(
            "sha256sum of {} on the host exited with {status}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
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
        .map(|v| sh_quote(&stamp_path(&dir.join(v)).to_string_lossy()))
        .collect();
    let session = login.connect(Duration::from_secs(15))?;
    run_checked(&session, &format!("rm -f -- {}", stamps.join(" ")))?;
    if removed.is_empty() {
        return Err(not_there());
    }
    Ok(removed)
}
