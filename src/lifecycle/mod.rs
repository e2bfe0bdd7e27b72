//! THE ASSEMBLY LAYER: one readable top-down function per pipeline, composing the steps the
//! layers below offer, with the journal and rollback that make them safe to interrupt:
//! `vm create` and `vm destroy` (vm + guest), `engine install` (engine on a guest's route),
//! `template build` (image, with Docker baked in by engine; onto a remote host by upload),
//! `up` (stack, with the preflight checks of check first), swarms across VMs (swarm, with
//! vm's networks, host's routes and check's preflight), and `check` itself (check's verdicts, with engine's fix for a
//! guest). Nothing below this layer calls a sibling; what combines siblings is here.

pub mod checks;
mod create_plan;
pub mod engine_install;
mod first_boot;
mod journal;
mod net_destroy;
pub mod stack_swarm;
pub mod stack_up;
pub mod swarm;
pub mod template_build;
pub mod template_upload;
mod vm_create;
mod vm_create_explain;
mod vm_destroy;

pub use journal::{pending, recover_abandoned, Action, PendingJournal};
pub use net_destroy::{destroy_network, NetDestroyed};
pub use stack_up::down as stack_down;
pub use vm_create::{create, wait_until_ready, CreateRequest, Created};
pub use vm_create_explain::dry_run as dry_run_create;
pub use vm_destroy::{destroy, destroy_with, DataDisk};
