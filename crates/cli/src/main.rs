//! `shale`: the command-line client of a Shale agent (topics, produce, consume, bench).
//!
//! Every failure ends the process with a non-zero status and one line on stderr
//! (`error: …`); nothing panics or prints a Debug dump on purpose.

mod bench;
mod cli;
mod cmd;
mod input;
mod output;
mod parse;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version, and help for a bare `shale topic` print as clap does.
        Err(error)
            if !error.use_stderr()
                || error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            error.exit()
        }
        Err(error) => {
            eprintln!("{}", one_line(&error.to_string()));
            return ExitCode::from(2);
        }
    };
    // The servers log their work; the client commands print their own messages only.
    let serves = matches!(cli.command, cli::Command::Agent(_) | cli::Command::Dev(_));
    // foyer announces its defaults at info; only its warnings matter to an operator.
    init_tracing(if serves {
        "info,foyer=warn,foyer_storage=warn"
    } else {
        "off"
    });
    // A serving process gets at least 4 workers even on 2 cores: the OS then time-slices a
    // worker busy decoding a large request, so timers (lease keep-alives, long-poll
    // deadlines) on other workers keep firing on time.
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let workers = if serves { cores.max(4) } else { cores };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&anyhow::anyhow!("cannot start the async runtime: {error}")),
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(code) => code,
        Err(error) => fail(&error),
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    // `{:#}` joins the context chain on one line: "outer: inner".
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

/// A usage error on one line: clap's first paragraph ("error: …" plus any list that belongs
/// to it), without the usage and tips that follow.
fn one_line(message: &str) -> String {
    let head = message.split("\n\n").next().unwrap_or(message);
    head.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Logs go to stderr. For client commands they are off unless asked for (`RUST_LOG=debug`):
/// the commands print their own messages, and stray library warnings would break the
/// one-line error promise. `agent` and `dev` log at info.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
