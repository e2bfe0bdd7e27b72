//! Service containers in the VMs: stack files (TOML) naming container-templates with
//! parameters, rendered into container requests and carried out through bollard over the SSH
//! tunnel: images, networks, volumes, containers in dependency order, health before
//! dependents; `up` again with nothing changed changes nothing.

pub mod apply;
pub mod bounds;
pub mod container;
pub mod context;
pub mod explained;
pub mod file;
pub mod images;
pub mod launch;
pub mod objects;
pub mod on_swarm;
pub mod order;
pub mod resolve;
pub mod service_spec;
pub mod status;
pub mod survey;

pub use apply::{converge, UpOptions, UpReport};
pub use file::StackFile;
pub use resolve::{resolve, validate};
pub use status::{down, logs, ps, DownReport};
pub use survey::survey;
