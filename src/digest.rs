//! sha256 digests as `sha256sum` prints them (lowercase hex): of files streamed from disk
//! (template images, image tarballs) and of bytes in memory (daemon.json, build contexts,
//! container configs). Below every layer, so that none of them reaches into another for a
//! checksum. (A template recipe's hash, fed piece by piece, is image/build.rs's own.)

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// Stream a file through sha256 and return the lowercase hex digest.
pub fn sha256_file(path: &Path) -> Result<String> {
    let reading = |e: std::io::Error| Error::from(e).context(format!("reading {}", path.display()));
    let mut file = std::fs::File::open(path).map_err(reading)?;
    sha256_read(&mut file).map_err(reading)
}

/// Stream what `reader` gives (an already opened, already checked file) through sha256.
pub fn sha256_read(reader: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// sha256 of bytes in memory.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_sha256sum() {
        // `printf abc | sha256sum`
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_bytes(b"abc"), abc);
        let file = std::env::temp_dir().join(format!("strata-digest-{}", std::process::id()));
        std::fs::write(&file, b"abc").unwrap();
        assert_eq!(sha256_file(&file).unwrap(), abc);
        std::fs::remove_file(&file).unwrap();
        assert!(sha256_file(&file).is_err());
    }
}
