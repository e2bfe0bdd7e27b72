//! Service containers in the VMs: stack files (TOML) naming container-templates with
//! parameters, rendered into container requests and carried out through bollard over the SSH
//! tunnel: images, networks, volumes, containers in dependency order, health before
//! dependents; `up` again with nothing changed changes nothing.

pub mod apply;
pub mod bounds;
pub mod container;
pub mod context;
pub mod file;
pub mod images;
pub mod objects;
pub mod order;
pub mod resolve;
pub mod status;

pub use apply::{up, UpOptions, UpReport};
pub use file::StackFile;
pub use resolve::validate;
pub use status::{down, logs, ps, DownReport};
