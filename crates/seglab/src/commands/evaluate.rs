//! `seglab evaluate`: score predictions (masks or probability maps) against ground truth.
//!
//! The metrics, the empty-mask policy and the summaries live in `seglab_metrics` (so training validation uses
//! the same definitions); this file pairs files, reads them, runs cases in parallel and writes the outputs.
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use clap::builder::TypedValueParser;
use seglab_metrics::brats::BratsSettings;
use seglab_metrics::distance::{AssdConvention, DistanceMode, Hd95Convention, NsdConvention};
use seglab_metrics::evaluate::{CaseResult, EmptyPolicy, EvalSettings, Metrics};
use seglab_metrics::folders;
use seglab_metrics::instances::InstanceSettings;
use seglab_metrics::io;
use seglab_metrics::labels::{parse_regions, LabelSet, Region};
use seglab_metrics::lesion::LesionSettings;
use seglab_metrics::summary::{sweep_thresholds, Summary, SweepResult};
use seglab_metrics::DistanceSettings;

const LONG_ABOUT: &str = "\
Details:

Files are paired by name without extension (.png, .nii, .nii.gz, .npy) across the two folders; a ground-truth
name may carry a _seg, _mask or _segmentation suffix. Ground truth: value > 0 is lesion (non-binary data is an
error unless --gt-threshold). Predictions: floats must be probabilities in [0, 1]; 8/16-bit PNGs are scaled to
[0, 1] (unless all values are 0/1); other integer data are masks (value > 0). Lesion where p >= --threshold.

Empty masks (--empty-policy):
  default  both empty: dice/iou/precision/recall (and the other scores) = 1, distances = 0, nsd = 1;
           one empty: undefined scores = 0 (dice = 0), distances = null with status
           \"undefined: empty prediction\" / \"undefined: empty ground truth\", nsd = 0.
  nan      undefined values are null and left out of that metric's summary.
  skip     as nan, and cases with an empty mask are left out of every summary.
  worst    undefined values get the worst value: 0 for scores, the image diagonal (mm) for distances.

Label maps (BraTS and other multi-label files): --labels 1,2,3 makes both files label maps whose listed values are
the lesion; --regions WT=1,2,3,TC=1,3,ET=3 scores each named region from one read of each file (JSON keyed by
region, a CSV row per case and region).

Lesion-wise BraTS 2023 scores (--lesion-wise brats2023, exactly as the challenge's reference code): components with
full connectivity; the ground truth dilated --gt-dilation times by the 18-neighbourhood, lesions whose dilations
touch merged; every predicted component touching a dilated lesion is its match (whole); Dice and HD95 (DeepMind) of
each lesion against its matches, 0 / 374 mm when missed; lesions of at most --min-lesion-volume mm^3 left out;
unmatched predicted components are false positives (0 / 374); the case's score is the mean over kept lesions and
false positives (1 / 0 when there are none). --brats-challenge sets both parameters: gli, ssa, ped (3, 50),
men (1, 50), met (1, 2). The case's whole-mask hd95 is then DeepMind's, 374 with one mask empty, as the reference.

Instances (--instances): components matched one to one by IoU, highest first, when IoU >= --match-iou (panoptica's
naive threshold matching): tp, fp, fn, rq = tp / (tp + fp/2 + fn/2), sq = mean IoU of the matches, pq = sq * rq,
sq_dice, and each pair's IoU, Dice, HD95 (MedPy) and ASSD (mean of directed). No instance at all: null (panoptica
NaN); no match: rq = sq = pq = 0, sq_hd95 / sq_assd null (panoptica infinity).

Summary: mean, sample std, median, 95% CI of the mean (percentile bootstrap, 2000 resamples, fixed seed), n.
Exit code 2 with one line naming the file on bad input; outputs are written only when every case succeeded.";

#[derive(clap::Args, Debug)]
#[command(after_long_help = LONG_ABOUT)]
pub struct Args {
    /// Prediction folder, or one file (then --gt is one file).
    #[arg(long)]
    pub pred: PathBuf,
    /// Ground-truth folder, or one file.
    #[arg(long)]
    pub gt: PathBuf,
    #[command(flatten)]
    pub metrics: MetricOptions,
    /// Write the full results (settings, cases, summary) as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write per-case metrics as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Skip unmatched files with a warning instead of failing.
    #[arg(long)]
    pub allow_missing: bool,
    /// Threshold sweep (0.05..0.95): mean Dice/precision/recall, best threshold, PR curve and its area.
    #[arg(long)]
    pub sweep: bool,
    /// Step of the threshold sweep.
    #[arg(long, default_value_t = 0.05)]
    pub sweep_step: f64,
    /// Score only shard I of N (0 <= I < N) of the sorted pairs: every N-th pair from the I-th (e.g. a SLURM array
    /// task); with --cases-out. `seglab merge` joins the parts into the output of one unsharded run.
    #[arg(long, value_name = "I/N", requires = "cases_out")]
    pub shard: Option<String>,
    /// Write the scored cases as JSON lines (a header, then one case per line) for `seglab merge`.
    #[arg(long)]
    pub cases_out: Option<PathBuf>,
    /// Both files are label maps; these label values form the mask (e.g. 1,2,3).
    #[arg(long, value_name = "L,L,...", conflicts_with = "regions")]
    pub labels: Option<String>,
    /// Score several regions of label maps in one run, e.g. WT=1,2,3,TC=1,3,ET=3 (output keyed by region).
    #[arg(long, value_name = "NAME=L,L,...", conflicts_with_all = ["sweep", "shard", "cases_out"])]
    pub regions: Option<String>,
}

/// `I/N` with `0 <= I < N`.
fn parse_shard(s: &str) -> anyhow::Result<(usize, usize)> {
    let parsed = s.split_once('/').and_then(|(i, n)| {
        Some((
            i.trim().parse::<usize>().ok()?,
            n.trim().parse::<usize>().ok()?,
        ))
    });
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => bail!("--shard {s}: expected I/N with 0 <= I < N (e.g. 0/4)"),
    }
}

/// How predictions are read and scored: shared by `evaluate` and `compare --predictions`, so that every model is
/// scored with exactly the options `evaluate` would use.
#[derive(clap::Args, Debug, Clone)]
pub struct MetricOptions {
    /// Predictions are lesion where p >= threshold.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Binarise non-binary ground truth with value >= this (default: value > 0, and non-binary data is an error).
    #[arg(long)]
    pub gt_threshold: Option<f64>,
    /// Voxel spacing in mm, one per axis (e.g. 0.8,0.8,3.0); overrides the files' spacing (PNG/NPY have 1.0).
    #[arg(long, value_delimiter = ',')]
    pub spacing: Option<Vec<f64>>,
    /// Use the ground truth's spacing when prediction and ground truth differ by more than 1e-3 mm.
    #[arg(long)]
    pub ignore_spacing_mismatch: bool,
    /// Beta of f_beta.
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// Tversky index weight of false positives.
    #[arg(long, default_value_t = 0.5)]
    pub tversky_alpha: f64,
    /// Tversky index weight of false negatives.
    #[arg(long, default_value_t = 0.5)]
    pub tversky_beta: f64,
    /// HD95 convention: monai (max of directed 95th percentiles), medpy (pooled), deepmind (surfel-area weighted).
    #[arg(long, default_value = "monai")]
    pub hd95_convention: Hd95Convention,
    /// ASSD convention: pooled (MedPy, MONAI) or mean-of-directed.
    #[arg(long, default_value = "pooled")]
    pub assd_convention: AssdConvention,
    /// NSD convention: deepmind (surfel-area weighted) or voxel (MONAI default).
    #[arg(long, default_value = "deepmind")]
    pub nsd_convention: NsdConvention,
    /// NSD tolerance in mm.
    #[arg(long, default_value_t = 1.0)]
    pub nsd_tolerance: f64,
    /// Surfaces the distances are measured between: voxel (grid points, in the conventions above: the reference
    /// libraries' numbers) or mesh (continuous surfaces, area-weighted: within 1 % of the exact distances of the
    /// shapes at 0.5 mm, 2-10x the time of a whole run). In mesh mode HD95 is the larger directed area-weighted 95th
    /// percentile (medpy: the pooled one) and NSD is area-weighted whatever --nsd-convention says.
    #[arg(long, default_value = "voxel")]
    pub distance_mode: DistanceMode,
    /// Skip surface distances (hd, hd95, assd, asd_*, nsd are null with status "not computed").
    #[arg(long)]
    pub no_distances: bool,
    /// Lesion connectivity: 4 or 8 in 2D, 6, 18 or 26 in 3D [default: 8 in 2D, 26 in 3D].
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["4", "6", "8", "18", "26"]).map(|s| s.parse::<u32>().unwrap()))]
    pub connectivity: Option<u32>,
    /// Drop connected components smaller than this many voxels before counting lesions.
    #[arg(long, default_value_t = 0)]
    pub min_lesion_size: usize,
    /// What undefined metrics become with empty masks: default, nan, skip, worst (see above).
    #[arg(long, default_value = "default")]
    pub empty_policy: EmptyPolicy,
    /// Lesion-wise scores of a challenge: brats2023 (see above).
    #[arg(long, value_parser = ["brats2023"])]
    pub lesion_wise: Option<String>,
    /// BraTS challenge whose parameters to use: gli, ssa, ped, men, met [default: gli].
    #[arg(long, requires = "lesion_wise", conflicts_with_all = ["gt_dilation", "min_lesion_volume"])]
    pub brats_challenge: Option<String>,
    /// Iterations of the ground-truth dilation that merges lesions and matches predictions (lesion-wise scores).
    #[arg(long, requires = "lesion_wise", allow_negative_numbers = true)]
    pub gt_dilation: Option<i64>,
    /// Lesions of at most this volume (mm^3) are left out of the lesion-wise scores.
    #[arg(long, requires = "lesion_wise", allow_negative_numbers = true)]
    pub min_lesion_volume: Option<f64>,
    /// Panoptic instance metrics: components matched one to one by IoU (see above).
    #[arg(long)]
    pub instances: bool,
    /// IoU at or above which two instances match.
    #[arg(
        long,
        default_value_t = 0.5,
        requires = "instances",
        allow_negative_numbers = true
    )]
    pub match_iou: f64,
}

impl MetricOptions {
    /// Checks the options and returns the metrics engine's settings.
    pub fn settings(&self) -> anyhow::Result<EvalSettings> {
        if !(0.0..=1.0).contains(&self.threshold) {
            bail!("--threshold {} must be in [0, 1]", self.threshold);
        }
        if !(self.nsd_tolerance >= 0.0) {
            bail!("--nsd-tolerance {} must be >= 0", self.nsd_tolerance);
        }
        if let Some(s) = &self.spacing {
            if s.iter().any(|v| !(*v > 0.0 && v.is_finite())) {
                bail!("--spacing {s:?}: every value must be a positive number of mm");
            }
        }
        Ok(EvalSettings {
            threshold: self.threshold,
            beta: self.beta,
            tversky_alpha: self.tversky_alpha,
            tversky_beta: self.tversky_beta,
            distances: !self.no_distances,
            distance: DistanceSettings {
                hd95: self.hd95_convention,
                assd: self.assd_convention,
                nsd: self.nsd_convention,
                nsd_tolerance_mm: self.nsd_tolerance,
                mode: self.distance_mode,
            },
            lesion: LesionSettings {
                connectivity: self.connectivity,
                min_lesion_size: self.min_lesion_size,
            },
            empty_policy: self.empty_policy,
            lesion_wise: self.lesion_wise_settings()?,
            instances: self
                .instances
                .then(|| {
                    let s = InstanceSettings {
                        match_iou: self.match_iou,
                    };
                    s.validate()
                        .map(|_| s)
                        .map_err(|e| anyhow!("--match-iou: {e}"))
                })
                .transpose()?,
        })
    }

    fn lesion_wise_settings(&self) -> anyhow::Result<Option<BratsSettings>> {
        if self.lesion_wise.is_none() {
            return Ok(None);
        }
        BratsSettings::resolve(
            self.brats_challenge.as_deref(),
            self.gt_dilation,
            self.min_lesion_volume,
        )
        .map(Some)
        .map_err(|e| anyhow!(e))
    }
}

/// Image files of a folder by stem ([`folders::list_images`]).
pub fn list_images(
    dir: &Path,
    role: &str,
    strip_gt_suffix: bool,
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    folders::list_images(dir, role, strip_gt_suffix).map_err(|e| anyhow!(e))
}

pub fn apply_spacing(raw: &mut io::RawArray, spacing: &Option<Vec<f64>>) -> anyhow::Result<()> {
    folders::apply_spacing(raw, spacing).map_err(|e| anyhow!(e))
}

impl MetricOptions {
    pub fn read_options(&self) -> folders::ReadOptions {
        folders::ReadOptions {
            gt_threshold: self.gt_threshold,
            spacing: self.spacing.clone(),
            ignore_spacing_mismatch: self.ignore_spacing_mismatch,
            labels: None,
        }
    }
}

pub fn csv_bytes(cases: &[CaseResult]) -> anyhow::Result<Vec<u8>> {
    csv_of(&[(None, cases)])
}

/// Extra CSV columns of the optional per-case objects, present when any case has them.
const LESIONWISE_COLUMNS: [&str; 5] = [
    "lesionwise_dice",
    "lesionwise_hd95",
    "lesionwise_tp",
    "lesionwise_fn",
    "lesionwise_fp",
];
const INSTANCE_COLUMNS: [&str; 8] = [
    "instances_pq",
    "instances_sq",
    "instances_rq",
    "instances_sq_dice",
    "instances_sq_hd95",
    "instances_tp",
    "instances_fp",
    "instances_fn",
];

/// One CSV of several groups of cases; a group with a region name adds a `region` column.
fn csv_of(groups: &[(Option<&str>, &[CaseResult])]) -> anyhow::Result<Vec<u8>> {
    let all = || groups.iter().flat_map(|(_, c)| c.iter());
    let lesionwise = all().any(|c| c.lesionwise.is_some());
    let instances = all().any(|c| c.instances.is_some());
    let regions = groups.iter().any(|(r, _)| r.is_some());
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["case"];
    if regions {
        header.push("region");
    }
    header.extend(["empty", "distances"]);
    header.extend(Metrics::NAMES);
    if lesionwise {
        header.extend(LESIONWISE_COLUMNS);
    }
    if instances {
        header.extend(INSTANCE_COLUMNS);
    }
    w.write_record(&header)?;
    let cell = |v: Option<f64>| match v {
        Some(x) if x.is_finite() => format!("{x}"),
        _ => String::new(),
    };
    // Rows case by case, the regions of a case together.
    let n = groups.first().map(|(_, c)| c.len()).unwrap_or(0);
    for i in 0..n {
        for (region, cases) in groups {
            let c = &cases[i];
            let empty = serde_json::to_value(c.status.empty)?
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mut row = vec![c.case.clone()];
            if regions {
                row.push(region.unwrap_or_default().to_string());
            }
            row.extend([empty, c.status.distances.clone()]);
            row.extend(c.metrics.entries().into_iter().map(|(_, v)| cell(v)));
            if lesionwise {
                match &c.lesionwise {
                    Some(l) => row.extend(
                        [l.dice, l.hd95, l.tp as f64, l.fn_ as f64, l.fp as f64]
                            .map(|v| cell(Some(v))),
                    ),
                    None => row.extend(LESIONWISE_COLUMNS.map(|_| String::new())),
                }
            }
            if instances {
                match &c.instances {
                    Some(x) => row.extend(
                        [
                            x.pq,
                            x.sq,
                            x.rq,
                            x.sq_dice,
                            x.sq_hd95,
                            Some(x.tp as f64),
                            Some(x.fp as f64),
                            Some(x.fn_ as f64),
                        ]
                        .map(cell),
                    ),
                    None => row.extend(INSTANCE_COLUMNS.map(|_| String::new())),
                }
            }
            w.write_record(&row)?;
        }
    }
    w.into_inner().map_err(|e| anyhow!("{e}"))
}

fn fmt_opt(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.4}"),
        _ => "-".into(),
    }
}

pub fn print_table(cases: &[CaseResult], summary: &Summary, sweep: Option<&SweepResult>) {
    let e = &summary.empty_masks;
    println!(
        "{} case(s); empty masks: {} both, {} prediction, {} ground truth (policy {}: set values in {} case(s), skipped {})",
        cases.len(),
        e.both_empty,
        e.empty_prediction,
        e.empty_ground_truth,
        serde_json::to_value(e.policy).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        e.cases_with_values_set_by_policy,
        e.cases_skipped
    );
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>21} {:>5}",
        "metric", "mean", "std", "median", "ci95", "n"
    );
    let shown = [
        "dice",
        "iou",
        "precision",
        "recall",
        "specificity",
        "hd",
        "hd95",
        "assd",
        "nsd",
        "volume_similarity",
        "lesion_recall",
        "lesion_precision",
        "lesion_f1",
    ];
    let row = |name: &str, s: &seglab_metrics::summary::Stat| {
        let ci = s
            .ci95
            .map(|[a, b]| format!("[{a:.4}, {b:.4}]"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<22} {:>9} {:>9} {:>9} {:>21} {:>5}",
            name,
            fmt_opt(s.mean),
            fmt_opt(s.std),
            fmt_opt(s.median),
            ci,
            s.n
        );
    };
    for name in shown {
        row(name, &summary.metrics[name]);
    }
    if let Some(l) = &summary.lesionwise {
        row("lesionwise_dice", &l.dice);
        row("lesionwise_hd95", &l.hd95);
        println!(
            "lesion-wise (all cases): {} tp, {} fn, {} fp",
            l.tp, l.fn_, l.fp
        );
    }
    if let Some(i) = &summary.instances {
        row("instances_pq", &i.pq);
        row("instances_sq", &i.sq);
        row("instances_rq", &i.rq);
        println!(
            "instances (all cases): {} tp, {} fp, {} fn",
            i.tp, i.fp, i.fn_
        );
    }
    if let Some(sw) = sweep {
        println!(
            "sweep: best threshold {} (mean dice {}), PR area {}",
            sw.best_threshold
                .map(|t| t.to_string())
                .unwrap_or_else(|| "-".into()),
            fmt_opt(sw.best_mean_dice),
            fmt_opt(sw.pr_auc)
        );
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let settings = args.metrics.settings()?;
    let thresholds = if args.sweep {
        sweep_thresholds(args.sweep_step).map_err(|e| anyhow!("--sweep-step: {e}"))?
    } else {
        Vec::new()
    };
    let labels = args
        .labels
        .as_deref()
        .map(LabelSet::parse)
        .transpose()
        .map_err(|e| anyhow!("--labels: {e}"))?;
    let regions = args
        .regions
        .as_deref()
        .map(parse_regions)
        .transpose()
        .map_err(|e| anyhow!("--regions: {e}"))?;
    if labels.is_some() && args.sweep {
        bail!("--sweep needs probability maps, and --labels makes both files label maps");
    }
    let pairs = folders::pair_paths(&args.pred, &args.gt, args.allow_missing, &|w| {
        eprintln!("warning: {w}")
    })
    .map_err(|e| anyhow!(e))?;
    let mut read = args.metrics.read_options();
    read.labels = labels;
    if let Some(regions) = regions {
        return run_regions(&args, &pairs, &read, &settings, &regions);
    }
    let n_pairs = pairs.len();
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    // A shard keeps every N-th pair (the pairs are sorted by case name) and remembers each one's place.
    let (indices, pairs): (Vec<usize>, Vec<folders::Pair>) = match shard {
        Some((i, n)) => pairs
            .into_iter()
            .enumerate()
            .filter(|(k, _)| k % n == i)
            .unzip(),
        None => pairs.into_iter().enumerate().unzip(),
    };
    let progress = (pairs.len() > 4 && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new(pairs.len() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::default_bar().template("{bar:40} {pos}/{len} cases {elapsed}")
        {
            pb.set_style(style);
        }
        pb
    });
    let outcome = folders::evaluate_pairs(&pairs, &read, &settings, &thresholds, &|| {
        if let Some(pb) = &progress {
            pb.inc(1);
        }
    });
    if let Some(pb) = &progress {
        pb.finish_and_clear();
    }
    let folders::FolderResults {
        cases: results,
        summary,
        sweep,
        case_sweeps,
        labels_absent,
    } = outcome.map_err(|e| anyhow!(e))?;
    warn_absent(&args, "--labels", &labels_absent);
    let settings_block = folders::settings_json(
        &args.pred,
        &args.gt,
        &read,
        &settings,
        args.allow_missing,
        args.sweep,
        args.sweep_step,
    );
    let cases_out = args
        .cases_out
        .as_ref()
        .map(|_| {
            super::merge::shard_lines(
                &settings_block,
                shard.unwrap_or((0, 1)),
                n_pairs,
                &indices,
                &results,
                &case_sweeps,
            )
        })
        .transpose()?;
    // Serialise everything before writing anything, so an error cannot leave one output without the other.
    let json = args
        .out
        .as_ref()
        .map(|_| {
            let report = folders::Report {
                version: 1,
                settings: settings_block.clone(),
                cases: results.iter().collect(),
                summary: &summary,
                sweep: sweep.as_ref(),
            };
            serde_json::to_vec_pretty(&report)
        })
        .transpose()?;
    let csv = args.csv.as_ref().map(|_| csv_bytes(&results)).transpose()?;
    if let (Some(path), Some(bytes)) = (&args.out, &json) {
        io::write_bytes_atomic(path, bytes)?;
    }
    if let (Some(path), Some(bytes)) = (&args.csv, &csv) {
        io::write_bytes_atomic(path, bytes)?;
    }
    if let (Some(path), Some(bytes)) = (&args.cases_out, &cases_out) {
        io::write_bytes_atomic(path, bytes)?;
    }
    print_table(&results, &summary, sweep.as_ref());
    Ok(())
}

/// A label value the user asked for that no file holds is likely a typo or the wrong files.
fn warn_absent(args: &Args, option: &str, absent: &[i64]) {
    if !absent.is_empty() {
        let values: Vec<String> = absent.iter().map(|v| v.to_string()).collect();
        eprintln!(
            "warning: {option}: label value(s) {} occur in no file of {} or {}",
            values.join(", "),
            args.pred.display(),
            args.gt.display()
        );
    }
}

fn progress_bar(n: usize) -> Option<indicatif::ProgressBar> {
    (n > 4 && std::io::stderr().is_terminal()).then(|| {
        let pb = indicatif::ProgressBar::new(n as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::default_bar().template("{bar:40} {pos}/{len} cases {elapsed}")
        {
            pb.set_style(style);
        }
        pb
    })
}

/// `--regions`: every pair read once, each region scored; the JSON keyed by region, the CSV one row per case and
/// region, a table per region.
fn run_regions(
    args: &Args,
    pairs: &[folders::Pair],
    read: &folders::ReadOptions,
    settings: &EvalSettings,
    regions: &[Region],
) -> anyhow::Result<()> {
    let progress = progress_bar(pairs.len());
    let outcome = folders::evaluate_pairs_by_region(pairs, read, settings, regions, &|| {
        if let Some(pb) = &progress {
            pb.inc(1);
        }
    });
    if let Some(pb) = &progress {
        pb.finish_and_clear();
    }
    let results = outcome.map_err(|e| anyhow!(e))?;
    for (name, absent) in &results.labels_absent {
        warn_absent(args, &format!("--regions {name}"), absent);
    }
    let mut settings_block = folders::settings_json(
        &args.pred,
        &args.gt,
        read,
        settings,
        args.allow_missing,
        false,
        args.sweep_step,
    );
    settings_block["regions"] = serde_json::to_value(regions)?;
    let per_region: Vec<Vec<CaseResult>> = (0..regions.len())
        .map(|k| results.region_cases(k))
        .collect();
    let json = args
        .out
        .as_ref()
        .map(|_| {
            serde_json::to_vec_pretty(&folders::RegionReport {
                version: 1,
                settings: settings_block.clone(),
                cases: &results.cases,
                summary: folders::Ordered(&results.summaries),
            })
        })
        .transpose()?;
    let csv = args
        .csv
        .as_ref()
        .map(|_| {
            let groups: Vec<(Option<&str>, &[CaseResult])> = regions
                .iter()
                .zip(&per_region)
                .map(|(r, c)| (Some(r.name.as_str()), c.as_slice()))
                .collect();
            csv_of(&groups)
        })
        .transpose()?;
    if let (Some(path), Some(bytes)) = (&args.out, &json) {
        io::write_bytes_atomic(path, bytes)?;
    }
    if let (Some(path), Some(bytes)) = (&args.csv, &csv) {
        io::write_bytes_atomic(path, bytes)?;
    }
    for ((name, summary), cases) in results.summaries.iter().zip(&per_region) {
        println!("region {name}:");
        print_table(cases, summary, None);
    }
    Ok(())
}
