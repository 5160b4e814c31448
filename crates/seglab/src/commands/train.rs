//! `seglab train`: train a U-Net on a data folder or an embedded set, writing a run folder (config, split,
//! metrics.jsonl/csv, best/last checkpoints, outcome.json).
use std::cell::RefCell;
use std::path::PathBuf;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use seglab_nn::data;
use seglab_nn::objective::{LossChoice, ThresholdChoice};
use seglab_nn::train::{self, Progress, RunDir, Schedule, TrainConfig};
use seglab_nn::unet::NormKind;
use seglab_nn::{LossKind, Reduction, ThresholdMode};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data: a folder with images/ and masks/, `builtin:phantoms` (default) or `builtin:tumors2d`.
    #[arg(long)]
    pub data: Option<String>,
    /// TOML file with any of the run settings (keys as in the run's config.json); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run folder to create (or to continue with --resume).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: super::args::DeviceArgs,
    /// Continue the run in --out from its last checkpoint (same config required; --epochs may be raised).
    #[arg(long)]
    pub resume: bool,
    #[arg(long, help = format!("Loss name or sum `A+B` ({})", LossKind::names_help()))]
    pub loss: Option<String>,
    /// One weight per term of a summed --loss.
    #[arg(long, value_delimiter = ',')]
    pub loss_weights: Vec<f64>,
    #[command(flatten)]
    pub loss_params: super::args::LossParamArgs,
    /// batch | per-image
    #[arg(long)]
    pub reduction: Option<String>,
    #[arg(long, help = format!(
        "{}: applied to the probabilities before the loss",
        ThresholdMode::NAMES.join(" | ")
    ))]
    pub threshold_mode: Option<String>,
    /// Threshold t of the threshold mode.
    #[arg(long, default_value_t = seglab_nn::threshold::DEFAULT_THRESHOLD)]
    pub threshold: f64,
    /// Temperature of the soft mode (its start value when --temperature-end is given).
    #[arg(long, default_value_t = seglab_nn::threshold::DEFAULT_TEMPERATURE)]
    pub temperature: f64,
    /// Anneal the soft mode's temperature to this value over the run.
    #[arg(long)]
    pub temperature_end: Option<f64>,
    /// linear | exponential
    #[arg(long, default_value = "exponential")]
    pub annealing: String,
    /// Exponent k of the power mode.
    #[arg(long, default_value_t = seglab_nn::threshold::DEFAULT_POWER_K)]
    pub power_k: f64,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// cosine | poly | constant
    #[arg(long)]
    pub schedule: Option<String>,
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// Seed of split, batch order, augmentation and dropout.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Seed of the initial weights (default: --seed).
    #[arg(long)]
    pub init_seed: Option<u64>,
    /// Network input side; images are resized to it.
    #[arg(long)]
    pub size: Option<usize>,
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// JSON file {"train": [cases], "val": [cases]}; overrides --val-fraction.
    #[arg(long)]
    pub split: Option<PathBuf>,
    #[arg(long)]
    pub depth: Option<usize>,
    #[arg(long)]
    pub base_width: Option<usize>,
    /// batch | group
    #[arg(long)]
    pub norm: Option<String>,
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Deep supervision (nnU-Net): losses on the decoder's 1/2 and 1/4 resolution outputs too (true | false).
    #[arg(long)]
    pub deep_supervision: Option<bool>,
    /// Turn augmentation (flips, rotations, intensity jitter) off.
    #[arg(long)]
    pub no_augment: bool,
    /// Train on random patches of this side instead of whole images.
    #[arg(long)]
    pub patch: Option<usize>,
    #[arg(long)]
    pub fg_oversample: Option<f64>,
    /// Random zoom augmentation: factor log-uniform in [1/(1+S), 1+S] (0: off).
    #[arg(long)]
    pub aug_scale: Option<f32>,
    /// Intensity jitter: x * (1 + u) + v, u and v uniform in [-J, J] (z-scored units).
    #[arg(long)]
    pub aug_intensity: Option<f32>,
    /// Colour jitter: each channel of a multi-channel image scaled by 1 + w, w uniform in [-J, J] (0: off).
    #[arg(long)]
    pub aug_colour: Option<f32>,
    /// Batch augmentation: each image of a batch appears M times, augmented independently (M x the work per step).
    #[arg(long)]
    pub repeat_augment: Option<usize>,
    /// Progressive resizing: this fraction of the epochs (the first ones) trains at half the side, each image in
    /// --low-res-repeats views (0: off) [default: 2/3]
    #[arg(long)]
    pub low_res_fraction: Option<f64>,
    /// Views per image in the half-side epochs [default: 8]
    #[arg(long)]
    pub low_res_repeats: Option<usize>,
    #[arg(long)]
    pub steps_per_epoch: Option<usize>,
    /// Stop once the validation Dice has plateaued: its smoothed curve gained less than --min-delta over the last N
    /// epochs (--epochs stays the budget; outcome.json records whether and when the run converged).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Smallest gain of the smoothed validation Dice that counts as progress (with --patience; default 0.005).
    #[arg(long)]
    pub min_delta: Option<f64>,
    /// Weight of the previous value in the exponential moving average of the validation Dice (with --patience;
    /// default 0.5).
    #[arg(long)]
    pub smoothing: Option<f64>,
    /// Length in epochs of the learning-rate schedule, temperature annealing and low-resolution phase (default:
    /// --epochs). With --patience it makes --epochs a pure budget: past it the learning rate stays at its end value.
    #[arg(long)]
    pub schedule_epochs: Option<usize>,
    /// Validation metrics from mirrored test-time augmentation (4 forward passes per image; losses unchanged).
    #[arg(long)]
    pub tta: bool,
    /// Number of images of builtin:phantoms.
    #[arg(long)]
    pub phantom_count: Option<usize>,
    /// Intensity window LO,HI applied before normalisation (e.g. CT: -1000,400).
    #[arg(
        long,
        value_delimiter = ',',
        num_args = 2,
        allow_negative_numbers = true
    )]
    pub window: Option<Vec<f32>>,
    /// Intensity standardisation per image: zscore (all channels together, the default) or zscore-channel.
    #[arg(long)]
    pub normalization: Option<String>,
    /// Log lines only, no progress bars.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_enum<T: serde::de::DeserializeOwned>(flag: &str, v: &str) -> anyhow::Result<T> {
    serde_json::from_value(serde_json::Value::String(v.to_string()))
        .map_err(|_| anyhow::anyhow!("--{flag}: unknown value {v:?}"))
}

/// The flag of each config key `seglab_nn::error::Error::Config` names, so `train`'s messages speak in flags (the one
/// place keys become flags; `compare`'s messages keep the keys its `[train]` table uses).
pub const CONFIG_FLAGS: [(&str, &str); 23] = [
    ("load.size", "--size"),
    ("lr", "--lr"),
    ("grad_clip", "--grad-clip"),
    ("epochs", "--epochs"),
    ("batch_size", "--batch-size"),
    ("val_fraction", "--val-fraction"),
    ("augment.patch", "--patch"),
    ("augment.fg_oversample", "--fg-oversample"),
    ("augment.scale", "--aug-scale"),
    ("augment.intensity", "--aug-intensity"),
    ("augment.colour", "--aug-colour"),
    ("augment.repeats", "--repeat-augment"),
    ("low_res.fraction", "--low-res-fraction"),
    ("low_res.repeats", "--low-res-repeats"),
    ("loss.spec", "--loss"),
    ("loss.threshold", "--threshold-mode"),
    ("loss.temperature_schedule", "--temperature-end"),
    (
        "model",
        "the model settings (--depth, --base-width, --dropout):",
    ),
    ("val_batch_size", "val_batch_size"),
    ("convergence.patience", "--patience"),
    ("convergence.min_delta", "--min-delta"),
    ("convergence.smoothing", "--smoothing"),
    ("schedule_epochs", "--schedule-epochs"),
];

/// A trainer error as `seglab train` reports it: a config key becomes its flag.
pub fn with_flags(e: seglab_nn::error::Error) -> anyhow::Error {
    match &e {
        seglab_nn::error::Error::Config { key, problem } => {
            let flag = CONFIG_FLAGS
                .iter()
                .find(|(k, _)| k == key)
                .map_or(*key, |(_, f)| *f);
            anyhow::anyhow!("{flag} {problem}")
        }
        _ => e.into(),
    }
}

/// Defaults (or, for --resume, the run's stored config), then the --config file, then flags.
pub fn build_config(a: &Args) -> anyhow::Result<TrainConfig> {
    let stored = a.out.join(train::CONFIG_FILE);
    let mut c = match &a.config {
        Some(p) => {
            // Merged onto the defaults, so a key the file leaves out takes today's default (a stored run config
            // that lacks a newer key instead reads as the setting it was trained with).
            let text = std::fs::read_to_string(p).with_context(|| format!("{}", p.display()))?;
            let table: toml::Table = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e.to_string().trim()))?;
            let mut v = serde_json::to_value(TrainConfig::default())?;
            super::merge_json(&mut v, serde_json::to_value(table)?);
            serde_json::from_value::<TrainConfig>(v)
                .map_err(|e| anyhow::anyhow!("{}: {}", p.display(), e.to_string().trim()))?
        }
        None if a.resume && stored.is_file() => {
            let text = std::fs::read_to_string(&stored)
                .with_context(|| format!("{}", stored.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: unreadable run config", stored.display()))?
        }
        None => TrainConfig::default(),
    };
    macro_rules! set {
        ($flag:expr, $field:expr) => {
            if let Some(v) = $flag.clone() {
                $field = v;
            }
        };
    }
    set!(a.data, c.data);
    if a.loss.is_some() || a.loss_params.any() {
        let choice = LossChoice {
            name: a.loss.clone().unwrap_or_else(|| c.loss.spec.name()),
            params: a.loss_params.params(),
            weights: Some(a.loss_weights.clone()),
            reduction: None,
        };
        c.loss.spec = choice
            .spec(true, c.loss.spec.reduction)
            .map_err(|e| anyhow::anyhow!("--loss: {e}"))?;
    }
    if let Some(r) = &a.reduction {
        c.loss.spec.reduction = r
            .parse::<Reduction>()
            .map_err(|e| anyhow::anyhow!("--reduction: {e}"))?;
    }
    let threshold = ThresholdChoice {
        mode: a.threshold_mode.clone(),
        threshold: Some(a.threshold),
        temperature: Some(a.temperature),
        k: Some(a.power_k),
        temperature_end: a.temperature_end,
        // Read only for a schedule, as before: an unused --annealing is not an error.
        annealing: match a.temperature_end {
            Some(_) => Some(
                a.annealing
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--annealing: {e}"))?,
            ),
            None => None,
        },
    };
    if let Some(m) = threshold
        .mode()
        .map_err(|e| anyhow::anyhow!("--threshold-mode: {e}"))?
    {
        c.loss.threshold = m;
    }
    if let Some(s) = threshold
        .schedule()
        .map_err(|e| anyhow::anyhow!("--temperature-end: {e}"))?
    {
        c.loss.temperature_schedule = Some(s);
    }
    set!(a.epochs, c.epochs);
    set!(a.batch_size, c.batch_size);
    set!(a.lr, c.lr);
    set!(a.weight_decay, c.weight_decay);
    set!(a.warmup_epochs, c.warmup_epochs);
    set!(a.seed, c.seed);
    set!(a.size, c.load.size);
    set!(a.val_fraction, c.val_fraction);
    set!(a.depth, c.model.depth);
    set!(a.base_width, c.model.base_width);
    set!(a.dropout, c.model.dropout);
    set!(a.deep_supervision, c.model.deep_supervision);
    set!(a.fg_oversample, c.augment.fg_oversample);
    set!(a.aug_scale, c.augment.scale);
    set!(a.aug_intensity, c.augment.intensity);
    set!(a.aug_colour, c.augment.colour);
    set!(a.repeat_augment, c.augment.repeats);
    set!(a.low_res_fraction, c.low_res.fraction);
    set!(a.low_res_repeats, c.low_res.repeats);
    set!(a.phantom_count, c.load.phantom_count);
    if a.grad_clip.is_some() {
        c.grad_clip = a.grad_clip;
    }
    if a.init_seed.is_some() {
        c.init_seed = a.init_seed;
    }
    if a.patch.is_some() {
        c.augment.patch = a.patch;
    }
    if a.steps_per_epoch.is_some() {
        c.steps_per_epoch = a.steps_per_epoch;
    }
    if a.schedule_epochs.is_some() {
        c.schedule_epochs = a.schedule_epochs;
    }
    if a.patience.is_some() || a.min_delta.is_some() || a.smoothing.is_some() {
        let base = c.convergence.unwrap_or_default();
        c.convergence = Some(train::Convergence {
            patience: a.patience.unwrap_or(base.patience),
            min_delta: a.min_delta.unwrap_or(base.min_delta),
            smoothing: a.smoothing.unwrap_or(base.smoothing),
        });
    }
    if let Some(w) = &a.window {
        c.load.window = Some([w[0], w[1]]);
    }
    if let Some(s) = &a.schedule {
        c.schedule = parse_enum::<Schedule>("schedule", s)?;
    }
    if let Some(n) = &a.normalization {
        c.load.normalization = parse_enum::<data::Normalization>("normalization", n)?;
    }
    if let Some(n) = &a.norm {
        c.model.norm = parse_enum::<NormKind>("norm", n)?;
    }
    if a.tta {
        c.tta = true;
    }
    if a.no_augment {
        c.augment.enabled = false;
    }
    c.validate().map_err(with_flags)?;
    Ok(c)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let device = a.device.device()?;
    if a.resume && !a.out.join(train::CONFIG_FILE).is_file() {
        bail!(
            "{}: no run to resume (missing {})",
            a.out.display(),
            train::CONFIG_FILE
        );
    }
    let mut cfg = build_config(&a)?;
    let ds = data::load(&cfg.data, &cfg.load).map_err(with_flags)?;
    if ds.samples.is_empty() {
        bail!("{}: no samples", cfg.data);
    }
    cfg.model.in_channels = ds.channels;
    let split = match (&a.split, a.resume) {
        (Some(p), _) => {
            let s = data::read_split(p)?;
            data::check_split(&ds, &s, &p.display().to_string())?;
            s
        }
        // A resumed run keeps its stored split.
        (None, true) if a.out.join(train::SPLIT_FILE).is_file() => {
            data::read_split(&a.out.join(train::SPLIT_FILE))?
        }
        (None, _) => data::split_by_case(&ds, cfg.val_fraction, cfg.seed).map_err(with_flags)?,
    };
    let n_train = ds.indices_of(&split.train).len();
    let n_val = ds.indices_of(&split.val).len();
    eprintln!(
        "data {}: {} images ({} channel(s), {}x{}), train {} / val {} ({} / {} cases)",
        cfg.data,
        ds.samples.len(),
        ds.channels,
        cfg.load.size,
        cfg.load.size,
        n_train,
        n_val,
        split.train.len(),
        split.val.len()
    );

    let bar: RefCell<Option<ProgressBar>> = RefCell::new(None);
    let quiet = a.quiet;
    let progress = |p: Progress| match p {
        Progress::Resumed { epochs_done } => eprintln!("resumed after epoch {epochs_done}"),
        Progress::EpochStart {
            epoch,
            epochs,
            steps,
        } => {
            if !quiet {
                let pb = ProgressBar::new(steps as u64);
                pb.set_style(
                    ProgressStyle::with_template(
                        "epoch {prefix} [{bar:30}] {pos}/{len} loss {msg} eta {eta}",
                    )
                    .unwrap()
                    .progress_chars("=> "),
                );
                pb.set_prefix(format!("{epoch}/{epochs}"));
                *bar.borrow_mut() = Some(pb);
            }
        }
        Progress::Step { loss, .. } => {
            if let Some(pb) = bar.borrow().as_ref() {
                pb.set_message(format!("{loss:.4}"));
                pb.inc(1);
            }
        }
        Progress::EpochEnd { record: r, best } => {
            // Lesion scores are undefined without lesions (ground truth or predicted): "n/a", never NaN.
            let score = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.3}"));
            if let Some(pb) = bar.borrow_mut().take() {
                pb.finish_and_clear();
            }
            eprintln!(
                "epoch {:>3} train_loss {:.4} val_loss {:.4} val_dice {:.4} iou {:.4} prec {:.3} rec {:.3} lesion_rec {} lesion_prec {} grad {:.3e} zero {:.3} lr {:.2e} side {} {:.1}s{}",
                r.epoch,
                r.train_loss,
                r.val_loss,
                r.val_dice,
                r.val_iou,
                r.val_precision,
                r.val_recall,
                score(r.val_lesion_recall),
                score(r.val_lesion_precision),
                r.grad_norm,
                r.zero_grad_fraction,
                r.lr,
                r.train_side.map_or_else(|| "n/a".to_string(), |s| s.to_string()),
                r.seconds,
                if best { " *best" } else { "" }
            );
        }
    };
    let run = RunDir {
        path: a.out.clone(),
        resume: a.resume,
        stop_after: None,
    };
    let outcome =
        train::train(&cfg, &ds, &split, Some(&run), &device, &progress).map_err(with_flags)?;
    let best = outcome
        .epochs
        .iter()
        .map(|r| r.val_dice)
        .fold(f64::NEG_INFINITY, f64::max);
    eprintln!(
        "{:?}: {} epochs in {:.1}s, best val_dice {:.4}; run folder {}",
        outcome.status,
        outcome.epochs.len(),
        outcome.seconds,
        best,
        a.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use seglab_nn::LossKind;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn config(flags: &[&str]) -> TrainConfig {
        let mut argv = vec!["train", "--out", "unused"];
        argv.extend_from_slice(flags);
        build_config(&Cli::try_parse_from(argv).unwrap().args).unwrap()
    }

    #[test]
    fn loss_parameters_reach_the_config() {
        let c = config(&[
            "--loss",
            "focal-tversky",
            "--alpha",
            "0.2",
            "--beta",
            "0.8",
            "--gamma",
            "1.5",
            "--smooth",
            "0.5",
        ]);
        assert_eq!(
            c.loss.spec.terms[0].kind,
            LossKind::FocalTversky {
                alpha: 0.2,
                beta: 0.8,
                gamma: 1.5,
                smooth: 0.5
            }
        );
        // A parameter alone keeps the default loss and changes only that parameter.
        let c = config(&["--beta", "0.9"]);
        assert_eq!(
            c.loss.spec.terms[0].kind,
            LossKind::Tversky {
                alpha: 0.3,
                beta: 0.9,
                smooth: 1.0
            }
        );
        assert_eq!(config(&[]).loss, TrainConfig::default().loss);
        assert_eq!(config(&["--aug-scale", "0.25"]).augment.scale, 0.25);
        assert!(config(&["--tta"]).tta && !config(&[]).tta);
        let c = config(&["--low-res-fraction", "0.5", "--low-res-repeats", "3"]);
        assert_eq!((c.low_res.fraction, c.low_res.repeats), (0.5, 3));
    }

    #[test]
    fn a_config_file_overrides_only_the_keys_it_has() {
        // Keys the file leaves out take today's defaults (not the values that stored run configs of older
        // versions read as), and nested tables merge key by key.
        let path =
            std::env::temp_dir().join(format!("seglab-config-test-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "epochs = 3\n[augment]\nflips = false\n[load]\nsize = 64\n",
        )
        .unwrap();
        let c = config(&["--config", path.to_str().unwrap(), "--lr", "0.01"]);
        std::fs::remove_file(&path).unwrap();
        let d = TrainConfig::default();
        assert_eq!((c.epochs, c.load.size, c.lr), (3, 64, 0.01));
        assert!(!c.augment.flips && c.augment.rot90);
        assert_eq!(c.augment.repeats, d.augment.repeats);
        assert_eq!(c.low_res, d.low_res);
        assert_eq!(c.load.normalization, d.load.normalization);
        let bad =
            std::env::temp_dir().join(format!("seglab-config-bad-{}.toml", std::process::id()));
        std::fs::write(&bad, "epochs = 3\nepohcs = 4\n").unwrap();
        let argv = [
            "train",
            "--out",
            "unused",
            "--config",
            bad.to_str().unwrap(),
        ];
        let e = build_config(&Cli::try_parse_from(argv).unwrap().args).unwrap_err();
        std::fs::remove_file(&bad).unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("epohcs") && msg.contains("seglab-config-bad"),
            "{msg}"
        );
    }
}
