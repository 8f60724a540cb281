//! `git agent <command> --help` opens `git-agent-<command>(1)`, as `git <command> --help`
//! opens git's pages (help.format=man).
//!
//! git turns `git agent --help` into `man git-agent` itself, but `git agent commit --help`
//! reaches this binary as `git-agent commit --help`. When stdout is a terminal and `man -w`
//! finds the page, `man` shows it (so MANPATH, MANPAGER and the user's man configuration
//! apply); otherwise clap prints its long help, as before. `-h` is always clap's short help.

use std::io::IsTerminal;
use std::process::{Command, Stdio};

use clap::CommandFactory;

/// When `args` (the whole command line, program first) ask for a page that can be shown,
/// show it and return man's exit code; `None` leaves it to clap.
pub fn open_page(args: &[String]) -> Option<i32> {
    let page = page_for(args)?;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let found = Command::new("man")
        .args(["-w", &page])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    if !found {
        return None;
    }
    let status = Command::new("man").arg(&page).status().ok()?;
    Some(status.code().unwrap_or(1))
}

/// The page `args` ask for: `--help` alone (`git-agent`), `<command> ... --help` (before any
/// `--`), or `help <command>`. Hidden commands have no page.
pub fn page_for(args: &[String]) -> Option<String> {
    let first = args.get(1)?;
    if first == "--help" {
        return Some("git-agent".into());
    }
    let name = if first == "help" {
        args.get(2)?
    } else {
        let before_dashes = args[2..].iter().take_while(|a| *a != "--");
        if !before_dashes.into_iter().any(|a| a == "--help") {
            return None;
        }
        first
    };
    let cmd = super::super::Cli::command();
    let sub = cmd.find_subcommand(name)?;
    (!sub.is_hide_set()).then(|| format!("git-agent-{}", sub.get_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(line: &str) -> Option<String> {
        let args: Vec<String> = line.split(' ').map(str::to_string).collect();
        page_for(&args)
    }

    #[test]
    fn which_page_a_command_line_asks_for() {
        assert_eq!(
            page("git-agent commit --help").as_deref(),
            Some("git-agent-commit")
        );
        assert_eq!(
            page("git-agent review fix-1 --stat --help").as_deref(),
            Some("git-agent-review")
        );
        assert_eq!(
            page("git-agent run --help").as_deref(),
            Some("git-agent-spawn")
        );
        assert_eq!(
            page("git-agent image build --help").as_deref(),
            Some("git-agent-image")
        );
        assert_eq!(
            page("git-agent help merge").as_deref(),
            Some("git-agent-merge")
        );
        assert_eq!(page("git-agent --help").as_deref(), Some("git-agent"));
        // Short help, no help, a `--help` after `--` (the agent's command), hidden commands
        // and unknown ones stay with clap.
        assert_eq!(page("git-agent commit -h"), None);
        assert_eq!(page("git-agent commit fix-1"), None);
        assert_eq!(page("git-agent spawn -- tool --help"), None);
        assert_eq!(page("git-agent hook-run --help"), None);
        assert_eq!(page("git-agent nosuch --help"), None);
        assert_eq!(page("git-agent"), None);
    }
}
