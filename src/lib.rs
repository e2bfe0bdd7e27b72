//! strata: clone libvirt VMs from templates, install Docker in them, check the
//! libvirtd/Docker conflicts, and run service stacks. The layers, bottom up, each importing
//! only those below it (docs/architecture.md; tests/layers.rs enforces it):
//! shared pieces (error, units, digest, state, template, ...) <- host <- vm <- image, guest
//! <- engine, check, stack (siblings) <- lifecycle (the assembly layer) <- plan <- cli.

// Output goes through `console`, which cannot panic on a closed pipe; tests may print.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod atomic_write;
pub mod check;
pub mod cli;
pub mod command;
pub mod console;
pub mod digest;
pub mod engine;
pub mod error;
pub mod explain;
pub mod fuzz;
pub mod guest;
pub mod host;
pub mod image;
pub mod interrupt;
pub mod lifecycle;
pub mod names;
pub mod plan;
pub mod progress;
pub mod ssh_exec;
pub mod stack;
pub mod state;
pub mod swarm;
pub mod template;
pub mod units;
pub mod vm;
