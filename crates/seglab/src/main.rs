//! `seglab`: the command-line front end. Each subcommand lives in `commands/<name>.rs`.
use clap::{Parser, Subcommand};

mod commands;

#[derive(Parser)]
#[command(
    name = "seglab",
    version,
    about = "Binary lesion segmentation: losses, metrics, training and controlled experiments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score predicted masks (or probability maps) against ground truth.
    Evaluate(commands::evaluate::Args),
    /// Loss value and gradient w.r.t. the prediction (NPY in, JSON/text out, gradient as NPY).
    Loss(commands::loss::Args),
    /// Loss and gradient statistics for every threshold mode and the main losses.
    Gradcheck(commands::gradcheck::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Evaluate(a) => commands::evaluate::run(a),
        Command::Loss(a) => commands::loss::run(a),
        Command::Gradcheck(a) => commands::gradcheck::run(a),
    };
    if let Err(e) = result {
        // Every failure the user can act on (bad input, bad options) exits with 2, like clap's usage errors.
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
