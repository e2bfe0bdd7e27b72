//! Docker inside a guest: the guest's facts, the storage-driver decision, the offline package
//! bundle, Docker's address ranges, daemon.json, storage preparation, install and verification.

pub mod addresses;
pub mod bake;
pub mod bundle;
pub mod config;
pub mod decision;
pub mod facts;
pub mod info;
pub mod install;
pub mod scripts;
pub mod verify;
