//! `seglab loss`: one loss value and its gradient with respect to the prediction, so users can
//! check their PyTorch code against ours (and tests check ours against PyTorch).
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use seglab_nn::objective::LossChoice;
use seglab_nn::{check_inputs, InputError, LossKind, LossSpec, Reduction, ThresholdMode};
use serde::Serialize;

#[derive(clap::Args)]
pub struct Args {
    /// Prediction (NPY, float32/float64): probabilities in [0, 1], or logits with --from-logits.
    /// Shape [N, C, H, W], [N, C, D, H, W] or [H, W].
    #[arg(long)]
    pub pred: PathBuf,
    /// Binary target (NPY, 0/1 of any numeric or bool dtype), same shape as --pred.
    #[arg(long)]
    pub target: PathBuf,
    #[arg(long, default_value = "tversky", help = format!(
        "{}, or a sum such as dice+bce (with --weights)",
        LossKind::names_help()
    ))]
    pub loss: String,
    /// One weight per term of a sum, comma-separated (default: all 1).
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub weights: Vec<f64>,
    #[command(flatten)]
    pub params: LossParamArgs,
    #[command(flatten)]
    pub input: LossInputArgs,
    #[command(flatten)]
    pub threshold: ThresholdArgs,
    /// Write d(loss)/d(pred) here as float32 NPY (same shape as --pred).
    #[arg(long)]
    pub grad_out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "json")]
    pub format: Format,
}

pub use super::args::{LossInputArgs, LossParamArgs, ThresholdArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

pub use seglab_nn::grad_stats::GradStats;

/// An NPY array as f32 with its shape. Accepts float32/float64 and integer/bool masks.
pub fn read_npy_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    fn attempt<T: ndarray_npy::ReadableElement + Copy>(
        bytes: &[u8],
        cast: impl Fn(T) -> f32,
    ) -> Option<(Vec<f32>, Vec<usize>)> {
        let a = ArrayD::<T>::read_npy(Cursor::new(bytes)).ok()?;
        Some((a.iter().map(|&v| cast(v)).collect(), a.shape().to_vec()))
    }
    let parsed = attempt::<f32>(&bytes, |v| v)
        .or_else(|| attempt::<f64>(&bytes, |v| v as f32))
        .or_else(|| attempt::<u8>(&bytes, |v| v as f32))
        .or_else(|| attempt::<bool>(&bytes, |v| v as u8 as f32))
        .or_else(|| attempt::<i64>(&bytes, |v| v as f32))
        .or_else(|| attempt::<i32>(&bytes, |v| v as f32));
    match parsed {
        Some(p) => Ok(p),
        None => {
            // Re-read as f32 for the library's own description of what is wrong.
            let err = ArrayD::<f32>::read_npy(Cursor::new(&bytes[..]))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            bail!(
                "{}: not a readable NPY array of float32/float64/uint8/bool/int32/int64 ({err})",
                path.display()
            )
        }
    }
}

/// Writes a float32 NPY file atomically: a temporary file beside it, then a rename, so a failed
/// run never leaves a partial file under the final name.
pub fn write_npy_atomic(path: &Path, data: &[f32], shape: &[usize]) -> Result<()> {
    anyhow::ensure!(
        shape.iter().product::<usize>() == data.len(),
        "gradient shape does not match its length"
    );
    seglab_metrics::io::write_npy(path, shape, seglab_metrics::io::NpyData::F32(data))?;
    Ok(())
}

/// The shape the losses run on: `[H, W]` becomes `[1, 1, H, W]`; ranks 4 and 5 are kept.
pub fn model_shape(shape: &[usize], path: &Path) -> Result<Vec<usize>> {
    match shape.len() {
        2 => Ok(vec![1, 1, shape[0], shape[1]]),
        4 | 5 => Ok(shape.to_vec()),
        n => bail!(
            "{}: expected shape [N, C, H, W], [N, C, D, H, W] or [H, W], got rank {n} {shape:?}",
            path.display()
        ),
    }
}

/// Host-side input checks, with the offending file named in the message.
pub fn check_pair(
    pred: &[f32],
    pred_shape: &[usize],
    target: &[f32],
    target_shape: &[usize],
    from_logits: bool,
    pred_path: &Path,
    target_path: &Path,
) -> Result<()> {
    check_inputs(pred, pred_shape, target, target_shape, from_logits).map_err(|e| match e {
        InputError::ShapeMismatch { .. } => {
            anyhow::anyhow!("{} and {}: {e}", pred_path.display(), target_path.display())
        }
        InputError::TargetNotBinary { .. } => anyhow::anyhow!("{}: {e}", target_path.display()),
        _ => anyhow::anyhow!("{}: {e}", pred_path.display()),
    })
}

/// Evaluates `spec` on host data of shape rank 4 or 5.
pub fn evaluate(
    spec: &LossSpec,
    pred: &[f32],
    target: &[f32],
    shape: &[usize],
    mode: &ThresholdMode,
) -> seglab_nn::loss::LossWithGrad {
    let device = Device::default();
    match shape.len() {
        4 => spec.loss_with_grad(
            pred,
            target,
            [shape[0], shape[1], shape[2], shape[3]],
            mode,
            &device,
        ),
        5 => spec.loss_with_grad(
            pred,
            target,
            [shape[0], shape[1], shape[2], shape[3], shape[4]],
            mode,
            &device,
        ),
        n => unreachable!("model_shape only gives rank 4 or 5, got {n}"),
    }
}

#[derive(Serialize)]
struct Settings<'a> {
    loss: String,
    spec: &'a LossSpec,
    threshold_mode: &'a ThresholdMode,
    from_logits: bool,
    reduction: Reduction,
    shape: &'a [usize],
    pred: String,
    target: String,
    grad_out: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    loss: f64,
    grad: GradStats,
    settings: Settings<'a>,
}

pub fn run(args: Args) -> Result<()> {
    let reduction = args.input.reduction()?;
    let from_logits = args.input.from_logits;
    let params = args.params.params();
    let choice = LossChoice {
        name: args.loss.clone(),
        params,
        weights: Some(args.weights.clone()),
        reduction: None,
    };
    let spec = choice
        .spec(from_logits, reduction)
        .context("invalid loss settings")?;
    let mode = args.threshold.mode(&args.threshold.threshold_mode)?;

    let (pred, pred_shape) = read_npy_f32(&args.pred)?;
    let (target, target_shape) = read_npy_f32(&args.target)?;
    let shape = model_shape(&pred_shape, &args.pred)?;
    check_pair(
        &pred,
        &pred_shape,
        &target,
        &target_shape,
        from_logits,
        &args.pred,
        &args.target,
    )?;

    let result = evaluate(&spec, &pred, &target, &shape, &mode);
    if !result.loss.is_finite() {
        bail!(
            "{}: the loss is not finite ({}) for these inputs",
            args.pred.display(),
            result.loss
        );
    }
    if let Some(out) = &args.grad_out {
        // Same shape as the input file, not the internal [1, 1, H, W].
        write_npy_atomic(out, &result.grad, &pred_shape)?;
    }
    let stats = GradStats::of(&result.grad);
    let report = Report {
        loss: result.loss as f64,
        grad: stats,
        settings: Settings {
            loss: spec.name(),
            spec: &spec,
            threshold_mode: &mode,
            from_logits,
            reduction,
            shape: &pred_shape,
            pred: args.pred.display().to_string(),
            target: args.target.display().to_string(),
            grad_out: args.grad_out.as_ref().map(|p| p.display().to_string()),
        },
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            let g = &report.grad;
            println!(
                "loss           {} ({}, mode {}, {})",
                report.loss,
                spec.name(),
                mode,
                reduction
            );
            println!("grad norm      {:.6e}", g.norm);
            println!("grad min/max   {:.6e} / {:.6e}", g.min, g.max);
            println!("zero fraction  {:.6}", g.zero_fraction);
            if let Some(out) = &args.grad_out {
                println!("gradient       {}", out.display());
            }
        }
    }
    Ok(())
}
