//! Ctrl-C and SIGTERM become a flag that long steps poll, so a create that is interrupted
//! unwinds through its rollback instead of dying with half its objects left behind. Only
//! commands that poll the flag install it (the others die on the signal as usual, and
//! converge on their next run); a second signal ends even those at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Install the handlers; for commands that poll `check` while they work.
pub fn install() {
    let flag = FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so it sees the flag as the earlier signal left it.
        let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(flag));
        let _ = signal_hook::flag::register(signal, Arc::clone(flag));
    }
}

/// Has the user asked us to stop?
pub fn requested() -> bool {
    FLAG.get()
        .map(|f| f.load(Ordering::SeqCst))
        .unwrap_or(false)
}

/// Err(Interrupted) if a stop was requested.
pub fn check() -> crate::error::Result<()> {
    if requested() {
        Err(crate::error::Error::interrupted())
    } else {
        Ok(())
    }
}
