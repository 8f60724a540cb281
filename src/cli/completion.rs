//! `git agent completion bash|zsh|fish`: shell completion scripts, and the answers they ask
//! this binary for.
//!
//! The scripts are clap_complete's dynamic ones: at each TAB the shell runs
//! `GIT_AGENT_COMPLETE=<shell> git-agent -- <words>`, and [`answer_if_asked`] completes
//! commands, flags and task names from the clap definitions, in process. Task names come from
//! the repository's refs (`TaskStore::names`, read by gix), never from the engine, so a TAB
//! costs two `git rev-parse` and a ref scan.
//!
//! Only valid task names are offered. A ref under `refs/agent/` can be written by anyone who
//! can write the repository (or by a careless fetch), and a ref name may hold `$`, `(`, `;` or
//! a backquote; a completion is text the shell puts on the user's command line, where such a
//! name would run when the user presses Enter. [`TaskName::parse`] allows only
//! `[a-z0-9._-]`, which no shell interprets.
//!
//! For `git agent <TAB>` the bash script defines `_git_agent`, which git's own completion
//! (git-completion.bash) calls with its words; the zsh script defines `_git-agent`, which
//! zsh's `_git` calls. Fish's git completion hands `git agent` to the `git-agent` completion by
//! itself.

use std::io::Write;

use anyhow::Result;
use clap::{Arg, Args, Command, CommandFactory, ValueEnum};
use clap_complete::engine::{ArgValueCandidates, CompletionCandidate};
use clap_complete::env::{CompleteEnv, EnvCompleter};

use crate::task::name::TaskName;

/// The variable that turns a run of the binary into a completion request.
pub const ENV: &str = "GIT_AGENT_COMPLETE";

/// Print a shell completion script.
///
/// The script completes commands, options and the names of this repository's tasks (read
/// from its refs at each TAB; the container engine is never asked). Load it for the current
/// shell, or install it where the shell finds it (`scripts/install.sh` does):
///
///   bash: `source <(git agent completion bash)`, or save it as
///   `~/.local/share/bash-completion/completions/git-agent`
///
///   zsh:  save it as `_git-agent` in a directory of `$fpath` (then `compinit`)
///
///   fish: save it as `~/.config/fish/completions/git-agent.fish`
///
/// Both `git-agent <TAB>` and `git agent <TAB>` complete: the bash script hooks into git's own
/// completion (`_git_agent`), the zsh one into zsh's `_git` (`_git-agent`), and fish's git
/// completion finds it by itself.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn run(args: CompletionArgs) -> Result<i32> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(script(args.shell)?.as_bytes())?;
    stdout.flush()?;
    Ok(0)
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Result<String> {
    let completer: &dyn EnvCompleter = match shell {
        Shell::Bash => &clap_complete::env::Bash,
        Shell::Zsh => &clap_complete::env::Zsh,
        Shell::Fish => &clap_complete::env::Fish,
    };
    let mut buf = Vec::new();
    // The binary is called by name (found on PATH), so the script outlives a reinstall.
    completer.write_registration(ENV, "git-agent", "git-agent", "git-agent", &mut buf)?;
    let mut text = String::from_utf8(buf)?;
    match shell {
        Shell::Bash => text.push_str(GIT_BASH),
        Shell::Zsh => text.push_str(GIT_ZSH),
        Shell::Fish => {}
    }
    Ok(text)
}

/// When this process is a completion request (`GIT_AGENT_COMPLETE` is set), answer it on
/// stdout and exit; otherwise return at once.
pub fn answer_if_asked() {
    CompleteEnv::with_factory(command).var(ENV).complete();
}

/// The command line as completion sees it: every argument that names a task completes the
/// repository's task names.
fn command() -> Command {
    with_task_names(super::Cli::command())
}

fn with_task_names(mut cmd: Command) -> Command {
    // `mut_arg` moves the argument it changes to the end, and a positional's place is its
    // order: pass every argument through it, in order, so the order stays as it was.
    let ids: Vec<String> = cmd
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    for id in ids {
        cmd = cmd.mut_arg(id, |a| {
            if names_a_task(&a) {
                a.add(ArgValueCandidates::new(task_names))
            } else {
                a
            }
        });
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for sub in subs {
        cmd = cmd.mut_subcommand(sub, with_task_names);
    }
    cmd
}

/// Whether `arg` takes task names: the positional `task`/`tasks` of the per-task commands,
/// and options whose value is named `TASK`.
fn names_a_task(arg: &Arg) -> bool {
    let id = arg.get_id().as_str();
    (arg.is_positional() && matches!(id, "task" | "tasks"))
        || arg
            .get_value_names()
            .is_some_and(|names| names.iter().any(|n| n == "TASK"))
}

/// This repository's task names, filtered to valid ones (see the module doc); nothing when
/// there is no repository.
fn task_names() -> Vec<CompletionCandidate> {
    let names = (|| -> Result<Vec<String>> {
        let git = crate::git::Git::discover(&std::env::current_dir()?)?;
        crate::task::store::TaskStore::open(&git)?.names()
    })()
    .unwrap_or_default();
    completable(names)
        .into_iter()
        .map(CompletionCandidate::new)
        .collect()
}

/// The names that may be put on a command line: valid task names only.
fn completable(names: Vec<String>) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| TaskName::parse(n).is_ok())
        .collect()
}

/// Bash: `git agent <TAB>`. git-completion.bash calls `_git_agent` (loading this file by the
/// name `git-agent` when bash-completion is there) with `words`, `cword`, `cur` and
/// `__git_cmd_idx` (the index of `agent`) set, and `-C` directories in `__git_C_args`. Its
/// completion is registered with `-o nospace`, so a finished word gets its space here.
/// Candidates are read line by line (`mapfile`), never word-split or globbed.
const GIT_BASH: &str = r#"
_git_agent() {
    local idx=${__git_cmd_idx:-1}
    local args=(git-agent "${words[@]:idx+1}")
    local index=$((cword - idx))
    args[index]=$cur
    local reply i
    reply=$(
        for ((i = 1; i < ${#__git_C_args[@]}; i += 2)); do
            cd -- "${__git_C_args[i]}" 2>/dev/null || exit 1
        done
        _CLAP_IFS=$'\n' _CLAP_COMPLETE_INDEX=$index GIT_AGENT_COMPLETE=bash \
            git-agent -- "${args[@]}" 2>/dev/null
    ) || return
    local -a candidates
    mapfile -t candidates <<<"$reply"
    COMPREPLY=()
    local c
    for c in "${candidates[@]}"; do
        case $c in
        '') ;;
        *[=/]) COMPREPLY+=("$c") ;;
        *) COMPREPLY+=("$c ") ;;
        esac
    done
}
"#;

/// Zsh: `git agent <TAB>`. zsh's `_git` calls `_git-agent` with `words` starting at `agent`,
/// which the completer takes as the program name. Installed as the autoloaded file
/// `_git-agent`, this body runs at the first TAB: it defines the functions, then answers.
const GIT_ZSH: &str = r#"

_git-agent() { _clap_dynamic_completer_git_agent "$@" }
if [[ ${funcstack[1]-} == _git-agent ]]; then
    _clap_dynamic_completer_git_agent "$@"
fi
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_task_names_are_completed() {
        let names = [
            "fix-1",
            "$(touch pwned)",
            "a;rm",
            "`id`",
            "x'y",
            "Upper",
            "ok.2",
        ];
        assert_eq!(
            completable(names.iter().map(|s| s.to_string()).collect()),
            ["fix-1", "ok.2"]
        );
    }

    #[test]
    fn task_arguments_complete_task_names() {
        let cmd = command();
        for sub in ["review", "commit", "logs", "wait", "purge"] {
            let sub = cmd.find_subcommand(sub).expect(sub);
            assert!(
                sub.get_arguments().any(names_a_task),
                "{} takes no task",
                sub.get_name()
            );
        }
        let list = cmd.find_subcommand("list").expect("list");
        assert!(!list.get_arguments().any(names_a_task));
    }

    #[test]
    fn the_completion_command_passes_clap_checks() {
        // clap checks positionals' order as it builds (debug builds): a task positional moved
        // behind `-- <path>...` fails here.
        let mut cmd = command();
        cmd.build();
        let review = cmd.find_subcommand("review").expect("review");
        let first = review.get_positionals().next().expect("a positional");
        assert_eq!(first.get_id(), "task");
    }

    #[test]
    fn every_script_calls_back_by_name() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let text = script(shell).unwrap();
            assert!(text.contains(ENV), "{shell:?}: {text}");
            assert!(text.contains("git-agent"), "{shell:?}: {text}");
        }
        assert!(script(Shell::Bash).unwrap().contains("_git_agent()"));
        assert!(script(Shell::Zsh).unwrap().contains("_git-agent()"));
    }
}
