//! Building template images from Debian packages alone (debootstrap -> customise -> ext4 made
//! from the directory with mke2fs -d -> qcow2), registering them as read-only volumes in
//! strata's pool with their sha256, and recording what was built so an unchanged rebuild is a
//! no-op.

mod build;
mod import;
mod record;
pub mod seed;

pub(crate) use build::host_mirror;
pub use build::{build, BuildOutcome};
pub use import::{import, remove, ImportRequest};
pub use record::{read_record, BuildRecord};

/// Stream a file through sha256 and return the lowercase hex digest.
pub fn sha256_file(path: &std::path::Path) -> crate::error::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .map_err(|e| crate::error::Error::from(e).context(format!("reading {}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// sha256 of bytes in memory, lowercase hex (as `sha256sum` prints it).
pub fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}
