//! `seglab`: the command-line front end. Each subcommand lives in `commands/<name>.rs`.
use clap::{Parser, Subcommand};

mod commands;

#[global_allocator]
static GLOBAL: seglab_nn::allocator::MiMalloc = seglab_nn::allocator::MiMalloc;

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
    /// Controlled experiment: train every loss/threshold variant with identical seeds, split and batches, and write a
    /// report (the question: threshold before the loss, or only for the metrics?).
    Compare(commands::compare::Args),
    /// Score predicted masks (or probability maps) against ground truth.
    Evaluate(commands::evaluate::Args),
    /// Join the parts of a sharded `seglab evaluate --shard I/N --cases-out` into one run's output.
    Merge(commands::merge::Args),
    /// Train a U-Net (writes a run folder with metrics and checkpoints).
    Train(commands::train::Args),
    /// Segment images with a trained run.
    Predict(commands::predict::Args),
    /// Write the synthetic phantom data set to a folder.
    Synth(commands::synth::Args),
    /// Loss value and gradient w.r.t. the prediction (NPY in, JSON/text out, gradient as NPY).
    Loss(commands::loss::Args),
    /// Loss and gradient statistics for every threshold mode and the main losses.
    Gradcheck(commands::gradcheck::Args),
}

/// A panic is a bug, never the user's input: one line says so, without a backtrace dump (`SEGLAB_BACKTRACE=1` keeps
/// Rust's own report), and the process exits with 101. Output files are written through temporary files and renames,
/// so nothing partial is left. Panics a reader catches and turns into an error stay silent
/// (`seglab_metrics::panic::catch_quietly`).
fn report_panics_as_internal_errors() {
    let rust_report = std::panic::take_hook();
    let reported = std::sync::atomic::AtomicBool::new(false);
    std::panic::set_hook(Box::new(move |info| {
        if seglab_metrics::panic::is_quiet() {
            return;
        }
        if std::env::var_os("SEGLAB_BACKTRACE").is_some() {
            return rust_report(info);
        }
        // Worker threads may panic together; one line is enough.
        if reported.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "internal error: {}{at}; please report it with the command that caused it (SEGLAB_BACKTRACE=1 shows more)",
            message.lines().next().unwrap_or("")
        );
    }));
}

fn main() {
    report_panics_as_internal_errors();
    // The tests' way to check the report of a panic (no user input reaches a panic on purpose).
    if std::env::var_os("SEGLAB_TEST_INTERNAL_PANIC").is_some() {
        panic!("requested by SEGLAB_TEST_INTERNAL_PANIC\nsecond line");
    }
    let cli = Cli::parse();
    // Tensor code reuses its buffers; evaluate's short-lived per-case buffers do better with mimalloc's default
    // purging (measured: workload a 0.11-0.12 s either way, fewer page-fault spikes with purging).
    // `compare --predictions` runs evaluate's engine on the same kind of buffers.
    let scores_files = match &cli.command {
        Command::Evaluate(_) | Command::Merge(_) => true,
        Command::Compare(a) => !a.predictions.is_empty(),
        _ => false,
    };
    if !scores_files {
        seglab_nn::allocator::keep_freed_memory();
    }
    let result = match cli.command {
        Command::Compare(a) => commands::compare::run(a),
        Command::Evaluate(a) => commands::evaluate::run(a),
        Command::Merge(a) => commands::merge::run(a),
        Command::Train(a) => commands::train::run(a),
        Command::Predict(a) => commands::predict::run(a),
        Command::Synth(a) => commands::synth::run(a),
        Command::Loss(a) => commands::loss::run(a),
        Command::Gradcheck(a) => commands::gradcheck::run(a),
    };
    if let Err(e) = result {
        // Every failure the user can act on (bad input, bad options) exits with 2, like clap's usage errors.
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
