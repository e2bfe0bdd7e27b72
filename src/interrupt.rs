//! Ctrl-C and SIGTERM become a flag that long steps poll, so a create that is interrupted
//! unwinds through its rollback instead of dying with half its objects left behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Install the handlers (once, at start-up).
pub fn install() {
    let flag = FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
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
