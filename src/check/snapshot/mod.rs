//! What the checks read, gathered once per run before any verdict: one snapshot of the host
//! and one of each guest (and, for swarm.ports, the probes between guests). Each fact is a Result whose error says why it could not be read;
//! the verdicts are pure functions of these snapshots.

pub mod guest;
pub mod host;
pub mod reach;

pub use guest::{GuestSnapshot, StorageExpectation};
pub use host::HostSnapshot;
