//! `consentry disclosure`: prints the "what we send and why" document of a
//! region, generated from the catalogue the agent enforces (the config's
//! `catalogue`, or the embedded one), as Markdown, HTML or JSON.
//!
//! It only reads: no consent file, no store, no daemon. The config is read
//! for its catalogue, region and `[store] max_record_age`; with no config
//! file, `--region` says which edition to describe (of `--catalogue`, or
//! the embedded catalogue), so a packager can generate the documents on a
//! build machine.

use std::process::ExitCode;

use anyhow::Context;
use consentry::catalogue::{Catalogue, Region};
use consentry::config::{CatalogueChoice, Config};
use consentry::disclosure::{Disclosure, html, markdown};
use consentry::store::StoreConfig;

use super::{OutputArgs, print_json};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  consentry disclosure
  consentry disclosure --region us-ca --format html > disclosure.html
  consentry disclosure --region eu --catalogue kes --format json
  consentry disclosure --region eu --catalogue /etc/consentry/catalogue.toml --format json")]
pub struct DisclosureArgs {
    /// The region whose edition to describe (global, eu, uk, br, us-ca).
    /// Default: the config's region.
    #[arg(long, value_name = "REGION", value_parser = parse_region)]
    pub region: Option<Region>,
    /// The document's format; `--json` is the same as `--format json`.
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
    /// Describe this catalogue instead of the config's: a built-in one
    /// (kis, kes, ksv) or a catalogue file (a path with a `/`, or ending in
    /// .toml).
    #[arg(long, value_name = "CATALOGUE", value_parser = parse_catalogue)]
    pub catalogue: Option<CatalogueChoice>,
}

/// What `disclosure` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Md,
    Html,
    Json,
}

fn parse_catalogue(text: &str) -> Result<CatalogueChoice, String> {
    CatalogueChoice::of(std::path::Path::new(text)).ok_or_else(|| {
        format!(
            "`{text}` is neither a built-in catalogue ({}) nor a file (a path with a `/`, or ending in .toml)",
            consentry::catalogue::BuiltIn::names()
        )
    })
}

fn parse_region(text: &str) -> Result<Region, String> {
    Region::ALL
        .into_iter()
        .find(|region| region.as_str() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = Region::ALL.iter().map(|r| r.as_str()).collect();
            format!("unknown region `{text}` (one of: {})", names.join(", "))
        })
}

pub fn run(args: &DisclosureArgs, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let path = &output.config.config;
    let config = if path.exists() || args.region.is_none() {
        Some(output.config.load().with_context(|| {
            format!(
                "cannot read the agent config {}; to describe a catalogue without one, give --region (and --catalogue)",
                path.display()
            )
        })?)
    } else {
        None
    };
    let catalogue = match (&args.catalogue, &config) {
        (Some(CatalogueChoice::File(file)), _) => Catalogue::from_file(file)?,
        (Some(CatalogueChoice::BuiltIn(builtin)), _) => Catalogue::builtin(*builtin),
        (None, Some(config)) => config.load_catalogue()?,
        (None, None) => Catalogue::embedded(),
    };
    let region = args
        .region
        .or(config.as_ref().map(|c| c.region))
        .unwrap_or(Region::Global);
    let max_record_age = config
        .as_ref()
        .map(|c: &Config| c.store.max_record_age.0)
        .unwrap_or_else(|| StoreConfig::default().max_record_age.0);
    let disclosure = Disclosure::new(&catalogue, region, max_record_age);
    match (output.json, args.format) {
        (true, _) | (_, Format::Json) => print_json("consentry.disclosure/1", &disclosure)?,
        (false, Format::Md) => say!("{}", markdown::render(&disclosure).trim_end()),
        (false, Format::Html) => say!("{}", html::render(&disclosure).trim_end()),
    }
    Ok(ExitCode::SUCCESS)
}
