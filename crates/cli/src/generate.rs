//! What is generated from the command-line grammar: the shell completion scripts
//! (`cliproxy completions bash|zsh|fish`) and the man page (`cliproxy man`), which
//! `cargo xtask dist` also puts into the release archive.

use std::io::{self, Write};

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

/// Writes the man page, section 1 with a section per subcommand, as roff to `out`.
///
/// # Errors
///
/// When writing to `out` fails.
pub fn man_page(version: &'static str, out: &mut dyn Write) -> io::Result<()> {
    let command = Cli::command_with_version(version);
    clap_mangen::Man::new(command).render(out)
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
            assert!(page.contains(command), "the man page lacks {command}");
        }
    }
}
