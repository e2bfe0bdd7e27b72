//! Everything strata prints to its stdout and stderr goes through here. `println!` panics when
//! the write fails (a reader that went away, as in `strata vm create x | head -3`, a closed
//! stderr, a full disk), and a panic in the middle of a create skips its rollback and leaves
//! half a VM behind. Output is a report about the work, never a reason to abandon it, so write
//! errors are dropped here: the command finishes, and its exit code stays its own.
//!
//! This relies on SIGPIPE being ignored, which the Rust runtime sets up before `main`; with
//! the default action the kernel would end the process on the first write to a closed pipe.

use std::fmt;
use std::io::Write;

/// Write `text` to `sink`, dropping any error (see the module comment for why).
pub fn write_ignoring_errors(mut sink: impl Write, text: fmt::Arguments) {
    let _ = sink.write_fmt(text);
    let _ = sink.flush();
}

/// Write raw `bytes` (a container's log, not always UTF-8) to stdout or stderr, dropping any
/// error as above.
pub fn bytes(to_stderr: bool, bytes: &[u8]) {
    fn put(mut sink: impl Write, bytes: &[u8]) {
        let _ = sink.write_all(bytes);
        let _ = sink.flush();
    }
    if to_stderr {
        put(std::io::stderr().lock(), bytes);
    } else {
        put(std::io::stdout().lock(), bytes);
    }
}

#[doc(hidden)]
pub fn stdout(text: fmt::Arguments) {
    write_ignoring_errors(std::io::stdout().lock(), text);
}

#[doc(hidden)]
pub fn stderr(text: fmt::Arguments) {
    write_ignoring_errors(std::io::stderr().lock(), text);
}

/// `print!` that never panics.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::console::stdout(format_args!($($arg)*))
    };
}

/// `println!` that never panics.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::console::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    () => {
        $crate::console::stderr(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::console::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        drop(read_end);
        let mut sink = File::from(write_end);
        // The setup is right only if the plain write does fail with EPIPE (and was not killed
        // by SIGPIPE: the test harness ignores it as strata's main does).
        let plain = sink.write_all(b"first\n").unwrap_err();
        assert_eq!(plain.kind(), std::io::ErrorKind::BrokenPipe);
        write_ignoring_errors(&mut sink, format_args!("second {}\n", 2));
        write_ignoring_errors(&sink, format_args!("third\n"));
    }

    #[test]
    fn writes_what_it_is_given() {
        let mut sink = Vec::new();
        write_ignoring_errors(&mut sink, format_args!("{} and {:>3}", "one", 2));
        assert_eq!(sink, b"one and   2");
    }
}
