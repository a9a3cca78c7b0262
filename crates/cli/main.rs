//! `smolvlm`: caption images, folders and datasets with SmolVLM in-process.
//!
//! Exit codes: 0 every image captioned; 1 at least one image failed (the
//! others were captioned); 2 bad usage, config or model, or records could not
//! be written; 130 interrupted (re-run to resume). `smolvlm caption --help`
//! (the texts in `help.rs`) is the reference.

mod args;
mod ask;
mod config;
mod exit;
mod help;
mod info;
mod inputs;
mod ledger;
mod model;
mod output;
mod pipeline;
mod plan;
mod progress;
mod records;
mod run;
mod settings;
mod shard;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use smolvlm::{ModelSource, ResolvedModel};

use crate::args::{Cli, Command, FetchArgs};
use crate::exit::Exit;

fn fetch(args: &FetchArgs) -> Exit {
    let resolved = ModelSource::parse(&args.model)
        .map_err(smolvlm::Error::from)
        .and_then(|source| source.resolve(&model::hub_options(args.offline)));
    match resolved {
        Ok(resolved) => {
            print_resolved(&resolved);
            Exit::Success
        }
        Err(e) => Exit::usage(&e.to_string()),
    }
}

fn print_resolved(r: &ResolvedModel) {
    if let Some(preset) = r.preset {
        println!("preset:    {}", preset.name);
    }
    if let Some(hub) = &r.hub {
        println!("repo:      {}", hub.repo);
        println!("revision:  {} (commit {})", hub.revision, hub.commit);
        println!(
            "status:    {}",
            if hub.downloaded {
                "downloaded"
            } else {
                "already cached"
            }
        );
    }
    println!("model:     {}", r.files.model.display());
    println!("mmproj:    {}", r.files.mmproj.display());
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "error",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let exit = match &cli.command {
        Command::Caption(args) => run::caption(args),
        Command::Ask(args) => ask::ask(args),
        Command::Chat(args) => ask::chat(args),
        Command::Info(args) => info::info(args),
        Command::Fetch(args) => fetch(args),
    };
    exit.into()
}
