//! Issue 11, point 7: shell completions (`clap_complete`) and man pages (`clap_mangen`)
//! generated from the command-line definitions, so they cannot drift from `--help`.
//! The packages ship what `patchday completions` and `patchday man` write.

use anyhow::Context;
use clap::CommandFactory;
use std::path::PathBuf;

/// `patchday completions SHELL`.
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: clap_complete::Shell,
    /// For `patchday-agent` instead of `patchday`.
    #[arg(long)]
    agent: bool,
}

/// `patchday man DIR`.
#[derive(clap::Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    dir: PathBuf,
}

/// Prints the completion script for `cmd` (or the agent's) to stdout.
pub fn completions(a: &CompletionsArgs, cmd: clap::Command) -> anyhow::Result<i32> {
    let (mut cmd, name) = if a.agent {
        (patchday_agent::cli::Args::command(), "patchday-agent")
    } else {
        (cmd, "patchday")
    };
    // Into memory first: clap_complete panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, name, &mut script);
    let mut out = std::io::stdout().lock();
    match std::io::Write::write_all(&mut out, &script)
        .and_then(|()| std::io::Write::flush(&mut out))
    {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e).context("writing the completion script"),
    }
}

/// Writes `patchday.1`, one page per subcommand (`patchday-server.1`, ...) and
/// `patchday-agent.1` into the directory.
pub fn man(a: &ManArgs, cmd: clap::Command) -> anyhow::Result<i32> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let mut n = 0;
    let cmd = cmd.name("patchday");
    n += pages(&a.dir, cmd)?;
    n += pages(
        &a.dir,
        patchday_agent::cli::Args::command().name("patchday-agent"),
    )?;
    println!("{n} man pages written to {}", a.dir.display());
    Ok(0)
}

/// Writes the page of `cmd` and, recursively, of its visible subcommands; clap names
/// a subcommand's page after its path (`patchday-server`) once the command is built.
fn pages(dir: &std::path::Path, cmd: clap::Command) -> anyhow::Result<usize> {
    let mut cmd = cmd;
    cmd.build();
    write_tree(dir, &cmd)
}

fn write_tree(dir: &std::path::Path, cmd: &clap::Command) -> anyhow::Result<usize> {
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let mut bytes = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut bytes)
        .with_context(|| format!("rendering the man page of {name}"))?;
    let file = dir.join(format!("{name}.1"));
    std::fs::write(&file, bytes).with_context(|| format!("writing {}", file.display()))?;
    let mut n = 1;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        n += write_tree(dir, sub)?;
    }
    Ok(n)
}
