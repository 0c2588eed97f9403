//! Opening the verification URL in the user's browser, when there is one to open.
//!
//! `$BROWSER` is the user's explicit choice: it is started and not second-guessed. The system
//! opener (`xdg-open`, `open` on macOS) exits with a failure when it finds no browser, so its
//! exit status is awaited before the login claims that a browser opened.

use std::process::Stdio;

use tokio::process::{Child, Command};

/// What happened when the login tried to open a browser.
#[derive(Debug)]
pub enum BrowserOutcome {
    /// `$BROWSER` was started with the URL.
    Started,
    /// The system opener is running; [`Opener::wait`] tells whether it worked.
    Opening(Opener),
    /// `--no-browser` was given.
    Disabled,
    /// No graphical session (e.g. an SSH login without X forwarding).
    NoDisplay,
    /// The program could not be started.
    Failed(String),
}

/// A running system opener.
#[derive(Debug)]
pub struct Opener {
    program: &'static str,
    child: Child,
}

impl Opener {
    /// Waits for the opener to exit: `Ok` when it succeeded, else why it did not. Cancel-safe.
    pub async fn wait(&mut self) -> Result<(), String> {
        match self.child.wait().await {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(match status.code() {
                Some(code) => format!("{} exited with status {code}", self.program),
                None => format!("{} was stopped by a signal", self.program),
            }),
            Err(error) => Err(format!("could not wait for {}: {error}", self.program)),
        }
    }
}

/// Opens `url` with `$BROWSER` or the system's opener, unless disabled or headless.
///
/// Needs a Tokio runtime: the opener is a Tokio child process.
pub fn open_browser(url: &str, disabled: bool) -> BrowserOutcome {
    if disabled {
        return BrowserOutcome::Disabled;
    }
    let configured = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty());
    if configured.is_none() && !display_available() {
        return BrowserOutcome::NoDisplay;
    }
    let program = configured.as_deref().unwrap_or(SYSTEM_OPENER);
    let spawned = Command::new(program)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Err(error) => BrowserOutcome::Failed(format!("{program}: {error}")),
        Ok(_) if configured.is_some() => BrowserOutcome::Started,
        Ok(child) => BrowserOutcome::Opening(Opener {
            program: SYSTEM_OPENER,
            child,
        }),
    }
}

/// The program that opens a URL in the desktop's browser.
const SYSTEM_OPENER: &str = if cfg!(target_os = "macos") {
    "open"
} else {
    "xdg-open"
};

/// macOS always has a browser session; elsewhere an X11 or Wayland display is needed.
fn display_available() -> bool {
    if cfg!(target_os = "macos") {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}
