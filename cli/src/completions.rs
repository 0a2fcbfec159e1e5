//! `berth completions SHELL`: the shell completion script, from clap's own
//! description of the command line, so it never falls behind.

use clap::{Args, ValueEnum};
use clap_complete::Shell;

/// `berth completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: ShellArg,
}

/// The shells berth completes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShellArg {
    /// Bash: `berth completions bash > /etc/bash_completion.d/berth`.
    Bash,
    /// Zsh: `berth completions zsh > "${fpath[1]}/_berth"`.
    Zsh,
    /// Fish: `berth completions fish > ~/.config/fish/completions/berth.fish`.
    Fish,
}

impl From<ShellArg> for Shell {
    fn from(shell: ShellArg) -> Self {
        match shell {
            ShellArg::Bash => Shell::Bash,
            ShellArg::Zsh => Shell::Zsh,
            ShellArg::Fish => Shell::Fish,
        }
    }
}

/// The completion script of `command` for `shell`.
pub fn script(shell: ShellArg, command: &mut clap::Command) -> Vec<u8> {
    let mut script = Vec::new();
    let name = command.get_name().to_owned();
    clap_complete::generate(Shell::from(shell), command, name, &mut script);
    script
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::Cli;

    #[test]
    fn every_shell_gets_a_script_for_berth_naming_the_commands() {
        for (shell, registration) in [
            (ShellArg::Bash, "-o default berth\n"),
            (ShellArg::Zsh, "#compdef berth\n"),
            (ShellArg::Fish, "complete -c berth "),
        ] {
            let script = String::from_utf8(script(shell, &mut Cli::command())).unwrap();
            // The binary is `berth`, not the package's `berth-cli`.
            assert!(script.contains(registration), "{shell:?}: {script}");
            for word in ["login", "describe", "uncordon"] {
                assert!(script.contains(word), "{shell:?} lacks {word}");
            }
        }
    }
}
