//! The reference sections of `git-agent(1)`: every `agent.*` git config key, every layered
//! directory and file, every environment variable the program reads, and the exit statuses.
//! Tests check the keys against the source (`tests/it/manual.rs`): a key the code reads that
//! is missing here fails them.

/// A git config key: (key, type, default, effect).
pub type ConfigKey = (&'static str, &'static str, &'static str, &'static str);

pub const CONFIG: &[ConfigKey] = &[
    (
        "agent.baseImage",
        "image name",
        "debian:bookworm-slim",
        "The image the sandbox image is built FROM. Machines that cannot pull images use a local one (scripts/setup-engine.sh builds git-agent-base:bookworm).",
    ),
    (
        "agent.defaultAgent",
        "agent name",
        "claude",
        "The agent a task runs when spawn gets no --agent and no -- command.",
    ),
    (
        "agent.stack",
        "stack name",
        "detected from the repository",
        "The language stack layer of the image (default, rust, go, node, python, java, or one of yours); spawn --stack overrides it.",
    ),
    (
        "agent.<agent>.version",
        "version",
        "the agent's definition",
        "The package version the agent's image layer installs (for example agent.claude.version).",
    ),
    (
        "agent.<agent>.baseUrl",
        "URL",
        "unset",
        "The base URL of the agent's model API (the credential proxy forwards to it).",
    ),
    (
        "agent.extraCaCerts",
        "path",
        "unset",
        "A PEM file of extra CA certificates the image trusts (corporate TLS proxies).",
    ),
    (
        "agent.buildAllow",
        "domain, multi-valued",
        "unset",
        "More domains a repository's project image steps may reach, beyond the package registries.",
    ),
    (
        "agent.buildTimeout",
        "duration",
        "30m",
        "The time limit of a repository's project image steps.",
    ),
    (
        "agent.memory",
        "size (k, m, g)",
        "4g",
        "The memory limit of each task container.",
    ),
    (
        "agent.cpus",
        "number",
        "2",
        "The CPU limit of each task container.",
    ),
    (
        "agent.pidsLimit",
        "integer",
        "512",
        "The process limit of each task container.",
    ),
    (
        "agent.diskLimit",
        "size (k, m, g)",
        "10g",
        "The most disk a task may use (workspace, home, helper state); a task over it is stopped with the reason recorded; 0 turns the check off.",
    ),
    (
        "agent.readOnlyRoot",
        "boolean",
        "false",
        "New tasks get a read-only root file system (spawn --read-only).",
    ),
    (
        "agent.gitReadOnly",
        "boolean",
        "false",
        "New tasks may run only read-only git commands (spawn --git-readonly; --no-git-readonly overrides).",
    ),
    (
        "agent.ociRuntime",
        "runtime name",
        "unset (the engine's default)",
        "The engine's OCI runtime new tasks run under (spawn --oci-runtime), by the name the engine knows it by (docker info lists them), e.g. runsc for gVisor: a kernel of its own between the agent and the host. Recorded with each task: restart, continue and update --agent keep it. The task's container, its readers, drafts and preview get it; the gateway, services and git-agent's other helpers stay on the default, and no disk warden joins such a task (the sandbox helper's own watcher keeps agent.diskLimit). Checked before anything is created; a path or options are refused. See README, \"A stronger boundary: gVisor\".",
    ),
    (
        "agent.network",
        "profile name",
        "api",
        "The network profile of new tasks: none, api, dev, open, or one of yours in ~/.config/git-agent/profiles/.",
    ),
    (
        "agent.allow",
        "domain, multi-valued",
        "unset",
        "More domains new tasks may reach (git config --add agent.allow example.org).",
    ),
    (
        "agent.allowAddress",
        "address or network, multi-valued",
        "unset",
        "Non-public addresses or networks (10.1.2.3, 10.1.0.0/16) new tasks may reach; read only from your own config, never from a repository.",
    ),
    (
        "agent.allowPort",
        "port, multi-valued",
        "unset",
        "Ports beyond 443 (CONNECT) and 80 (plain HTTP) the task's gateway connects to.",
    ),
    (
        "agent.egressNetwork",
        "network name",
        "bridge",
        "The outer engine network the tasks' gateways join.",
    ),
    (
        "agent.allowPodmanDns",
        "boolean",
        "false",
        "Run tasks on a Podman engine reached other than through its local Unix socket (over SSH or TCP). git-agent creates Podman task networks without a name server through Podman's own API on its socket; elsewhere they keep aardvark-dns, which resolves any name through the host's resolvers and so lets a task send data out in lookups around its gateway. Without it, spawn refuses such an engine.",
    ),
    (
        "agent.allowUnenforcedLimits",
        "boolean",
        "false",
        "Run tasks on an engine that would not enforce their memory, CPU and process limits (rootless Podman on cgroups v1, or on v2 without those controllers delegated to its user). Without it, spawn refuses such an engine: an agent could exhaust the machine.",
    ),
    (
        "agent.engine",
        "engine name",
        "unset",
        "The engine new tasks go to (one of the agent.engine.<name> engines); unset: the configured engine with the most room. spawn --engine overrides it.",
    ),
    (
        "agent.engine.<name>.url",
        "URL",
        "unset",
        "Names an engine tasks may run on: unix://, tcp:// (mutual TLS unless agent.engine.<name>.tlsVerify is false) or ssh://user@host. With none named, tasks run on the engine the environment names (DOCKER_HOST, Docker contexts, the local socket). Each task records its engine; every command finds it there.",
    ),
    (
        "agent.engine.<name>.certPath",
        "directory",
        "the docker CLI's (~/.docker)",
        "Where a tcp:// engine's ca.pem, cert.pem and key.pem are.",
    ),
    (
        "agent.engine.<name>.tlsVerify",
        "boolean",
        "true for tcp://",
        "Reach a tcp:// engine over verified mutual TLS; false: plain TCP (only on a network you trust).",
    ),
    (
        "agent.engine.<name>.limit",
        "integer",
        "0 (no limit)",
        "Most tasks running at once on the engine (any repository's). A spawn goes to the engine with the most room and is refused when every engine is full; git agent serve leaves queued tasks queued until one has room. agent.engine.default.limit limits the environment's engine.",
    ),
    (
        "agent.subnets",
        "IPv4 network (at least a /24)",
        "10.242.0.0/16",
        "The private range task networks take their /28 subnets from, so tasks never use the engine's default pools.",
    ),
    (
        "agent.objectCache",
        "boolean",
        "true",
        "Tasks borrow history from one read-only object cache per repository on the engine and check out only their base; false streams the base's whole history into each task.",
    ),
    (
        "agent.spareGateway",
        "boolean",
        "true",
        "While a task of the repository runs, keep one task network and its gateway started ahead, so that the next spawn starts only its task's container (the spare is renamed to the task's gateway and given its policy). The spare goes when the last running task ends, and with git agent gc; false makes every spawn create its own.",
    ),
    (
        "agent.maxBundleSize",
        "size (k, m, g)",
        "1g",
        "The most bytes one sync accepts from a sandbox.",
    ),
    (
        "agent.syncTimeout",
        "duration",
        "5m",
        "The time limit of one sync; a sync that hits it changes nothing.",
    ),
    (
        "agent.follow",
        "boolean",
        "true",
        "A running headless task is followed: a background git-agent process syncs its work when it changed.",
    ),
    (
        "agent.followInterval",
        "duration (at least 200ms)",
        "3s",
        "How often a follower looks at its task.",
    ),
    (
        "agent.workers",
        "integer",
        "2",
        "How many queued tasks git agent serve runs at once (serve --workers overrides).",
    ),
    (
        "agent.pushSetUpstream",
        "boolean",
        "false",
        "push and commit-push set the pushed branch as the upstream of agent/<task> (-u, --no-set-upstream).",
    ),
    (
        "agent.pushNotes",
        "boolean",
        "false",
        "push and commit-push also push the provenance notes, refs/notes/agent (--notes, --no-notes).",
    ),
    (
        "agent.hooks.prePush",
        "boolean",
        "false",
        "The installed pre-push hook refuses to push agent commits that were not promoted.",
    ),
    (
        "agent.hooks.postCommit",
        "template or add options",
        "unset",
        "The installed post-commit hook queues a task (git agent add) on each new commit.",
    ),
    (
        "agent.hooks.prepareCommitMsg",
        "boolean or spawn options",
        "unset",
        "The installed prepare-commit-msg hook drafts the commit message in a sandbox.",
    ),
    (
        "agent.hooks.prepareCommitMsgTimeout",
        "duration",
        "120s",
        "How long the prepare-commit-msg hook waits for the draft.",
    ),
    (
        "agent.onFinish",
        "shell command",
        "unset",
        "Run when a task's run finishes with exit 0; the task's values are in GIT_AGENT_* variables (see ENVIRONMENT).",
    ),
    (
        "agent.onFail",
        "shell command",
        "unset",
        "Run when a task's run fails; as agent.onFinish.",
    ),
    (
        "agent.onWait",
        "shell command",
        "unset",
        "Run once each time a running task's agent starts waiting for input (a question, a permission), seen by the task's follower; as agent.onFinish.",
    ),
    (
        "agent.previewCommand",
        "shell command",
        "unset",
        "The dev server git agent preview runs in /workspace when --cmd is not given (PORT is set to --port).",
    ),
    (
        "agent.notify",
        "boolean",
        "false",
        "A desktop notification (notify-send) when a task's run ends.",
    ),
];

/// The text after the CONFIGURATION table.
pub const CONFIG_NOTE: &str = "Every key is read through git config, so its scopes (--global, --local, --worktree), includes and git -c work. Durations are a number with ms, s, m or h; sizes a number with k, m or g. A repository's own files can never set these keys.";

/// (path, what it holds), in the order of the layers: user over built-in, then the
/// repository's files, then git-agent's own files in the git directory.
pub const FILES: &[(&str, &str)] = &[
    (
        "~/.config/git-agent/ ($XDG_CONFIG_HOME/git-agent/)",
        "The user's layer, looked up before the built-in files: agents/<name>.toml (agent definitions), templates/<name>.md (prompt templates), dockerfiles/stacks/<name>.dockerfile (image stack snippets), profiles/<name>.toml (network profiles), hooks/git/<hook> (bodies of the installed git hooks).",
    ),
    (
        "~/.config/git-agent/trust.toml",
        "The repository files you trusted (git agent trust), by SHA-256 of their content.",
    ),
    (
        "~/.config/git-agent/credentials.toml",
        "Agent credentials saved by git agent auth (mode 0600); they never enter a sandbox.",
    ),
    (
        "built in",
        "The defaults, embedded in the binary from the source's templates/, dockerfiles/ and hooks/.",
    ),
    (
        ".git-agent/",
        "The repository's layer, untrusted input: templates/<name>.md (used as they are), config.toml (more domains to allow, service containers), dockerfiles/project.dockerfile (project image steps: RUN, ENV, WORKDIR only), and agents/ and dockerfiles/stacks/ (used only once trusted with git agent trust).",
    ),
    (
        ".git/git-agent/",
        "git-agent's files of the repository (in the common git directory, shared by linked worktrees): locks/ (task locks and leases), tmp/ (sync scratch, promotion quarantines, trash), follow/<task>.log (followers), serve/<task>.log (queued runs), hooks/ (logs of hook runs and event hooks), cache-state (what the object cache holds).",
    ),
    (
        "refs/agent/<task>/",
        "A task: base, head, wip and state (a commit chain whose tree holds task.toml, the prompt, the transcript and the connection log). Fetched tasks are under refs/agent-remotes/<remote>/<task>/; provenance notes are in refs/notes/agent.",
    ),
    (
        "~/.local/state/git-agent/repos/ ($XDG_STATE_HOME/git-agent/repos/)",
        "The repositories with queued tasks, one file each, for git agent serve.",
    ),
];

/// (variable, effect): what the program reads from its environment.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "DOCKER_HOST",
        "The container engine to use: unix:///path, tcp://host:port (with DOCKER_TLS_VERIFY for TLS) or ssh://user@host[:port] (through your ssh client, which runs docker system dial-stdio there). Unset: the Docker context (DOCKER_CONTEXT, else the docker CLI's current one), else the local socket unix:///var/run/docker.sock. git agent doctor says which engine answered.",
    ),
    (
        "DOCKER_TLS_VERIFY",
        "Any value: reach a tcp:// DOCKER_HOST over TLS, verifying the engine's certificate and showing a client certificate (the files in DOCKER_CERT_PATH). TLS without verification is not supported.",
    ),
    (
        "DOCKER_CERT_PATH",
        "The directory of ca.pem (the engine's CA), cert.pem and key.pem (the client certificate and its key) for DOCKER_TLS_VERIFY; default DOCKER_CONFIG, else ~/.docker.",
    ),
    (
        "DOCKER_CONTEXT, DOCKER_CONFIG",
        "The Docker context naming the engine when DOCKER_HOST is unset (default: currentContext of config.json), read from the docker CLI's directory (DOCKER_CONFIG, default ~/.docker): contexts/meta/<sha256 of the name>/meta.json and its TLS files under contexts/tls/. A context that skips TLS verification is refused.",
    ),
    (
        "ANTHROPIC_API_KEY, OPENAI_API_KEY, ...",
        "An agent's credential variables (its definition's credentials), read before the ones git agent auth saved; they reach the credential proxy, never the sandbox.",
    ),
    (
        "HOME, XDG_CONFIG_HOME, XDG_STATE_HOME",
        "Where the user's files are (see FILES).",
    ),
    (
        "EDITOR, VISUAL, GIT_EDITOR, PAGER, GIT_PAGER",
        "Read by git, which opens the editor (spawn --edit, commit) and the pager (review, logs) as it does for its own commands.",
    ),
    (
        "MANPATH, MANPAGER",
        "Where git agent <command> --help finds the manual, and how man(1) shows it.",
    ),
    (
        "GIT_AGENT_COMPLETE",
        "Set by the completion scripts (git agent completion): the run answers a completion request instead of running a command.",
    ),
    (
        "GIT_AGENT_NESTED",
        "Set by git-agent for the git commands and hooks it runs, so the hooks it installed do nothing inside its own commands.",
    ),
    (
        "GIT_AGENT_EVENT, GIT_AGENT_TASK, GIT_AGENT_STATUS, GIT_AGENT_EXIT_CODE, GIT_AGENT_REASON",
        "Set for agent.onFinish and agent.onFail commands: the event (finish or fail), the task, its status, its exit code and why it ended.",
    ),
    (
        "GIT_AGENT_CRASH_AT",
        "For tests: stop the process at a named point, to prove a crash there leaves nothing half-done.",
    ),
    (
        "GIT_AGENT_RUNTIME, GIT_AGENT_LOCAL_RUNTIME_DIR",
        "For tests, in builds with the local-runtime feature only: run tasks as host processes in that directory instead of on an engine.",
    ),
];

/// (status, meaning).
pub const EXIT_STATUS: &[(&str, &str)] = &[
    ("0", "Success."),
    (
        "1",
        "The command failed; stderr says what went wrong (Error:) and what to do (Hint:). A failed command leaves your branches and repository as they were.",
    ),
    ("2", "Usage error: unknown command, option or value."),
    ("130", "Interrupted (Ctrl-C); nothing was left half-done."),
    (
        "N",
        "spawn --wait ends with the exit status of the task's run.",
    ),
];
