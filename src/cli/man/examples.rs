//! The EXAMPLES and SEE ALSO of each command's page. A command without an entry here fails
//! `tests/it/manual.rs`, so a new command gets both.

/// One command's page: its examples as (command line, what it does), and the pages it points
/// at (`git-agent-<command>(1)` pages of this manual, or git's own pages).
pub struct Page {
    pub command: &'static str,
    pub examples: &'static [(&'static str, &'static str)],
    pub see_also: &'static [&'static str],
}

/// The main page's examples: the core loop.
pub const MAIN_EXAMPLES: &[(&str, &str)] = &[
    (
        "git agent spawn --name fix-login -m \"the login page crashes on empty passwords\"",
        "Start a task; its name is printed on stdout.",
    ),
    ("git agent logs -f fix-login", "Follow what the agent does."),
    (
        "git agent review fix-login",
        "See what it changed, what needs a second look, and the diff.",
    ),
    (
        "git agent commit-push fix-login",
        "Re-create its commits as you on branch agent/fix-login and push them.",
    ),
    (
        "git agent purge fix-login",
        "Remove the task's container, volumes and network.",
    ),
];

pub const PAGES: &[Page] = &[
    Page {
        command: "spawn",
        examples: &[
            (
                "git agent spawn -m \"add a --json flag to list\"",
                "Start a task with Claude Code (agent.defaultAgent), headless.",
            ),
            (
                "git agent spawn --agent claude,codex --name cmp -t fix -F issue.md",
                "Two attempts at the same prompt, filled into the fix template, one task per agent.",
            ),
            (
                "git agent spawn --wait -m x -- make test",
                "Run a command instead of an agent, stream its output and exit with its status.",
            ),
            (
                "git agent spawn -i --network dev",
                "An interactive session with the dev network profile.",
            ),
        ],
        see_also: &[
            "git-agent-add(1)",
            "git-agent-review(1)",
            "git-agent-logs(1)",
            "git-agent-attach(1)",
        ],
    },
    Page {
        command: "sync",
        examples: &[
            (
                "git agent sync fix-login",
                "Bring the task's new commits and a snapshot of its uncommitted work into refs/agent/fix-login/.",
            ),
            (
                "git agent sync --follow fix-login",
                "Follow a running task again in the background.",
            ),
        ],
        see_also: &["git-agent-review(1)", "git-agent-status(1)"],
    },
    Page {
        command: "review",
        examples: &[
            (
                "git agent review fix-login",
                "Summary, flagged changes, then the diff in git's pager.",
            ),
            (
                "git agent review --stat --no-sync fix-login",
                "Only the diffstat of what was last synced.",
            ),
            (
                "git agent review cmp --compare",
                "How the attempts of a group differ.",
            ),
            (
                "git agent review fix-login -- src/",
                "Only the changes below src/.",
            ),
        ],
        see_also: &[
            "git-agent-commit(1)",
            "git-agent-check(1)",
            "git-agent-sync(1)",
        ],
    },
    Page {
        command: "commit",
        examples: &[
            (
                "git agent commit fix-login",
                "Re-create the agent's commits as you on branch agent/fix-login.",
            ),
            (
                "git agent commit -m \"Fix empty password\" fix-login -- src/login.rs",
                "Promote only the changes to one file.",
            ),
        ],
        see_also: &[
            "git-agent-push(1)",
            "git-agent-commit-push(1)",
            "git-agent-merge(1)",
            "git-commit(1)",
        ],
    },
    Page {
        command: "push",
        examples: &[
            (
                "git agent push fix-login",
                "Push agent/fix-login to the base branch's remote with your credentials.",
            ),
            (
                "git agent push -u --notes --remote fork fix-login",
                "Push to another remote, set the upstream, push the provenance notes too.",
            ),
        ],
        see_also: &[
            "git-agent-commit(1)",
            "git-agent-commit-push(1)",
            "git-push(1)",
        ],
    },
    Page {
        command: "commit-push",
        examples: &[(
            "git agent commit-push fix-login",
            "Commit the task's work as you, then push it.",
        )],
        see_also: &["git-agent-commit(1)", "git-agent-push(1)"],
    },
    Page {
        command: "list",
        examples: &[
            (
                "git agent list",
                "Every task: name, agent, status, age, base, changes.",
            ),
            ("git agent list --json", "The same for scripts."),
        ],
        see_also: &["git-agent-status(1)", "git-agent-review(1)"],
    },
    Page {
        command: "status",
        examples: &[(
            "git agent status fix-login",
            "The task's record, the history of its state, and any problem with its runtime objects.",
        )],
        see_also: &["git-agent-list(1)", "git-agent-doctor(1)"],
    },
    Page {
        command: "logs",
        examples: &[
            (
                "git agent logs -f fix-login",
                "Follow the output until the task ends.",
            ),
            (
                "git agent logs --tail 50 --raw fix-login",
                "The last 50 lines as the agent wrote them.",
            ),
        ],
        see_also: &["git-agent-attach(1)", "git-agent-review(1)"],
    },
    Page {
        command: "shell",
        examples: &[(
            "git agent shell fix-login",
            "A shell in the task's workspace.",
        )],
        see_also: &["git-agent-attach(1)"],
    },
    Page {
        command: "attach",
        examples: &[(
            "git agent attach fix-login",
            "Reconnect to an interactive session; detach with Ctrl-P Ctrl-Q.",
        )],
        see_also: &["git-agent-shell(1)", "git-agent-logs(1)"],
    },
    Page {
        command: "restart",
        examples: &[
            (
                "git agent restart fix-login",
                "Recreate the container on the current image and resume the agent's conversation.",
            ),
            (
                "git agent restart --reseed -i fix-login",
                "Rebuild the workspace from the last synced work and resume attached.",
            ),
        ],
        see_also: &["git-agent-continue(1)", "git-agent-retry(1)"],
    },
    Page {
        command: "allow",
        examples: &[(
            "git agent allow fix-login pypi.org files.pythonhosted.org",
            "Let a task reach two more domains.",
        )],
        see_also: &["git-agent-spawn(1)", "git-agent-review(1)"],
    },
    Page {
        command: "stop",
        examples: &[(
            "git agent stop fix-login",
            "Stop the task's container; its workspace and refs stay.",
        )],
        see_also: &["git-agent-rm(1)", "git-agent-purge(1)"],
    },
    Page {
        command: "rm",
        examples: &[(
            "git agent rm fix-login",
            "Remove the task's container; its workspace volume, network and refs stay.",
        )],
        see_also: &["git-agent-stop(1)", "git-agent-purge(1)"],
    },
    Page {
        command: "purge",
        examples: &[
            (
                "git agent purge fix-login",
                "Remove the task's container, volumes and network.",
            ),
            (
                "git agent purge --all --dry-run",
                "Show what purging every task would remove.",
            ),
            (
                "git agent purge fix-login fix-logout",
                "Purge several tasks; each is reported, and the command exits 1 if any failed.",
            ),
            (
                "git agent purge --refs fix-login && git agent purge --undo fix-login",
                "Delete the task's refs too (kept in the trash), then bring it back.",
            ),
        ],
        see_also: &["git-agent-rm(1)", "git-agent-gc(1)"],
    },
    Page {
        command: "gc",
        examples: &[(
            "git agent gc",
            "Prune the repository's object cache on the engine, or remove it when no task borrows from it.",
        )],
        see_also: &["git-agent-purge(1)", "git-gc(1)"],
    },
    Page {
        command: "image",
        examples: &[
            (
                "git agent image build",
                "Build (or confirm up to date) the image this repository's tasks run in.",
            ),
            (
                "git agent image list",
                "git-agent's images on the engine: size, age, and which tasks or containers use them.",
            ),
            (
                "git agent image prune --dry-run",
                "Show which images no task here names and no container uses; drop --dry-run to remove them.",
            ),
        ],
        see_also: &["git-agent-spawn(1)", "git-agent-trust(1)"],
    },
    Page {
        command: "agents",
        examples: &[
            (
                "git agent agents",
                "Every agent definition and where it comes from.",
            ),
            (
                "git agent agents --json",
                "The same for scripts: name, origin, description, and whether it loads.",
            ),
        ],
        see_also: &["git-agent-auth(1)", "git-agent-trust(1)"],
    },
    Page {
        command: "template",
        examples: &[
            (
                "git agent template list",
                "Every prompt template and its origin.",
            ),
            ("git agent template show fix", "Print the fix template."),
        ],
        see_also: &["git-agent-spawn(1)"],
    },
    Page {
        command: "auth",
        examples: &[
            (
                "git agent auth claude",
                "Save Claude Code's API key (read from the terminal) for git-agent's credential proxy.",
            ),
            (
                "git agent auth --status claude",
                "Which credentials are set, and where.",
            ),
        ],
        see_also: &["git-agent-agents(1)"],
    },
    Page {
        command: "trust",
        examples: &[
            (
                "git agent trust .git-agent/agents/claude.toml",
                "Let git-agent use this repository's agent definition, as it is now.",
            ),
            (
                "git agent trust --list",
                "Every trusted file and whether it changed since.",
            ),
        ],
        see_also: &["git-agent-agents(1)", "git-agent-image(1)"],
    },
    Page {
        command: "doctor",
        examples: &[
            (
                "git agent doctor",
                "Check git, the engine, the base image, free disk and every task's runtime objects.",
            ),
            ("git agent doctor --fix", "Repair what can be repaired."),
        ],
        see_also: &["git-agent-panic(1)", "git-agent-status(1)"],
    },
    Page {
        command: "panic",
        examples: &[(
            "git agent panic --this-repo",
            "Stop every task of this repository at once.",
        )],
        see_also: &["git-agent-stop(1)", "git-agent-doctor(1)"],
    },
    Page {
        command: "check",
        examples: &[(
            "git agent check fix-login",
            "Ahead, behind, whether it merges cleanly into the base branch's tip, and what review flags.",
        )],
        see_also: &["git-agent-update(1)", "git-agent-review(1)"],
    },
    Page {
        command: "update",
        examples: &[
            (
                "git agent update fix-login",
                "Move a finished task onto its base branch's tip.",
            ),
            (
                "git agent update --onto origin/main fix-login",
                "Onto another base.",
            ),
        ],
        see_also: &["git-agent-check(1)", "git-rebase(1)"],
    },
    Page {
        command: "add",
        examples: &[(
            "git agent add -m \"update the changelog\"",
            "Queue a task; git agent serve starts it.",
        )],
        see_also: &[
            "git-agent-serve(1)",
            "git-agent-wait(1)",
            "git-agent-spawn(1)",
        ],
    },
    Page {
        command: "serve",
        examples: &[
            (
                "git agent serve --workers 4",
                "Run queued tasks of every registered repository, four at a time.",
            ),
            (
                "git agent serve --print-unit > ~/.config/systemd/user/git-agent.service",
                "Run the server as a systemd user service.",
            ),
        ],
        see_also: &["git-agent-add(1)", "git-agent-wait(1)"],
    },
    Page {
        command: "wait",
        examples: &[(
            "git agent wait fix-login add-docs",
            "Wait until both tasks have ended; exit 0 when both exited 0.",
        )],
        see_also: &["git-agent-add(1)", "git-agent-serve(1)"],
    },
    Page {
        command: "merge",
        examples: &[
            (
                "git agent merge fix-login",
                "Promote the task if needed and merge agent/fix-login into the current branch.",
            ),
            (
                "git agent merge --squash -m \"Fix login\" fix-login",
                "One commit with all of it.",
            ),
        ],
        see_also: &["git-agent-commit(1)", "git-merge(1)"],
    },
    Page {
        command: "retry",
        examples: &[
            (
                "git agent retry fix-login",
                "Start fix-login-retry from the same base and prompt.",
            ),
            (
                "git agent retry --base main -m \"try again without touching the API\" fix-login",
                "From another base, with a new prompt.",
            ),
        ],
        see_also: &["git-agent-continue(1)", "git-agent-spawn(1)"],
    },
    Page {
        command: "continue",
        examples: &[(
            "git agent continue fix-login -m \"also add a test\"",
            "Send a follow-up to a task whose run has ended.",
        )],
        see_also: &["git-agent-retry(1)", "git-agent-restart(1)"],
    },
    Page {
        command: "hooks",
        examples: &[
            (
                "git agent hooks install pre-push",
                "Add git-agent's block to the pre-push hook.",
            ),
            (
                "git config agent.hooks.postCommit review && git agent hooks install post-commit",
                "Queue a review task on every commit.",
            ),
            ("git agent hooks list", "Each hook and whether it is on."),
        ],
        see_also: &["githooks(5)", "git-agent-add(1)"],
    },
    Page {
        command: "share",
        examples: &[(
            "git agent share origin",
            "Print the git commands that push this clone's tasks to origin and fetch others'.",
        )],
        see_also: &["git-agent-list(1)", "git-push(1)", "git-fetch(1)"],
    },
    Page {
        command: "completion",
        examples: &[
            (
                "source <(git agent completion bash)",
                "Complete git agent and git-agent in this bash.",
            ),
            (
                "git agent completion bash > ~/.local/share/bash-completion/completions/git-agent",
                "Install it for bash-completion, which loads it when needed.",
            ),
            (
                "git agent completion zsh > ~/.zfunc/_git-agent",
                "For zsh, with ~/.zfunc in $fpath.",
            ),
            (
                "git agent completion fish > ~/.config/fish/completions/git-agent.fish",
                "For fish.",
            ),
        ],
        see_also: &[],
    },
    Page {
        command: "dashboard",
        examples: &[
            (
                "git agent dashboard",
                "Watch this repository's tasks; Enter shows the selected one's output, ? the keys.",
            ),
            (
                "git agent dashboard --all",
                "Every repository that queued work with add, in one view.",
            ),
        ],
        see_also: &[
            "git-agent-list(1)",
            "git-agent-logs(1)",
            "git-agent-status(1)",
        ],
    },
    Page {
        command: "preview",
        examples: &[
            (
                "git agent preview fix-login --port 5173 --cmd \"npm run dev -- --host 0.0.0.0\"",
                "Serve the task's work on http://127.0.0.1:5173 while the agent works.",
            ),
            (
                "git agent preview logs -f fix-login",
                "Follow the dev server's output.",
            ),
            ("git agent preview stop fix-login", "Stop it."),
        ],
        see_also: &["git-agent-review(1)", "git-agent-allow(1)"],
    },
];

/// The entry of `command`, if it has one.
pub fn page(command: &str) -> Option<&'static Page> {
    PAGES.iter().find(|p| p.command == command)
}
