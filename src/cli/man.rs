//! Man pages generated from the clap definitions: `git-agent.1` and one page per command
//! (`git-agent-spawn.1`, ...), so `git agent --help` opens the manual (git turns it into
//! `man git-agent`) and `git agent <command> --help` opens the command's page ([`help`]).
//!
//! clap_mangen renders NAME, SYNOPSIS, DESCRIPTION, OPTIONS and the list of commands from
//! the clap definitions; this module adds what clap does not hold: EXAMPLES and SEE ALSO of
//! every page ([`examples`]), and CONFIGURATION, FILES, ENVIRONMENT and EXIT STATUS of
//! `git-agent(1)` ([`reference`]).

pub mod examples;
pub mod help;
pub mod reference;

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use roff::{Roff, bold, italic, roman};

use super::Cli;

/// The pages the main page points at besides its commands'.
const MAIN_SEE_ALSO: &[&str] = &["git(1)", "git-config(1)", "githooks(5)"];

/// The command line as the manual shows it: `help` is no command of its own (it has no page).
fn command() -> clap::Command {
    Cli::command()
        .name("git-agent")
        .disable_help_subcommand(true)
}

/// Every man page as (file name, roff text).
pub fn pages() -> Result<Vec<(String, Vec<u8>)>> {
    let cmd = command();
    let mut pages = vec![("git-agent.1".to_string(), main_page(&cmd)?)];
    // Hidden commands (a server's worker, `hook-run` called by git hooks) are internal: no page.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("git-agent-{}", sub.get_name());
        pages.push((format!("{name}.1"), command_page(sub)?));
    }
    Ok(pages)
}

/// Write every page into `dir`.
pub fn write_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in pages()? {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

fn man(cmd: clap::Command, title: &str) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .title(title)
        .section("1")
        .manual("Git Manual")
}

/// `git-agent(1)`: the clap sections (its commands listed as their pages), then the reference.
fn main_page(cmd: &clap::Command) -> Result<Vec<u8>> {
    let page = man(cmd.clone(), "git-agent");
    let mut buf = Vec::new();
    page.render_title(&mut buf)?;
    page.render_name_section(&mut buf)?;
    page.render_synopsis_section(&mut buf)?;
    page.render_description_section(&mut buf)?;
    page.render_options_section(&mut buf)?;
    page.render_subcommands_section(&mut buf)?;

    let mut roff = Roff::new();
    roff.control("SH", ["CONFIGURATION"]);
    for (key, kind, default, effect) in reference::CONFIG {
        roff.control("TP", []);
        roff.text([bold(*key), roman(" ("), italic(*kind), roman(")")]);
        roff.text([roman(format!("{effect} Default: {default}."))]);
    }
    roff.control("PP", []);
    roff.text([roman(reference::CONFIG_NOTE)]);
    definitions(&mut roff, "FILES", reference::FILES);
    definitions(&mut roff, "ENVIRONMENT", reference::ENVIRONMENT);
    definitions(&mut roff, "EXIT STATUS", reference::EXIT_STATUS);
    examples_section(&mut roff, examples::MAIN_EXAMPLES);
    see_also_section(&mut roff, MAIN_SEE_ALSO);
    roff.to_writer(&mut buf)?;
    page.render_version_section(&mut buf)?;
    Ok(buf)
}

/// `git-agent-<command>(1)`.
fn command_page(sub: &clap::Command) -> Result<Vec<u8>> {
    let command = sub.get_name().to_string();
    let name = format!("git-agent-{command}");
    let entry = examples::page(&command).with_context(|| {
        format!("git agent {command} has no EXAMPLES in src/cli/man/examples.rs")
    })?;
    let sub = sub
        .clone()
        .name(name.clone())
        .bin_name(format!("git agent {command}"));
    let page = man(sub.clone(), &name);
    let mut buf = Vec::new();
    page.render_title(&mut buf)?;
    page.render_name_section(&mut buf)?;
    page.render_synopsis_section(&mut buf)?;
    page.render_description_section(&mut buf)?;
    page.render_options_section(&mut buf)?;

    let mut roff = Roff::new();
    // Nested commands (`image build`, `hooks install`) have no pages of their own: each is
    // described here, with its options.
    let nested: Vec<&clap::Command> = sub
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    if !nested.is_empty() {
        roff.control("SH", ["COMMANDS"]);
        for n in nested {
            roff.control("TP", []);
            roff.text([bold(format!("git agent {command} {}", n.get_name()))]);
            let about = n
                .get_long_about()
                .or(n.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default();
            roff.text([roman(about)]);
            for arg in n
                .get_arguments()
                .filter(|a| !a.is_hide_set() && a.get_id() != "help")
            {
                roff.control("RS", []);
                roff.control("TP", []);
                roff.text([bold(arg_label(arg))]);
                let help = arg
                    .get_long_help()
                    .or(arg.get_help())
                    .map(|h| h.to_string())
                    .unwrap_or_default();
                roff.text([roman(help)]);
                roff.control("RE", []);
            }
        }
    }
    examples_section(&mut roff, entry.examples);
    let mut see_also = entry.see_also.to_vec();
    see_also.push("git-agent(1)");
    see_also_section(&mut roff, &see_also);
    roff.to_writer(&mut buf)?;
    Ok(buf)
}

/// How an argument is written: `--flag <VALUE>`, `-f, --flag` or `<NAME>`.
fn arg_label(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .and_then(|v| v.first())
        .map(|v| v.to_string())
        .unwrap_or_else(|| arg.get_id().as_str().to_uppercase());
    if arg.is_positional() {
        return format!("<{value}>");
    }
    let mut label = [
        arg.get_short().map(|s| format!("-{s}")),
        arg.get_long().map(|l| format!("--{l}")),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ");
    if arg.get_action().takes_values() {
        label.push_str(&format!(" <{value}>"));
    }
    label
}

fn definitions(roff: &mut Roff, heading: &str, rows: &[(&str, &str)]) {
    roff.control("SH", [heading]);
    for (term, text) in rows {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*text)]);
    }
}

fn examples_section(roff: &mut Roff, examples: &[(&str, &str)]) {
    roff.control("SH", ["EXAMPLES"]);
    for (line, what) in examples {
        roff.control("PP", []);
        roff.text([roman(*what)]);
        roff.control("RS", ["4"]);
        roff.control("nf", []);
        roff.text([bold(format!("$ {line}"))]);
        roff.control("fi", []);
        roff.control("RE", []);
    }
}

fn see_also_section(roff: &mut Roff, pages: &[&str]) {
    roff.control("SH", ["SEE ALSO"]);
    let mut inlines = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        if i > 0 {
            inlines.push(roman(", "));
        }
        let (name, section) = page.split_once('(').unwrap_or((page, ""));
        inlines.push(bold(name));
        inlines.push(roman(format!("({section}")));
    }
    roff.text(inlines);
}

/// The pages a page's SEE ALSO names, as `name(section)`, read back from its roff text (for
/// tests: every one must exist).
pub fn see_also_of(roff_text: &str) -> Vec<String> {
    let Some(start) = roff_text.find(".SH \"SEE ALSO\"") else {
        return Vec::new();
    };
    let body = &roff_text[start..];
    // The section's text ends at the next request (a heading, or the preamble of the next
    // rendered part).
    let body = body.lines().skip(1).take_while(|l| !l.starts_with('.'));
    let text: String = body
        .collect::<Vec<_>>()
        .join(" ")
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\-", "-");
    text.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}
