//! The repository's project snippet (`.git-agent/dockerfiles/project.dockerfile`) is
//! untrusted text. It is never handed to the engine's builder: it is parsed here into plain
//! steps, which [`super::project`] runs one by one in a sandboxed container.
//!
//! Only three instructions are accepted, because only they are needed to add packages and
//! files and none of them can change how a task's container starts:
//! - `RUN` (shell form, exec/JSON form, heredocs), run as root with `/bin/sh -c`;
//! - `ENV` (`KEY=value ...` or the legacy `KEY value`), kept for later steps and the task,
//!   except names that would change how the sandbox, git, the proxy or the agent behave
//!   ([`reserved_env`]);
//! - `WORKDIR`, the directory later `RUN` steps start in (the task still starts in
//!   `/workspace`).
//!
//! Everything else (`FROM`, `COPY`, `ADD`, `USER`, `ENTRYPOINT`, `CMD`, `SHELL`, `ONBUILD`,
//! `HEALTHCHECK`, `VOLUME`, `STOPSIGNAL`, `ARG`, `LABEL`, `EXPOSE`, ...) is refused with the
//! file, line and a hint. The grammar follows the Dockerfile reference: parser directives
//! (`escape` is honoured, `syntax` and `check` are ignored), comments, line continuations
//! with the escape character, case-insensitive keywords, leading whitespace, and `$VAR`,
//! `${VAR}`, `${VAR:-word}`, `${VAR:+word}` in `ENV` and `WORKDIR`.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::error::hinted;

/// One accepted instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instr {
    /// `/bin/sh -c <script>`.
    Shell(String),
    /// The exec (JSON) form: argv, no shell.
    Exec(Vec<String>),
    Env(Vec<(String, String)>),
    Workdir(String),
}

/// An instruction and the line it starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    pub instr: Instr,
}

impl Step {
    /// A one-line description for progress output.
    pub fn describe(&self) -> String {
        let text = match &self.instr {
            Instr::Shell(s) => format!("RUN {s}"),
            Instr::Exec(argv) => format!("RUN {}", serde_json::to_string(argv).unwrap_or_default()),
            Instr::Env(kv) => format!(
                "ENV {}",
                kv.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Instr::Workdir(d) => format!("WORKDIR {d}"),
        };
        let first = text.lines().next().unwrap_or("");
        let mut short: String = first.chars().take(100).collect();
        if short.len() < text.len() {
            short.push_str(" ...");
        }
        short
    }
}

/// Why `name` may not be set by a project snippet, if it may not. `extra` are names the
/// agents in use read (their credential and base-URL variables and settings).
pub fn reserved_env(name: &str, extra: &[String]) -> Option<&'static str> {
    let n = name.to_ascii_uppercase();
    if extra.iter().any(|e| e.eq_ignore_ascii_case(name)) {
        return Some("the agent reads it (credentials, API endpoint or settings)");
    }
    const EXACT: &[&str] = &[
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "ENV",
        "BASH_ENV",
        "IFS",
        "PS4",
        "PROMPT_COMMAND",
        "NODE_OPTIONS",
        "NODE_EXTRA_CA_CERTS",
        "NODE_TLS_REJECT_UNAUTHORIZED",
        "PYTHONSTARTUP",
        "PYTHONHOME",
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "RUBYOPT",
        "RUBYLIB",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
    ];
    if EXACT.contains(&n.as_str()) {
        return Some("it changes how the sandbox's shells, runtimes or TLS behave");
    }
    if n.ends_with("PATH") {
        return Some("a search path decides which programs and libraries run");
    }
    if n.starts_with("LD_") || n.starts_with("DYLD_") {
        return Some("the dynamic loader reads it");
    }
    if n.starts_with("GIT_") {
        return Some("git and git-agent's sandbox helper read it");
    }
    if n.ends_with("_PROXY") {
        return Some("the task's way out is set by git-agent");
    }
    const AGENTISH: &[&str] = &["ANTHROPIC_", "OPENAI_", "CLAUDE_", "CODEX_", "OPENCODE_"];
    if AGENTISH.iter().any(|p| n.starts_with(p)) {
        return Some("agents read it");
    }
    const SECRETISH: &[&str] = &[
        "API_KEY",
        "APIKEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "BASE_URL",
        "API_URL",
    ];
    if SECRETISH.iter().any(|p| n.contains(p)) {
        return Some("it names a credential or an API endpoint");
    }
    None
}

/// Parse a project snippet. `origin` names the file in errors; `env` is the environment the
/// steps start with (for `$VAR` in `ENV`/`WORKDIR`); `extra_reserved` as for
/// [`reserved_env`].
pub fn parse(
    text: &str,
    origin: &str,
    env: &[String],
    extra_reserved: &[String],
) -> Result<Vec<Step>> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut escape = '\\';
    let mut i = 0;
    // Parser directives: only at the very top, before any comment, blank or instruction.
    let mut seen = Vec::new();
    while i < lines.len() {
        let Some((name, value)) = directive(lines[i]) else {
            break;
        };
        if seen.contains(&name) {
            return Err(bad(
                origin,
                i + 1,
                format!("the parser directive '{name}' appears twice"),
                "keep one",
            ));
        }
        if name == "escape" {
            escape = match value.as_str() {
                "\\" => '\\',
                "`" => '`',
                _ => {
                    return Err(bad(
                        origin,
                        i + 1,
                        format!("invalid escape character '{value}'"),
                        "use `# escape=\\` or `# escape=``",
                    ));
                }
            };
        }
        seen.push(name);
        i += 1;
    }

    let mut vars: BTreeMap<String, String> = env
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut workdir = "/".to_string();
    let mut steps = Vec::new();
    while i < lines.len() {
        let start = i;
        let first = lines[i].trim_start();
        i += 1;
        if first.is_empty() || first.starts_with('#') {
            continue;
        }
        // Join continuation lines; comment and blank lines inside are dropped (as Docker does).
        let mut logical = String::new();
        let mut cur = first.to_string();
        loop {
            match continued(&cur, escape) {
                Some(head) => {
                    logical.push_str(head);
                    let mut next = None;
                    while i < lines.len() {
                        let l = lines[i];
                        i += 1;
                        let t = l.trim_start();
                        if t.is_empty() || t.starts_with('#') {
                            continue;
                        }
                        next = Some(l.to_string());
                        break;
                    }
                    match next {
                        Some(n) => cur = n,
                        None => break,
                    }
                }
                None => {
                    logical.push_str(&cur);
                    break;
                }
            }
        }
        let line = start + 1;
        let (word, rest) = match logical.find(char::is_whitespace) {
            Some(p) => (&logical[..p], logical[p..].trim()),
            None => (logical.as_str(), ""),
        };
        let keyword = word.to_ascii_uppercase();
        let instr = match keyword.as_str() {
            "RUN" => {
                if rest.is_empty() {
                    return Err(bad(
                        origin,
                        line,
                        "RUN needs a command",
                        "write RUN <command>",
                    ));
                }
                let heredocs = heredoc_words(rest);
                if !heredocs.is_empty() {
                    let mut bodies = Vec::new();
                    for h in &heredocs {
                        let mut body = Vec::new();
                        let mut closed = false;
                        while i < lines.len() {
                            let l = lines[i];
                            i += 1;
                            let cmp = if h.strip_tabs {
                                l.trim_start_matches('\t')
                            } else {
                                l
                            };
                            if cmp == h.tag {
                                closed = true;
                                break;
                            }
                            body.push(l);
                        }
                        if !closed {
                            return Err(bad(
                                origin,
                                line,
                                format!("the heredoc <<{} is not closed", h.tag),
                                format!("end it with a line holding only {}", h.tag),
                            ));
                        }
                        bodies.push(body);
                    }
                    let only_heredoc = rest.split_whitespace().count() == 1;
                    if only_heredoc {
                        // `RUN <<EOF`: the body is the script.
                        let body: Vec<&str> = if heredocs[0].strip_tabs {
                            bodies[0]
                                .iter()
                                .map(|l| l.trim_start_matches('\t'))
                                .collect()
                        } else {
                            bodies[0].clone()
                        };
                        Instr::Shell(body.join("\n"))
                    } else {
                        // A command reading heredocs: the shell handles them itself.
                        let mut script = rest.to_string();
                        for (h, body) in heredocs.iter().zip(&bodies) {
                            script.push('\n');
                            for l in body {
                                script.push_str(l);
                                script.push('\n');
                            }
                            script.push_str(&h.tag);
                        }
                        Instr::Shell(script)
                    }
                } else if rest.starts_with('[') {
                    match serde_json::from_str::<Vec<String>>(rest) {
                        Ok(argv) if !argv.is_empty() => Instr::Exec(argv),
                        Ok(_) => {
                            return Err(bad(
                                origin,
                                line,
                                "RUN [] has no command",
                                "write the command to run",
                            ));
                        }
                        // Not valid JSON: the shell form, as Docker treats it.
                        Err(_) => Instr::Shell(rest.to_string()),
                    }
                } else {
                    Instr::Shell(rest.to_string())
                }
            }
            "ENV" => {
                let pairs = parse_env(rest, escape, &vars).map_err(|e| {
                    bad(
                        origin,
                        line,
                        format!("bad ENV: {e}"),
                        "write ENV NAME=value (quote values with spaces)",
                    )
                })?;
                for (k, _) in &pairs {
                    if let Some(why) = reserved_env(k, extra_reserved) {
                        return Err(bad(
                            origin,
                            line,
                            format!("ENV may not set {k}: {why}"),
                            "set it inside the RUN step that needs it (RUN NAME=value command), or install tools into /usr/local/bin",
                        ));
                    }
                }
                for (k, v) in &pairs {
                    vars.insert(k.clone(), v.clone());
                }
                Instr::Env(pairs)
            }
            "WORKDIR" => {
                let words = words(rest, escape, &vars).map_err(|e| {
                    bad(
                        origin,
                        line,
                        format!("bad WORKDIR: {e}"),
                        "write WORKDIR /path",
                    )
                })?;
                let [dir] = words.as_slice() else {
                    return Err(bad(
                        origin,
                        line,
                        "WORKDIR takes one path",
                        "write WORKDIR /path (quote a path with spaces)",
                    ));
                };
                if dir.contains('\0') {
                    return Err(bad(origin, line, "bad WORKDIR path", "write WORKDIR /path"));
                }
                workdir = if dir.starts_with('/') {
                    dir.clone()
                } else if workdir.ends_with('/') {
                    format!("{workdir}{dir}")
                } else {
                    format!("{workdir}/{dir}")
                };
                Instr::Workdir(workdir.clone())
            }
            _ => {
                let hint = refused_hint(&keyword);
                return Err(bad(
                    origin,
                    line,
                    format!(
                        "{word} is not allowed in a project dockerfile (only RUN, ENV and WORKDIR are)"
                    ),
                    hint,
                ));
            }
        };
        steps.push(Step { line, instr });
    }
    Ok(steps)
}

fn bad(
    origin: &str,
    line: usize,
    what: impl std::fmt::Display,
    hint: impl Into<String>,
) -> anyhow::Error {
    hinted(format!("{origin}:{line}: {what}"), hint)
}

fn refused_hint(keyword: &str) -> &'static str {
    match keyword {
        "FROM" => "set the base image with `git config agent.baseImage <image>` instead",
        "COPY" | "ADD" => {
            "a project build cannot read the repository or fetch URLs itself: download in a RUN step (it reaches the package registries of the `build` network profile), or let the task do it"
        }
        "USER" => {
            "project steps run as root and tasks always run as the task user; use `runuser -u agent -- <command>` inside a RUN step"
        }
        "ARG" => "use ENV, or a shell variable inside the RUN step",
        _ => {
            "git-agent decides how a task's container starts; move the work into a RUN step, or put the instruction in your own stack file (~/.config/git-agent/dockerfiles/stacks/)"
        }
    }
}

/// `# name=value` at the top of the file.
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim().strip_prefix('#')?;
    let (name, value) = body.split_once('=')?;
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    matches!(name.as_str(), "escape" | "syntax" | "check").then(|| (name, value.trim().to_string()))
}

/// The line without its continuation escape, if it ends with one (trailing blanks allowed).
fn continued(line: &str, escape: char) -> Option<&str> {
    let t = line.trim_end();
    t.strip_suffix(escape)
}

struct Heredoc {
    tag: String,
    strip_tabs: bool,
}

/// Heredoc words (`<<EOF`, `<<-EOF`, `<<"EOF"`, `<<'EOF'`, with an optional fd number) in
/// a RUN line, in order.
fn heredoc_words(rest: &str) -> Vec<Heredoc> {
    let mut out = Vec::new();
    for w in rest.split_whitespace() {
        let w = w.trim_start_matches(|c: char| c.is_ascii_digit());
        let Some(mut w) = w.strip_prefix("<<") else {
            continue;
        };
        let strip_tabs = w.starts_with('-');
        if strip_tabs {
            w = &w[1..];
        }
        let tag = if let Some(q) = w.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            q
        } else if let Some(q) = w.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
            q
        } else {
            w
        };
        let ok = tag
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if ok {
            out.push(Heredoc {
                tag: tag.to_string(),
                strip_tabs,
            });
        }
    }
    out
}

/// `ENV`'s two forms: `KEY=value ...` or `KEY value with spaces`.
fn parse_env(
    rest: &str,
    escape: char,
    vars: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().ok_or("no variable")?;
    let pairs: Vec<(String, String)> = if first.contains('=') {
        let mut out = Vec::new();
        // Each word is expanded with the values before this instruction (as Docker does).
        for w in words(rest, escape, vars)? {
            let (k, v) = w
                .split_once('=')
                .ok_or(format!("'{w}' is not NAME=value"))?;
            out.push((k.to_string(), v.to_string()));
        }
        out
    } else {
        let (k, v) = rest
            .split_once(char::is_whitespace)
            .ok_or("no value (write NAME=value)")?;
        let v = words(v.trim(), escape, vars)?.join(" ");
        vec![(k.to_string(), v)]
    };
    for (k, _) in &pairs {
        let ok = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(format!("'{k}' is not a variable name"));
        }
    }
    Ok(pairs)
}

/// Split into words the way the Dockerfile word processor does: whitespace separates,
/// double quotes group (escapes and variables work inside), single quotes group literally,
/// the escape character quotes the next character, and variables are expanded.
fn words(text: &str, escape: char, vars: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            if in_word {
                out.push(std::mem::take(&mut cur));
                in_word = false;
            }
            i += 1;
            continue;
        }
        in_word = true;
        if c == escape {
            if let Some(n) = chars.get(i + 1) {
                cur.push(*n);
            }
            i += 2;
        } else if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&x| x == '\'')
                .ok_or("unterminated single quote")?;
            cur.extend(&chars[i + 1..i + 1 + end]);
            i += end + 2;
        } else if c == '"' {
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err("unterminated double quote".into());
                };
                if d == '"' {
                    i += 1;
                    break;
                }
                if d == escape {
                    if let Some(n) = chars.get(i + 1) {
                        cur.push(*n);
                    }
                    i += 2;
                } else if d == '$' {
                    i = expand(&chars, i, vars, &mut cur)?;
                } else {
                    cur.push(d);
                    i += 1;
                }
            }
        } else if c == '$' {
            i = expand(&chars, i, vars, &mut cur)?;
        } else {
            cur.push(c);
            i += 1;
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Expand the variable reference at `chars[i]` (a `$`) into `out`; returns the index after it.
fn expand(
    chars: &[char],
    i: usize,
    vars: &BTreeMap<String, String>,
    out: &mut String,
) -> Result<usize, String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match chars.get(i + 1) {
        Some('{') => {
            let close = chars[i + 2..]
                .iter()
                .position(|&c| c == '}')
                .ok_or("unterminated ${")?;
            let inner: String = chars[i + 2..i + 2 + close].iter().collect();
            let (name, op) = match inner.find(":") {
                Some(p) => (&inner[..p], Some(&inner[p..])),
                None => (inner.as_str(), None),
            };
            if name.is_empty() || !name.chars().all(is_name) {
                return Err(format!("unsupported variable reference ${{{inner}}}"));
            }
            let value = vars.get(name).filter(|v| !v.is_empty());
            match op {
                None => out.push_str(vars.get(name).map(String::as_str).unwrap_or("")),
                Some(o) if o.starts_with(":-") => match value {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&o[2..]),
                },
                Some(o) if o.starts_with(":+") => {
                    if value.is_some() {
                        out.push_str(&o[2..]);
                    }
                }
                Some(_) => return Err(format!("unsupported variable reference ${{{inner}}}")),
            }
            Ok(i + 3 + close)
        }
        Some(&c) if c.is_ascii_alphabetic() || c == '_' => {
            let len = chars[i + 1..].iter().take_while(|&&c| is_name(c)).count();
            let name: String = chars[i + 1..i + 1 + len].iter().collect();
            out.push_str(vars.get(&name).map(String::as_str).unwrap_or(""));
            Ok(i + 1 + len)
        }
        _ => {
            out.push('$');
            Ok(i + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<Step>> {
        parse(text, "p.dockerfile", &["BASE=/opt".to_string()], &[])
    }

    fn instrs(text: &str) -> Vec<Instr> {
        p(text).unwrap().into_iter().map(|s| s.instr).collect()
    }

    fn err(text: &str) -> String {
        let e = p(text).unwrap_err();
        format!("{e} / {}", crate::error::find_hint(&e).unwrap_or_default())
    }

    #[test]
    fn run_forms_continuations_comments_and_case() {
        let text = "# syntax=docker/dockerfile:1\n\n  run apt-get update && \\\n# a comment inside\n\n    apt-get install -y jq\nRUN [\"echo\", \"a b\"]\nRUN [not json\n";
        assert_eq!(
            instrs(text),
            [
                Instr::Shell("apt-get update &&     apt-get install -y jq".into()),
                Instr::Exec(vec!["echo".into(), "a b".into()]),
                Instr::Shell("[not json".into()),
            ]
        );
        let steps = p(text).unwrap();
        assert_eq!(steps[0].line, 3);
        assert_eq!(steps[1].line, 7);
    }

    #[test]
    fn heredocs() {
        assert_eq!(
            instrs("RUN <<EOF\nset -e\necho hi\nEOF\nRUN <<-'END'\n\techo tabbed\n\tEND\n"),
            [
                Instr::Shell("set -e\necho hi".into()),
                Instr::Shell("echo tabbed".into())
            ]
        );
        assert_eq!(
            instrs("RUN cat <<EOF > /etc/x\nline $HOME\nEOF\nRUN true\n"),
            [
                Instr::Shell("cat <<EOF > /etc/x\nline $HOME\nEOF".into()),
                Instr::Shell("true".into())
            ]
        );
        assert!(err("RUN <<EOF\nnever closed\n").contains("p.dockerfile:1: the heredoc <<EOF"));
        // Arithmetic shifts are not heredocs.
        assert_eq!(
            instrs("RUN echo $((1<<3))\n"),
            [Instr::Shell("echo $((1<<3))".into())]
        );
    }

    #[test]
    fn env_and_workdir_expand_variables() {
        assert_eq!(
            instrs(
                "ENV A=1 B=\"two words\" C='$lit' D=${BASE}/x\nENV E $A-${MISSING:-dflt}\nWORKDIR $BASE\nWORKDIR sub\nWORKDIR \"/with space\"\n"
            ),
            [
                Instr::Env(vec![
                    ("A".into(), "1".into()),
                    ("B".into(), "two words".into()),
                    ("C".into(), "$lit".into()),
                    ("D".into(), "/opt/x".into())
                ]),
                Instr::Env(vec![("E".into(), "1-dflt".into())]),
                Instr::Workdir("/opt".into()),
                Instr::Workdir("/opt/sub".into()),
                Instr::Workdir("/with space".into()),
            ]
        );
    }

    #[test]
    fn escape_directive_changes_the_continuation_character() {
        assert_eq!(
            instrs("# escape=`\nRUN echo a `\n  b\nWORKDIR C:\\x\n"),
            [
                Instr::Shell("echo a   b".into()),
                Instr::Workdir("/C:\\x".into())
            ]
        );
        assert!(err("# escape=x\nRUN true\n").contains("p.dockerfile:1: invalid escape"));
    }

    #[test]
    fn everything_else_is_refused_with_file_and_line() {
        for (text, line, kw) in [
            ("RUN true\nFROM evil\n", 2, "FROM"),
            ("entrypoint [\"/x\"]\n", 1, "entrypoint"),
            ("RUN true \\\n  && true\n  CMD x\n", 3, "CMD"),
            ("SHELL [\"/bin/bash\", \"-c\"]\n", 1, "SHELL"),
            ("USER root\n", 1, "USER"),
            ("ONBUILD RUN x\n", 1, "ONBUILD"),
            ("ADD https://evil.example/x /x\n", 1, "ADD"),
            ("COPY --from=other:img / /\n", 1, "COPY"),
            ("HEALTHCHECK CMD x\n", 1, "HEALTHCHECK"),
            ("VOLUME /data\n", 1, "VOLUME"),
            ("STOPSIGNAL 9\n", 1, "STOPSIGNAL"),
            ("ARG X=1\n", 1, "ARG"),
            ("LABEL a=b\n", 1, "LABEL"),
            ("EXPOSE 80\n", 1, "EXPOSE"),
            ("MAINTAINER me\n", 1, "MAINTAINER"),
        ] {
            let e = err(text);
            assert!(
                e.starts_with(&format!("p.dockerfile:{line}: {kw} is not allowed")),
                "{text:?}: {e}"
            );
        }
        assert!(err("FROM x\n").contains("agent.baseImage"));
        assert!(err("USER root\n").contains("runuser"));
    }

    #[test]
    fn reserved_variables_are_refused() {
        for name in [
            "PATH",
            "LD_PRELOAD",
            "ld_library_path",
            "GIT_DIR",
            "GIT_AGENT_TASK",
            "HTTPS_PROXY",
            "no_proxy",
            "ANTHROPIC_BASE_URL",
            "OPENAI_API_KEY",
            "GITHUB_TOKEN",
            "NODE_OPTIONS",
            "PYTHONPATH",
            "HOME",
            "BASH_ENV",
        ] {
            let e = err(&format!("ENV {name}=x\n"));
            assert!(
                e.contains(&format!("ENV may not set {name}")),
                "{name}: {e}"
            );
        }
        let e = parse("ENV MY_AGENT_URL=x\n", "f", &[], &["MY_AGENT_URL".into()]).unwrap_err();
        assert!(e.to_string().contains("the agent reads it"), "{e}");
        assert!(p("ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8\n").is_ok());
    }
}
