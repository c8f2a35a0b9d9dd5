//! `consentry completions SHELL` and `consentry man [VERB]`: shell
//! completions and the roff manual page, both made from the one clap
//! definition so they cannot drift from it. Packaging calls exactly
//! `consentry completions bash` and `consentry man`; keep those spellings.
//! Both print to stdout and read nothing else.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  consentry completions bash > /usr/share/bash-completion/completions/consentry
  consentry completions zsh > \"${fpath[1]}/_consentry\"
  consentry completions fish > ~/.config/fish/completions/consentry.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  consentry man > consentry.1
  consentry man status > consentry-status.1")]
pub struct ManArgs {
    /// A verb's own page (`consentry-VERB(1)`) instead of the top-level one.
    pub verb: Option<String>,
}

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "consentry", &mut script);
    write_out(&script)
}

pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    command.build();
    let page = match &args.verb {
        None => command,
        Some(verb) => {
            let names: Vec<String> = command
                .get_subcommands()
                .filter(|c| !c.is_hide_set())
                .map(|c| c.get_name().to_owned())
                .collect();
            let sub = command
                .find_subcommand(verb)
                .filter(|c| !c.is_hide_set())
                .with_context(|| format!("no verb `{verb}` (verbs: {})", names.join(", ")))?
                .clone();
            // `consentry-status(1)`, as man pages of subcommands are named.
            // clap wants a `'static` name; this process prints and exits.
            let name: &'static str = format!("consentry-{}", sub.get_name()).leak();
            sub.name(name)
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .context("cannot render the man page")?;
    let roff = String::from_utf8(roff).context("the man page is not UTF-8")?;
    write_out(title_first(&roff).as_bytes())
}

/// The page with its `.TH` line first, as `man`, `mandb` and packaging
/// checks expect; the renderer puts its string definitions (the `Aq`
/// apostrophe) before it, and they work as well right after it.
fn title_first(roff: &str) -> String {
    let Some(start) = roff.find("\n.TH ").map(|at| at + 1) else {
        return roff.to_owned();
    };
    let end = roff[start..]
        .find('\n')
        .map_or(roff.len(), |at| start + at + 1);
    format!("{}{}{}", &roff[start..end], &roff[..start], &roff[end..])
}

fn write_out(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .unwrap_or_else(|err| super::stdout_failed(err));
    Ok(ExitCode::SUCCESS)
}
