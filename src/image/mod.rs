//! Building template images from Debian packages alone (debootstrap -> customise -> ext4 made
//! from the directory with mke2fs -d -> qcow2), registering them as read-only volumes in
//! strata's pool with their sha256, and recording what was built so an unchanged rebuild is a
//! no-op.

mod build;
mod import;
mod record;
pub mod seed;

pub(crate) use build::host_mirror;
pub use build::{build, BuildOutcome, RootfsStep};
pub use import::{import, import_or_same, remove, ImportRequest};
pub use record::{read_record, BuildRecord};
