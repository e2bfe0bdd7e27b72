//! Plans: a whole host in one file (networks, VMs, Docker in them, their stacks), composed
//! above the lifecycle layer, which makes one VM, one engine, one stack at a time. This layer
//! reads plan files and tells what applying one would change (a pure diff of the plan against
//! what libvirt has); `plan show/apply/destroy/rebuild` come next (issue 13).

pub mod apply;
pub mod destroy;
pub mod diff;
pub mod file;
pub mod list;
pub mod observe;
pub mod show;

pub use diff::{diff, summary, Action, ObjectKind, SeenNetwork, SeenVm, Step, VmDefaults};
pub use file::{Known, Plan, PlanEngine, PlanNetwork, PlanStack, PlanVm, TemplateKind};
