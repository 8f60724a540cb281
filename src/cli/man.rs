//! Man pages generated from the clap definitions: `git-agent.1` and one page per command
//! (`git-agent-spawn.1`, ...), so `git agent --help` opens the manual.

use std::path::Path;

use anyhow::Result;
use clap::CommandFactory;

use super::Cli;

/// Every man page as (file name, roff text).
pub fn pages() -> Result<Vec<(String, Vec<u8>)>> {
    let cmd = Cli::command().name("git-agent");
    let mut pages = Vec::new();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title("git-agent")
        .section("1")
        .manual("Git Manual")
        .render(&mut buf)?;
    pages.push(("git-agent.1".to_string(), buf));
    // Hidden commands (a server's worker, `hook-run` called by git hooks) are internal: no page.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("git-agent-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("git agent {}", sub.get_name()));
        let mut buf = Vec::new();
        clap_mangen::Man::new(sub)
            .title(name.clone())
            .section("1")
            .manual("Git Manual")
            .render(&mut buf)?;
        pages.push((format!("{name}.1"), buf));
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
