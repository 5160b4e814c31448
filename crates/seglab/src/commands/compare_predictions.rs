//! `seglab compare --predictions NAME=DIR ...`: the comparison of models trained anywhere, through their prediction
//! folders, against one ground truth. Files are paired by stem exactly as `seglab evaluate` pairs them and scored by the
//! same metrics engine with the same options ([`MetricOptions`]); each case's ground truth is decoded once for all
//! models. With `--val-cases`, each model's threshold is the one of the sweep with the highest mean Dice on those
//! cases, and every reported number comes from the others; without, `--threshold` holds for every model. The
//! statistics, answers and report are the trained compare's ([`seglab::predictions`]).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use seglab::experiment::GalleryCase;
use seglab::predictions::{
    parse_metrics, GalleryEntry, ModelResult, PredictionExperiment, DEFAULT_METRICS,
};
use seglab_metrics::evaluate::{check_geometry, evaluate_masks_many, CaseResult, EvalSettings};
use seglab_metrics::io;
use seglab_metrics::summary::{
    prob_stats, sweep_counts, sweep_summary, sweep_thresholds, ProbStats,
};
use seglab_metrics::{Confusion, Mask, ProbMap};

use super::compare::Args;
use super::evaluate::{apply_spacing, list_images, MetricOptions};

use seglab_metrics::pooled::HISTOGRAM_BINS;
pub const GALLERY_CASES: usize = 4;

/// `NAME=DIR` pairs: names unique and non-empty, folders present.
pub fn parse_models(specs: &[String]) -> Result<Vec<(String, PathBuf)>> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for spec in specs {
        let Some((name, dir)) = spec.split_once('=') else {
            bail!("--predictions '{spec}': expected NAME=DIR (e.g. soft=runs/a/preds)");
        };
        let name = name.trim();
        if name.is_empty() || dir.is_empty() {
            bail!("--predictions '{spec}': expected NAME=DIR with a name and a folder");
        }
        if out.iter().any(|(n, _)| n == name) {
            bail!("--predictions: the model name '{name}' is given twice");
        }
        let dir = PathBuf::from(dir);
        if !dir.is_dir() {
            bail!(
                "{}: prediction folder of model '{name}' not found",
                dir.display()
            );
        }
        out.push((name.to_string(), dir));
    }
    if out.len() < 2 {
        bail!("--predictions: give at least two models (NAME=DIR each) to compare");
    }
    Ok(out)
}

/// Case ids, one per line (`#` comments and blank lines ignored).
fn read_case_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// One case's ground truth, read as `evaluate` reads it: in the file's storage order (metrics do not depend on axis
/// order), with a row-major copy made only if some model's file is stored in the other order.
struct GroundTruth {
    path: PathBuf,
    raw: io::RawArray,
    native: Mask,
    row_major: std::sync::OnceLock<std::result::Result<Mask, String>>,
}

impl GroundTruth {
    fn read(path: &Path, opts: &MetricOptions) -> Result<Self> {
        let mut raw = io::read_native(path)?;
        apply_spacing(&mut raw, &opts.spacing)?;
        let native = raw.to_gt_mask(opts.gt_threshold)?;
        Ok(GroundTruth {
            path: path.to_path_buf(),
            raw,
            native,
            row_major: std::sync::OnceLock::new(),
        })
    }

    /// The shape and spacing in the file's axis order (what a case reports).
    fn logical(&self) -> (Vec<usize>, Vec<f64>) {
        (self.raw.shape.clone(), self.raw.spacing.clone())
    }

    /// A prediction file of this case as probabilities, and the ground-truth mask in the same storage order.
    fn pred(&self, path: &Path, opts: &MetricOptions) -> Result<(ProbMap, &Mask)> {
        let mut raw = io::read_native(path)?;
        apply_spacing(&mut raw, &opts.spacing)?;
        check_geometry(
            (&raw.shape, &raw.spacing),
            (&self.raw.shape, &self.raw.spacing),
            opts.ignore_spacing_mismatch,
        )
        .map_err(|e| anyhow!("{} vs {}: {e}", path.display(), self.path.display()))?;
        if raw.column_major == self.raw.column_major {
            return Ok((raw.to_prob_map()?, &self.native));
        }
        let gt = self
            .row_major
            .get_or_init(|| {
                self.raw
                    .clone()
                    .into_row_major()
                    .into_gt_mask(opts.gt_threshold)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| anyhow!("{e}"))?;
        Ok((raw.into_row_major().to_prob_map()?, gt))
    }
}

/// What one model's file gives on one reported case.
struct Scored {
    result: CaseResult,
    sweep: Vec<Confusion>,
    hist_lesion: [u64; HISTOGRAM_BINS],
    hist_background: [u64; HISTOGRAM_BINS],
    soft_dice: f64,
    probabilistic: bool,
}

/// One model's map of a case, reduced to what is scored: the sweep counts, histograms and soft-Dice sums (one pass
/// over the probabilities, which are then dropped: the transforms of the distances need the memory) and the mask
/// binarised at the model's threshold, with the ground-truth mask in the same storage order.
struct Map<'a> {
    stats: ProbStats,
    mask: Mask,
    gt: &'a Mask,
}

impl<'a> Map<'a> {
    fn of(prob: ProbMap, gt: &'a Mask, threshold: f32, thresholds: &[f32]) -> Self {
        let stats = prob_stats(prob.data(), gt.data(), thresholds, HISTOGRAM_BINS);
        let mask = prob
            .threshold(threshold)
            .with_spacing(gt.spacing().to_vec());
        Map { stats, mask, gt }
    }
}

/// Every model's map of one case: the engine scores the models that share a ground-truth mask together, computing
/// the ground truth's side of the distances once (the numbers are `evaluate`'s: `evaluate_masks_many`).
fn score(
    case: &str,
    maps: Vec<Map>,
    settings: &EvalSettings,
) -> Vec<std::result::Result<Scored, String>> {
    let mut results: Vec<Option<std::result::Result<CaseResult, String>>> = vec![None; maps.len()];
    // At most two ground-truth masks: the file's storage order and its row-major copy.
    let mut groups: Vec<(&Mask, Vec<usize>)> = Vec::new();
    for (i, m) in maps.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| std::ptr::eq(*g, m.gt)) {
            Some((_, members)) => members.push(i),
            None => groups.push((m.gt, vec![i])),
        }
    }
    for (gt, members) in groups {
        let preds: Vec<&Mask> = members.iter().map(|&i| &maps[i].mask).collect();
        for (i, r) in members
            .iter()
            .zip(evaluate_masks_many(case, &preds, gt, settings))
        {
            results[*i] = Some(r);
        }
    }
    maps.into_iter()
        .zip(results)
        .map(|(m, result)| {
            let stats = m.stats;
            Ok(Scored {
                result: result.expect("every model scored")?,
                soft_dice: stats.soft_dice(),
                probabilistic: stats.probabilistic,
                hist_lesion: stats.hist_lesion.try_into().expect("HISTOGRAM_BINS bins"),
                hist_background: stats
                    .hist_background
                    .try_into()
                    .expect("HISTOGRAM_BINS bins"),
                sweep: stats.sweep,
            })
        })
        .collect()
}

/// The first error of a parallel pass, with how many more cases failed.
fn first_error<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    let n_err = results.iter().filter(|r| r.is_err()).count();
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(e) => {
                let more = if n_err > 1 {
                    format!(" ({} more case(s) failed)", n_err - 1)
                } else {
                    String::new()
                };
                bail!("{e:#}{more}");
            }
        }
    }
    Ok(out)
}

/// A 2D image as a gallery tile: channel mean, stretched to 0..255. None for anything but a 2D image of the case's
/// shape.
fn gallery_image(path: &Path, shape: &[usize]) -> Option<Vec<u8>> {
    let im = io::read_intensities(path).ok()?;
    if im.shape != shape || shape.len() != 2 {
        return None;
    }
    let n = shape[0] * shape[1];
    let gray: Vec<f32> = (0..n)
        .map(|p| (0..im.channels).map(|c| im.data[c * n + p]).sum::<f32>() / im.channels as f32)
        .collect();
    let (lo, hi) = gray
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), v| {
            (l.min(*v), h.max(*v))
        });
    let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
    Some(
        gray.iter()
            .map(|v| ((v - lo) * scale).round() as u8)
            .collect(),
    )
}

pub fn run(a: &Args) -> Result<()> {
    let trained_only = [
        (a.data.is_some(), "--data"),
        (a.variants.is_some(), "--variants"),
        (a.seeds.is_some(), "--seeds"),
        (a.epochs.is_some(), "--epochs"),
        (a.preset.is_some(), "--preset"),
        (a.config.is_some(), "--config"),
        (a.resume, "--resume"),
        (a.split.is_some(), "--split"),
        (a.test_fraction.is_some(), "--test-fraction"),
        (a.val_fraction.is_some(), "--val-fraction"),
    ];
    if let Some((_, flag)) = trained_only.iter().find(|(set, _)| *set) {
        bail!("{flag} applies to a compare that trains; with --predictions the models are already trained");
    }
    let settings = a.eval.settings()?;
    let models = parse_models(&a.predictions)?;
    let baseline = a.baseline.clone().unwrap_or_else(|| models[0].0.clone());
    if !models.iter().any(|(n, _)| *n == baseline) {
        bail!(
            "--baseline '{baseline}' is not one of the models ({})",
            models
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let metrics = parse_metrics(a.metrics.as_deref().unwrap_or(&DEFAULT_METRICS.join(",")))?;
    if a.eval.no_distances {
        if let Some(m) = metrics.iter().find(|m| {
            [
                "hd",
                "hd95",
                "assd",
                "asd_pred_to_gt",
                "asd_gt_to_pred",
                "nsd",
            ]
            .contains(&m.as_str())
        }) {
            bail!("--metrics {m} needs surface distances; drop --no-distances or choose other --metrics");
        }
    }
    let Some(gt_dir) = &a.gt else {
        bail!("--predictions needs --gt (the ground-truth folder)");
    };
    if !gt_dir.is_dir() {
        bail!("{}: ground-truth folder not found", gt_dir.display());
    }
    let gts = list_images(gt_dir, "ground truth", true)?;
    // Every model must have every case, and nothing else: a comparison on different cases is not paired.
    let mut files: Vec<BTreeMap<String, PathBuf>> = Vec::new();
    let mut problems = Vec::new();
    for (name, dir) in &models {
        let f = list_images(dir, "prediction", false)?;
        let missing: Vec<&str> = gts
            .keys()
            .filter(|c| !f.contains_key(*c))
            .map(String::as_str)
            .collect();
        let extra: Vec<&str> = f
            .keys()
            .filter(|c| !gts.contains_key(*c))
            .map(String::as_str)
            .collect();
        let list = |v: &[&str]| {
            let mut s = v.iter().take(8).copied().collect::<Vec<_>>().join(", ");
            if v.len() > 8 {
                s.push_str(&format!(" and {} more", v.len() - 8));
            }
            s
        };
        if !missing.is_empty() {
            problems.push(format!(
                "{name} ({}) lacks {}",
                dir.display(),
                list(&missing)
            ));
        }
        if !extra.is_empty() {
            problems.push(format!(
                "{name} ({}) has cases without ground truth: {}",
                dir.display(),
                list(&extra)
            ));
        }
        files.push(f);
    }
    if !problems.is_empty() {
        bail!(
            "prediction folders do not match the ground truth in {}: {}",
            gt_dir.display(),
            problems.join("; ")
        );
    }
    let val_cases: Vec<String> = match &a.val_cases {
        Some(p) => {
            let list = read_case_list(p)?;
            let unknown: Vec<&String> = list.iter().filter(|c| !gts.contains_key(*c)).collect();
            if let Some(c) = unknown.first() {
                bail!(
                    "{}: case '{c}' is not in the ground-truth folder {}{}",
                    p.display(),
                    gt_dir.display(),
                    if unknown.len() > 1 {
                        format!(" ({} unknown ids)", unknown.len())
                    } else {
                        String::new()
                    }
                );
            }
            list.into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        }
        None => Vec::new(),
    };
    let cases: Vec<String> = gts
        .keys()
        .filter(|c| !val_cases.contains(c))
        .cloned()
        .collect();
    if cases.is_empty() {
        bail!("--val-cases holds every case; nothing is left to report");
    }
    let thresholds = sweep_thresholds(0.05).map_err(|e| anyhow!(e))?;

    // Validation pass: each model's threshold.
    let mut model_thresholds = vec![settings.threshold; models.len()];
    let mut val_sweeps = vec![None; models.len()];
    if !val_cases.is_empty() {
        let per_case: Vec<Result<Vec<Vec<Confusion>>>> = val_cases
            .par_iter()
            .map(|case| {
                let gt = GroundTruth::read(&gts[case], &a.eval)?;
                files
                    .par_iter()
                    .map(|f| {
                        let (prob, mask) = gt.pred(&f[case], &a.eval)?;
                        Ok(sweep_counts(&prob, mask, &thresholds))
                    })
                    .collect()
            })
            .collect();
        let per_case = first_error(per_case)?;
        for m in 0..models.len() {
            let counts: Vec<Vec<Confusion>> = per_case.iter().map(|c| c[m].clone()).collect();
            let sweep = sweep_summary(&counts, &thresholds, settings.empty_policy);
            if let Some(t) = sweep.best_threshold {
                model_thresholds[m] = t;
            }
            val_sweeps[m] = Some(sweep);
        }
    }

    // Reported cases: every model on the ground truth decoded once.
    let per_case: Vec<Result<Vec<Scored>>> = cases
        .par_iter()
        .map(|case| {
            let gt = GroundTruth::read(&gts[case], &a.eval)?;
            let (shape, spacing) = gt.logical();
            // Every model's file, read side by side; the first that fails is reported.
            let maps = files
                .par_iter()
                .zip(&model_thresholds)
                .map(|(f, &t)| {
                    let (prob, gt_mask) = gt.pred(&f[case], &a.eval)?;
                    Ok(Map::of(prob, gt_mask, t, &thresholds))
                })
                .collect::<Result<Vec<_>>>()?;
            score(case, maps, &settings)
                .into_iter()
                .zip(&files)
                .map(|(scored, f)| {
                    let mut scored = scored.map_err(|e| {
                        anyhow!("{} vs {}: {e}", f[case].display(), gt.path.display())
                    })?;
                    // The case is reported in the file's axis order, as `evaluate` reports it.
                    scored.result.shape = shape.clone();
                    scored.result.spacing = spacing.clone();
                    Ok(scored)
                })
                .collect()
        })
        .collect();
    let mut per_case = first_error(per_case)?;
    let mut results: Vec<ModelResult> = Vec::new();
    for (m, (name, dir)) in models.iter().enumerate().rev() {
        let scored: Vec<Scored> = per_case
            .iter_mut()
            .map(|c| c.pop().expect("one score per model"))
            .collect();
        let counts: Vec<Vec<Confusion>> = scored.iter().map(|s| s.sweep.clone()).collect();
        let mut hl = vec![0u64; HISTOGRAM_BINS];
        let mut hb = vec![0u64; HISTOGRAM_BINS];
        for s in &scored {
            for i in 0..HISTOGRAM_BINS {
                hl[i] += s.hist_lesion[i];
                hb[i] += s.hist_background[i];
            }
        }
        results.push(ModelResult {
            name: name.clone(),
            folder: dir.display().to_string(),
            threshold: model_thresholds[m],
            threshold_from_validation: val_sweeps[m].is_some(),
            probabilistic: scored.iter().any(|s| s.probabilistic),
            soft_dice: scored.iter().map(|s| s.soft_dice).collect(),
            sweep: sweep_summary(&counts, &thresholds, settings.empty_policy),
            val_sweep: val_sweeps[m].clone(),
            hist_lesion: hl,
            hist_background: hb,
            cases: scored.into_iter().map(|s| s.result).collect(),
        });
    }
    results.reverse();

    let mut exp = PredictionExperiment {
        title: format!(
            "seglab compare: {} models against {}",
            models.len(),
            gt_dir.display()
        ),
        gt: gt_dir.display().to_string(),
        baseline,
        metrics,
        val_cases,
        cases,
        models: results,
        empty_policy: settings.empty_policy,
        settings: serde_json::json!({
            "engine": serde_json::to_value(&settings)?,
            "threshold": a.eval.threshold,
            "gt_threshold": a.eval.gt_threshold,
            "spacing": a.eval.spacing,
            "ignore_spacing_mismatch": a.eval.ignore_spacing_mismatch,
            "val_cases_file": a.val_cases.as_ref().map(|p| p.display().to_string()),
            "sweep_thresholds": thresholds,
        }),
        gallery: Vec::new(),
    };
    if let Some(images) = &a.images {
        exp.gallery = gallery(&exp, images, &gts, &files, &a.eval)?;
    }
    let files = seglab::report::predictions::write_report(&exp, &a.out)?;
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(&files.summary)?)?;
    println!("verdict:");
    for line in summary["verdict"].as_array().into_iter().flatten() {
        println!("  {}", line.as_str().unwrap_or_default());
    }
    println!("report: {}", files.index.display());
    Ok(())
}

/// The cases with the largest Dice differences from the baseline (one per model in turn, up to [`GALLERY_CASES`]),
/// with their images from `images` (2D cases only).
fn gallery(
    exp: &PredictionExperiment,
    images: &Path,
    gts: &BTreeMap<String, PathBuf>,
    files: &[BTreeMap<String, PathBuf>],
    opts: &MetricOptions,
) -> Result<Vec<GalleryEntry>> {
    if !images.is_dir() {
        bail!("{}: --images folder not found", images.display());
    }
    let image_files = list_images(images, "image", false)?;
    let base = exp.model(&exp.baseline).expect("the baseline is a model");
    let base_dice = base.values("dice");
    let mut chosen: Vec<(usize, String)> = Vec::new();
    let others: Vec<&ModelResult> = exp
        .models
        .iter()
        .filter(|m| m.name != exp.baseline)
        .collect();
    let mut ranked: Vec<Vec<(f64, usize)>> = others
        .iter()
        .map(|m| {
            let mut d: Vec<(f64, usize)> = m
                .values("dice")
                .iter()
                .zip(&base_dice)
                .enumerate()
                .filter_map(|(i, (x, y))| Some((((*x)? - (*y)?).abs(), i)))
                .filter(|(d, _)| *d > 0.0)
                .filter(|(_, i)| {
                    exp.models[0].cases[*i].shape.len() == 2
                        && image_files.contains_key(&exp.cases[*i])
                })
                .collect();
            d.sort_by(|a, b| b.0.total_cmp(&a.0));
            d
        })
        .collect();
    'outer: while chosen.len() < GALLERY_CASES {
        let mut progressed = false;
        for (k, list) in ranked.iter_mut().enumerate() {
            while let Some((diff, i)) = list.first().copied() {
                list.remove(0);
                if chosen.iter().any(|(c, _)| *c == i) {
                    continue;
                }
                chosen.push((
                    i,
                    format!(
                        "largest Dice difference of {} from {} ({:.3})",
                        others[k].name, exp.baseline, diff
                    ),
                ));
                progressed = true;
                break;
            }
            if chosen.len() >= GALLERY_CASES {
                break 'outer;
            }
        }
        if !progressed {
            break;
        }
    }
    let mut out = Vec::new();
    for (i, why) in chosen {
        let case = &exp.cases[i];
        let truth = GroundTruth::read(&gts[case], opts)?;
        let gt = truth
            .raw
            .clone()
            .into_row_major()
            .into_gt_mask(opts.gt_threshold)?;
        let shape = gt.shape().to_vec();
        let Some(image) = gallery_image(&image_files[case], &shape) else {
            continue;
        };
        let predictions = files
            .iter()
            .zip(&exp.models)
            .map(|(f, m)| {
                let prob = io::read(&f[case])?.to_prob_map()?;
                Ok(prob
                    .threshold(m.threshold)
                    .data()
                    .iter()
                    .map(|&b| u8::from(b))
                    .collect())
            })
            .collect::<Result<Vec<Vec<u8>>>>()?;
        out.push(GalleryEntry {
            case: GalleryCase {
                id: case.clone(),
                width: shape[1],
                height: shape[0],
                image,
                ground_truth: gt.data().iter().map(|&b| u8::from(b)).collect(),
            },
            predictions,
            why,
        });
    }
    Ok(out)
}
