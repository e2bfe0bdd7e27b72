//! strata: clone libvirt VMs from templates, install Docker in them, check the
//! libvirtd/Docker conflicts, and run service stacks. The layers, bottom up:
//! host <- vm <- guest <- lifecycle <- cli (see DESIGN.md).

pub mod check;
pub mod cli;
pub mod command;
pub mod engine;
pub mod error;
pub mod fuzz;
pub mod guest;
pub mod host;
pub mod image;
pub mod interrupt;
pub mod lifecycle;
pub mod progress;
pub mod stack;
pub mod state;
pub mod template;
pub mod units;
pub mod vm;
