//! Files of this machine kept in strata's pool on a remote host (a template's image, kernel and
//! initrd; an engine's package bundle): sent through libvirt's stream under a staging name,
//! their sha256 computed on the host and compared before they take their name there,
//! read-only, with the verified sum stamped beside them (size, mtime and inode), so that a file
//! already there is recognised without hashing it again and never sent twice.

use crate::error::{Error, Result};
use crate::host::remote::Login;
use crate::progress::Progress;
use crate::ssh_exec::{exec, run_checked, sh_c, sh_quote};
use crate::state::Paths;
use crate::units::format_size;
use crate::vm::{pool, upload, Libvirt};
use ssh2::Session;
use std::path::{Path, PathBuf};
use std::time::Duration;
use virt::connect::Connect;
use virt::storage_pool::StoragePool;

/// A file of this machine and the volume it is on a remote host.
pub struct HostFile {
    pub volume: String,
    pub local: PathBuf,
    pub sha256: String,
}

/// Refuse before sending `bytes` into a pool that has less room (a transfer cut short by a
/// full disk would only be deleted again).
pub fn refuse_without_room(pool_handle: &StoragePool, bytes: u64, host: &str) -> Result<()> {
    let available = pool_handle.info()?.available;
    if bytes <= available {
        return Ok(());
    }
    Err(Error::failed(format!(
        "strata's pool on {host} has {} free, and {} are to be sent",
        format_size(available),
        format_size(bytes)
    ))
    .with_hint(format!(
        "free space under {} on {host}; nothing was sent",
        pool::REMOTE_POOL_DIR
    )))
}

/// One upload per host at a time: the lock's name.
pub fn upload_lock(login: &Login) -> String {
    format!("upload to {}", login.display())
}

/// Make sure `file` is in strata's pool on `lv`'s remote host (`login`), sending it when the
/// host lacks it or holds other bytes under its name; the path it has there.
pub fn ensure_on_host(
    lv: &Libvirt,
    login: &Login,
    paths: &Paths,
    file: &HostFile,
    progress: &Progress,
) -> Result<PathBuf> {
    let host = login.display();
    paths.with_named_lock(
        &upload_lock(login),
        &|| progress.stage(&format!("waiting for another upload to {host}")),
        || {
            let session = login.connect(Duration::from_secs(15))?;
            let pool_handle = pool::ensure_remote(&lv.conn())?;
            let dir = pool::dir_of(&pool_handle)?;
            let there = dir.join(&file.volume);
            if stamped_sha256_on_host(&session, &there)?.as_deref() != Some(file.sha256.as_str()) {
                refuse_without_room(&pool_handle, file_len(&file.local), &host)?;
                send_verified(&lv.conn(), &session, &pool_handle, &dir, file, progress)?;
                pool::refresh(&pool_handle)?;
            }
            Ok(there)
        },
    )
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Send one file under a staging name (which libvirt does not list), check its sha256 on the
/// host, then give it its name there, read-only, and stamp the verified sum beside it.
pub fn send_verified(
    conn: &Connect,
    session: &Session,
    pool_handle: &StoragePool,
    dir: &Path,
    file: &HostFile,
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
        conn,
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

/// The file beside a kept file on the host that keeps its verified sha256 with the
/// size, mtime and inode it had then (a name libvirt does not list).
pub fn stamp_path(path: &Path) -> PathBuf {
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

/// The sha256 of a kept file on the host, None when there is none: the stamp's when the
/// file still has the size, mtime and inode it had when it was verified (a re-run then hashes
/// nothing), else computed there and stamped anew.
pub fn stamped_sha256_on_host(session: &Session, path: &Path) -> Result<Option<String>> {
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
