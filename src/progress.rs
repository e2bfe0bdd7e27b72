//! Progress for multi-step commands: an indicatif spinner on a terminal, plain log lines
//! otherwise. Each stage's duration is kept so commands can print the time per stage. Work
//! done in parallel (a plan's VMs) shows one line per object in a `ProgressGroup`, and
//! timestamped lines when stderr is not a terminal, so a log of interleaved work can be read.

use crate::errln;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one stage took, as commands report it (`--output json` too).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StageTime {
    pub stage: String,
    pub seconds: f64,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    prefix: String,
    /// Plain lines carry the time of day (work in parallel).
    timestamped: bool,
    current: Mutex<Option<(String, Instant)>>,
    done: Mutex<Vec<(String, Duration)>>,
}

/// One object's spinner line: "⠋ prefix: stage (elapsed)".
fn spinner(bar: ProgressBar, prefix: &str) -> ProgressBar {
    if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_prefix(prefix.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

impl Progress {
    /// A spinner when stderr is a terminal, plain "prefix: stage" lines otherwise.
    pub fn new(prefix: &str) -> Progress {
        let bar = std::io::stderr()
            .is_terminal()
            .then(|| spinner(ProgressBar::new_spinner(), prefix));
        Progress {
            bar,
            prefix: prefix.to_string(),
            timestamped: false,
            current: Mutex::new(None),
            done: Mutex::new(Vec::new()),
        }
    }

    /// Finish the current stage (recording its time) and start `name`.
    pub fn stage(&self, name: &str) {
        self.finish_current();
        if let Ok(mut current) = self.current.lock() {
            *current = Some((name.to_string(), Instant::now()));
        }
        match &self.bar {
            Some(bar) => bar.set_message(name.to_string()),
            None => self.plain(&format!("{}: {name}", self.prefix)),
        }
    }

    fn plain(&self, line: &str) {
        if self.timestamped {
            errln!("{} {line}", crate::units::now_rfc3339());
        } else {
            errln!("{line}");
        }
    }

    fn finish_current(&self) {
        let finished = self.current.lock().ok().and_then(|mut c| c.take());
        if let (Some((name, start)), Ok(mut done)) = (finished, self.done.lock()) {
            done.push((name, start.elapsed()));
        }
    }

    /// End the last stage, clear the spinner, and return every stage with its duration.
    pub fn finish(&self) -> Vec<(String, Duration)> {
        self.finish_current();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.done.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// `finish`, as report rows.
    pub fn stage_times(&self) -> Vec<StageTime> {
        self.finish()
            .into_iter()
            .map(|(stage, took)| StageTime {
                stage,
                seconds: took.as_secs_f64(),
            })
            .collect()
    }

    /// How far the current stage is ("45% of 418 MiB"): beside the stage on a terminal;
    /// without one, only every quarter of the way, so a log is not flooded.
    pub fn detail(&self, text: &str, quarter: Option<u8>) {
        let stage = self
            .current
            .lock()
            .ok()
            .and_then(|c| c.as_ref().map(|(name, _)| name.clone()))
            .unwrap_or_default();
        match (&self.bar, quarter) {
            (Some(bar), _) => bar.set_message(format!("{stage}: {text}")),
            (None, Some(_)) => self.plain(&format!("{}: {stage}: {text}", self.prefix)),
            (None, None) => {}
        }
    }

    /// Print a line without tearing the spinner.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => self.plain(line),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Lines of progress for work done in parallel: one spinner per object under each other on a
/// terminal (with a total line), timestamped plain lines otherwise.
pub struct ProgressGroup {
    multi: Option<MultiProgress>,
    total: Option<ProgressBar>,
}

impl ProgressGroup {
    /// `what` names the whole (e.g. "plan lab"); its line shows the total elapsed time.
    pub fn new(what: &str) -> ProgressGroup {
        let multi = std::io::stderr().is_terminal().then(MultiProgress::new);
        let total = multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            if let Ok(style) = ProgressStyle::with_template("{prefix}: {msg} ({elapsed} in all)") {
                bar.set_style(style);
            }
            bar.set_prefix(what.to_string());
            bar.enable_steady_tick(Duration::from_millis(500));
            bar
        });
        ProgressGroup { multi, total }
    }

    /// A line for one object (e.g. "vm web-1").
    pub fn line(&self, prefix: &str) -> Progress {
        let bar = self.multi.as_ref().map(|multi| {
            let bar = match &self.total {
                Some(total) => multi.insert_before(total, ProgressBar::new_spinner()),
                None => multi.add(ProgressBar::new_spinner()),
            };
            spinner(bar, prefix)
        });
        Progress {
            bar,
            prefix: prefix.to_string(),
            timestamped: true,
            current: Mutex::new(None),
            done: Mutex::new(Vec::new()),
        }
    }

    /// Say how the whole is going (the total line; a plain line without a terminal).
    pub fn status(&self, message: &str) {
        match &self.total {
            Some(total) => total.set_message(message.to_string()),
            None => errln!("{} {message}", crate::units::now_rfc3339()),
        }
    }

    /// Print a line above the spinners.
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None => errln!("{} {line}", crate::units::now_rfc3339()),
        }
    }
}

impl Drop for ProgressGroup {
    fn drop(&mut self) {
        if let Some(total) = &self.total {
            total.finish_and_clear();
        }
    }
}
