//! Folders of predictions against folders of ground truth: files paired by stem, each pair read and scored as
//! `seglab evaluate` does, the cases in parallel, and the JSON object `seglab evaluate --out` writes. Shared by the CLI
//! and the Python package's `evaluate_folders`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::evaluate::{check_geometry, evaluate_masks, evaluate_probs, CaseResult, EvalSettings};
use crate::io::{self, image_stem};
use crate::labels::{LabelSet, Region};
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
    /// Both files are label maps and these labels form the mask (`--labels`).
    pub labels: Option<LabelSet>,
}

/// One scored pair: its result and, with a sweep, its counts at each threshold.
pub struct CaseOutput {
    pub result: CaseResult,
    pub sweep: Option<Vec<Confusion>>,
    /// With label sets: the requested label values found in either file.
    pub labels_found: Vec<i64>,
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

/// Both files of a pair read, in one storage order, spacing applied and geometry checked.
struct ReadPair {
    gt: io::RawArray,
    pred: io::RawArray,
    /// The ground truth's shape and spacing in the file's axis order (the case is reported in it).
    shape: Vec<usize>,
    spacing: Vec<f64>,
}

fn read_pair(pair: &Pair, read: &ReadOptions) -> Result<ReadPair, String> {
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
    check_geometry(
        (&pred_raw.shape, &pred_raw.spacing),
        (&gt_raw.shape, &gt_raw.spacing),
        read.ignore_spacing_mismatch,
    )
    .map_err(|e| in_context(pair, e))?;
    Ok(ReadPair {
        shape: gt_raw.shape.clone(),
        spacing: gt_raw.spacing.clone(),
        gt: gt_raw,
        pred: pred_raw,
    })
}

fn in_context(pair: &Pair, e: String) -> String {
    format!("{} vs {}: {e}", pair.pred.display(), pair.gt.display())
}

impl ReadPair {
    /// The case reported in the file's axis order, whatever order the masks run in.
    fn logical(&self, mut r: CaseResult) -> CaseResult {
        r.shape = self.shape.clone();
        r.spacing = self.spacing.clone();
        r
    }

    /// The masks of one label set and the case scored on them.
    fn score_labels(
        &self,
        pair: &Pair,
        labels: &LabelSet,
        settings: &EvalSettings,
    ) -> Result<CaseResult, String> {
        let (gt, pred) = rayon::join(
            || self.gt.label_mask(labels),
            || self.pred.label_mask(labels),
        );
        let pred = pred.with_spacing(gt.spacing().to_vec());
        let r =
            evaluate_masks(&pair.case, &pred, &gt, settings).map_err(|e| in_context(pair, e))?;
        Ok(self.logical(r))
    }

    fn labels_found(&self, labels: &LabelSet) -> Vec<i64> {
        let mut found = self.gt.labels_present(labels);
        found.extend(self.pred.labels_present(labels));
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// Reads and scores one pair; `thresholds` non-empty adds the sweep's counts.
pub fn evaluate_pair(
    pair: &Pair,
    read: &ReadOptions,
    settings: &EvalSettings,
    thresholds: &[f32],
) -> Result<CaseOutput, String> {
    let files = read_pair(pair, read)?;
    if let Some(labels) = &read.labels {
        if !thresholds.is_empty() {
            return Err(
                "a threshold sweep needs probability maps, not label maps (--labels)".into(),
            );
        }
        return Ok(CaseOutput {
            result: files.score_labels(pair, labels, settings)?,
            sweep: None,
            labels_found: files.labels_found(labels),
        });
    }
    let ReadPair {
        gt: gt_raw,
        pred: pred_raw,
        shape,
        spacing,
    } = files;
    let logical = |mut r: CaseResult| {
        r.shape = shape;
        r.spacing = spacing;
        r
    };
    let gt = gt_raw
        .into_gt_mask(read.gt_threshold)
        .map_err(|e| e.to_string())?;
    if !thresholds.is_empty() {
        let prob = pred_raw.to_prob_map().map_err(|e| e.to_string())?;
        drop(pred_raw);
        let result = logical(
            evaluate_probs(&pair.case, &prob, &gt, settings).map_err(|e| in_context(pair, e))?,
        );
        let sweep = Some(sweep_counts(&prob, &gt, thresholds));
        return Ok(CaseOutput {
            result,
            sweep,
            labels_found: Vec::new(),
        });
    }
    // Without a sweep only the binarised prediction is needed (same rule as evaluate_probs).
    let pred = pred_raw
        .into_pred_mask(settings.threshold)
        .map_err(|e| e.to_string())?
        .with_spacing(gt.spacing().to_vec());
    let result =
        logical(evaluate_masks(&pair.case, &pred, &gt, settings).map_err(|e| in_context(pair, e))?);
    Ok(CaseOutput {
        result,
        sweep: None,
        labels_found: Vec::new(),
    })
}

/// Every pair scored (in parallel), the summary and, with `thresholds`, the sweep.
pub struct FolderResults {
    pub cases: Vec<CaseResult>,
    pub summary: Summary,
    pub sweep: Option<SweepResult>,
    /// With a sweep, each case's counts at each threshold (what a shard hands to `seglab merge`).
    pub case_sweeps: Vec<Vec<Confusion>>,
    /// With `--labels`: the values asked for that occur in no file.
    pub labels_absent: Vec<i64>,
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
    let mut found = Vec::new();
    for o in outputs {
        match o {
            Ok(o) => {
                results.push(o.result);
                sweeps.extend(o.sweep);
                found.extend(o.labels_found);
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
        labels_absent: read
            .labels
            .as_ref()
            .map(|l| absent(l, &found))
            .unwrap_or_default(),
    })
}

/// The values of `asked` not in `found`.
fn absent(asked: &LabelSet, found: &[i64]) -> Vec<i64> {
    asked
        .values()
        .iter()
        .copied()
        .filter(|v| !found.contains(v))
        .collect()
}

/// Joins the first failure of a run with how many more failed.
fn first_error<T>(outputs: Vec<Result<T, String>>) -> Result<Vec<T>, String> {
    let n_err = outputs.iter().filter(|o| o.is_err()).count();
    outputs
        .into_iter()
        .map(|o| {
            o.map_err(|e| {
                if n_err > 1 {
                    format!("{e} ({} more case(s) failed)", n_err - 1)
                } else {
                    e
                }
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Regions of label maps (`--regions`): every file read once, each region scored as its own label set.

/// One case scored per region, in the order the regions were given.
#[derive(Clone, Debug)]
pub struct RegionCase {
    pub case: String,
    pub shape: Vec<usize>,
    pub spacing: Vec<f64>,
    pub regions: Vec<(String, CaseResult)>,
}

/// A region's part of a case in the JSON: its `metrics`, `status`, `lesions` and the optional objects.
#[derive(Serialize)]
struct RegionEntry<'a> {
    metrics: &'a crate::Metrics,
    status: &'a crate::evaluate::CaseStatus,
    lesions: &'a [crate::lesion::LesionDice],
    #[serde(skip_serializing_if = "Option::is_none")]
    lesionwise: &'a Option<crate::brats::LesionWise>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instances: &'a Option<crate::instances::Instances>,
}

/// Named values serialised as a JSON object in their given order.
pub struct Ordered<'a, T>(pub &'a [(String, T)]);

impl<T: Serialize> Serialize for Ordered<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for RegionCase {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let entries: Vec<(String, RegionEntry)> = self
            .regions
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    RegionEntry {
                        metrics: &r.metrics,
                        status: &r.status,
                        lesions: &r.lesions,
                        lesionwise: &r.lesionwise,
                        instances: &r.instances,
                    },
                )
            })
            .collect();
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("case", &self.case)?;
        map.serialize_entry("shape", &self.shape)?;
        map.serialize_entry("spacing", &self.spacing)?;
        map.serialize_entry("regions", &Ordered(&entries))?;
        map.end()
    }
}

/// The JSON object of `seglab evaluate --regions --out`: the cases keyed by region, a summary per region (both in
/// the order the regions were given).
#[derive(Serialize)]
pub struct RegionReport<'a> {
    pub version: u32,
    pub settings: serde_json::Value,
    pub cases: &'a [RegionCase],
    pub summary: Ordered<'a, Summary>,
}

pub struct RegionResults {
    pub cases: Vec<RegionCase>,
    /// Per region, in the given order.
    pub summaries: Vec<(String, Summary)>,
    /// Per region, the label values that occur in no file.
    pub labels_absent: Vec<(String, Vec<i64>)>,
}

impl RegionResults {
    /// The cases of one region, as a run with `--labels` would give them.
    pub fn region_cases(&self, k: usize) -> Vec<CaseResult> {
        self.cases.iter().map(|c| c.regions[k].1.clone()).collect()
    }
}

/// Scores every pair for every region (each file read once); `done` is called after each pair.
pub fn evaluate_pairs_by_region(
    pairs: &[Pair],
    read: &ReadOptions,
    settings: &EvalSettings,
    regions: &[Region],
    done: &(dyn Fn() + Sync),
) -> Result<RegionResults, String> {
    // Per pair: its case and, per region, the label values found in its files.
    type Scored = Result<(RegionCase, Vec<Vec<i64>>), String>;
    let outputs: Vec<Scored> = pairs
        .par_iter()
        .map(|pair| {
            let r = (|| {
                let files = read_pair(pair, read)?;
                let mut scored = Vec::with_capacity(regions.len());
                let mut found = Vec::with_capacity(regions.len());
                for region in regions {
                    let r = files.score_labels(pair, &region.labels, settings)?;
                    scored.push((region.name.clone(), r));
                    found.push(files.labels_found(&region.labels));
                }
                Ok((
                    RegionCase {
                        case: pair.case.clone(),
                        shape: files.shape.clone(),
                        spacing: files.spacing.clone(),
                        regions: scored,
                    },
                    found,
                ))
            })();
            done();
            r
        })
        .collect();
    let outputs = first_error(outputs)?;
    let mut results = RegionResults {
        cases: Vec::with_capacity(outputs.len()),
        summaries: Vec::new(),
        labels_absent: Vec::new(),
    };
    let mut found: Vec<Vec<i64>> = vec![Vec::new(); regions.len()];
    for (case, f) in outputs {
        for (k, v) in f.into_iter().enumerate() {
            found[k].extend(v);
        }
        results.cases.push(case);
    }
    for (k, region) in regions.iter().enumerate() {
        let cases = results.region_cases(k);
        results.summaries.push((
            region.name.clone(),
            summarize(&cases, settings.empty_policy),
        ));
        let missing = absent(&region.labels, &found[k]);
        if !missing.is_empty() {
            results.labels_absent.push((region.name.clone(), missing));
        }
    }
    Ok(results)
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
    let map = v.as_object_mut().expect("settings are an object");
    map.extend(extra.as_object().expect("an object").clone());
    // Only when given, so that the settings of a run without label maps stay as they were.
    if let Some(labels) = &read.labels {
        map.insert("labels".into(), serde_json::json!(labels));
    }
    v
}
