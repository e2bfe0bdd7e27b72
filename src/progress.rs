//! Progress for multi-step commands: an indicatif spinner on a terminal, plain log lines
//! otherwise. Each stage's duration is kept so commands can print the time per stage.

use crate::errln;
use indicatif::{ProgressBar, ProgressStyle};
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
    current: Mutex<Option<(String, Instant)>>,
    done: Mutex<Vec<(String, Duration)>>,
}

impl Progress {
    /// A spinner when stderr is a terminal, plain "prefix: stage" lines otherwise.
    pub fn new(prefix: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix}: {msg} ({elapsed})")
            {
                bar.set_style(style);
            }
            bar.set_prefix(prefix.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            prefix: prefix.to_string(),
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
            None => errln!("{}: {name}", self.prefix),
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

    /// Print a line without tearing the spinner.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => errln!("{line}"),
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
