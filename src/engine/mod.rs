//! Docker inside a guest, as a library of steps on a guest's route: the storage-driver
//! decision, Docker's address ranges, the offline package bundle, daemon.json, storage
//! preparation, install and verification, `engine info`, the log-rotation fix, and Docker
//! baked into a template's root filesystem. It starts from the guest's facts (guest/facts) and
//! never calls check or stack; lifecycle composes it with them.

pub mod addresses;
pub mod bake;
pub mod bundle;
pub mod config;
pub mod decision;
pub mod info;
pub mod install;
pub mod live_restore;
pub mod log_rotation;
pub mod scripts;
pub mod verify;
