//! What is generated from the command-line grammar: the shell completion scripts
//! (`cliproxy completions bash|zsh|fish`) and the man page (`cliproxy man`), which
//! `cargo xtask dist` also puts into the release archive.

use std::io::{self, Write};
use std::path::Path;

use crate::args::{Cli, CompletionShell};

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: CompletionShell, version: &'static str, out: &mut dyn Write) {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut command = Cli::command_with_version(version);
    clap_complete::generate(shell, &mut command, "cliproxy", out);
}

/// The grammar the pages describe: without the `help` subcommand, which has no page.
fn documented(version: &'static str) -> clap::Command {
    Cli::command_with_version(version).disable_help_subcommand(true)
}

/// Writes the main man page (section 1; its SUBCOMMANDS name the pages of
/// [`man_pages_to`]) as roff to `out`.
///
/// # Errors
///
/// When writing to `out` fails.
pub fn man_page(version: &'static str, out: &mut dyn Write) -> io::Result<()> {
    clap_mangen::Man::new(documented(version)).render(out)
}

/// Writes the main man page and one per subcommand (`cliproxy-init.1`,
/// `cliproxy-accounts-list.1`, ...) into `dir`, which must exist.
///
/// # Errors
///
/// When a file cannot be written.
pub fn man_pages_to(version: &'static str, dir: &Path) -> io::Result<()> {
    clap_mangen::generate_to(documented(version), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        write(&mut out);
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn each_shell_gets_a_script_naming_every_command() {
        for (shell, marker) in [
            (CompletionShell::Bash, "complete -F _cliproxy"),
            (CompletionShell::Zsh, "#compdef cliproxy"),
            (CompletionShell::Fish, "complete -c cliproxy"),
        ] {
            let script = text(|out| completions(shell, "1.0 (commit x)", out));
            assert!(script.contains(marker), "{shell:?}: {script}");
            for command in ["login", "serve", "init", "run", "env", "completions", "man"] {
                assert!(script.contains(command), "{shell:?} lacks {command}");
            }
        }
    }

    #[test]
    fn the_man_page_has_the_version_and_the_commands() {
        let page = text(|out| man_page("1.0 (commit x)", out).unwrap());
        assert!(
            page.starts_with(".ie") || page.contains(".TH cliproxy 1"),
            "{page}"
        );
        assert!(page.contains("1.0 (commit x)"), "{page}");
        for command in ["login", "serve", "init", "config", "run", "completions"] {
            assert!(
                page.contains(&format!("cliproxy\\-{command}(1)")),
                "the man page lacks {command}"
            );
        }
        assert!(!page.contains("cliproxy\\-help"), "help has no page");
    }

    #[test]
    fn every_page_the_main_one_names_is_written() {
        let dir = std::env::temp_dir().join(format!("cliproxy-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        man_pages_to("1.0 (commit x)", &dir).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        std::fs::remove_dir_all(&dir).unwrap();
        for page in [
            "cliproxy.1",
            "cliproxy-init.1",
            "cliproxy-run.1",
            "cliproxy-config-check.1",
            "cliproxy-accounts-list.1",
        ] {
            assert!(
                names.iter().any(|name| name == page),
                "no {page} in {names:?}"
            );
        }
        assert!(!names.iter().any(|name| name.contains("help")), "{names:?}");
    }
}
