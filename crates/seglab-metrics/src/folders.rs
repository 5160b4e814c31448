//! Folders of predictions against folders of ground truth: files paired by stem, each pair read and scored as
//! `seglab evaluate` does, the cases in parallel, and the JSON object `seglab evaluate --out` writes. Shared by the CLI
//! and the Python package's `evaluate_folders`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::evaluate::{check_geometry, evaluate_masks, evaluate_probs, CaseResult, EvalSettings};
use crate::io::{self, image_stem};
use crate::summary::{summarize, sweep_counts, sweep_summary, Summary, SweepResult};
use crate::Confusion;

/// One prediction / ground-truth pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Pair {
    pub case: String,
    pub pred: PathBuf,
    pub gt: PathBuf,
}

/// Image files of a folder by stem (hidden files ignored). Two files with one stem are ambiguous: an error.
pub fn list_images(
    dir: &Path,
    role: &str,
    strip_gt_suffix: bool,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let cannot = |e: std::io::Error| format!("{}: cannot list {role} folder: {e}", dir.display());
    let entries = std::fs::read_dir(dir).map_err(cannot)?;
    let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
    for entry in entries {
        let path = entry.map_err(cannot)?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        let Some(mut stem) = image_stem(&path) else {
            continue;
        };
        if strip_gt_suffix {
            if let Some(s) = crate::io::strip_mask_suffix(&stem) {
                if !s.is_empty() {
                    stem = s.to_string();
                }
            }
        }
        if let Some(previous) = out.insert(stem.clone(), path.clone()) {
            return Err(format!(
                "{}: ambiguous {role} files for case '{stem}': also {}",
                path.display(),
                previous.display()
            ));
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{}: {role} folder has no .png, .nii, .nii.gz or .npy files",
            dir.display()
        ));
    }
    Ok(out)
}

/// Pairs a prediction folder (or file) with a ground-truth folder (or file) by stem; a ground-truth stem may carry a
/// mask suffix. Unmatched files are an error unless `allow_missing` (then `warn` hears about them).
pub fn pair_paths(
    pred: &Path,
    gt: &Path,
    allow_missing: bool,
    warn: &dyn Fn(&str),
) -> Result<Vec<Pair>, String> {
    for (p, role) in [(pred, "prediction"), (gt, "ground truth")] {
        if !p.exists() {
            return Err(format!("{}: {role} path not found", p.display()));
        }
    }
    match (pred.is_dir(), gt.is_dir()) {
        (false, false) => {
            let case = image_stem(pred).unwrap_or_else(|| pred.display().to_string());
            Ok(vec![Pair {
                case,
                pred: pred.to_path_buf(),
                gt: gt.to_path_buf(),
            }])
        }
        (true, false) => Err(format!(
            "{}: is a directory, expected a file (--gt is a file)",
            pred.display()
        )),
        (false, true) => Err(format!(
            "{}: is a directory, expected a file (--pred is a file)",
            gt.display()
        )),
        (true, true) => {
            let preds = list_images(pred, "prediction", false)?;
            let gts = list_images(gt, "ground truth", true)?;
            let missing_gt: Vec<&PathBuf> = preds
                .iter()
                .filter(|(s, _)| !gts.contains_key(*s))
                .map(|(_, p)| p)
                .collect();
            let missing_pred: Vec<&PathBuf> = gts
                .iter()
                .filter(|(s, _)| !preds.contains_key(*s))
                .map(|(_, p)| p)
                .collect();
            let describe = |v: &[&PathBuf]| {
                let names: Vec<String> = v
                    .iter()
                    .take(5)
                    .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                    .collect();
                format!(
                    "{}{}",
                    names.join(", "),
                    if v.len() > 5 {
                        format!(" and {} more", v.len() - 5)
                    } else {
                        String::new()
                    }
                )
            };
            if !missing_gt.is_empty() || !missing_pred.is_empty() {
                let mut msg = Vec::new();
                if !missing_gt.is_empty() {
                    msg.push(format!(
                        "{}: no ground truth for {}",
                        gt.display(),
                        describe(&missing_gt)
                    ));
                }
                if !missing_pred.is_empty() {
                    msg.push(format!(
                        "{}: no prediction for {}",
                        pred.display(),
                        describe(&missing_pred)
                    ));
                }
                if !allow_missing {
                    return Err(format!(
                        "unmatched files: {} (--allow-missing skips them)",
                        msg.join("; ")
                    ));
                }
                warn(&format!("skipping unmatched files: {}", msg.join("; ")));
            }
            let pairs: Vec<Pair> = preds
                .into_iter()
                .filter_map(|(case, p)| {
                    gts.get(&case).map(|g| Pair {
                        case,
                        pred: p,
                        gt: g.clone(),
                    })
                })
                .collect();
            if pairs.is_empty() {
                return Err(format!(
                    "{}: no prediction matches a ground-truth file in {}",
                    pred.display(),
                    gt.display()
                ));
            }
            Ok(pairs)
        }
    }
}

/// How files are read, beside the metrics engine's settings (`seglab evaluate`'s reading flags).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadOptions {
    /// Binarise non-binary ground truth with `value >= gt_threshold` (default: `value > 0`, non-binary is an error).
    pub gt_threshold: Option<f64>,
    /// Spacing (mm per axis) overriding the files'.
    pub spacing: Option<Vec<f64>>,
    /// Use the ground truth's spacing when the two files differ by more than 1e-3 mm.
    pub ignore_spacing_mismatch: bool,
}

/// One scored pair: its result and, with a sweep, its counts at each threshold.
pub struct CaseOutput {
    pub result: CaseResult,
    pub sweep: Option<Vec<Confusion>>,
}

/// Sets `spacing` on a raw array, checking its rank.
pub fn apply_spacing(raw: &mut io::RawArray, spacing: &Option<Vec<f64>>) -> Result<(), String> {
    if let Some(s) = spacing {
        if s.len() != raw.shape.len() {
            return Err(format!(
                "{}: --spacing has {} values but the image has {} axes (shape {:?})",
                raw.path.display(),
                s.len(),
                raw.shape.len(),
                raw.shape
            ));
        }
        raw.spacing = s.clone();
    }
    Ok(())
}

/// Reads and scores one pair; `thresholds` non-empty adds the sweep's counts.
pub fn evaluate_pair(
    pair: &Pair,
    read: &ReadOptions,
    settings: &EvalSettings,
    thresholds: &[f32],
) -> Result<CaseOutput, String> {
    // Decoding (gzip, PNG) is most of a small case's time: both files at once. Storage order is kept (the metrics
    // do not depend on axis order) unless the two files differ in it.
    let (gt_raw, pred_raw) =
        rayon::join(|| io::read_native(&pair.gt), || io::read_native(&pair.pred));
    let (mut gt_raw, mut pred_raw) = (
        gt_raw.map_err(|e| e.to_string())?,
        pred_raw.map_err(|e| e.to_string())?,
    );
    if gt_raw.column_major != pred_raw.column_major {
        gt_raw = gt_raw.into_row_major();
        pred_raw = pred_raw.into_row_major();
    }
    apply_spacing(&mut gt_raw, &read.spacing)?;
    apply_spacing(&mut pred_raw, &read.spacing)?;
    let in_context = |e: String| format!("{} vs {}: {e}", pair.pred.display(), pair.gt.display());
    check_geometry(
        (&pred_raw.shape, &pred_raw.spacing),
        (&gt_raw.shape, &gt_raw.spacing),
        read.ignore_spacing_mismatch,
    )
    .map_err(in_context)?;
    // The case is reported in the file's axis order, whatever order the masks run in.
    let (shape, spacing) = (gt_raw.shape.clone(), gt_raw.spacing.clone());
    let gt = gt_raw
        .into_gt_mask(read.gt_threshold)
        .map_err(|e| e.to_string())?;
    let logical = |mut r: CaseResult| {
        r.shape = shape;
        r.spacing = spacing;
        r
    };
    if !thresholds.is_empty() {
        let prob = pred_raw.to_prob_map().map_err(|e| e.to_string())?;
        drop(pred_raw);
        let result = logical(evaluate_probs(&pair.case, &prob, &gt, settings).map_err(in_context)?);
        let sweep = Some(sweep_counts(&prob, &gt, thresholds));
        return Ok(CaseOutput { result, sweep });
    }
    // Without a sweep only the binarised prediction is needed (same rule as evaluate_probs).
    let pred = pred_raw
        .into_pred_mask(settings.threshold)
        .map_err(|e| e.to_string())?
        .with_spacing(gt.spacing().to_vec());
    let result = logical(evaluate_masks(&pair.case, &pred, &gt, settings).map_err(in_context)?);
    Ok(CaseOutput {
        result,
        sweep: None,
    })
}

/// Every pair scored (in parallel), the summary and, with `thresholds`, the sweep.
pub struct FolderResults {
    pub cases: Vec<CaseResult>,
    pub summary: Summary,
    pub sweep: Option<SweepResult>,
    /// With a sweep, each case's counts at each threshold (what a shard hands to `seglab merge`).
    pub case_sweeps: Vec<Vec<Confusion>>,
}

/// Scores every pair; `done` is called after each. The first failure (in pair order) is the error, with how many
/// more failed; nothing is returned then.
pub fn evaluate_pairs(
    pairs: &[Pair],
    read: &ReadOptions,
    settings: &EvalSettings,
    thresholds: &[f32],
    done: &(dyn Fn() + Sync),
) -> Result<FolderResults, String> {
    let outputs: Vec<Result<CaseOutput, String>> = pairs
        .par_iter()
        .map(|pair| {
            let r = evaluate_pair(pair, read, settings, thresholds);
            done();
            r
        })
        .collect();
    let n_err = outputs.iter().filter(|o| o.is_err()).count();
    let mut results = Vec::with_capacity(outputs.len());
    let mut sweeps = Vec::new();
    for o in outputs {
        match o {
            Ok(o) => {
                results.push(o.result);
                sweeps.extend(o.sweep);
            }
            Err(e) => {
                let more = if n_err > 1 {
                    format!(" ({} more case(s) failed)", n_err - 1)
                } else {
                    String::new()
                };
                return Err(format!("{e}{more}"));
            }
        }
    }
    let summary = summarize(&results, settings.empty_policy);
    let sweep =
        (!thresholds.is_empty()).then(|| sweep_summary(&sweeps, thresholds, settings.empty_policy));
    Ok(FolderResults {
        cases: results,
        summary,
        sweep,
        case_sweeps: sweeps,
    })
}

/// The JSON object of `seglab evaluate --out`.
#[derive(Serialize)]
pub struct Report<'a> {
    pub version: u32,
    pub settings: serde_json::Value,
    pub cases: Vec<&'a CaseResult>,
    pub summary: &'a Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<&'a SweepResult>,
}

/// The settings block of that object: the engine's settings plus the reading and pairing options.
#[allow(clippy::too_many_arguments)]
pub fn settings_json(
    pred: &Path,
    gt: &Path,
    read: &ReadOptions,
    settings: &EvalSettings,
    allow_missing: bool,
    sweep: bool,
    sweep_step: f64,
) -> serde_json::Value {
    let mut v = serde_json::to_value(settings).expect("settings serialise");
    let extra = serde_json::json!({
        "pred": pred.display().to_string(),
        "gt": gt.display().to_string(),
        "gt_threshold": read.gt_threshold,
        "spacing": read.spacing,
        "ignore_spacing_mismatch": read.ignore_spacing_mismatch,
        "allow_missing": allow_missing,
        "sweep": sweep,
        "sweep_step": sweep_step,
    });
    v.as_object_mut()
        .expect("settings are an object")
        .extend(extra.as_object().expect("an object").clone());
    v
}
