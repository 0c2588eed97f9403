//! Writing to the user: plain lines, and on a terminal one live status line that
//! later messages clear before they print.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

/// Spinner frames of the live wait indicator.
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// The user-facing stream (stderr), which knows whether it is a terminal.
pub struct Terminal {
    interactive: bool,
    status_shown: bool,
    frame: usize,
}

impl Terminal {
    pub fn stderr() -> Self {
        Self {
            interactive: std::io::stderr().is_terminal(),
            status_shown: false,
            frame: 0,
        }
    }

    /// Whether a person is watching: the status line and QR code are only drawn then.
    pub fn is_interactive(&self) -> bool {
        self.interactive
    }

    /// Prints one message line, first clearing the status line if one is shown.
    pub fn line(&mut self, message: impl std::fmt::Display) {
        self.clear_status();
        let _ = writeln!(std::io::stderr(), "{message}");
    }

    /// Redraws the live status line (terminals only).
    pub fn status(&mut self, message: impl std::fmt::Display) {
        if !self.interactive {
            return;
        }
        self.frame = (self.frame + 1) % SPINNER.len();
        let mut stderr = std::io::stderr();
        let _ = write!(stderr, "\r\x1b[2K{} {message}", SPINNER[self.frame]);
        let _ = stderr.flush();
        self.status_shown = true;
    }

    pub fn clear_status(&mut self) {
        if self.status_shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.status_shown = false;
        }
    }
}

/// How a table column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    /// For numbers.
    Right,
}

/// Rows as columns two spaces apart, each as wide as its widest cell, lines without trailing
/// blanks. `align` gives each column's alignment; columns past it are left-aligned.
pub fn render_table<R: AsRef<[String]>>(rows: &[R], align: &[Align]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (index, cell) in row.as_ref().iter().enumerate() {
            let width = cell.chars().count();
            match widths.get_mut(index) {
                Some(widest) => *widest = (*widest).max(width),
                None => widths.push(width),
            }
        }
    }
    let mut table = String::new();
    for row in rows {
        let mut line = String::new();
        for (index, (cell, width)) in row.as_ref().iter().zip(&widths).enumerate() {
            let width = *width;
            let _ = match align.get(index).copied().unwrap_or(Align::Left) {
                Align::Left => write!(line, "{cell:<width$}  "),
                Align::Right => write!(line, "{cell:>width$}  "),
            };
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// `9:05`-style minutes and seconds, for the time left on a code.
pub fn format_countdown(left: Duration) -> String {
    let seconds = left.as_secs();
    format!("{}:{:02}", seconds / 60, seconds % 60)
}

/// A short human duration: `45s`, `12m`, `3h 20m`, `2d 4h`.
pub fn format_span(span: Duration) -> String {
    let seconds = span.as_secs();
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h {}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d {}h", seconds / 86400, seconds % 86400 / 3600),
    }
}

/// `in 3h 20m` or `12m ago`, relative to now.
pub fn format_relative(moment: time::OffsetDateTime, now: time::OffsetDateTime) -> String {
    let delta = moment - now;
    let span = Duration::from_secs(delta.whole_seconds().unsigned_abs());
    if delta.is_negative() {
        format!("{} ago", format_span(span))
    } else {
        format!("in {}", format_span(span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn tables_align_columns_and_trim_lines() {
        let rows = [
            vec!["NAME".to_owned(), "N".to_owned(), "NOTE".to_owned()],
            vec!["a".to_owned(), "1200".to_owned(), String::new()],
        ];
        assert_eq!(
            render_table(&rows, &[Align::Left, Align::Right]),
            "NAME     N  NOTE\na     1200\n"
        );
    }

    #[test]
    fn countdown_pads_seconds() {
        assert_eq!(format_countdown(Duration::from_secs(545)), "9:05");
        assert_eq!(format_countdown(Duration::from_secs(59)), "0:59");
    }

    #[test]
    fn relative_times_read_naturally() {
        let now = datetime!(2026-11-25 12:00 UTC);
        assert_eq!(
            format_relative(datetime!(2026-11-25 15:20 UTC), now),
            "in 3h 20m"
        );
        assert_eq!(
            format_relative(datetime!(2026-11-25 11:48 UTC), now),
            "12m ago"
        );
        assert_eq!(
            format_relative(datetime!(2026-11-27 16:00 UTC), now),
            "in 2d 4h"
        );
        assert_eq!(format_relative(now, now), "in 0s");
    }
}
