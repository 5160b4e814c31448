//! `curves.csv`: one row per (variant, seed, epoch).
use std::io::Write;

use anyhow::Result;
use seglab_nn::record::{EpochRecord, RunStatus};

use super::*;

/// Columns of `curves.csv` after `variant,seed`: one row per (variant, seed, epoch).
pub const CURVE_COLUMNS: [&str; 25] = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_soft_loss",
    "val_dice",
    "val_iou",
    "val_precision",
    "val_recall",
    "val_case_dice",
    "val_soft_dice",
    "val_best_threshold",
    "val_best_threshold_dice",
    "val_best_threshold_iou",
    "val_best_threshold_precision",
    "val_best_threshold_recall",
    "val_lesion_recall",
    "val_lesion_precision",
    "val_lesion_f1",
    "grad_norm",
    "zero_grad_fraction",
    "mean_prob_lesion",
    "mean_prob_background",
    "lr",
    "seconds",
    "status",
];

/// The cells of `CURVE_COLUMNS` from `train_loss` to `seconds`: a non-finite number is written as Rust prints it
/// (`NaN`: a diverged loss), an undefined value (`None`) as an empty cell.
fn curve_cells(e: &EpochRecord) -> Vec<String> {
    let num = |x: f64| Some(x);
    [
        num(e.train_loss),
        num(e.val_loss),
        num(e.val_soft_loss),
        num(e.val_dice),
        num(e.val_iou),
        num(e.val_precision),
        num(e.val_recall),
        num(e.val_case_dice),
        num(e.val_soft_dice),
        num(e.val_best_threshold),
        num(e.val_best_threshold_dice),
        e.val_best_threshold_iou,
        e.val_best_threshold_precision,
        e.val_best_threshold_recall,
        e.val_lesion_recall,
        e.val_lesion_precision,
        e.val_lesion_f1,
        num(e.grad_norm),
        num(e.zero_grad_fraction),
        num(e.mean_prob_lesion),
        num(e.mean_prob_background),
        num(e.lr),
        num(e.seconds),
    ]
    .iter()
    .map(|v| v.map(|x| x.to_string()).unwrap_or_default())
    .collect()
}

/// `curves.csv`: every epoch of every run in long format (variant, seed, the epoch record, and the run's status:
/// `completed` or `diverged`).
pub fn write_curves_csv<W: Write>(exp: &Experiment, out: W) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let mut header = vec!["variant", "seed"];
    header.extend_from_slice(&CURVE_COLUMNS);
    w.write_record(&header)?;
    for v in &exp.variants {
        for &seed in &exp.seeds {
            let Some(r) = exp.run(&v.name, seed) else {
                continue;
            };
            let status = match r.outcome.status {
                RunStatus::Completed => "completed",
                RunStatus::Diverged { .. } => "diverged",
            };
            for e in &r.outcome.epochs {
                let mut row = vec![v.name.clone(), seed.to_string(), e.epoch.to_string()];
                row.extend(curve_cells(e));
                row.push(status.to_string());
                w.write_record(&row)?;
            }
        }
    }
    w.flush()?;
    Ok(())
}
