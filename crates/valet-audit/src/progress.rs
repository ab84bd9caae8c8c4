//! Progress of long collections on stderr, only when stderr is a terminal
//! (pipes, CI logs and JSON consumers never see it): one counter line
//! rewritten in place, cleared when done.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Collections smaller than this finish before a counter would help.
const MIN_ITEMS: usize = 50;
const EVERY: Duration = Duration::from_millis(100);

pub struct Progress {
    what: &'static str,
    total: Option<usize>,
    done: usize,
    on: bool,
    shown: bool,
    last: Instant,
}

impl Progress {
    /// A counter for `total` items (`0` when unknown, e.g. paginated lists).
    pub fn new(what: &'static str, total: usize) -> Progress {
        Progress::with_terminal(what, total, std::io::stderr().is_terminal())
    }

    fn with_terminal(what: &'static str, total: usize, terminal: bool) -> Progress {
        let total = (total > 0).then_some(total);
        Progress {
            what,
            total,
            done: 0,
            on: terminal && total.is_none_or(|t| t >= MIN_ITEMS),
            shown: false,
            last: Instant::now(),
        }
    }

    pub fn step(&mut self) {
        self.done += 1;
        if let Some(line) = self.line() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{line}");
            let _ = err.flush();
            self.shown = true;
            self.last = Instant::now();
        }
    }

    /// The line to print now, if any: throttled, and only past the threshold.
    fn line(&self) -> Option<String> {
        let due = self.last.elapsed() >= EVERY || Some(self.done) == self.total;
        let big = self.done >= MIN_ITEMS || self.total.is_some();
        if !self.on || !due || !big {
            return None;
        }
        Some(match self.total {
            Some(t) => format!("collecting {}: {}/{t}", self.what, self.done),
            None => format!("collecting {}: {}", self.what, self.done),
        })
    }

    pub fn finish(self) {
        if self.shown {
            // Erase the counter line so the report starts on a clean line.
            eprint!("\r\x1b[2K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silent_off_a_terminal_and_for_small_collections() {
        let mut p = Progress::with_terminal("pods", 1000, false);
        p.done = 999;
        p.last -= EVERY;
        assert_eq!(p.line(), None);
        let mut p = Progress::with_terminal("roles", 3, true);
        p.done = 3;
        assert_eq!(p.line(), None);
    }

    #[test]
    fn counts_on_a_terminal() {
        let mut p = Progress::with_terminal("roles", 200, true);
        p.done = 200;
        assert_eq!(p.line().as_deref(), Some("collecting roles: 200/200"));
        let mut p = Progress::with_terminal("pods", 0, true);
        p.done = 10;
        p.last -= EVERY;
        assert_eq!(p.line(), None, "under the threshold");
        p.done = 500;
        assert_eq!(p.line().as_deref(), Some("collecting pods: 500"));
    }
}
