//! Attacks through the workspace and on the user's credentials.
//!
//! Whatever an agent plants in its checkout (hooks, repository config, filter and diff
//! drivers, attributes, symlinks out of the tree, crafted trees with `.git` entries) does
//! nothing on the host through `sync`, `review`, `commit` and `push`; and none of the user's
//! credentials (git's credential store, SSH and signing keys, forge tokens, agent keys of
//! other agents, secrets in config, ignored files or unrelated history) is inside a sandbox.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{TestEnv, hex};
use crate::require_docker;

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[track_caller]
fn docker(args: &[&str]) -> Output {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every path under `dir` (symlinks not followed) whose file name starts with `prefix`.
fn find_named(dir: &Path, prefix: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_name().to_string_lossy().starts_with(prefix) {
            found.push(path.clone());
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            find_named(&path, prefix, found);
        }
    }
}

/// Fingerprints of every file under `dir` (relative path -> mode and content hash).
fn fingerprint_tree(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = format!("{rel}/{}", e.file_name().to_string_lossy());
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        if meta.is_dir() {
            fingerprint_tree(&e.path(), &name, out);
        } else {
            let content = if meta.is_symlink() {
                std::fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes()
            } else {
                std::fs::read(e.path()).unwrap_or_default()
            };
            out.insert(
                name,
                format!("{:o} {}", meta.permissions().mode(), hex(&content)),
            );
        }
    }
}

/// The harness's snapshot, stricter: the contents (not only names) of hooks and `info/`,
/// the reflogs of HEAD and main, the names at the top of `.git`, and every ref except those
/// promoting `task` legitimately writes (its branch, the provenance notes, the remote-tracking
/// branch of the push).
fn host_state(env: &TestEnv, task: &str) -> BTreeMap<String, String> {
    let mut s = env.snapshot();
    let allowed = [
        format!("refs/heads/agent/{task} "),
        "refs/notes/agent ".to_string(),
        format!("refs/remotes/origin/agent/{task} "),
    ];
    let refs = s["refs"]
        .lines()
        .filter(|l| !allowed.iter().any(|a| l.starts_with(a.as_str())))
        .collect::<Vec<_>>()
        .join("\n");
    s.insert("refs".into(), refs);
    let gitdir = env.repo.join(".git");
    let mut files = BTreeMap::new();
    fingerprint_tree(&gitdir.join("hooks"), "hooks", &mut files);
    fingerprint_tree(&gitdir.join("info"), "info", &mut files);
    for f in ["logs/HEAD", "logs/refs/heads/main"] {
        files.insert(
            f.to_string(),
            hex(&std::fs::read(gitdir.join(f)).unwrap_or_default()),
        );
    }
    for (k, v) in files {
        s.insert(format!(".git/{k}"), v);
    }
    let mut top: Vec<String> = std::fs::read_dir(&gitdir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    s.insert(".git/*".into(), top.join(","));
    s
}

/// A shell command that, run anywhere but in a sandbox, leaves marker files: in the host
/// directory `markers` (an absolute path that exists only on the host), in the current
/// directory and in `$GIT_DIR`. In a sandbox it only records that it ran, in
/// `/tmp/sandbox-ran`, so the test can see the trap is live.
fn payload(name: &str, markers: &Path) -> String {
    format!(
        "if [ -n \"$GIT_AGENT_SANDBOX\" ]; then echo {name} >> /tmp/sandbox-ran; else touch '{m}/pwned-{name}' pwned-{name} \"${{GIT_DIR:-.}}/pwned-{name}\"; fi",
        m = markers.display()
    )
}

/// Single-quote `s` for sh.
fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

const HOOKS: &[&str] = &[
    "applypatch-msg",
    "pre-applypatch",
    "post-applypatch",
    "pre-commit",
    "pre-merge-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-receive",
    "update",
    "proc-receive",
    "post-receive",
    "post-update",
    "reference-transaction",
    "push-to-checkout",
    "pre-auto-gc",
    "post-rewrite",
    "sendemail-validate",
    "fsmonitor-watchman",
    "post-index-change",
];

/// The agent's script for the hostile-workspace test.
fn hostile_workspace_script(markers: &Path) -> String {
    let mut s = String::from("set -e\nmkdir -p .git/evil-hooks\n");
    for h in HOOKS {
        let body = format!("#!/bin/sh\n{}\nexit 0\n", payload(h, markers));
        for dir in [".git/hooks", ".git/evil-hooks"] {
            s += &format!(
                "printf '%s' {} > {dir}/{h} && chmod +x {dir}/{h}\n",
                sq(&body)
            );
        }
    }
    let p = |n: &str| payload(n, markers);
    let config: Vec<(&str, String)> = vec![
        ("core.fsmonitor", format!("{}; false", p("fsmonitor"))),
        ("core.hooksPath", "/workspace/.git/evil-hooks".into()),
        ("core.pager", format!("{}; cat", p("pager"))),
        ("core.sshCommand", format!("{}; false", p("sshcommand"))),
        ("core.editor", format!("{}; true", p("editor"))),
        ("core.askPass", format!("{}; true", p("askpass"))),
        ("core.gitProxy", format!("{}; false", p("gitproxy"))),
        (
            "core.alternateRefsCommand",
            format!("{}; true", p("altrefs")),
        ),
        ("sequence.editor", format!("{}; true", p("seqeditor"))),
        ("diff.external", format!("{}; true", p("diff-external"))),
        ("diff.x.command", format!("{}; true", p("diff-command"))),
        ("diff.x.textconv", format!("{}; cat", p("textconv"))),
        ("filter.x.clean", format!("{}; cat", p("filter-clean"))),
        ("filter.x.smudge", format!("{}; cat", p("filter-smudge"))),
        ("merge.x.driver", format!("{}; true", p("merge-driver"))),
        ("credential.helper", format!("!{}; true", p("credential"))),
        ("gpg.program", format!("{}; false", p("gpg"))),
        ("gpg.ssh.program", format!("{}; false", p("gpg-ssh"))),
        ("protocol.ext.allow", "always".into()),
        (
            "remote.origin.url",
            format!("ext::sh -c {}", sq(&p("ext-remote"))),
        ),
        (
            "uploadpack.packObjectsHook",
            format!("{}; true", p("packobjects")),
        ),
        ("receive.procReceiveRefs", "refs/heads".into()),
        ("alias.st", format!("!{}", p("alias"))),
        ("include.path", "/workspace/.git/evil-include".into()),
    ];
    for (k, v) in &config {
        s += &format!("git config {k} {}\n", sq(v));
    }
    s += &format!(
        "printf '[core]\\n\\tpager = %s\\n' {} > .git/evil-include\n",
        sq(&format!("{}; cat", p("included-pager")))
    );
    // Committed work: attributes assigning the filter, a diff driver and a merge driver,
    // files those apply to, and symlinks out of the tree and to a directory.
    s += r#"printf '*.txt filter=x diff=x merge=x\n*.dat filter=x -text\n' > .gitattributes
printf 'hello\n' > a.txt
printf 'data\n' > b.dat
ln -s /etc/passwd leak
ln -s ../../../../root/.ssh sshdir
ln -s /etc etc-link
mkdir real && printf 'inside\n' > real/f && ln -s real linkdir
ln -s .git dotgit-link
git add -A
git commit -qm "attributes, filtered files and symlinks"
printf 'more\n' >> a.txt
ln -s /root/.ssh/id_ed25519 key-link
echo planted
"#;
    s
}

/// An agent plants hooks, dangerous repository config and attribute-driven drivers in its
/// workspace and commits attributes and symlinks. `sync`, `review` (all forms), `commit` and
/// `push` on the host, and a checkout of the pushed branch, run none of it, change nothing
/// of the user's repository but the promoted branch, flag what deserves a look, and carry
/// symlinks as symlinks.
#[test]
fn hostile_workspace_is_inert_on_the_host() {
    require_docker!();
    let env = TestEnv::new();
    let markers = env.home.path().join("markers");
    std::fs::create_dir(&markers).unwrap();
    let remote = env.home.path().join("remote.git");
    env.git(&["init", "-q", "--bare", remote.to_str().unwrap()])
        .ok();
    env.git(&["remote", "add", "origin", remote.to_str().unwrap()])
        .ok();

    let script = hostile_workspace_script(&markers);
    let spawn = env
        .agent(&[
            "spawn", "--name", "hw", "--wait", "-m", "x", "--", "sh", "-c", &script,
        ])
        .ok();
    assert!(spawn.stderr.contains("planted"), "{spawn}");
    let before = host_state(&env, "hw");

    let sync = env.agent(&["sync", "hw"]).ok();
    assert!(sync.stderr.contains("1 new commit"), "{sync}");
    assert!(sync.stderr.contains("uncommitted changes"), "{sync}");

    let review = env.agent(&["review", "hw"]).ok().stdout;
    let stat = env.agent(&["review", "hw", "--stat"]).ok().stdout;
    let names = env.agent(&["review", "hw", "--name-only"]).ok().stdout;
    let json = env.json(&["review", "hw", "--json"]);
    for (path, why) in [
        (".gitattributes", "attributes"),
        ("leak", "symbolic link"),
        ("sshdir", "symbolic link"),
        ("etc-link", "symbolic link"),
        ("linkdir", "symbolic link"),
        ("dotgit-link", "symbolic link"),
        ("key-link", "symbolic link"),
    ] {
        assert!(
            review
                .lines()
                .any(|l| l.starts_with(&format!("  ! {path}: {why}"))),
            "{path} is not flagged:\n{review}"
        );
        assert!(
            json["sensitive"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["path"] == path && f["why"].as_str().unwrap().starts_with(why)),
            "{path} not flagged in JSON: {json}"
        );
        assert!(names.lines().any(|l| l == path), "{names}");
    }
    assert!(
        !json["sensitive"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "a.txt" || f["path"] == "real/f"),
        "{json}"
    );
    // Symlinks are shown as their target path, never followed.
    assert!(review.contains("+/etc/passwd"), "{review}");
    for out in [&review, &stat, &names] {
        assert!(
            !out.contains("root:x:0:0"),
            "a symlink was followed:\n{out}"
        );
    }
    assert!(stat.contains("files changed"), "{stat}");

    let commit = env
        .agent(&["commit", "hw", "-m", "Promote the hostile work"])
        .ok();
    assert_eq!(commit.stdout.trim(), "agent/hw");
    let push = env.agent(&["push", "hw"]).ok();
    assert!(push.stderr.contains("pushed agent/hw to origin"), "{push}");

    // The promoted tree carries symlinks as symlinks (mode 120000, the target as content).
    let tree = env
        .git(&[
            "ls-tree",
            "-r",
            "--format=%(objectmode) %(path)",
            "agent/hw",
        ])
        .ok()
        .stdout;
    for (path, target) in [
        ("leak", "/etc/passwd"),
        ("sshdir", "../../../../root/.ssh"),
        ("etc-link", "/etc"),
        ("linkdir", "real"),
        ("dotgit-link", ".git"),
        ("key-link", "/root/.ssh/id_ed25519"),
    ] {
        assert!(
            tree.lines().any(|l| l == format!("120000 {path}")),
            "{path}:\n{tree}"
        );
        assert_eq!(
            env.git(&["cat-file", "blob", &format!("agent/hw:{path}")])
                .ok()
                .stdout,
            target
        );
    }
    assert!(tree.lines().any(|l| l == "100644 real/f"), "{tree}");
    assert_eq!(
        env.git(&["show", "agent/hw:a.txt"]).ok().stdout,
        "hello\nmore\n",
        "content is the agent's, byte for byte"
    );

    // A fresh clone of the pushed branch checks out the attributes and symlinks inertly.
    let clone = env.home.path().join("clone");
    env.git(&[
        "clone",
        "-q",
        "-b",
        "agent/hw",
        remote.to_str().unwrap(),
        clone.to_str().unwrap(),
    ])
    .ok();
    let c = clone.to_str().unwrap();
    env.git(&["-C", c, "diff", "--stat", "HEAD~2", "HEAD"]).ok();
    env.git(&["-C", c, "log", "-p", "-2"]).ok();
    env.git(&["-C", c, "status", "--porcelain"]).ok();
    for (path, target) in [
        ("leak", "/etc/passwd"),
        ("linkdir", "real"),
        ("dotgit-link", ".git"),
    ] {
        let p = clone.join(path);
        assert!(
            std::fs::symlink_metadata(&p).unwrap().is_symlink(),
            "{path}"
        );
        assert_eq!(std::fs::read_link(&p).unwrap(), Path::new(target));
    }

    // Nothing ran on the host: no marker anywhere under the test's home (repository,
    // remote, clone, marker directory).
    let mut pwned = Vec::new();
    find_named(env.home.path(), "pwned", &mut pwned);
    assert!(
        pwned.is_empty(),
        "code from the sandbox ran on the host: {pwned:?}"
    );
    assert_eq!(std::fs::read_dir(&markers).unwrap().count(), 0);
    assert_eq!(before, host_state(&env, "hw"));

    // The traps were live: inside the sandbox the same hooks, filter and fsmonitor fired.
    // (Copied out of the stopped container: it cannot start again once its network is gone.)
    let container = env.container_of("hw");
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("ran");
    docker(&[
        "cp",
        &format!("{container}:/tmp/sandbox-ran"),
        copy.to_str().unwrap(),
    ]);
    let ran = std::fs::read_to_string(&copy).unwrap();
    for trap in [
        "pre-commit",
        "commit-msg",
        "post-commit",
        "reference-transaction",
        "filter-clean",
        "fsmonitor",
    ] {
        assert!(ran.lines().any(|l| l == trap), "{trap} never ran:\n{ran}");
    }
}

/// Trees whose entries git refuses to check out or treats as repository metadata (`.git` in
/// any spelling, at any depth, as a directory or a symlink; a symlinked `.gitmodules`) are
/// rejected at sync: no object of them enters the user's repository and no ref moves. A
/// symlinked `.gitattributes` (only a warning for git) comes in flagged.
#[test]
fn crafted_trees_with_git_metadata_entries_are_rejected() {
    require_docker!();
    let env = TestEnv::new();
    env.agent(&["spawn", "--name", "craft", "-m", "x", "--", "sleep", "300"])
        .ok();
    let base = env.task_refs("craft")["base"].clone();
    // Builds $hooks (a tree `hooks/post-checkout` with an executable script) and $link (a
    // symlink blob to /tmp), then the top tree from the case's lines, commits it on the
    // task's branch and prints the tree id.
    let prelude = format!(
        r#"set -e
cd /workspace
blob=$(printf '#!/bin/sh\ntouch pwned-hook\n' | git hash-object -w --stdin)
hooks=$(printf '100755 blob %s\tpost-checkout\n' "$blob" | git mktree)
dotgit=$(printf '040000 tree %s\thooks\n' "$hooks" | git mktree)
link=$(printf /tmp | git hash-object -w --stdin)
readme=$(git rev-parse {base}:README.md)
"#
    );
    let finish = format!(
        r#"
c=$(git commit-tree "$t" -p {base} -m crafted)
git update-ref "$(git symbolic-ref HEAD)" "$c"
echo "$t"
"#
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            ".git tree",
            "hasDotgit",
            r#"t=$(printf '040000 tree %s\t.git\n' "$dotgit" | git mktree)"#,
        ),
        (
            ".GIT tree",
            "hasDotgit",
            r#"t=$(printf '040000 tree %s\t.GIT\n' "$dotgit" | git mktree)"#,
        ),
        (
            "nested .git",
            "hasDotgit",
            r#"sub=$(printf '040000 tree %s\t.git\n' "$dotgit" | git mktree)
t=$(printf '040000 tree %s\tsub\n100644 blob %s\tREADME.md\n' "$sub" "$readme" | git mktree)"#,
        ),
        (
            ".git symlink",
            "hasDotgit",
            r#"t=$(printf '120000 blob %s\t.git\n' "$link" | git mktree)"#,
        ),
        (
            "NTFS short name",
            "hasDotgit",
            r#"t=$(printf '040000 tree %s\tgit~1\n' "$dotgit" | git mktree)"#,
        ),
        (
            "NTFS trailing dot",
            "hasDotgit",
            r#"t=$(printf '040000 tree %s\t.git.\n' "$dotgit" | git mktree)"#,
        ),
        (
            "HFS ignorable",
            "hasDotgit",
            r#"t=$(printf '040000 tree %s\t.g\342\200\214it\n' "$dotgit" | git mktree)"#,
        ),
        (
            ".gitmodules symlink",
            "gitmodulesSymlink",
            r#"t=$(printf '120000 blob %s\t.gitmodules\n' "$link" | git mktree)"#,
        ),
        (
            "dot-dot entry",
            "hasDotdot",
            r#"t=$(printf '040000 tree %s\t..\n' "$dotgit" | git mktree)"#,
        ),
    ];
    let before = env.snapshot();
    let refs_before = env.task_refs("craft");
    for (what, fsck_id, lines) in cases {
        let made = env
            .docker_exec("craft", &format!("{prelude}{lines}{finish}"))
            .ok();
        let tree = made.stdout.trim().to_string();
        assert_eq!(tree.len(), 40, "{what}: {made}");
        let e = env.agent(&["sync", "craft"]).fails();
        assert!(
            e.stderr.contains("rejected the sandbox's work")
                && e.stderr.contains("integrity check")
                && e.stderr.contains(fsck_id),
            "{what}: {e}"
        );
        assert_eq!(before, env.snapshot(), "{what}");
        assert_eq!(refs_before, env.task_refs("craft"), "{what}");
        assert_ne!(
            env.git(&["cat-file", "-e", &tree]).code,
            0,
            "{what}: the crafted tree entered the host repository"
        );
        let r = env.agent(&["review", "craft"]);
        assert_eq!(r.code, 1, "{what}: review syncs and so refuses too: {r}");
    }
    let mut pwned = Vec::new();
    find_named(env.home.path(), "pwned", &mut pwned);
    assert!(pwned.is_empty(), "{pwned:?}");

    // Control: the same machinery admits an ordinary tree, and a symlinked .gitattributes
    // (git itself never follows one) comes in flagged twice.
    let made = env
        .docker_exec(
            "craft",
            &format!(
                "{prelude}t=$(printf '120000 blob %s\\t.gitattributes\\n100644 blob %s\\tREADME.md\\n' \"$link\" \"$readme\" | git mktree){finish}git reset -q --hard\n"
            ),
        )
        .ok();
    let tree = made.stdout.trim().to_string();
    env.agent(&["sync", "craft"]).ok();
    assert_eq!(
        env.git(&["rev-parse", "refs/agent/craft/head^{tree}"])
            .stdout
            .trim(),
        tree
    );
    assert!(!env.task_refs("craft").contains_key("wip"));
    let review = env.agent(&["review", "craft", "--no-sync"]).ok().stdout;
    for why in ["attributes", "symbolic link"] {
        assert!(
            review
                .lines()
                .any(|l| l.starts_with(&format!("  ! .gitattributes: {why}"))),
            "{review}"
        );
    }
}

/// Secrets of the user's, each with a random part made by this test.
struct Secrets {
    /// (where it lives, the token); every token is `GASECRET` and 32 hex digits.
    tokens: Vec<(&'static str, String)>,
    /// Environment variables to give `git agent spawn`.
    env: Vec<(&'static str, String)>,
    /// Private key files' contents.
    keys: Vec<(&'static str, String)>,
}

const SECRET_PREFIX: &str = "GASECRET";

fn token() -> String {
    format!("{SECRET_PREFIX}{}", random_hex(16))
}

/// Put credentials where a developer has them: git's credential store, an auth header in
/// global and repository config, an SSH key, an SSH signing key (used: commits are signed),
/// forge and agent tokens in the environment, a token in an ignored file, on an unrelated
/// branch and in a stash.
fn plant_secrets(env: &TestEnv) -> Secrets {
    let home = env.home.path();
    let mut tokens = Vec::new();

    let store = token();
    std::fs::write(
        home.join(".git-credentials"),
        format!("https://user:{store}@example.com\n"),
    )
    .unwrap();
    env.git(&["config", "--global", "credential.helper", "store"])
        .ok();
    tokens.push(("credential store", store));

    let header = token();
    env.git(&[
        "config",
        "--global",
        "http.extraHeader",
        &format!("Authorization: Bearer {header}"),
    ])
    .ok();
    tokens.push(("global http.extraHeader", header));
    let local = token();
    env.git(&[
        "config",
        "http.https://example.com/.extraHeader",
        &format!("Authorization: Bearer {local}"),
    ])
    .ok();
    tokens.push(("repository http.extraHeader", local));

    let ssh = home.join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    let mut keys = Vec::new();
    for (what, file) in [
        ("ssh key", "id_ed25519"),
        ("signing key", "signing_ed25519"),
    ] {
        let path = ssh.join(file);
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "user@host", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen runs (openssh-client)");
        assert!(st.success());
        keys.push((what, std::fs::read_to_string(&path).unwrap()));
    }
    let signing = ssh.join("signing_ed25519");
    let pubkey = std::fs::read_to_string(signing.with_extension("pub")).unwrap();
    let allowed = home.join("allowed_signers");
    std::fs::write(&allowed, format!("test@example.com {pubkey}")).unwrap();
    for (k, v) in [
        ("gpg.format", "ssh"),
        ("user.signingKey", signing.to_str().unwrap()),
        ("gpg.ssh.allowedSignersFile", allowed.to_str().unwrap()),
        ("commit.gpgSign", "true"),
        ("core.sshCommand", "ssh -i ~/.ssh/id_ed25519"),
    ] {
        env.git(&["config", "--global", k, v]).ok();
    }

    let ignored = token();
    env.write("ignored.log", &format!("API_TOKEN={ignored}\n"));
    tokens.push(("ignored file", ignored));

    let branch = token();
    env.git(&["checkout", "-q", "-b", "private"]).ok();
    env.write("secret.env", &format!("TOKEN={branch}\n"));
    env.git(&["add", "secret.env"]).ok();
    env.git(&["commit", "-q", "-m", "private"]).ok();
    env.git(&["checkout", "-q", "main"]).ok();
    tokens.push(("unrelated branch", branch));

    let stash = token();
    env.write("README.md", &format!("# demo\n{stash}\n"));
    env.git(&["stash", "-q"]).ok();
    tokens.push(("stash", stash));

    let mut vars = Vec::new();
    for var in [
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITLAB_TOKEN",
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
    ] {
        let t = token();
        vars.push((var, t.clone()));
        tokens.push((var, t));
    }
    vars.push(("SSH_AUTH_SOCK", "/tmp/ssh-agent.sock".to_string()));
    Secrets {
        tokens,
        env: vars,
        keys,
    }
}

/// `git agent spawn` with the secrets' variables in its environment.
fn spawn_with_secrets(env: &TestEnv, secrets: &Secrets, args: &[&str]) -> crate::common::Run {
    env.agent_with(args, |c| {
        for (k, v) in &secrets.env {
            c.env(k, v);
        }
    })
}

/// The in-sandbox search: every readable file, every process's environment and command
/// line, and `env`, for anything shaped like one of the test's tokens or like a private key
/// file, for key and credential files by name, and git's view of its config. The patterns do
/// not match their own text, and a control token and a control key the script makes at run
/// time prove the search finds what is there.
const SEARCH: &str = r#"P='GASECR[E]T[0-9a-f]{32}'
K='-----BEGIN OPENSSH PRIV[A]TE KEY-----\r?\n[A-Za-z0-9+/=]{40,}'
printf 'GASECR%s%s\n' ET "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" > /tmp/control-secret
printf -- '-----BEGIN OPENSSH PRIV%sTE KEY-----\n%s\n' A "$(head -c 60 /dev/urandom | base64 -w0)" > /tmp/control-key
find / \( -path /proc -o -path /sys -o -path /dev \) -prune -o -type f -readable -print > /tmp/files
echo "files=$(wc -l < /tmp/files)"
tr '\n' '\0' < /tmp/files | xargs -0 grep -lEa -e "$P" 2>/dev/null | sed 's/^/filehit=/' || true
tr '\n' '\0' < /tmp/files | xargs -0 grep -lzaP -e "$K" 2>/dev/null | sed 's/^/keyhit=/' || true
GA_CONTROL="$(cat /tmp/control-secret)" sleep 60 &
ctl=$!
procs=0
for d in /proc/[0-9]*; do
  [ -r "$d/environ" ] || continue
  procs=$((procs + 1))
  tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -aE "$P" | cut -d= -f1 | sed "s|^|prochit=$d:|"
  tr '\0' '\n' < "$d/cmdline" 2>/dev/null | grep -qaE "$P" && echo "cmdhit=$d"
done
echo "procs=$procs"
kill "$ctl"
export GA_CONTROL="$(cat /tmp/control-secret)"
env | grep -aE "$P" | cut -d= -f1 | sed 's/^/envhit=/'
env | grep -aE '^(SSH_AUTH_SOCK|GITHUB|GH_|GITLAB|ANTHROPIC|OPENAI)' | cut -d= -f1 | sed 's/^/envvar=/'
find / \( -path /proc -o -path /sys \) -prune -o \( -name .git-credentials -o -name 'id_ed25519*' -o -name 'signing_ed25519*' -o -name .netrc -o -name allowed_signers \) -print 2>/dev/null | sed 's/^/namehit=/'
git config --list --show-origin 2>/dev/null | grep -iE 'credential|extraheader|signingkey|gpg|sshcommand' | sed 's/^/gitcfg=/'
git log --all --format=%H | wc -l | sed 's/^/commits=/'
echo search-done
"#;

/// Run inside the sandbox, the search finds no credential of the user's: not in any file,
/// process environment or command line, not in git's config, and no key file.
#[test]
fn the_sandbox_holds_no_user_credentials() {
    require_docker!();
    let env = TestEnv::new();
    let secrets = plant_secrets(&env);
    env.write("untracked.txt", "carried by --dirty\n");
    let run = spawn_with_secrets(
        &env,
        &secrets,
        &[
            "spawn", "--name", "search", "--dirty", "--wait", "-m", "x", "--", "sh", "-c", SEARCH,
        ],
    )
    .ok();
    let out = &run.stderr;
    assert!(out.contains("search-done"), "{run}");
    let value = |key: &str| -> Vec<&str> {
        out.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    };
    let files: usize = value("files")[0].parse().unwrap();
    assert!(files > 2000, "the search saw only {files} files:\n{out}");
    let procs: usize = value("procs")[0].parse().unwrap();
    assert!(procs >= 2, "{out}");
    // The control token is found in its file and in the environment, and nothing else is.
    assert_eq!(value("filehit"), ["/tmp/control-secret"], "{out}");
    assert_eq!(value("keyhit"), ["/tmp/control-key"], "{out}");
    assert_eq!(value("envhit"), ["GA_CONTROL"], "{out}");
    for hit in value("prochit") {
        assert!(
            hit.ends_with(":GA_CONTROL"),
            "a process holds a token: {hit}\n{out}"
        );
    }
    assert!(
        !value("prochit").is_empty(),
        "process environments were not searched:\n{out}"
    );
    for key in ["cmdhit", "envvar", "namehit", "gitcfg"] {
        assert!(value(key).is_empty(), "{key}: {:?}\n{out}", value(key));
    }
    // Only the base's history is in the sandbox: no unrelated branch, no stash.
    assert_eq!(value("commits"), ["2"], "{out}");
    for (what, t) in &secrets.tokens {
        assert!(!out.contains(t.as_str()), "{what} in the task's output");
    }
}

/// Bytes that must not contain any secret: what the engine holds for a task, read on the
/// host (the container's whole filesystem, its workspace and home volumes, its and its
/// image's configuration, its log).
fn engine_bytes(env: &TestEnv, task: &str, dir: &Path) -> Vec<(String, PathBuf)> {
    let container = env.container_of(task);
    let inspect = docker(&["inspect", &container]).stdout;
    let info: serde_json::Value = serde_json::from_slice(&inspect).unwrap();
    let image = info[0]["Config"]["Image"].as_str().unwrap().to_string();
    let mounts: Vec<(String, String)> = info[0]["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["Destination"].as_str().unwrap().to_string(),
                m["Name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut sources = Vec::new();
    fn save(sources: &mut Vec<(String, PathBuf)>, dir: &Path, name: &str, bytes: Vec<u8>) {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        sources.push((name.to_string(), p));
    }
    save(&mut sources, dir, "inspect", inspect.clone());
    save(
        &mut sources,
        dir,
        "image",
        docker(&["image", "inspect", &image]).stdout,
    );
    save(
        &mut sources,
        dir,
        "history",
        docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}",
            &image,
        ])
        .stdout,
    );
    let logs = docker(&["logs", &container]);
    save(
        &mut sources,
        dir,
        "logs",
        [logs.stdout, logs.stderr].concat(),
    );
    let export = dir.join("export.tar");
    docker(&["export", "-o", export.to_str().unwrap(), &container]);
    sources.push(("export".into(), export));
    for (dest, volume) in &mounts {
        let name = format!("volume {dest}");
        let tar = dir.join(name.replace('/', "_"));
        let out = docker(&["cp", &format!("{container}:{dest}/."), "-"]);
        std::fs::write(&tar, out.stdout).unwrap();
        sources.push((name, tar));
        save(
            &mut sources,
            dir,
            &format!("volume inspect {}", volume.replace('/', "_")),
            docker(&["volume", "inspect", volume]).stdout,
        );
    }
    sources
}

/// Which of `needles` occur in `file` (a fixed-string search by the host's grep).
fn found_in(file: &Path, needles: &[String], dir: &Path) -> Vec<String> {
    let list = dir.join("needles");
    std::fs::write(&list, needles.join("\n") + "\n").unwrap();
    let out = Command::new("grep")
        .args(["-aoF", "-f"])
        .arg(&list)
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    needles
        .iter()
        .filter(|n| text.contains(n.as_str()))
        .cloned()
        .collect()
}

/// Read on the host, the engine's copy of everything about a task that ran, synced and was
/// promoted (signed) and pushed holds no secret: no token, no line of a private key.
/// Control strings the task wrote into its workspace, home and root filesystem, and one in its
/// command, are found in exactly those places, so the search is not vacuous.
#[test]
fn the_engine_holds_no_user_credentials() {
    require_docker!();
    let env = TestEnv::new();
    let secrets = plant_secrets(&env);
    let remote = env.home.path().join("remote.git");
    env.git(&["init", "-q", "--bare", remote.to_str().unwrap()])
        .ok();
    env.git(&["remote", "add", "origin", remote.to_str().unwrap()])
        .ok();
    env.write("untracked.txt", "carried by --dirty\n");

    let ws_control = format!("GACONTROLWS{}", random_hex(16));
    let home_control = format!("GACONTROLHOME{}", random_hex(16));
    let root_control = format!("GACONTROLROOT{}", random_hex(16));
    let cmd_control = format!("GACONTROLCMD{}", random_hex(16));
    // The workspace, home and root-filesystem controls come in the prompt (stdin).
    let work = format!(
        r#"set -e
: {cmd_control}
read -r ws home root || true
echo "$ws" > control.txt
git add control.txt && git commit -qm control
echo "$home" > "$HOME/control.txt"
echo "$root" > /tmp/control.txt
echo done"#
    );
    let prompt = format!("{ws_control} {home_control} {root_control}");
    spawn_with_secrets(
        &env,
        &secrets,
        &[
            "spawn", "--name", "eng", "--dirty", "--wait", "-m", &prompt, "--", "sh", "-c", &work,
        ],
    )
    .ok();
    env.agent(&["sync", "eng"]).ok();
    env.agent(&["review", "eng"]).ok();
    env.agent(&["commit", "eng"]).ok();
    env.git(&["verify-commit", "agent/eng"]).ok();
    env.agent(&["push", "eng"]).ok();

    let mut needles: Vec<String> = secrets.tokens.iter().map(|(_, t)| t.clone()).collect();
    for (_, key) in &secrets.keys {
        let body: Vec<&str> = key
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.is_empty())
            .collect();
        assert!(body.len() >= 3, "{key}");
        needles.extend(body.iter().map(|l| l.to_string()));
        needles.push(body.concat());
    }
    let dir = tempfile::tempdir().unwrap();
    let sources = engine_bytes(&env, "eng", dir.path());
    let names: Vec<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["export", "volume /workspace", "inspect", "image", "logs"] {
        assert!(names.contains(&want), "{names:?}");
    }
    // Agents with sessions keep their home in a volume; otherwise it is in the export.
    let home_place = if names.contains(&"volume /home/agent") {
        "volume /home/agent"
    } else {
        "export"
    };
    let controls = [
        ("volume /workspace", ws_control.clone()),
        (home_place, home_control.clone()),
        ("export", root_control.clone()),
        ("inspect", cmd_control.clone()),
    ];
    needles.extend(controls.iter().map(|(_, c)| c.clone()));
    let mut control_seen = Vec::new();
    for (name, file) in &sources {
        let size = std::fs::metadata(file).unwrap().len();
        for hit in found_in(file, &needles, dir.path()) {
            if let Some((place, _)) = controls.iter().find(|(_, c)| *c == hit) {
                if place == name {
                    control_seen.push(*place);
                }
                continue;
            }
            let what = secrets
                .tokens
                .iter()
                .find(|(_, t)| *t == hit)
                .map_or("a private key", |(w, _)| *w);
            panic!("{what} is in the engine's {name} ({size} bytes)");
        }
    }
    for (place, _) in &controls {
        assert!(
            control_seen.contains(place),
            "control not found in {place}: the search is blind there"
        );
    }
    // The export is the whole filesystem, not a stub.
    assert!(
        std::fs::metadata(dir.path().join("export.tar"))
            .unwrap()
            .len()
            > 50_000_000
    );
}

/// Terminal control sequences and bidirectional-text overrides planted in file names, commit
/// messages and output reach the user's terminal only escaped: `review` (all forms), `list` and
/// `status` print none of them raw, so a sandbox can neither drive the terminal (titles,
/// clipboard, cursor moves that hide lines) nor make a flagged path read as another.
#[test]
fn terminal_controls_from_the_sandbox_are_escaped() {
    require_docker!();
    let env = TestEnv::new();
    let work = r#"set -e
printf 'x\n' > "$(printf 'esc\033]0;pwned\007name.txt')"
f="$(printf 'evil\342\200\256hs.txt')"
printf '#!/bin/sh\n' > "$f" && chmod +x "$f"
ln -s /etc/passwd "$(printf 'link\033[2K\rinnocent')"
git add -A
git commit -qm "$(printf 'subject \033]0;title\007 \033[31mred\r \342\200\256dlrow')"
printf 'output \033]52;c;cGF5bG9hZA==\007 clipboard\r\n'"#;
    env.agent(&[
        "spawn", "--name", "term", "--wait", "-m", "x", "--", "sh", "-c", work,
    ])
    .ok();
    let outputs = [
        ("review", env.agent(&["review", "term"]).ok().stdout),
        (
            "review --stat",
            env.agent(&["review", "term", "--stat"]).ok().stdout,
        ),
        (
            "review --name-only",
            env.agent(&["review", "term", "--name-only"]).ok().stdout,
        ),
        ("list", env.agent(&["list"]).ok().stdout),
        ("status", env.agent(&["status", "term"]).ok().stdout),
    ];
    let review = &outputs[0].1;
    assert!(review.contains("made executable"), "{review}");
    assert!(review.contains("symbolic link"), "{review}");
    assert!(
        review.contains("clipboard"),
        "the output tail is shown:\n{review}"
    );
    for (what, out) in &outputs {
        for bad in ['\x1b', '\x07', '\r', '\u{202e}'] {
            assert!(
                !out.contains(bad),
                "{what} prints {bad:?} raw:\n{}",
                out.escape_debug()
            );
        }
    }
}
