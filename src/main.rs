//! The `consentry` binary: parse the command line, run the verb, map the
//! outcome to an exit code (0 ok, 1 error, 2 usage, 3 daemon not running,
//! 4 permission denied: `cli::exit`). Everything else lives in `cli/` and
//! the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(err) => return cli::exit::usage(err),
    };
    cli::init_logging(&args);
    let json = args.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let err = anyhow::Error::from(err).context("cannot start the async runtime");
            return cli::exit::fail(&err, json);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(err) => cli::exit::fail(&err, json),
    }
}
