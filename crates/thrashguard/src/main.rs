//! `thrashguard` entry point: parse the command line, run it, exit with its code.

use clap::Parser;

fn main() {
    let cli = thrashguard::cli::Cli::parse();
    std::process::exit(thrashguard::cli::run(cli));
}
