//! Plans: a whole host in one file (networks, VMs, Docker in them, their stacks), composed
//! above the lifecycle layer, which makes one VM, one engine, one stack at a time. This layer
//! reads plan files; showing, applying and destroying a plan come next (issue 13).

pub mod file;

pub use file::{Known, Plan, PlanEngine, PlanNetwork, PlanStack, PlanVm, TemplateKind};
