//! Opening the verification URL in the user's browser, when there is one to open.

use std::process::{Command, Stdio};

/// What happened when the login tried to open a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowserOutcome {
    Opened,
    /// `--no-browser` was given.
    Disabled,
    /// No graphical session (e.g. an SSH login without X forwarding).
    NoDisplay,
    Failed(String),
}

/// Opens `url` with `$BROWSER` or the platform's opener, unless disabled or headless.
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
    let mut command = match configured {
        Some(browser) => Command::new(browser),
        None => platform_opener(),
    };
    let spawned = command
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
            BrowserOutcome::Opened
        }
        Err(error) => BrowserOutcome::Failed(error.to_string()),
    }
}

fn display_available() -> bool {
    if cfg!(any(target_os = "macos", target_os = "windows")) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

fn platform_opener() -> Command {
    if cfg!(target_os = "macos") {
        Command::new("open")
    } else if cfg!(target_os = "windows") {
        let mut command = Command::new("cmd");
        command.args(["/C", "start", ""]);
        command
    } else {
        Command::new("xdg-open")
    }
}
