//! `seglab compare`: the controlled experiment of issue 5 under the protocol of issue 16. Cases are split once into
//! train / validation / test (`--test-fraction`, `--val-fraction` or `--split FILE`; `OUT/split.json`). Every variant
//! (loss + threshold mode) of one seed starts from the same initial weights (`init_seed` = seed), trains on the same
//! cases and sees the same batches and augmentations (the trainer derives them from the seed alone); only the loss
//! path differs. Presets train each run until its validation Dice plateaus (the convergence rule) within an epoch
//! budget. Validation selects each run's checkpoint and threshold; the test cases are then scored once
//! (`test.json` per run). Runs go one after another into `OUT/runs/<variant>/seed<k>/` (full trainer run folders),
//! then the report is written into OUT.
//!
//! Order of precedence for settings: preset, then `--config compare.toml`, then flags.
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use seglab::experiment::{
    default_variants, select_variants, Experiment, GalleryCase, RunResult, SplitCounts, TestScores,
    VariantSpec, DEFAULT_BASELINE, MIN_CASES, TEST_FILE, TEST_FORMAT,
};
use seglab::report::write_report;
use seglab_metrics::io::write_bytes_atomic as write_atomic;
use seglab_nn::data::{self, Dataset, Split};
use seglab_nn::record::{RunOutcome, RunStatus};
use seglab_nn::train::{self, Convergence, LowResPhase, Progress, RunDir, TrainConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data: a folder with images/ and masks/, `builtin:phantoms` (default) or `builtin:tumors2d`.
    #[arg(long)]
    pub data: Option<String>,
    #[command(flatten)]
    pub device: super::args::DeviceArgs,
    /// Comma-separated variant names (default: every defined variant: soft,hard,ste,soft-threshold,power plus the
    /// config file's).
    #[arg(long)]
    pub variants: Option<String>,
    /// Number of seeds (0, 1, ... n-1).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// The epoch budget of each run (the preset's runs stop earlier once their validation Dice plateaus).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Fraction of the cases held out as test cases, scored once with the validation-selected checkpoint and
    /// threshold (default 0.2).
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Fraction of the cases used for validation: checkpoint and threshold selection, convergence (default 0.2).
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// A split file (JSON with "train", "val" and "test" lists of case names) instead of the fractions.
    #[arg(long)]
    pub split: Option<PathBuf>,
    /// quick (default: small network at 64x64, 2 seeds; minutes on a laptop), standard (3 seeds of the default
    /// U-Net at 64x64) or full (3 seeds of the default trainer at 128x128); each trains to convergence within its
    /// budget.
    #[arg(long)]
    pub preset: Option<String>,
    /// TOML file: data, preset, seeds, epochs, baseline, variants = [...], a [train] table with trainer settings
    /// (keys as in a run's config.json) and [[variant]] tables defining new variants.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Report folder.
    #[arg(long, default_value = "reports/compare")]
    pub out: PathBuf,
    /// Continue an interrupted compare in --out: finished runs are kept, unfinished ones continue from their last
    /// checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Log lines only, no progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// The baseline variant (default soft) or, with --predictions, model (default: the first).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Compare models trained anywhere through their prediction folders instead of training: NAME=DIR, once per
    /// model (masks or probability maps in any format `seglab evaluate` reads, paired with --gt by stem).
    #[arg(
        long,
        value_name = "NAME=DIR",
        help_heading = "Prediction folders (--predictions)"
    )]
    pub predictions: Vec<String>,
    /// Ground-truth folder for --predictions.
    #[arg(long, help_heading = "Prediction folders (--predictions)")]
    pub gt: Option<PathBuf>,
    /// Image folder (paired by stem): adds a gallery of the cases with the largest Dice differences (2D cases).
    #[arg(long, help_heading = "Prediction folders (--predictions)")]
    pub images: Option<PathBuf>,
    /// File of case ids (one per line) on which each model's threshold is chosen (the sweep's best mean Dice); all
    /// numbers are reported on the other cases. Without it, --threshold holds for every model.
    #[arg(long, help_heading = "Prediction folders (--predictions)")]
    pub val_cases: Option<PathBuf>,
    /// Comma-separated metrics to compare (default dice,hd95,nsd,lesion_f1); the first gives the answer.
    #[arg(long, help_heading = "Prediction folders (--predictions)")]
    pub metrics: Option<String>,
    #[command(
        flatten,
        next_help_heading = "Prediction folders (--predictions): scoring, as in `seglab evaluate`"
    )]
    pub eval: super::evaluate::MetricOptions,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareFile {
    pub data: Option<String>,
    pub preset: Option<String>,
    pub seeds: Option<usize>,
    pub epochs: Option<usize>,
    pub test_fraction: Option<f64>,
    pub val_fraction: Option<f64>,
    pub split: Option<PathBuf>,
    pub baseline: Option<String>,
    pub variants: Option<Vec<String>>,
    /// Trainer settings applied to every run (any key of the trainer's config; nested tables for `load`, `model`,
    /// `augment`).
    pub train: Option<toml::Table>,
    #[serde(default)]
    pub variant: Vec<VariantSpec>,
}

pub const PRESETS: [&str; 3] = ["quick", "standard", "full"];
pub const QUICK_PHANTOMS: usize = 150;
pub const DEFAULT_TEST_FRACTION: f64 = 0.2;

/// Trainer settings and seed count of a preset.
pub fn preset(name: &str) -> Result<(TrainConfig, usize, Vec<String>)> {
    let mut c = TrainConfig::default();
    if name != "full" {
        // The small presets keep one full-size view per image and no half-side epochs: at 64x64 the half side
        // would leave a 4-level U-Net a 2x2 bottleneck, and the comparison's verdict needs the same recipe for
        // every variant, not the most accurate one. `full` is the default trainer as `seglab train` runs it.
        c.augment.repeats = 1;
        c.low_res = LowResPhase::off();
    }
    // Every preset trains to convergence: the schedule (learning rate, annealing) spans a fixed horizon and the
    // budget is twice that, so a run that converges trains the same epochs whatever the budget (`--epochs` only caps).
    c.convergence = Some(Convergence::default());
    match name {
        "quick" => {
            c.load.size = 64;
            c.load.phantom_count = QUICK_PHANTOMS;
            c.model.depth = 3;
            c.model.base_width = 8;
            c.schedule_epochs = Some(20);
            c.epochs = 40;
            c.lr = 3e-3;
            let notes = vec![format!(
                "Quick preset: 2 seeds, 64x64 images, a 3-level U-Net of base width 8 ({QUICK_PHANTOMS} phantom images \
                 when the data is builtin:phantoms); each run trains until its validation Dice plateaus (budget 40 \
                 epochs, schedule over 20). Use --preset standard for 3 seeds of the default network, or --preset \
                 full for the default trainer at 128x128."
            )];
            Ok((c, 2, notes))
        }
        "standard" => {
            // The default network and trainer at a quarter of the pixels.
            c.load.size = 64;
            c.schedule_epochs = Some(20);
            c.epochs = 40;
            let notes = vec![
                "Standard preset: 3 seeds, 64x64 images, the default U-Net (depth 4, base width 16) and trainer \
                 settings, one view per image at full size; each run trains until its validation Dice plateaus \
                 (budget 40 epochs, schedule over 20). --preset full trains as `seglab train` does at 128x128."
                    .to_string(),
            ];
            Ok((c, 3, notes))
        }
        "full" => {
            c.schedule_epochs = Some(c.epochs);
            c.epochs *= 2;
            Ok((c, 3, Vec::new()))
        }
        other => bail!(
            "unknown preset '{other}'; valid presets: {}",
            PRESETS.join(", ")
        ),
    }
}

/// The trainer's loss settings for a variant, built the way `seglab train` builds them from its flags
/// ([`LossChoice::spec`](seglab_nn::objective::LossChoice::spec), [`ThresholdChoice`](seglab_nn::objective::ThresholdChoice)'s
/// mode and schedule); errors name the variant.
pub fn variant_train_config(base: &TrainConfig, v: &VariantSpec) -> Result<TrainConfig> {
    let err = |what: &str, e: String| anyhow::anyhow!("variant '{}': {what}: {e}", v.name);
    let mut cfg = base.clone();
    cfg.loss.spec = v
        .loss
        .spec(true, base.loss.spec.reduction)
        .map_err(|e| err("loss", e.to_string()))?;
    cfg.loss.threshold = v
        .threshold
        .mode()
        .map_err(|e| err("threshold mode", e.to_string()))?
        .unwrap_or_default();
    cfg.loss.temperature_schedule = v
        .threshold
        .schedule()
        .map_err(|e| err("temperature schedule", e.to_string()))?;
    cfg.validate().map_err(|e| err("config", e.to_string()))?;
    Ok(cfg)
}

/// Everything that defines the experiment (stored as `compare.json`; `--resume` requires the same).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub data: String,
    pub preset: String,
    pub seeds: Vec<u64>,
    pub baseline: String,
    pub variants: Vec<VariantSpec>,
    /// Trainer settings shared by all runs (the loss part is replaced per variant; seeds per run).
    pub train: TrainConfig,
    pub notes: Vec<String>,
    /// How the cases are split: fractions (validation in `train.val_fraction`) or a split file's lists.
    pub test_fraction: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
}

pub const PLAN_FILE: &str = "compare.json";
pub const GALLERY_CASES: usize = 4;

/// Builds the plan from preset, config file and flags, and checks every variant's trainer settings: all before any
/// data is loaded or any training starts.
pub fn build_plan(a: &Args) -> Result<Plan> {
    let file: CompareFile = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e.to_string().trim()))?
        }
        None => CompareFile::default(),
    };
    let preset_name = a
        .preset
        .clone()
        .or(file.preset.clone())
        .unwrap_or_else(|| "quick".to_string());
    let (mut train, mut n_seeds, notes) = preset(&preset_name)?;
    if let Some(t) = &file.train {
        let mut v = serde_json::to_value(&train)?;
        super::merge_json(&mut v, serde_json::to_value(t)?);
        let where_ = a
            .config
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        train = serde_json::from_value(v).map_err(|e| anyhow::anyhow!("{where_}: [train]: {e}"))?;
    }
    if let Some(d) = a.data.clone().or(file.data.clone()) {
        train.data = d;
    }
    if let Some(e) = a.epochs.or(file.epochs) {
        train.epochs = e;
    }
    if let Some(v) = a.val_fraction.or(file.val_fraction) {
        train.val_fraction = v;
    }
    let test_fraction = a
        .test_fraction
        .or(file.test_fraction)
        .unwrap_or(DEFAULT_TEST_FRACTION);
    if !(0.0 < test_fraction && test_fraction < 1.0) {
        bail!("--test-fraction must be in (0, 1), got {test_fraction}");
    }
    if !(0.0 < train.val_fraction && train.val_fraction + test_fraction < 1.0) {
        bail!(
            "--val-fraction must be in (0, 1 - test fraction), got {} with a test fraction of {test_fraction}",
            train.val_fraction
        );
    }
    let split = match a.split.as_ref().or(file.split.as_ref()) {
        Some(p) => {
            let s = data::read_split(p).map_err(|e| anyhow::anyhow!("{e}"))?;
            if s.test.is_empty() {
                bail!(
                    "{}: no \"test\" cases; compare needs train, val and test lists",
                    p.display()
                );
            }
            Some(s)
        }
        None => None,
    };
    if let Some(s) = a.seeds.or(file.seeds) {
        n_seeds = s;
    }
    if n_seeds == 0 {
        bail!("--seeds must be at least 1");
    }
    let mut available = default_variants();
    for v in &file.variant {
        if let Some(slot) = available.iter_mut().find(|x| x.name == v.name) {
            *slot = v.clone();
        } else {
            available.push(v.clone());
        }
    }
    let names = match (&a.variants, &file.variants) {
        (Some(s), _) => s.clone(),
        (None, Some(list)) => list.join(","),
        (None, None) => available
            .iter()
            .map(|v| v.name.clone())
            .collect::<Vec<_>>()
            .join(","),
    };
    let variants = select_variants(&names, &available)?;
    let baseline = a
        .baseline
        .clone()
        .or(file.baseline.clone())
        .unwrap_or_else(|| DEFAULT_BASELINE.to_string());
    if !variants.iter().any(|v| v.name == baseline) {
        bail!(
            "the baseline '{baseline}' is not among the selected variants ({}); add it to --variants",
            variants.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    train.seed = 0;
    train.init_seed = None;
    for v in &variants {
        variant_train_config(&train, v)?;
    }
    Ok(Plan {
        data: train.data.clone(),
        preset: preset_name,
        seeds: (0..n_seeds as u64).collect(),
        baseline,
        variants,
        train,
        notes,
        test_fraction,
        split,
    })
}

pub fn run_dir(out: &Path, variant: &str, seed: u64) -> PathBuf {
    out.join("runs").join(variant).join(format!("seed{seed}"))
}

/// A finished run's outcome, if its folder holds one that covers the planned epochs (or ended in divergence).
fn finished_outcome(dir: &Path, epochs: usize) -> Result<Option<RunOutcome>> {
    let p = dir.join(train::OUTCOME_FILE);
    if !p.is_file() {
        return Ok(None);
    }
    let o: RunOutcome = serde_json::from_slice(&std::fs::read(&p)?)
        .with_context(|| format!("{}: unreadable run outcome", p.display()))?;
    let done = match o.status {
        RunStatus::Diverged { .. } => true,
        RunStatus::Completed => o.epochs.len() >= epochs || o.converged == Some(true),
    };
    Ok(done.then_some(o))
}

/// A few test cases for the gallery: the first with lesions, then one without if there is one.
fn gallery_cases(ds: &Dataset, split: &Split) -> (Vec<usize>, Vec<GalleryCase>) {
    let val: std::collections::HashSet<&str> = split.test.iter().map(String::as_str).collect();
    let in_val: Vec<usize> = (0..ds.samples.len())
        .filter(|&i| val.contains(ds.samples[i].case.as_str()))
        .collect();
    let mut chosen: Vec<usize> = in_val
        .iter()
        .copied()
        .filter(|&i| ds.samples[i].fg_pixels > 0)
        .take(GALLERY_CASES - 1)
        .collect();
    if let Some(&i) = in_val.iter().find(|&&i| ds.samples[i].fg_pixels == 0) {
        chosen.push(i);
    }
    for &i in &in_val {
        if chosen.len() >= GALLERY_CASES.min(in_val.len()) {
            break;
        }
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    let s = ds.size;
    let cases = chosen
        .iter()
        .map(|&i| {
            let smp = &ds.samples[i];
            // Channel mean, stretched to 0..255 per image (the network input is z-scored).
            let gray: Vec<f32> = (0..s * s)
                .map(|p| {
                    (0..ds.channels)
                        .map(|c| smp.image[c * s * s + p])
                        .sum::<f32>()
                        / ds.channels as f32
                })
                .collect();
            let (lo, hi) = gray
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), v| {
                    (l.min(*v), h.max(*v))
                });
            let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
            GalleryCase {
                id: smp.id.clone(),
                width: s,
                height: s,
                image: gray
                    .iter()
                    .map(|v| ((v - lo) * scale).round() as u8)
                    .collect(),
                ground_truth: smp.mask.clone(),
            }
        })
        .collect();
    (chosen, cases)
}

/// Thresholded (0.5) predictions of a run's validation-selected checkpoint on the gallery images; none when the run
/// left no checkpoint (it diverged in its first epoch).
fn gallery_predictions(
    dir: &Path,
    ds: &Dataset,
    idx: &[usize],
    device: &Device,
) -> Result<Vec<Vec<u8>>> {
    if !dir.join(train::BEST_CKPT).is_file() {
        return Ok(Vec::new());
    }
    let model = train::load_model(dir, true, device).map_err(|e| anyhow::anyhow!("{e}"))?;
    let images: Vec<Vec<f32>> = idx.iter().map(|&i| ds.samples[i].image.clone()).collect();
    Ok(model
        .predict(&images, model.config.tta)
        .iter()
        .map(|p| {
            p.iter()
                .map(|v| u8::from(seglab_metrics::binarize(*v, 0.5)))
                .collect()
        })
        .collect())
}

/// The run's scores on the test cases: read back from its `test.json` when this compare wrote them earlier, else
/// computed from `best.ckpt` (the validation-selected epoch, at 0.5 and at the threshold chosen on that epoch's
/// validation cases) and written. None for a run that did not complete or has no selected checkpoint.
fn test_scores(
    dir: &Path,
    ds: &Dataset,
    test_idx: &[usize],
    outcome: &RunOutcome,
    device: &Device,
) -> Result<Option<TestScores>> {
    if outcome.status != RunStatus::Completed || !dir.join(train::BEST_CKPT).is_file() {
        return Ok(None);
    }
    let path = dir.join(TEST_FILE);
    if path.is_file() {
        let t: TestScores = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("{}: unreadable test scores", path.display()))?;
        if t.format == TEST_FORMAT {
            return Ok(Some(t));
        }
    }
    let model = train::load_model(dir, true, device).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(rec) = model.record.clone() else {
        return Ok(None);
    };
    let scores = model
        .score(ds, test_idx, &[0.5, rec.val_best_threshold as f32])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let t = TestScores::new(
        rec.epoch,
        rec.val_dice,
        rec.val_best_threshold,
        &scores[0],
        &scores[1],
    );
    write_atomic(&path, &serde_json::to_vec_pretty(&t)?)?;
    Ok(Some(t))
}

/// A log line above the progress bar, or on stderr when the bar is hidden (`--quiet`).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

pub fn run(a: Args) -> Result<()> {
    if !a.predictions.is_empty() {
        return super::compare_predictions::run(&a);
    }
    for (set, flag) in [
        (a.gt.is_some(), "--gt"),
        (a.images.is_some(), "--images"),
        (a.val_cases.is_some(), "--val-cases"),
        (a.metrics.is_some(), "--metrics"),
    ] {
        if set {
            bail!("{flag} applies to --predictions (comparing prediction folders)");
        }
    }
    let device = a.device.device()?;
    let plan = build_plan(&a)?;
    let out = &a.out;
    let plan_path = out.join(PLAN_FILE);
    if a.resume {
        if plan_path.is_file() {
            let stored: Plan = serde_json::from_slice(&std::fs::read(&plan_path)?)
                .with_context(|| format!("{}: unreadable compare plan", plan_path.display()))?;
            if stored != plan {
                bail!(
                    "{}: --resume with different settings than the interrupted compare (data, preset, seeds, epochs, \
                     variants or trainer settings differ); rerun with the same options or choose another --out",
                    plan_path.display()
                );
            }
        }
    } else if out.join("runs").exists() {
        bail!(
            "{}: holds runs of an earlier compare; use --resume to continue it or choose another --out",
            out.display()
        );
    }

    let ds = data::load(&plan.data, &plan.train.load).map_err(|e| anyhow::anyhow!("{e}"))?;
    let split_path = out.join(train::SPLIT_FILE);
    let split = match &plan.split {
        Some(s) => s.clone(),
        None if a.resume && split_path.is_file() => {
            data::read_split(&split_path).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        None => data::split_by_case_with_test(&ds, plan.train.val_fraction, plan.test_fraction, 0)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let split_source = a
        .split
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "split".to_string());
    data::check_split(&ds, &split, &split_source).map_err(|e| anyhow::anyhow!("{e}"))?;
    if split.test.len() < MIN_CASES || split.val.is_empty() || split.train.is_empty() {
        bail!(
            "{}: {} cases split into {} train, {} validation and {} test; the comparison needs at least {MIN_CASES} test \
             cases (no test on fewer can reach p < 0.05) and at least one case in each other part: use more data, a \
             larger --test-fraction, or --split",
            plan.data,
            split.train.len() + split.val.len() + split.test.len(),
            split.train.len(),
            split.val.len(),
            split.test.len()
        );
    }
    let test_idx = ds.indices_of(&split.test);
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create folder", out.display()))?;
    // One compare per folder at a time (each run folder below is locked by its training too).
    let _lock = train::FolderLock::acquire(out).map_err(|e| anyhow::anyhow!("{e}"))?;
    write_atomic(&plan_path, &serde_json::to_vec_pretty(&plan)?)?;
    write_atomic(&split_path, &serde_json::to_vec_pretty(&split)?)?;
    eprintln!(
        "compare: {} variants x {} seeds, budget {} epochs{}, data {} ({} images, train {} / val {} / test {} cases)",
        plan.variants.len(),
        plan.seeds.len(),
        plan.train.epochs,
        if plan.train.convergence.is_some() {
            " (each run stops when its validation Dice plateaus)"
        } else {
            ""
        },
        plan.data,
        ds.samples.len(),
        split.train.len(),
        split.val.len(),
        split.test.len()
    );

    let train_samples = ds.indices_of(&split.train).len();
    let steps = plan.train.steps_per_epoch(train_samples);
    let n_runs = plan.variants.len() * plan.seeds.len();
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::with_draw_target(
            Some((n_runs * plan.train.epochs * steps) as u64),
            ProgressDrawTarget::stderr(),
        );
        b.set_style(
            ProgressStyle::with_template(
                "[{elapsed_precise}] [{bar:30}] {percent:>3}% eta {eta_precise} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b
    };
    let (gallery_idx, gallery) = gallery_cases(&ds, &split);
    let mut runs = Vec::new();
    let started = Instant::now();
    let mut run_no = 0;
    for &seed in &plan.seeds {
        for v in &plan.variants {
            run_no += 1;
            let mut cfg = variant_train_config(&plan.train, v)?;
            cfg.seed = seed;
            cfg.init_seed = None;
            let dir = run_dir(out, &v.name, seed);
            let outcome = match finished_outcome(&dir, cfg.epochs)? {
                Some(o) if a.resume => {
                    bar.inc((cfg.epochs * steps) as u64);
                    say(
                        &bar,
                        format!("{} seed {seed}: finished earlier, kept", v.name),
                    );
                    o
                }
                _ => {
                    // Test scores belong to the checkpoint they were computed from.
                    let _ = std::fs::remove_file(dir.join(TEST_FILE));
                    let base = bar.position();
                    let epoch_now = Cell::new(0usize);
                    let name = v.name.clone();
                    let progress = |p: Progress| match p {
                        Progress::EpochStart { epoch, .. } => epoch_now.set(epoch),
                        Progress::Step { step, loss, .. } => {
                            let e = epoch_now.get().max(1) - 1;
                            bar.set_position(base + (e * steps + step) as u64);
                            bar.set_message(format!(
                                "run {run_no}/{n_runs} {name} seed {seed} epoch {} loss {loss:.4}",
                                epoch_now.get()
                            ));
                        }
                        Progress::EpochEnd { record, .. } => {
                            let line = format!(
                                "{name} seed {seed} epoch {:>3} train_loss {:.4} val_dice {:.4} zero_grad {:.3}",
                                record.epoch, record.train_loss, record.val_dice, record.zero_grad_fraction
                            );
                            say(&bar, line);
                        }
                        Progress::Resumed { epochs_done } => {
                            bar.set_position(base + (epochs_done * steps) as u64);
                        }
                    };
                    let rd = RunDir {
                        path: dir.clone(),
                        resume: a.resume && dir.exists(),
                        stop_after: None,
                    };
                    let o = train::train(&cfg, &ds, &split, Some(&rd), &device, &progress)
                        .map_err(|e| anyhow::anyhow!("{} seed {seed}: {e}", v.name))?;
                    bar.set_position(base + (cfg.epochs * steps) as u64);
                    if let RunStatus::Diverged { epoch } = o.status {
                        say(
                            &bar,
                            format!(
                                "{} seed {seed}: diverged at epoch {epoch}; going on",
                                v.name
                            ),
                        );
                    }
                    o
                }
            };
            let test = test_scores(&dir, &ds, &test_idx, &outcome, &device)?;
            let gallery_predictions = if seed == plan.seeds[0] && !gallery_idx.is_empty() {
                gallery_predictions(&dir, &ds, &gallery_idx, &device)?
            } else {
                Vec::new()
            };
            runs.push(RunResult {
                variant: v.name.clone(),
                seed,
                outcome,
                gallery_predictions,
                test,
            });
        }
    }
    bar.finish_and_clear();
    let exp = Experiment {
        title: format!("seglab compare: {}", plan.data),
        data: plan.data.clone(),
        preset: Some(plan.preset.clone()),
        epochs: plan.train.epochs,
        schedule_epochs: plan.train.schedule_epochs,
        convergence: plan.train.convergence,
        split: SplitCounts {
            train: split.train.len(),
            val: split.val.len(),
            test: split.test.len(),
        },
        notes: plan.notes.clone(),
        baseline: plan.baseline.clone(),
        variants: plan.variants.clone(),
        seeds: plan.seeds.clone(),
        runs,
        gallery,
    };
    let files = write_report(&exp, out)?;
    let summary: Value = serde_json::from_slice(&std::fs::read(&files.summary)?)?;
    println!("verdict:");
    for line in summary["verdict"].as_array().into_iter().flatten() {
        println!("  {}", line.as_str().unwrap_or_default());
    }
    println!(
        "report: {} ({:.0} s for {} runs)",
        files.index.display(),
        started.elapsed().as_secs_f64(),
        n_runs
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(out: &Path) -> Args {
        Args {
            data: None,
            device: crate::commands::args::DeviceArgs {
                device: "cpu".into(),
            },
            variants: None,
            seeds: None,
            epochs: None,
            test_fraction: None,
            val_fraction: None,
            split: None,
            preset: None,
            config: None,
            out: out.to_path_buf(),
            resume: false,
            quiet: true,
            baseline: None,
            predictions: Vec::new(),
            gt: None,
            images: None,
            val_cases: None,
            metrics: None,
            eval: <crate::commands::evaluate::MetricOptions as clap::FromArgMatches>::from_arg_matches(
                &<crate::commands::evaluate::MetricOptions as clap::Args>::augment_args(clap::Command::new("t"))
                    .get_matches_from(["t"]),
            )
            .unwrap(),
        }
    }

    /// A tiny network on a tiny phantom set: seconds per run.
    const TINY: &str = r#"
seeds = 1
epochs = 2
variants = ["soft", "hard"]
[train]
batch_size = 4
lr = 0.01
warmup_epochs = 0.0
[train.load]
size = 32
phantom_count = 30
[train.model]
depth = 2
base_width = 4
"#;

    #[test]
    fn presets_scale_seeds_epochs_and_images() {
        let default = TrainConfig::default();
        let (quick, n_quick, _) = preset("quick").unwrap();
        let (standard, n_standard, notes) = preset("standard").unwrap();
        let (full, n_full, _) = preset("full").unwrap();
        assert_eq!((n_quick, n_standard, n_full), (2, 3, 3));
        assert_eq!((standard.load.size, standard.epochs), (64, 40));
        // Every preset trains to convergence within a budget of twice its schedule.
        for p in [&quick, &standard, &full] {
            assert_eq!(p.convergence, Some(Convergence::default()));
            assert_eq!(p.schedule_epochs.map(|s| 2 * s), Some(p.epochs));
        }
        // standard keeps the default network; only quick shrinks it.
        assert_eq!(standard.model, default.model);
        assert_ne!(quick.model, default.model);
        assert_eq!(
            (full.load.size, full.schedule_epochs),
            (default.load.size, Some(default.epochs))
        );
        assert!(notes[0].contains("budget 40") && notes[0].contains("64x64"));
        // The small presets train one full-size view per image throughout; full is `seglab train`'s recipe.
        for small in [&quick, &standard] {
            assert_eq!(small.augment.repeats, 1);
            assert_eq!(small.low_res_epochs(), 0);
        }
        assert_eq!(
            TrainConfig {
                convergence: None,
                schedule_epochs: None,
                epochs: default.epochs,
                ..full
            },
            default
        );
    }

    #[test]
    fn unknown_variant_or_preset_fails_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("r");
        let mut a = args(&out);
        a.variants = Some("soft,nope".into());
        let err = run(a).unwrap_err().to_string();
        assert!(
            err.contains("unknown variant 'nope'")
                && err.contains("soft, hard, ste, soft-threshold, power"),
            "{err}"
        );
        let mut a = args(&out);
        a.preset = Some("fast".into());
        let err = run(a).unwrap_err().to_string();
        assert!(
            err.contains("unknown preset 'fast'; valid presets: quick, standard, full"),
            "{err}"
        );
        let mut a = args(&out);
        a.variants = Some("hard".into());
        let err = run(a).unwrap_err().to_string();
        assert!(
            err.contains("baseline 'soft' is not among the selected variants"),
            "{err}"
        );
        assert!(!out.exists(), "nothing may be written for bad options");
    }

    #[test]
    fn config_file_defines_variants_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("compare.toml");
        std::fs::write(
            &cfg,
            "variants = [\"soft\", \"hard-b\"]\n[[variant]]\nname = \"hard-b\"\nloss = \"tversky\"\nthreshold_mode = \"hard\"\n\
             [variant.loss_params]\nalpha = 0.5\nbeta = 0.5\n",
        )
        .unwrap();
        let mut a = args(&dir.path().join("r"));
        a.config = Some(cfg.clone());
        let plan = build_plan(&a).unwrap();
        assert_eq!(
            plan.variants
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>(),
            ["soft", "hard-b"]
        );
        let c = variant_train_config(&plan.train, &plan.variants[1]).unwrap();
        assert_eq!(c.loss.threshold, seglab_nn::ThresholdMode::Hard { t: 0.5 });
        let tversky = format!("{:?}", c.loss.spec);
        assert!(
            tversky.contains("alpha: 0.5") && tversky.contains("beta: 0.5"),
            "{tversky}"
        );
        // The five defaults map onto the trainer's modes; soft-threshold anneals.
        let all =
            select_variants("soft,hard,ste,soft-threshold,power", &default_variants()).unwrap();
        let modes: Vec<String> = all
            .iter()
            .map(|v| {
                format!(
                    "{:?}",
                    variant_train_config(&plan.train, v).unwrap().loss.threshold
                )
            })
            .collect();
        assert!(
            modes[2].starts_with("StraightThrough") && modes[4].starts_with("Power"),
            "{modes:?}"
        );
        let st = variant_train_config(&plan.train, &all[3]).unwrap();
        assert!(st.loss.temperature_schedule.is_some());
        assert_eq!(plan.seeds, [0, 1]);
        assert_eq!(plan.train.load.size, 64, "quick preset");

        std::fs::write(&cfg, "[train]\nlearning_rate = 0.1\n").unwrap();
        let err = build_plan(&a).unwrap_err().to_string();
        assert!(
            err.contains("compare.toml") && err.contains("learning_rate"),
            "{err}"
        );
        // A loss parameter the trainer does not know names the variant.
        std::fs::write(
            &cfg,
            "variants = [\"soft\", \"x\"]\n[[variant]]\nname = \"x\"\nloss = \"tversky\"\nthreshold_mode = \"none\"\n\
             [variant.loss_params]\nzeta = 1.0\n",
        )
        .unwrap();
        let err = build_plan(&a).unwrap_err().to_string();
        assert!(
            err.contains("variant 'x': unknown loss parameter 'zeta'; valid: alpha"),
            "{err}"
        );
    }

    #[test]
    fn tiny_compare_holds_out_test_cases_writes_report_and_resumes_to_the_same_summary() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("compare.toml");
        std::fs::write(&cfg, TINY).unwrap();
        let out = dir.path().join("report");
        let mut a = args(&out);
        a.config = Some(cfg.clone());
        run(a).unwrap();
        let summary_bytes = std::fs::read(out.join("summary.json")).unwrap();
        let summary: Value = serde_json::from_slice(&summary_bytes).unwrap();
        assert_eq!(summary["variants"]["hard"]["all_gradients_zero"], true);
        assert_eq!(summary["variants"]["soft"]["all_gradients_zero"], false);
        assert!(summary["verdict"][0]
            .as_str()
            .unwrap()
            .starts_with("hard: gradients were exactly zero"));
        // Three roles, by case, disjoint and covering: 30 phantoms, 6 validation and 6 test cases.
        assert_eq!(
            summary["split"],
            serde_json::json!({"train": 18, "val": 6, "test": 6})
        );
        let split = data::read_split(&out.join(train::SPLIT_FILE)).unwrap();
        let all: std::collections::BTreeSet<&String> = split
            .train
            .iter()
            .chain(&split.val)
            .chain(&split.test)
            .collect();
        assert_eq!(all.len(), 30, "train, val and test share no case");
        assert_eq!(summary["test_cases"].as_array().unwrap().len(), 6);
        for c in summary["test_cases"].as_array().unwrap() {
            assert!(split.test.contains(&c.as_str().unwrap().to_string()));
        }
        // Each run's selected epoch and threshold come from its own validation records; its test scores from
        // that checkpoint.
        for v in ["soft", "hard"] {
            let dir = run_dir(&out, v, 0);
            let outcome: RunOutcome =
                serde_json::from_slice(&std::fs::read(dir.join(train::OUTCOME_FILE)).unwrap())
                    .unwrap();
            let best = outcome
                .epochs
                .iter()
                .fold(None::<&seglab_nn::record::EpochRecord>, |b, e| match b {
                    Some(b) if b.val_dice >= e.val_dice => Some(b),
                    _ => Some(e),
                })
                .unwrap();
            let seed = &summary["variants"][v]["seeds"][0];
            assert_eq!(seed["selected_epoch"], best.epoch, "{v}");
            assert_eq!(
                seed["threshold"].as_f64().unwrap(),
                best.val_best_threshold,
                "{v}"
            );
            let test: TestScores =
                serde_json::from_slice(&std::fs::read(dir.join(TEST_FILE)).unwrap()).unwrap();
            assert_eq!(test.cases.len(), 6);
            for m in &seglab::experiment::TEST_METRICS {
                let x = summary["variants"][v]["test"][m.key]["per_seed"][0]
                    .as_f64()
                    .unwrap();
                assert!(
                    (x - test.mean(m.key)).abs() < 1e-12 && (0.0..=1.0).contains(&x),
                    "{v}.{}",
                    m.key
                );
            }
            // The preset's rule within a budget of 2 epochs: not converged, so no answer.
            assert_eq!(seed["converged"], false);
        }
        assert_eq!(summary["answer"]["hard"], "inconclusive");
        assert!(summary["answer_reasons"]["hard"]
            .as_str()
            .unwrap()
            .contains("did not converge within its budget of 2 epochs"));
        let comps = summary["comparisons"].as_array().unwrap();
        assert_eq!(comps[0]["metric"], "dice");
        assert_eq!(
            (comps[0]["unit"].as_str(), comps[0]["n_cases"].as_u64()),
            (Some("case"), Some(6))
        );
        assert!(
            out.join("index.html").is_file()
                && run_dir(&out, "hard", 0).join("best.ckpt").is_file()
        );
        let html = std::fs::read_to_string(out.join("index.html")).unwrap();
        assert!(
            html.contains("<th>hard (seed 0)</th>"),
            "gallery column missing"
        );
        assert!(html.contains("id=\"protocol\""));
        let curves = std::fs::read_to_string(out.join("curves.csv")).unwrap();
        let header = curves.lines().next().unwrap();
        for k in [
            "val_best_threshold_iou",
            "val_lesion_recall",
            "val_lesion_precision",
        ] {
            assert!(header.split(',').any(|h| h == k), "{k} not in {header}");
        }

        // Same out without --resume: refused.
        let mut again = args(&out);
        again.config = Some(cfg.clone());
        assert!(run(again).unwrap_err().to_string().contains("use --resume"));
        // --resume keeps finished runs (their outcome and test files are not rewritten) and reproduces the same
        // summary.json byte for byte.
        let soft_outcome = run_dir(&out, "soft", 0).join(train::OUTCOME_FILE);
        let soft_test = run_dir(&out, "soft", 0).join(TEST_FILE);
        let modified = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
        let before = (modified(&soft_outcome), modified(&soft_test));
        let mut resume = args(&out);
        resume.config = Some(cfg.clone());
        resume.resume = true;
        run(resume).unwrap();
        assert_eq!((modified(&soft_outcome), modified(&soft_test)), before);
        assert_eq!(
            String::from_utf8(std::fs::read(out.join("summary.json")).unwrap()).unwrap(),
            String::from_utf8(summary_bytes.clone()).unwrap()
        );
        // An interrupted compare (a run's test scores lost, another run not finished) resumes to the same summary.
        std::fs::remove_file(&soft_test).unwrap();
        std::fs::remove_file(run_dir(&out, "hard", 0).join(train::OUTCOME_FILE)).unwrap();
        let mut resume = args(&out);
        resume.config = Some(cfg.clone());
        resume.resume = true;
        run(resume).unwrap();
        let resumed: Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        let without_seconds = |v: &Value| {
            let mut v = v.clone();
            for name in ["soft", "hard"] {
                v["variants"][name]["seconds"] = Value::Null;
            }
            v
        };
        assert_eq!(without_seconds(&resumed), without_seconds(&summary));
        // --resume with other settings: refused.
        let mut other = args(&out);
        other.config = Some(cfg);
        other.resume = true;
        other.epochs = Some(3);
        assert!(run(other)
            .unwrap_err()
            .to_string()
            .contains("different settings"));
    }

    #[test]
    fn too_few_test_cases_are_refused_before_training() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("compare.toml");
        std::fs::write(
            &cfg,
            TINY.replace("phantom_count = 30", "phantom_count = 16"),
        )
        .unwrap();
        let out = dir.path().join("report");
        let mut a = args(&out);
        a.config = Some(cfg);
        let err = run(a).unwrap_err().to_string();
        assert!(
            err.contains("16 cases split into 10 train, 3 validation and 3 test")
                && err.contains("at least 6 test cases"),
            "{err}"
        );
        assert!(!out.join("runs").exists());
        // A split file without test cases is refused too.
        let split = dir.path().join("split.json");
        std::fs::write(&split, r#"{"train": ["a"], "val": ["b"]}"#).unwrap();
        let mut a = args(&out);
        a.split = Some(split);
        let err = run(a).unwrap_err().to_string();
        assert!(err.contains("split.json: no \"test\" cases"), "{err}");
    }

    #[test]
    fn diverged_run_is_reported_with_its_epoch_and_the_others_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("compare.toml");
        // An absurd learning rate makes the soft run's weights overflow in its first epoch; the hard run receives no
        // gradient (and no weight decay here), so its weights stay finite and it completes.
        std::fs::write(
            &cfg,
            TINY.replace("lr = 0.01", "lr = 1e30\nweight_decay = 0.0"),
        )
        .unwrap();
        let out = dir.path().join("report");
        let mut a = args(&out);
        a.config = Some(cfg);
        run(a).unwrap();
        let s: Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        assert_eq!(s["variants"]["soft"]["status"], "diverged");
        assert_eq!(s["variants"]["soft"]["diverged"][0]["epoch"], 1);
        assert_eq!(s["variants"]["hard"]["status"], "completed");
        let verdict: Vec<&str> = s["verdict"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(verdict.contains(&"soft: training diverged (non-finite loss) in seed 0 at epoch 1; 0 of 1 runs completed, so it is not compared."), "{verdict:?}");
        assert!(out.join("index.html").is_file());
    }

    #[test]
    fn example_config_parses() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(&dir.path().join("r"));
        a.config = Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/compare.toml"));
        let plan = build_plan(&a).unwrap();
        assert_eq!(plan.train.load.size, 64);
        assert_eq!(plan.seeds, [0, 1]);
        let v = plan
            .variants
            .iter()
            .find(|v| v.name == "dice-hard")
            .unwrap();
        assert_eq!(v.loss.params.alpha, Some(0.5));
        // The README's kvasir report: the standard preset at 128x128, half width, converging runs.
        a.config =
            Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kvasir-128.toml"));
        let plan = build_plan(&a).unwrap();
        assert_eq!(
            (
                plan.preset.as_str(),
                plan.train.load.size,
                plan.train.model.base_width
            ),
            ("standard", 128, 8)
        );
        assert_eq!(plan.seeds.len(), 3);
        assert!(plan.train.convergence.is_some());
    }
}
