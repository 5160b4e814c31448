//! `curves.csv`: one row per (variant, seed, epoch): `variant,seed,epoch`, the columns of an epoch record
//! ([`EpochRecord::COLUMNS`], the same as `metrics.csv`'s), `status`.
use std::io::Write;

use anyhow::Result;
use seglab_nn::record::{Cell, EpochRecord, RunStatus};

use super::*;

/// The cells of [`EpochRecord::COLUMNS`]: a non-finite number is written as Rust prints it (`NaN`: a diverged loss),
/// an undefined value as an empty cell.
fn curve_cells(e: &EpochRecord) -> Vec<String> {
    EpochRecord::COLUMNS
        .iter()
        .map(|(_, cell)| match cell(e) {
            Cell::Number(x) => x.to_string(),
            Cell::Count(n) => n.to_string(),
            Cell::Missing => String::new(),
        })
        .collect()
}

/// `curves.csv`: every epoch of every run in long format (variant, seed, the epoch record, and the run's status:
/// `completed` or `diverged`).
pub fn write_curves_csv<W: Write>(exp: &Experiment, out: W) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    let mut header = vec!["variant", "seed", "epoch"];
    header.extend(EpochRecord::COLUMNS.iter().map(|(name, _)| *name));
    header.push("status");
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
