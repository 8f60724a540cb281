//! Prompt templates: markdown with a small front matter (`key: value` lines between `---`
//! markers), rendered by minijinja with strict undefined variables so a typo is an error,
//! not an empty string.
//!
//! Variables: `description` (the user's -m/-F text), `repository` (its directory name),
//! `base` (commit id), `base_branch` (may be empty), `branch` (`agent/<task>`), `task`.
//!
//! A repository may bring its own templates (and a project dockerfile snippet, rendered the
//! same way), so rendering is bounded: every render has [`FUEL`] (minijinja's budget, charged
//! per instruction and per byte of data created, so loops, `range`, string repetition and
//! `{% set s = s ~ s %}` doubling all run out) and [`MAX_OUTPUT`] bytes of output; nesting is
//! limited by minijinja's parser and a recursion limit, and macros are not compiled in. A
//! repository's text is also rendered in a child process of git-agent itself
//! ([`CHILD_ARG`]) that limits its own address space and CPU time and is killed after
//! [`CHILD_WALL`], so a path the budget does not account for still cannot exhaust the host.
//! A template that hits a bound is an error naming it; `spawn` has created nothing by then.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::Result;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::data::{Found, Origin};
use crate::error::hinted;

/// A parsed template.
#[derive(Debug, Clone)]
pub struct PromptTemplate {
    pub name: String,
    pub origin: Origin,
    pub meta: BTreeMap<String, String>,
    pub body: String,
}

impl PromptTemplate {
    pub fn description(&self) -> &str {
        self.meta
            .get("description")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// The values a template can use.
#[derive(Debug, Clone, Serialize)]
pub struct PromptVars {
    pub description: String,
    pub repository: String,
    pub base: String,
    pub base_branch: String,
    pub branch: String,
    pub task: String,
}

fn where_(found: &Found) -> String {
    match &found.origin {
        Origin::BuiltIn => format!("built-in template '{}'", found.name),
        Origin::Repository(p) | Origin::User(p) => p.display().to_string(),
    }
}

/// Split off and parse the front matter.
pub fn parse(found: &Found) -> Result<PromptTemplate> {
    let text = found.text.replace("\r\n", "\n");
    let mut meta = BTreeMap::new();
    let body = if let Some(rest) = text.strip_prefix("---\n") {
        let end = rest
            .find("\n---\n")
            .or_else(|| rest.strip_suffix("\n---").map(|r| r.len()));
        let Some(end) = end else {
            return Err(hinted(
                format!("{}: front matter is not closed", where_(found)),
                "end the front matter with a line `---`",
            ));
        };
        for (i, line) in rest[..end].lines().enumerate() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                return Err(hinted(
                    format!(
                        "{}: line {} of the front matter is not `key: value`",
                        where_(found),
                        i + 2
                    ),
                    "write front matter lines as `description: what this template is for`",
                ));
            };
            meta.insert(k.trim().to_string(), v.trim().to_string());
        }
        rest[end..]
            .trim_start_matches("\n---")
            .trim_start_matches('\n')
            .to_string()
    } else {
        text
    };
    Ok(PromptTemplate {
        name: found.name.clone(),
        origin: found.origin.clone(),
        meta,
        body,
    })
}

/// Render a template; an unknown variable, a syntax error or a bound hit is an error naming
/// the template. A repository's template is rendered in an isolated child process.
pub fn render(t: &PromptTemplate, vars: &PromptVars) -> Result<String> {
    let isolate = matches!(t.origin, Origin::Repository(_));
    render_bounded(&t.body, minijinja::Value::from(minijinja::value::Serde(vars)), isolate).map_err(|e| {
        hinted(
            format!("cannot render template '{}' ({}): {e}", t.name, t.origin),
            "templates may use description, repository, base, base_branch, branch and task, and must render quickly to a prompt of at most 4 MiB",
        )
    })
}

/// Work one render may do: minijinja charges one fuel per instruction and per 64 bytes of
/// data it creates (and checks before a large allocation), so this bounds time and memory.
pub const FUEL: u64 = 1_000_000;
/// Bytes one render may produce.
pub const MAX_OUTPUT: usize = 4 << 20;
/// Nesting of macro calls and includes.
const RECURSION: usize = 100;
/// The isolated child's address-space limit.
const CHILD_MEMORY: u64 = 1 << 30;
/// The isolated child's CPU-time limit, in seconds.
const CHILD_CPU: u64 = 10;
/// The isolated child is killed after this long.
pub const CHILD_WALL: Duration = Duration::from_secs(10);
/// The first argument that makes git-agent an isolated renderer (see [`child_main`]).
pub const CHILD_ARG: &str = "__git-agent-render-untrusted";

/// Render `source` with `vars` (strict undefined variables) under the bounds above; with
/// `isolate`, in a child process with memory, CPU and wall-time limits. The error is a
/// sentence for the caller to attach to what it renders.
pub fn render_bounded(
    source: &str,
    vars: minijinja::Value,
    isolate: bool,
) -> Result<String, String> {
    // Unit tests run inside the test harness, which is not git-agent and cannot be the child;
    // the isolation is exercised by the integration tests.
    if isolate && !cfg!(test) {
        render_isolated(source, &vars)
    } else {
        render_here(source, vars)
    }
}

/// Passes writes through until [`MAX_OUTPUT`] bytes, then fails.
struct Capped {
    out: Vec<u8>,
    over: bool,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > MAX_OUTPUT {
            self.over = true;
            return Err(std::io::Error::other("output too large"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn too_large() -> String {
    format!(
        "it renders to more than {} MiB (a loop or repetition that never ends?)",
        MAX_OUTPUT >> 20
    )
}

/// Render in this process with fuel and an output cap.
fn render_here(source: &str, vars: minijinja::Value) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION);
    let tmpl = env.template_from_str(source).map_err(|e| e.to_string())?;
    let mut w = Capped {
        out: Vec::new(),
        over: false,
    };
    match tmpl.render_captured_to(vars, &mut w) {
        Ok(_) => {}
        Err(_) if w.over => return Err(too_large()),
        Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => {
            return Err(
                "it takes too much work to render (a loop or repetition that never ends?)".into(),
            );
        }
        Err(e) => return Err(e.to_string()),
    }
    String::from_utf8(w.out).map_err(|_| "it renders to text that is not UTF-8".into())
}

/// What the parent sends the isolated renderer on its standard input.
#[derive(Serialize, serde::Deserialize)]
struct ChildInput {
    source: String,
    vars: serde_json::Value,
}

/// Exit code of the child for an ordinary render error (written on its stderr).
const CHILD_RENDER_ERROR: i32 = 3;

/// Render in a fresh git-agent process that limits itself before it reads the template.
fn render_isolated(source: &str, vars: &minijinja::Value) -> Result<String, String> {
    let input = serde_json::to_vec(&ChildInput {
        source: source.to_string(),
        vars: serde_json::to_value(vars).map_err(|e| e.to_string())?,
    })
    .map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find git-agent itself: {e}"))?;
    let mut child = std::process::Command::new(exe)
        .arg(CHILD_ARG)
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the template renderer: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let read_capped = |r: Box<dyn Read + Send>, cap: usize| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.take(cap as u64 + 1).read_to_end(&mut buf);
            buf
        })
    };
    let stdout = read_capped(Box::new(child.stdout.take().expect("piped")), MAX_OUTPUT);
    let stderr = read_capped(Box::new(child.stderr.take().expect("piped")), 64 << 10);
    let deadline = Instant::now() + CHILD_WALL;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("cannot wait for the template renderer: {e}")),
        }
    };
    let _ = writer.join();
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    let Some(status) = status else {
        return Err(format!(
            "it did not finish rendering within {} seconds",
            CHILD_WALL.as_secs()
        ));
    };
    if status.success() {
        if out.len() > MAX_OUTPUT {
            return Err(too_large());
        }
        return String::from_utf8(out).map_err(|_| "it renders to text that is not UTF-8".into());
    }
    let err = String::from_utf8_lossy(&err).trim().to_string();
    if status.code() == Some(CHILD_RENDER_ERROR) {
        return Err(err);
    }
    Err(format!(
        "rendering it exceeded the renderer's memory or CPU limits ({} MiB, {} s){}",
        CHILD_MEMORY >> 20,
        CHILD_CPU,
        if err.is_empty() {
            String::new()
        } else {
            format!(": {}", err.lines().last().unwrap_or_default())
        }
    ))
}

/// The isolated renderer: git-agent started with [`CHILD_ARG`]. Limits its own address space
/// and CPU time, then renders the template on standard input to standard output.
pub fn child_main() -> i32 {
    for (resource, limit) in [
        (libc::RLIMIT_AS, CHILD_MEMORY),
        (libc::RLIMIT_CPU, CHILD_CPU),
        (libc::RLIMIT_CORE, 0),
    ] {
        let lim = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: limit as libc::rlim_t,
        };
        // SAFETY: setrlimit only reads the struct passed by reference.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            eprintln!("cannot limit the template renderer");
            return 1;
        }
    }
    let mut input = Vec::new();
    if std::io::stdin().read_to_end(&mut input).is_err() {
        return 1;
    }
    let Ok(input) = serde_json::from_slice::<ChildInput>(&input) else {
        eprintln!("bad input for the template renderer");
        return 1;
    };
    match render_here(
        &input.source,
        minijinja::Value::from(minijinja::value::Serde(&input.vars)),
    ) {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(text.as_bytes())
                .and_then(|_| out.flush())
                .is_err()
            {
                return 1;
            }
            0
        }
        Err(e) => {
            eprintln!("{e}");
            CHILD_RENDER_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::PROMPTS;

    fn vars() -> PromptVars {
        PromptVars {
            description: "the login page crashes".into(),
            repository: "shop".into(),
            base: "abc123".into(),
            base_branch: "main".into(),
            branch: "agent/fix-1".into(),
            task: "fix-1".into(),
        }
    }

    fn found(text: &str) -> Found {
        Found {
            name: "t".into(),
            origin: Origin::User("/u/templates/t.md".into()),
            text: text.into(),
        }
    }

    #[test]
    fn every_builtin_renders() {
        for (name, text) in PROMPTS.builtin {
            let t = parse(&Found {
                name: name.to_string(),
                origin: Origin::BuiltIn,
                text: text.to_string(),
            })
            .unwrap();
            assert!(!t.description().is_empty(), "{name} has a description");
            let out = render(&t, &vars()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(out.contains("the login page crashes"), "{name}: {out}");
            assert!(!out.starts_with("---"), "{name}");
        }
    }

    #[test]
    fn fix_template_fills_in_the_documented_variables() {
        let text = PROMPTS.builtin.iter().find(|(n, _)| *n == "fix").unwrap().1;
        let t = parse(&Found {
            name: "fix".into(),
            origin: Origin::BuiltIn,
            text: text.into(),
        })
        .unwrap();
        let out = render(&t, &vars()).unwrap();
        assert!(out.contains("`shop`") && out.contains("`agent/fix-1`") && out.contains("abc123"));
        assert!(out.contains("branch `main`"), "{out}");
    }

    #[test]
    fn undefined_variables_and_bad_front_matter_are_errors() {
        let t = parse(&found("---\ndescription: d\n---\nHello {{ descripton }}")).unwrap();
        let e = render(&t, &vars()).unwrap_err();
        assert!(e.to_string().contains("template 't'"), "{e}");
        assert!(parse(&found("---\ndescription: d\nno end")).is_err());
        let e = parse(&found("---\njust words\n---\nbody")).unwrap_err();
        assert!(e.to_string().contains("/u/templates/t.md"), "{e}");
        let e = render(&parse(&found("{% if %}")).unwrap(), &vars()).unwrap_err();
        assert!(e.to_string().contains("cannot render"), "{e}");
    }

    #[test]
    fn hostile_templates_hit_a_bound_quickly() {
        let started = Instant::now();
        for (text, want) in [
            (
                "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}",
                "too",
            ),
            // Macros are not compiled in; deep nesting hits the parser's limit.
            (
                "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
                "unknown statement",
            ),
            (
                &format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000)),
                "recursion",
            ),
            ("{{ 'a' * 99999999999 }}", "cannot render"),
            (
                "{% set s = 'a' * 1000 %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{% set s = s ~ s %}{{ s }}",
                "too much work",
            ),
            (
                "{% for i in range(5000) %}{{ 'x' * 1000 }}{% endfor %}",
                "more than 4 MiB",
            ),
            (&"{% if true %}".repeat(5000), "recursion"),
        ] {
            let t = parse(&found(text)).unwrap();
            let e = format!("{:#}", render(&t, &vars()).unwrap_err());
            assert!(
                e.contains("template 't'") && e.contains(want),
                "{text}: {e}"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn templates_without_front_matter_are_all_body() {
        let t = parse(&found("Do {{ description }}")).unwrap();
        assert!(t.meta.is_empty());
        assert_eq!(render(&t, &vars()).unwrap(), "Do the login page crashes");
    }
}
