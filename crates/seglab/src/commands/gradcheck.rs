//! `seglab gradcheck`: what each threshold mode does to the gradient of each main loss, on a
//! given pair or a synthetic batch. The demonstration behind the project's question: hard
//! thresholding before the loss leaves the model nothing to learn from.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use seglab_nn::objective::LossChoice;
use seglab_nn::{LossKind, LossParams, ThresholdMode};
use serde::Serialize;

use super::loss::{
    check_pair, evaluate, model_shape, read_npy_f32, Format, GradStats, LossInputArgs,
    LossParamArgs, ThresholdArgs,
};

/// Gradients below this magnitude count as vanished in the readings.
const TINY_GRADIENT: f32 = 1e-6;

#[derive(clap::Args)]
pub struct Args {
    /// Prediction NPY (with --target); otherwise a synthetic batch of --shape is used.
    #[arg(long, requires = "target")]
    pub pred: Option<PathBuf>,
    #[arg(long, requires = "pred")]
    pub target: Option<PathBuf>,
    /// Synthetic batch shape NxCxHxW (blobs as targets, noisy probabilities as predictions).
    #[arg(long, default_value = "8x1x64x64", conflicts_with = "pred")]
    pub shape: String,
    /// Seed of the synthetic batch.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Comma-separated losses to check (default: the losses on probabilities).
    #[arg(long, value_delimiter = ',', default_value = PROBABILITY_LOSSES.as_str())]
    pub losses: Vec<String>,
    /// Comma-separated threshold modes to check.
    #[arg(long, value_delimiter = ',', default_value = ALL_MODES.as_str())]
    pub modes: Vec<String>,
    #[command(flatten)]
    pub params: LossParamArgs,
    #[command(flatten)]
    pub input: LossInputArgs,
    #[command(flatten)]
    pub threshold: ThresholdArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// The losses a threshold mode acts on directly (the logit losses see it through a logit of its output).
static PROBABILITY_LOSSES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    LossKind::NAMES
        .iter()
        .filter(|n| LossKind::from_name(n, &LossParams::default()).is_ok_and(|k| !k.wants_logits()))
        .copied()
        .collect::<Vec<_>>()
        .join(",")
});
static ALL_MODES: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| ThresholdMode::NAMES.join(","));

#[derive(Serialize, Debug)]
pub struct Row {
    pub loss: String,
    pub mode: String,
    pub loss_value: f64,
    pub grad_norm: f64,
    pub zero_fraction: f64,
    /// Share of entries with |gradient| < 1e-6 (exact zeros included).
    pub tiny_fraction: f64,
    pub reading: String,
}

#[derive(Serialize)]
struct Report {
    source: String,
    shape: Vec<usize>,
    rows: Vec<Row>,
}

fn parse_shape(s: &str) -> Result<Vec<usize>> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--shape '{s}': expected NxCxHxW, e.g. 8x1x64x64"))?;
    if dims.len() != 4 || dims.contains(&0) {
        bail!("--shape '{s}': expected four positive sizes NxCxHxW");
    }
    Ok(dims)
}

/// Targets: one to three discs per image; predictions: `sigmoid(3 (2t - 1) + 1.5 noise)`, a
/// model that is mostly right with errors on both sides of the threshold.
fn synthetic(shape: &[usize], seed: u64) -> (Vec<f32>, Vec<f32>) {
    let [n, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
    let mut rng = seglab_metrics::rng::SplitMix64::new(seed);
    let mut target = vec![0.0f32; n * c * h * w];
    for img in 0..n * c {
        let discs = 1 + (rng.next_u64() % 3) as usize;
        for _ in 0..discs {
            let cy = rng.uniform() * h as f64;
            let cx = rng.uniform() * w as f64;
            let r = (0.08 + 0.17 * rng.uniform()) * h.min(w) as f64;
            for y in 0..h {
                for x in 0..w {
                    let (dy, dx) = (y as f64 - cy, x as f64 - cx);
                    if dy * dy + dx * dx <= r * r {
                        target[img * h * w + y * w + x] = 1.0;
                    }
                }
            }
        }
    }
    let pred = target
        .iter()
        .map(|&t| {
            let z = 3.0 * (2.0 * t as f64 - 1.0) + 1.5 * rng.normal();
            (1.0 / (1.0 + (-z).exp())) as f32
        })
        .collect();
    (pred, target)
}

fn reading(mode: &ThresholdMode, stats: &GradStats, tiny_fraction: f64) -> String {
    if stats.zero_fraction == 1.0 {
        return "all gradients are zero: the model cannot learn through this loss".into();
    }
    let live = 100.0 * (1.0 - tiny_fraction);
    let largest = stats.min.abs().max(stats.max.abs());
    let smooth_threshold = matches!(
        mode,
        ThresholdMode::Soft { .. } | ThresholdMode::Power { .. }
    );
    if smooth_threshold && tiny_fraction >= 0.5 {
        return format!(
            "{:.0}% of gradients are below 1e-6: only pixels near the threshold learn",
            100.0 * tiny_fraction
        );
    }
    if stats.zero_fraction >= 0.5 {
        return format!(
            "{:.0}% of gradients are exactly zero: only {:.0}% of pixels learn, with |grad| up to {largest:.2e}",
            100.0 * stats.zero_fraction,
            100.0 * (1.0 - stats.zero_fraction)
        );
    }
    if tiny_fraction >= 0.5 {
        return format!(
            "{:.0}% of gradients are below 1e-6: the loss barely moves the model",
            100.0 * tiny_fraction
        );
    }
    match mode {
        ThresholdMode::StraightThrough { .. } => format!(
            "the loss sees the binary mask, yet {live:.0}% of pixels get a gradient (identity backward)"
        ),
        _ => format!("{live:.0}% of pixels get a gradient"),
    }
}

pub fn run(args: Args) -> Result<()> {
    let reduction = args.input.reduction()?;
    let from_logits = args.input.from_logits;
    let params = args.params.params();
    let specs = args
        .losses
        .iter()
        .map(|name| {
            LossChoice {
                params,
                ..LossChoice::named(name)
            }
            .spec(from_logits, reduction)
            .with_context(|| format!("invalid loss settings for '{name}'"))
        })
        .collect::<Result<Vec<_>>>()?;
    let modes = args
        .modes
        .iter()
        .map(|m| args.threshold.mode(m))
        .collect::<Result<Vec<_>>>()?;

    let (pred, target, shape, source) = match (&args.pred, &args.target) {
        (Some(pp), Some(tp)) => {
            let (pred, pred_shape) = read_npy_f32(pp)?;
            let (target, target_shape) = read_npy_f32(tp)?;
            let shape = model_shape(&pred_shape, pp)?;
            check_pair(
                &pred,
                &pred_shape,
                &target,
                &target_shape,
                from_logits,
                pp,
                tp,
            )?;
            let source = format!("{} vs {}", pp.display(), tp.display());
            (pred, target, shape, source)
        }
        _ => {
            if from_logits {
                bail!("--from-logits needs --pred/--target (the synthetic batch is probabilities)");
            }
            let shape = parse_shape(&args.shape)?;
            let (pred, target) = synthetic(&shape, args.seed);
            let source = format!("synthetic {} seed {}", args.shape, args.seed);
            (pred, target, shape, source)
        }
    };

    let mut rows = Vec::new();
    for spec in &specs {
        for mode in &modes {
            let r = evaluate(spec, &pred, &target, &shape, mode);
            let stats = GradStats::of(&r.grad);
            let tiny = r.grad.iter().filter(|g| g.abs() < TINY_GRADIENT).count() as f64
                / r.grad.len() as f64;
            rows.push(Row {
                loss: spec.name(),
                mode: mode.name().to_string(),
                loss_value: r.loss as f64,
                grad_norm: stats.norm,
                zero_fraction: stats.zero_fraction,
                tiny_fraction: tiny,
                reading: reading(mode, &stats, tiny),
            });
        }
    }

    match args.format {
        Format::Json => {
            let report = Report {
                source,
                shape,
                rows,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Format::Text => {
            println!("gradcheck on {source}");
            println!(
                "{:<15} {:<6} {:>11} {:>11} {:>9} {:>9}  reading",
                "loss", "mode", "loss", "grad norm", "zero", "<1e-6"
            );
            for r in &rows {
                println!(
                    "{:<15} {:<6} {:>11.6} {:>11.4e} {:>9.4} {:>9.4}  {}",
                    r.loss,
                    r.mode,
                    r.loss_value,
                    r.grad_norm,
                    r.zero_fraction,
                    r.tiny_fraction,
                    r.reading
                );
            }
        }
    }
    Ok(())
}
