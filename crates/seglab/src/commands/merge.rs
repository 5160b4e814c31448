//! `seglab merge part_*.jsonl --out results.json`: the shards of `seglab evaluate --shard I/N --cases-out` joined into
//! exactly what one unsharded `seglab evaluate --out` writes. A part is JSON lines: a header (`seglab_cases`: format,
//! `settings`, `shard: [i, n]`, `n_pairs`), then one line per case (`index`: its place among all sorted pairs,
//! `case`: the case's JSON object, `sweep`: its counts per threshold with `--sweep`). Merge checks that the parts were
//! made with the same settings and together hold every pair exactly once.
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use seglab_metrics::evaluate::{CaseResult, EmptyPolicy};
use seglab_metrics::summary::{summarize, sweep_summary};
use seglab_metrics::{folders, io, Confusion};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const CASES_FORMAT: u32 = 1;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The parts written by `seglab evaluate --shard I/N --cases-out PART`.
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
    /// Write the full results (settings, cases, summary) as JSON: the file one unsharded run writes.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write per-case metrics as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    seglab_cases: u32,
    settings: Value,
    shard: [usize; 2],
    n_pairs: usize,
}

#[derive(Serialize, Deserialize)]
struct Line {
    index: usize,
    case: CaseResult,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sweep: Vec<[u64; 4]>,
}

/// The JSON lines of one shard.
pub fn shard_lines(
    settings: &Value,
    shard: (usize, usize),
    n_pairs: usize,
    indices: &[usize],
    cases: &[CaseResult],
    sweeps: &[Vec<Confusion>],
) -> Result<Vec<u8>> {
    let mut out = serde_json::to_vec(&Header {
        seglab_cases: CASES_FORMAT,
        settings: settings.clone(),
        shard: [shard.0, shard.1],
        n_pairs,
    })?;
    out.push(b'\n');
    for (k, (&index, case)) in indices.iter().zip(cases).enumerate() {
        let sweep = sweeps
            .get(k)
            .map(|s| s.iter().map(|c| [c.tp, c.fp, c.fn_, c.tn]).collect())
            .unwrap_or_default();
        serde_json::to_writer(
            &mut out,
            &Line {
                index,
                case: case.clone(),
                sweep,
            },
        )?;
        out.push(b'\n');
    }
    Ok(out)
}

fn read_part(path: &Path) -> Result<(Header, Vec<Line>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, first)) = lines.next() else {
        bail!(
            "{}: empty file, expected a part written by `seglab evaluate --cases-out`",
            path.display()
        );
    };
    let header: Header = serde_json::from_str(first).map_err(|e| {
        anyhow!(
            "{}: line 1 is not a `seglab evaluate --cases-out` header ({e})",
            path.display()
        )
    })?;
    if header.seglab_cases != CASES_FORMAT {
        bail!(
            "{}: format {} (this seglab reads {CASES_FORMAT})",
            path.display(),
            header.seglab_cases
        );
    }
    let rows = lines
        .map(|(k, l)| {
            serde_json::from_str(l).map_err(|e| anyhow!("{}: line {}: {e}", path.display(), k + 1))
        })
        .collect::<Result<Vec<Line>>>()?;
    Ok((header, rows))
}

pub fn run(a: Args) -> Result<()> {
    let mut settings: Option<(Value, usize, PathBuf)> = None;
    let mut shards_seen = std::collections::BTreeSet::new();
    let mut slots: Vec<Option<Line>> = Vec::new();
    let mut n_shards = 0;
    for path in &a.parts {
        let (h, rows) = read_part(path)?;
        match &settings {
            None => {
                slots.resize_with(h.n_pairs, || None);
                n_shards = h.shard[1];
                settings = Some((h.settings.clone(), h.n_pairs, path.clone()));
            }
            Some((s, n, first)) => {
                if *s != h.settings || *n != h.n_pairs || h.shard[1] != n_shards {
                    bail!(
                        "{}: made with other settings, pairs or shard count than {}",
                        path.display(),
                        first.display()
                    );
                }
            }
        }
        if !shards_seen.insert(h.shard[0]) {
            bail!(
                "{}: shard {}/{} is given twice",
                path.display(),
                h.shard[0],
                h.shard[1]
            );
        }
        for row in rows {
            let k = row.index;
            if k >= slots.len() || k % n_shards != h.shard[0] {
                bail!(
                    "{}: case {} has index {k}, not one of shard {}/{}",
                    path.display(),
                    row.case.case,
                    h.shard[0],
                    h.shard[1]
                );
            }
            if slots[k].is_some() {
                bail!("{}: case {} appears twice", path.display(), row.case.case);
            }
            slots[k] = Some(row);
        }
    }
    let Some((settings, n_pairs, _)) = settings else {
        bail!("no parts given");
    };
    let missing: Vec<usize> = (0..n_shards).filter(|i| !shards_seen.contains(i)).collect();
    if !missing.is_empty() {
        bail!(
            "shard(s) {} of {n_shards} missing: merge needs every part",
            missing
                .iter()
                .map(|i| format!("{i}/{n_shards}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let rows: Vec<Line> = slots
        .into_iter()
        .enumerate()
        .map(|(k, r)| {
            r.ok_or_else(|| anyhow!("pair {k} of {n_pairs} is in no part (a part was cut short?)"))
        })
        .collect::<Result<_>>()?;
    let policy: EmptyPolicy = serde_json::from_value(settings["empty_policy"].clone())
        .map_err(|e| anyhow!("parts' settings: empty_policy: {e}"))?;
    let sweep_on = settings["sweep"].as_bool().unwrap_or(false);
    let thresholds = if sweep_on {
        let step = settings["sweep_step"].as_f64().unwrap_or(0.05);
        seglab_metrics::summary::sweep_thresholds(step).map_err(|e| anyhow!("sweep_step: {e}"))?
    } else {
        Vec::new()
    };
    let cases: Vec<CaseResult> = rows.iter().map(|r| r.case.clone()).collect();
    let summary = summarize(&cases, policy);
    let sweep = sweep_on.then(|| {
        let counts: Vec<Vec<Confusion>> = rows
            .iter()
            .map(|r| {
                r.sweep
                    .iter()
                    .map(|c| Confusion {
                        tp: c[0],
                        fp: c[1],
                        fn_: c[2],
                        tn: c[3],
                    })
                    .collect()
            })
            .collect();
        sweep_summary(&counts, &thresholds, policy)
    });
    let json = a
        .out
        .as_ref()
        .map(|_| {
            serde_json::to_vec_pretty(&folders::Report {
                version: 1,
                settings: settings.clone(),
                cases: cases.iter().collect(),
                summary: &summary,
                sweep: sweep.as_ref(),
            })
        })
        .transpose()?;
    let csv = a
        .csv
        .as_ref()
        .map(|_| super::evaluate::csv_bytes(&cases))
        .transpose()?;
    if let (Some(p), Some(b)) = (&a.out, &json) {
        io::write_bytes_atomic(p, b)?;
    }
    if let (Some(p), Some(b)) = (&a.csv, &csv) {
        io::write_bytes_atomic(p, b)?;
    }
    super::evaluate::print_table(&cases, &summary, sweep.as_ref());
    Ok(())
}
