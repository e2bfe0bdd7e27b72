//! A local file into a volume of a pool on any libvirt host, through libvirt's stream API
//! (virStorageVolUpload): the way onto a remote host's disk, over the connection libvirt
//! already has, in chunks, with the bytes sent reported as they go.

use crate::error::{Context, Error, Result};
use crate::vm::xml;
use std::io::Read;
use std::path::Path;
use virt::connect::Connect;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

/// Bytes read from the file and handed to libvirt at a time.
const CHUNK: usize = 4 << 20;

/// Create the volume `name` (raw, 0600, as large as the file) in `pool` and send `source`
/// into it; `sent(bytes_so_far, total)` is called after every chunk. A failure aborts the
/// stream and deletes the volume it made.
pub fn upload_file(
    conn: &Connect,
    pool: &StoragePool,
    name: &str,
    source: &Path,
    sent: &dyn Fn(u64, u64),
) -> Result<StorageVol> {
    let mut file = std::fs::File::open(source).context(format!("opening {}", source.display()))?;
    let total = file.metadata()?.len();
    upload_from(conn, pool, name, &mut file, total, sent)
        .map_err(|e| e.context(format!("uploading {} as {name}", source.display())))
}

/// `upload_file` for bytes held in memory (a small secret that never touches this machine's
/// disk on its way).
pub fn upload_bytes(
    conn: &Connect,
    pool: &StoragePool,
    name: &str,
    bytes: &[u8],
) -> Result<StorageVol> {
    upload_from(
        conn,
        pool,
        name,
        &mut &bytes[..],
        bytes.len() as u64,
        &|_, _| {},
    )
    .map_err(|e| e.context(format!("uploading the volume {name}")))
}

fn upload_from(
    conn: &Connect,
    pool: &StoragePool,
    name: &str,
    source: &mut dyn Read,
    total: u64,
    sent: &dyn Fn(u64, u64),
) -> Result<StorageVol> {
    let volume_xml = xml::render(
        xml::UPLOAD_VOLUME,
        &serde_json::json!({ "name": name, "capacity": total }),
    )?;
    let volume = StorageVol::create_xml(pool, &volume_xml, 0)
        .map_err(|e| Error::from(e).context(format!("creating the volume {name}")))?;
    match send(conn, &volume, source, total, sent) {
        Ok(()) => Ok(volume),
        Err(e) => {
            let _ = volume.delete(0);
            Err(e)
        }
    }
}

fn send(
    conn: &Connect,
    volume: &StorageVol,
    file: &mut dyn Read,
    total: u64,
    sent: &dyn Fn(u64, u64),
) -> Result<()> {
    let stream = Stream::new(conn, 0)?;
    volume.upload(&stream, 0, total, 0)?;
    let mut buffer = vec![0u8; CHUNK];
    let mut done = 0u64;
    let copied = (|| -> Result<()> {
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            let mut chunk = &buffer[..read];
            while !chunk.is_empty() {
                // A blocking stream takes some bytes or fails; it never asks to come back.
                let taken = usize::try_from(stream.send(chunk)?)
                    .map_err(|_| Error::failed("libvirt's stream refused the data"))?;
                chunk = &chunk[taken..];
            }
            done += read as u64;
            sent(done, total);
        }
        if done != total {
            return Err(Error::failed(format!(
                "the file changed while it was sent ({done} of {total} bytes)"
            )));
        }
        Ok(())
    })();
    match copied {
        Ok(()) => Ok(stream.finish()?),
        Err(e) => {
            let _ = stream.abort();
            Err(e)
        }
    }
}
