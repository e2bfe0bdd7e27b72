//! Facts about the machine strata runs on: which accelerator qemu can use, which subnets are
//! already taken (host routes, Docker networks), which user libvirt runs qemu as, and whether
//! that user can reach strata's files.

pub mod accel;
pub mod docker;
pub mod listeners;
pub mod qemu_user;
pub mod routes;
