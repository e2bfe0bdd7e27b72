//! Files in a guest over SFTP: an upload that lands atomically (a temporary name, then a
//! rename) and a read that tells a missing file from a failure.

use crate::error::{Context, Error, Result};
use ssh2::Session;
use std::io::{Read, Write};
use std::path::Path;

/// Write `contents` to `remote` in the guest with `mode`, through a temporary name and a
/// rename, so a dropped connection never leaves a half-written file under the real name and
/// an existing file is replaced at once.
pub fn upload(session: &Session, contents: &mut dyn Read, remote: &str, mode: i32) -> Result<u64> {
    let sftp = session.sftp()?;
    let partial = format!("{remote}.strata-partial");
    let mut file = sftp
        .open_mode(
            Path::new(&partial),
            ssh2::OpenFlags::WRITE | ssh2::OpenFlags::CREATE | ssh2::OpenFlags::TRUNCATE,
            mode,
            ssh2::OpenType::File,
        )
        .context(format!("creating {partial} in the guest"))?;
    // Large writes let libssh2 keep many SFTP packets in flight; io::copy's 8 KiB buffer
    // waits for an acknowledgement per packet.
    let mut buf = vec![0u8; 1 << 20];
    let mut written = 0u64;
    loop {
        let n = contents.read(&mut buf)?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n])
            .context(format!("writing {remote} in the guest"))?;
        written += n as u64;
    }
    drop(file);
    // SFTP v3 (OpenSSH's) refuses to rename onto an existing file whatever flags are asked,
    // and libssh2 does not speak OpenSSH's posix-rename extension: mv(1) is rename(2), which
    // replaces the file atomically.
    let command = format!(
        "mv -f -- {} {}",
        super::ssh::sh_quote(&partial),
        super::ssh::sh_quote(remote)
    );
    super::ssh::run_checked(session, &command)
        .map_err(|e| e.context(format!("renaming {partial} to {remote} in the guest")))?;
    Ok(written)
}

/// A file's contents in the guest, or None when it does not exist.
pub fn read_file(session: &Session, remote: &str) -> Result<Option<Vec<u8>>> {
    let sftp = session.sftp()?;
    let mut file = match sftp.open(Path::new(remote)) {
        Ok(file) => file,
        Err(e) if e.code() == ssh2::ErrorCode::SFTP(2) => return Ok(None),
        Err(e) => return Err(Error::from(e).context(format!("opening {remote} in the guest"))),
    };
    let mut contents = Vec::new();
    file.read_to_end(&mut contents)
        .context(format!("reading {remote} in the guest"))?;
    Ok(Some(contents))
}
