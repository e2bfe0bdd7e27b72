//! How much work this machine can take at once: its cores and the memory it has free, for
//! choosing how many VMs a plan makes in parallel.

use procfs::Current;

/// Cores this process may run on, and memory available now (bytes; None when unreadable).
pub struct Capacity {
    pub cores: usize,
    pub available_memory: Option<u64>,
}

pub fn read() -> Capacity {
    Capacity {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        available_memory: procfs::Meminfo::current()
            .ok()
            .and_then(|m| m.mem_available),
    }
}

/// How many VMs to make at once: one per core (a booting guest keeps a core busy, all the
/// more under TCG), no more than fit in the free memory with `per_vm` bytes each, at least one.
pub fn parallel_vms(capacity: &Capacity, per_vm: u64) -> usize {
    let by_memory = match capacity.available_memory {
        Some(free) if per_vm > 0 => (free / per_vm) as usize,
        _ => capacity.cores,
    };
    capacity.cores.min(by_memory).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_bound_and_memory_bounds_and_never_zero() {
        let gib = 1u64 << 30;
        let cap = |cores, free| Capacity {
            cores,
            available_memory: free,
        };
        assert_eq!(parallel_vms(&cap(2, Some(24 * gib)), gib), 2);
        assert_eq!(parallel_vms(&cap(16, Some(3 * gib)), gib), 3);
        assert_eq!(parallel_vms(&cap(8, Some(gib / 2)), gib), 1);
        assert_eq!(parallel_vms(&cap(4, None), gib), 4);
    }
}
