//! Service containers in the VMs: stack files (TOML) naming container-templates with
//! parameters, rendered into container requests and carried out through bollard over the SSH
//! tunnel: images, networks, volumes, containers in dependency order, health before
//! dependents; `up` again with nothing changed changes nothing.

pub mod apply;
pub mod container;
pub mod context;
pub mod file;
pub mod images;
pub mod order;

pub use apply::{down, logs, ps, up, validate, UpOptions, UpReport};
pub use file::StackFile;
