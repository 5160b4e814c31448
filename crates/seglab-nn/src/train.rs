//! The training loop: AdamW with a warm-up + cosine/poly schedule, validation after every epoch with
//! `seglab-metrics`, atomic checkpoints with exact resume, and a `RunOutcome` for `seglab compare`.
//!
//! Randomness: the weights come from `init_seed` (default `seed`); batch order, augmentation and dropout come
//! from streams derived from `(seed, epoch)`. Several loss variants run with one seed therefore start from the same
//! weights and see the same batches, and a resumed run redraws exactly what the uninterrupted run drew.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::activation::sigmoid;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use seglab_metrics::lesion::{lesion_metrics, LesionCounts, LesionSettings};
use seglab_metrics::summary::settle;
use seglab_metrics::{Confusion, EmptyPolicy, Mask};
use serde::{Deserialize, Serialize};

use crate::data::{self, AugmentConfig, Dataset, LoadOptions, Split};
use crate::error::{Error, Result};
use crate::objective::LossConfig;
use crate::record::{EpochRecord, RunOutcome, RunStatus};
use crate::rng::Rng;
use crate::unet::{UNet, UNetConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    #[default]
    Cosine,
    /// `(1 - t)^0.9`, the nnU-Net schedule.
    Poly,
    Constant,
}

/// Everything that defines a run. Serialised into the run folder and every checkpoint; `--resume` refuses a run
/// whose stored config differs (except `epochs`, which may be raised to continue training).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Data spec: `builtin:phantoms`, `builtin:tumors2d` or a folder.
    pub data: String,
    /// Loading and preprocessing (`size`, phantom set size, intensity window).
    pub load: LoadOptions,
    pub model: UNetConfig,
    pub augment: AugmentConfig,
    pub loss: LossConfig,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate (after warm-up).
    pub lr: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Linear warm-up length in epochs (fractions allowed).
    pub warmup_epochs: f64,
    /// The schedule ends at `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    /// Clip the global L2 norm of the gradients to this value.
    pub grad_clip: Option<f64>,
    /// Seed of the split, batch order, augmentation and dropout.
    pub seed: u64,
    /// Seed of the initial weights; `None` uses `seed`.
    pub init_seed: Option<u64>,
    pub val_fraction: f64,
    /// Optimizer steps per epoch; `None` is one pass over the training samples.
    pub steps_per_epoch: Option<usize>,
    /// Images per validation forward pass (memory only: results do not depend on it).
    pub val_batch_size: usize,
    /// Validation metrics (not the losses) from mirrored test-time augmentation ([`UNet::probabilities`]).
    pub tta: bool,
    /// Progressive resizing: the run's first epochs train at half the side. A config written before this key
    /// existed reads as off.
    #[serde(default = "LowResPhase::off")]
    pub low_res: LowResPhase,
}

/// The first `round(fraction * epochs)` epochs train on batches at half the side (2x2 means of the augmented
/// images, majority of the masks), each image in `repeats` independently augmented views: a half-side view costs
/// about a quarter of a full-size one, so 8 views cost about what 2 full-size views do. The later epochs train at
/// full size with [`AugmentConfig::repeats`] views. Validation is always at full size. Like the learning-rate
/// schedule, the boundary is a fraction of the run: raising `--epochs` on `--resume` moves it.
///
/// Why: on kvasir_seg_256 the default U-Net with soft Tversky is limited by how many augmented views it sees
/// (BENCHMARKS.md, stops 12-13): 4 full-size views per image instead of 1 raise the 30-epoch validation Dice from
/// about 0.58 to 0.62-0.66 at 3.4x the time; spending the views at half size for the first two thirds of the run
/// reaches more in less time. A convolutional network learns shapes at half scale that carry over once it
/// trains at full size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowResPhase {
    /// Fraction of the epochs at half side, in [0, 1); 0 turns the phase off.
    pub fraction: f64,
    /// Views per image in the half-side epochs.
    pub repeats: usize,
}

impl LowResPhase {
    pub fn off() -> Self {
        LowResPhase {
            fraction: 0.0,
            repeats: 1,
        }
    }
}

impl Default for LowResPhase {
    fn default() -> Self {
        LowResPhase {
            fraction: 2.0 / 3.0,
            repeats: 8,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            data: data::PHANTOMS.to_string(),
            load: LoadOptions::default(),
            model: UNetConfig::default(),
            augment: AugmentConfig::default(),
            loss: LossConfig::default(),
            epochs: 30,
            batch_size: 8,
            lr: 1e-3,
            weight_decay: 1e-4,
            schedule: Schedule::Cosine,
            warmup_epochs: 1.0,
            min_lr_ratio: 0.01,
            grad_clip: None,
            seed: 0,
            init_seed: None,
            val_fraction: 0.2,
            steps_per_epoch: None,
            val_batch_size: 16,
            tta: false,
            low_res: LowResPhase::default(),
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        self.model
            .validate()
            .map_err(|e| Error::new(format!("model: {e}")))?;
        let m = self.model.size_multiple();
        if !self.load.size.is_multiple_of(m) {
            return Err(Error::new(format!(
                "--size {} must be a multiple of {m} (2^depth) for a U-Net of depth {}",
                self.load.size, self.model.depth
            )));
        }
        if let Some(p) = self.augment.patch {
            if p % m != 0 || p > self.load.size {
                return Err(Error::new(format!(
                    "patch {p} must be a multiple of {m} and at most --size"
                )));
            }
        }
        if self.epochs == 0 || self.batch_size == 0 || self.val_batch_size == 0 {
            return Err(Error::new(
                "epochs, batch size and validation batch size must be positive",
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::new(format!(
                "--lr must be positive, got {}",
                self.lr
            )));
        }
        if let Some(c) = self.grad_clip {
            if c <= 0.0 || !c.is_finite() {
                return Err(Error::new(format!("--grad-clip must be positive, got {c}")));
            }
        }
        if !(0.0..=1.0).contains(&self.augment.fg_oversample) {
            return Err(Error::new("fg_oversample must be in [0, 1]"));
        }
        if !(0.0..=2.0).contains(&self.augment.scale) {
            return Err(Error::new(format!(
                "augmentation scale must be in [0, 2], got {}",
                self.augment.scale
            )));
        }
        if self.augment.repeats == 0 || self.low_res.repeats == 0 {
            return Err(Error::new("augmentation repeats must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.low_res.fraction) {
            return Err(Error::new(format!(
                "the low-resolution fraction must be in [0, 1), got {}",
                self.low_res.fraction
            )));
        }
        if self.low_res_epochs() > 0 {
            let side = self.augment.batch_side(self.load.size);
            if !side.is_multiple_of(2 * m) {
                return Err(Error::new(format!(
                    "the low-resolution epochs train at half the side ({side} / 2), which must be a multiple of \
                     {m} (2^depth): use a side that is a multiple of {}, or --low-res-fraction 0",
                    2 * m
                )));
            }
        }
        for (name, v) in [
            ("intensity", self.augment.intensity),
            ("colour", self.augment.colour),
        ] {
            // Beyond 1 a channel's scale 1 + u could flip its sign.
            if !(0.0..1.0).contains(&v) {
                return Err(Error::new(format!(
                    "{name} jitter must be in [0, 1), got {v}"
                )));
            }
        }
        self.loss.validate().map_err(Error::new)?;
        Ok(())
    }

    /// Number of leading epochs trained at half the side ([`LowResPhase`]).
    pub fn low_res_epochs(&self) -> usize {
        (self.low_res.fraction * self.epochs as f64).round() as usize
    }

    /// The augmentation of (1-based) `epoch` and whether its batches are halved ([`LowResPhase`]).
    pub fn epoch_augment(&self, epoch: usize) -> (AugmentConfig, bool) {
        let low_res = epoch <= self.low_res_epochs();
        let repeats = if low_res {
            self.low_res.repeats
        } else {
            self.augment.repeats
        };
        (
            AugmentConfig {
                repeats,
                ..self.augment.clone()
            },
            low_res,
        )
    }

    pub fn weights_seed(&self) -> u64 {
        self.init_seed.unwrap_or(self.seed)
    }

    pub fn steps_per_epoch(&self, train_samples: usize) -> usize {
        self.steps_per_epoch
            .unwrap_or((train_samples / self.batch_size).max(1))
    }

    /// Learning rate at optimizer step `step` (0-based) of `total` steps.
    pub fn lr_at(&self, step: usize, steps_per_epoch: usize, total: usize) -> f64 {
        let warm = (self.warmup_epochs * steps_per_epoch as f64).round() as usize;
        if step < warm {
            return self.lr * (step + 1) as f64 / warm as f64;
        }
        let t = if total > warm {
            (step - warm) as f64 / (total - warm) as f64
        } else {
            1.0
        };
        let min = self.lr * self.min_lr_ratio;
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
            Schedule::Poly => (self.lr * (1.0 - t).powf(0.9)).max(min),
        }
    }
}

/// What the trainer reports while it runs (for progress bars and logs).
#[derive(Debug)]
pub enum Progress<'a> {
    EpochStart {
        epoch: usize,
        epochs: usize,
        steps: usize,
    },
    Step {
        epoch: usize,
        step: usize,
        steps: usize,
        loss: f64,
    },
    EpochEnd {
        record: &'a EpochRecord,
        best: bool,
    },
    /// Resumed after `epochs_done` completed epochs.
    Resumed {
        epochs_done: usize,
    },
}

/// Where and how a run is persisted.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
    /// Continue from `last.ckpt` in `path` (or start there if the run was killed before its first checkpoint).
    pub resume: bool,
    /// Return after this many epochs have been completed in total, as if killed after that checkpoint (tests and
    /// time-boxed sessions use it; the outcome then covers the epochs done so far).
    pub stop_after: Option<usize>,
}

pub const CONFIG_FILE: &str = "config.json";
pub const SPLIT_FILE: &str = "split.json";
pub const LAST_CKPT: &str = "last.ckpt";
pub const BEST_CKPT: &str = "best.ckpt";
pub const OUTCOME_FILE: &str = "outcome.json";

/// Trains a U-Net on `data` with the given split. With `run`, writes the run folder (config, split, metrics,
/// checkpoints, outcome); without, trains in memory only (what `compare` does for quick runs).
pub fn train(
    cfg: &TrainConfig,
    data: &Dataset,
    split: &Split,
    run: Option<&RunDir>,
    progress: &dyn Fn(Progress),
) -> Result<RunOutcome> {
    cfg.validate()?;
    data::check_split(data, split, "split")?;
    if data.size != cfg.load.size {
        return Err(Error::new(format!(
            "data loaded at size {} but the config says {}",
            data.size, cfg.load.size
        )));
    }
    let mut model_cfg = cfg.model.clone();
    model_cfg.in_channels = data.channels;
    let cfg = &TrainConfig {
        model: model_cfg,
        ..cfg.clone()
    };

    let device = Device::flex().autodiff();
    let train_idx = data.indices_of(&split.train);
    let val_idx = data.indices_of(&split.val);
    let steps = cfg.steps_per_epoch(train_idx.len());
    let total_steps = steps * cfg.epochs;

    let mut model = cfg.model.init(cfg.weights_seed(), &device);
    let adamw = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .with_epsilon(1e-8);
    let mut optim = adamw.init();
    let mut state = RunState {
        records: Vec::new(),
        best_val_dice: f64::NEG_INFINITY,
        best_epoch: 0,
    };

    if let Some(run) = run {
        let resumed = prepare_run_dir(cfg, split, run)?;
        if let Some((meta, model_bytes, optim_bytes)) = resumed {
            let rec =
                ModuleRecord::from_bytes(Bytes::from_bytes_vec(model_bytes)).map_err(|e| {
                    Error::new(format!(
                        "{}: model record: {e:?}",
                        run.path.join(LAST_CKPT).display()
                    ))
                })?;
            model = model.try_load_record(rec).map_err(|e| {
                Error::new(format!(
                    "{}: model record: {e:?}",
                    run.path.join(LAST_CKPT).display()
                ))
            })?;
            optim = adamw
                .init()
                .from_bytes(Bytes::from_bytes_vec(optim_bytes))
                .map_err(|e| {
                    Error::new(format!(
                        "{}: optimizer record: {e:?}",
                        run.path.join(LAST_CKPT).display()
                    ))
                })?;
            state = meta.state;
            progress(Progress::Resumed {
                epochs_done: state.records.len(),
            });
        }
    }

    let start = Instant::now();
    let seconds_before: f64 = state.records.iter().map(|r| r.seconds).sum();
    let mut status = RunStatus::Completed;
    let mut last_val: Option<ValResult> = None;
    let first_epoch = state.records.len() + 1;

    let last_epoch = run
        .and_then(|r| r.stop_after)
        .map_or(cfg.epochs, |s| s.min(cfg.epochs));
    for epoch in first_epoch..=last_epoch {
        let t0 = Instant::now();
        progress(Progress::EpochStart {
            epoch,
            epochs: cfg.epochs,
            steps,
        });
        let mut plan_rng =
            Rng::derive(cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9), "order");
        let (augment, low_res) = cfg.epoch_augment(epoch);
        let side = augment.batch_side(cfg.load.size);
        let train_side = if low_res { side / 2 } else { side };
        let mut plan = Vec::with_capacity(steps);
        while plan.len() < steps {
            plan.extend(data::epoch_plan(
                data,
                &train_idx,
                cfg.batch_size,
                &augment,
                &mut plan_rng,
            ));
        }
        plan.truncate(steps);
        let mut aug_rng = Rng::derive(
            cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9),
            "augment",
        );
        let mut drop_rng = Rng::derive(
            cfg.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9),
            "dropout",
        );

        let mut loss_sum = 0.0;
        let mut grad_norm_sum = 0.0;
        let mut zero_frac_sum = 0.0;
        let mut lr = cfg.lr;
        let mut diverged = false;
        model = std::thread::scope(|scope| {
            let mut model = model;
            // Batches are assembled one step ahead in a background thread: data never waits on the model.
            let (tx, rx) = std::sync::mpsc::sync_channel::<data::Batch>(2);
            let plan = &plan;
            let aug = &augment;
            scope.spawn(move || {
                for idx in plan {
                    let batch = data::make_batch(data, idx, aug, &mut aug_rng);
                    let batch = if low_res { batch.halved() } else { batch };
                    if tx.send(batch).is_err() {
                        break;
                    }
                }
            });
            for (s, batch) in rx.iter().enumerate() {
                let global_step = (epoch - 1) * steps + s;
                lr = cfg.lr_at(global_step, steps, total_steps);
                let (x, t) = to_tensors(&batch, data.channels, &device);
                let (logits, aux) = model.forward_train(x, &mut drop_rng);
                let frac = global_step as f64 / total_steps.max(1) as f64;
                let loss = cfg.loss.train_loss_deep(logits, aux, t, frac);
                let loss_value = loss.clone().into_scalar::<f32>() as f64;
                if !loss_value.is_finite() {
                    diverged = true;
                    break;
                }
                // The threshold operators keep the loss on the graph (a hard threshold gives exact zeros);
                // a loss that is not is still handled: no parameter then gets any gradient.
                let mut grads = if loss.is_tracked() {
                    GradientsParams::from_grads(loss.backward(), &model)
                } else {
                    GradientsParams::new()
                };
                let stats = grad_stats(&model, &mut grads, cfg.grad_clip);
                grad_norm_sum += stats.norm;
                zero_frac_sum += stats.zero_fraction;
                loss_sum += loss_value;
                if !grads.is_empty() {
                    model = optim.step(lr, model, grads);
                }
                progress(Progress::Step {
                    epoch,
                    step: s + 1,
                    steps,
                    loss: loss_value,
                });
            }
            model
        });
        if diverged {
            status = RunStatus::Diverged { epoch };
            break;
        }

        let val = validate(
            &model,
            cfg,
            data,
            &val_idx,
            frac_at(epoch * steps, total_steps),
        )?;
        let at_half = OverlapScores::of(&val.merged);
        let at_best = OverlapScores::of(&val.best_threshold_counts);
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / steps as f64,
            val_loss: val.loss,
            val_soft_loss: val.soft_loss,
            val_dice: at_half.dice,
            val_iou: at_half.iou,
            val_precision: at_half.precision,
            val_recall: at_half.recall,
            val_case_dice: mean(&val.case_dice),
            val_soft_dice: val.soft_dice,
            val_best_threshold: val.best_threshold,
            val_best_threshold_dice: at_best.dice,
            val_best_threshold_iou: Some(at_best.iou),
            val_best_threshold_precision: Some(at_best.precision),
            val_best_threshold_recall: Some(at_best.recall),
            val_lesion_recall: val.lesions.recall(),
            val_lesion_precision: val.lesions.precision(),
            val_lesion_f1: val.lesions.f1(),
            grad_norm: grad_norm_sum / steps as f64,
            zero_grad_fraction: zero_frac_sum / steps as f64,
            mean_prob_lesion: val.mean_prob_lesion,
            mean_prob_background: val.mean_prob_background,
            lr,
            train_side: Some(train_side),
            seconds: t0.elapsed().as_secs_f64(),
        };
        let best = record.val_dice > state.best_val_dice;
        if best {
            state.best_val_dice = record.val_dice;
            state.best_epoch = epoch;
        }
        state.records.push(record);
        if let Some(run) = run {
            let meta = CheckpointMeta {
                format: CKPT_FORMAT,
                config: cfg.clone(),
                split: split.clone(),
                state: state.clone(),
            };
            let model_bytes = model_bytes(&model)?;
            write_checkpoint(
                &run.path.join(LAST_CKPT),
                &meta,
                &model_bytes,
                Some(&optim_bytes(&optim)?),
            )?;
            if best {
                write_checkpoint(&run.path.join(BEST_CKPT), &meta, &model_bytes, None)?;
            }
            write_metrics(&run.path, &state.records)?;
        }
        progress(Progress::EpochEnd {
            record: state.records.last().unwrap(),
            best,
        });
        last_val = Some(val);
    }

    let val = match last_val {
        Some(v) => v,
        // Resumed a finished run, or diverged in the first epoch: score the model as it stands.
        None => validate(&model, cfg, data, &val_idx, 1.0)?,
    };
    let outcome = RunOutcome {
        status,
        epochs: state.records.clone(),
        val_cases: val.cases.clone(),
        val_case_dice: val.case_dice.clone(),
        prob_hist_lesion: val.hist_lesion.to_vec(),
        prob_hist_background: val.hist_background.to_vec(),
        seconds: seconds_before + start.elapsed().as_secs_f64(),
    };
    if let Some(run) = run {
        let text = serde_json::to_string_pretty(&outcome).expect("outcome serialises");
        write_atomic(&run.path.join(OUTCOME_FILE), text.as_bytes())?;
    }
    Ok(outcome)
}

/// Overlap scores of pooled confusion counts; an undefined score (0/0) is settled by the default empty-mask policy of
/// `seglab evaluate`: 1 when prediction and ground truth are both empty, else 0.
struct OverlapScores {
    dice: f64,
    iou: f64,
    precision: f64,
    recall: f64,
}

impl OverlapScores {
    fn of(c: &Confusion) -> Self {
        let both_empty = c.pred_count() == 0 && c.gt_count() == 0;
        let s = |v: Option<f64>| {
            settle(v, both_empty, EmptyPolicy::Default)
                .expect("the default policy defines every score")
        };
        OverlapScores {
            dice: s(c.dice()),
            iou: s(c.iou()),
            precision: s(c.precision()),
            recall: s(c.recall()),
        }
    }
}

fn frac_at(step: usize, total: usize) -> f64 {
    step as f64 / total.max(1) as f64
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn to_tensors(batch: &data::Batch, channels: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
    let (n, s) = (batch.n, batch.side);
    let x = Tensor::from_data(
        TensorData::new(batch.x.clone(), [n, channels, s, s]),
        device,
    );
    let t = Tensor::from_data(TensorData::new(batch.t.clone(), [n, 1, s, s]), device);
    (x, t)
}

struct GradStats {
    norm: f64,
    zero_fraction: f64,
}

/// Global gradient norm and fraction of exactly-zero entries over all trainable parameters (a parameter without a
/// gradient counts as all zeros), then optional clipping of the global norm.
fn grad_stats(model: &UNet, grads: &mut GradientsParams, clip: Option<f64>) -> GradStats {
    struct Visit<'a> {
        grads: &'a GradientsParams,
        sumsq: f64,
        zeros: u64,
        total: u64,
        ids: Vec<(burn::module::ParamId, usize)>,
    }
    impl ModuleVisitor for Visit<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            // BatchNorm running statistics are visited too but are not trained.
            if !value.is_require_grad() {
                return;
            }
            let n = value.shape().num_elements() as u64;
            self.total += n;
            match self.grads.get::<D>(param.id) {
                Some(g) => {
                    let data = g.into_data();
                    let v = data.as_slice::<f32>().expect("f32 gradients");
                    let (mut s, mut z) = (0f64, 0u64);
                    for &x in v {
                        s += (x as f64) * (x as f64);
                        z += (x == 0.0) as u64;
                    }
                    self.sumsq += s;
                    self.zeros += z;
                    self.ids.push((param.id, D));
                }
                None => self.zeros += n,
            }
        }
    }
    let mut v = Visit {
        grads,
        sumsq: 0.0,
        zeros: 0,
        total: 0,
        ids: Vec::new(),
    };
    model.visit(&mut v);
    let norm = v.sumsq.sqrt();
    let stats = GradStats {
        norm,
        zero_fraction: if v.total == 0 {
            1.0
        } else {
            v.zeros as f64 / v.total as f64
        },
    };
    let ids = v.ids;
    if let Some(max) = clip {
        if norm > max {
            let scale = (max / (norm + 1e-6)) as f32;
            for (id, rank) in ids {
                match rank {
                    1 => rescale::<1>(grads, id, scale),
                    2 => rescale::<2>(grads, id, scale),
                    3 => rescale::<3>(grads, id, scale),
                    4 => rescale::<4>(grads, id, scale),
                    _ => unreachable!("U-Net parameters have rank 1-4"),
                }
            }
        }
    }
    stats
}

fn rescale<const D: usize>(grads: &mut GradientsParams, id: burn::module::ParamId, scale: f32) {
    if let Some(g) = grads.remove::<D>(id) {
        grads.register::<D>(id, g.mul_scalar(scale));
    }
}

/// Validation of one model state over whole validation images.
#[derive(Clone, Debug)]
pub struct ValResult {
    pub loss: f64,
    pub soft_loss: f64,
    pub merged: Confusion,
    pub cases: Vec<String>,
    pub case_dice: Vec<f64>,
    pub soft_dice: f64,
    pub best_threshold: f64,
    /// Pooled confusion counts at `best_threshold` (the sweep threshold with the highest pooled Dice).
    pub best_threshold_counts: Confusion,
    /// Lesion counts at threshold 0.5, summed over validation images (each image labelled on its own, 2D,
    /// 8-connectivity: `seglab evaluate`'s default).
    pub lesions: LesionCounts,
    pub mean_prob_lesion: f64,
    pub mean_prob_background: f64,
    pub hist_lesion: [u64; 20],
    pub hist_background: [u64; 20],
}

pub const VAL_THRESHOLD: f32 = 0.5;

/// Scores `model` on the validation samples: losses on logits, metrics from `seglab-metrics` on probabilities.
pub fn validate(
    model: &UNet,
    cfg: &TrainConfig,
    data: &Dataset,
    val_idx: &[usize],
    frac: f64,
) -> Result<ValResult> {
    let eval = model.valid();
    let device = Device::flex();
    let thresholds: Vec<f32> = (1..=19).map(|k| k as f32 * 0.05).collect();
    let mut by_threshold = vec![Confusion::default(); thresholds.len()];
    let mut per_case: BTreeMap<String, Confusion> = BTreeMap::new();
    let mut merged = Confusion::default();
    let mut lesions = LesionCounts::default();
    let lesion_settings = LesionSettings::default();
    let (mut loss_sum, mut soft_sum, mut batches) = (0.0, 0.0, 0usize);
    let (mut spt, mut sp, mut st) = (0f64, 0f64, 0f64);
    let (mut p_in, mut n_in, mut p_out, mut n_out) = (0f64, 0u64, 0f64, 0u64);
    let mut hist_lesion = [0u64; 20];
    let mut hist_background = [0u64; 20];
    for chunk in val_idx.chunks(cfg.val_batch_size) {
        let batch = data::eval_batch(data, chunk);
        let (x, t) = to_tensors(&batch, data.channels, &device);
        let logits = eval.forward(x.clone());
        // Losses are means over a batch; weighting by batch size makes the result independent of the chunking.
        let w = chunk.len() as f64;
        loss_sum += w * cfg.loss.eval_loss(logits.clone(), t.clone(), frac, false);
        soft_sum += w * cfg.loss.eval_loss(logits.clone(), t, frac, true);
        batches += chunk.len();
        let probs = sigmoid(logits);
        let probs = if cfg.tta {
            eval.mirrored_mean(x, probs)
        } else {
            probs
        };
        let probs = probs.into_data();
        let probs = probs.as_slice::<f32>().expect("f32 probabilities");
        let plane = batch.side * batch.side;
        for (k, &i) in chunk.iter().enumerate() {
            let p = &probs[k * plane..(k + 1) * plane];
            let gt: Vec<bool> = data.samples[i].mask.iter().map(|&m| m == 1).collect();
            let c = Confusion::from_probs(p, &gt, VAL_THRESHOLD);
            merged.merge(&c);
            let shape = vec![batch.side, batch.side];
            let pred_mask = Mask::from_vec(
                shape.clone(),
                p.iter()
                    .map(|&v| seglab_metrics::binarize(v, VAL_THRESHOLD))
                    .collect(),
            );
            let gt_mask = Mask::from_vec(shape, gt.clone());
            let report = lesion_metrics(&pred_mask, &gt_mask, &lesion_settings)
                .map_err(|e| Error::new(format!("validation lesion metrics: {e}")))?;
            lesions.merge(&report.counts());
            per_case
                .entry(data.samples[i].case.clone())
                .or_default()
                .merge(&c);
            for (conf, &th) in by_threshold.iter_mut().zip(&thresholds) {
                conf.update_probs(p, &gt, th);
            }
            for (&pv, &g) in p.iter().zip(&gt) {
                let bin = ((pv * 20.0) as usize).min(19);
                sp += pv as f64;
                if g {
                    spt += pv as f64;
                    st += 1.0;
                    p_in += pv as f64;
                    n_in += 1;
                    hist_lesion[bin] += 1;
                } else {
                    p_out += pv as f64;
                    n_out += 1;
                    hist_background[bin] += 1;
                }
            }
        }
    }
    // The lowest threshold with the highest pooled Dice; IoU, precision and recall are read at that same threshold.
    let (best_i, _) = by_threshold
        .iter()
        .enumerate()
        .map(|(i, c)| (i, OverlapScores::of(c).dice))
        .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
    let cases: Vec<String> = per_case.keys().cloned().collect();
    // Empty-mask policy for per-case Dice: both empty -> 1 (undefined 0/0 is a perfect answer), else the formula.
    let case_dice = per_case.values().map(|c| c.dice().unwrap_or(1.0)).collect();
    Ok(ValResult {
        loss: loss_sum / batches.max(1) as f64,
        soft_loss: soft_sum / batches.max(1) as f64,
        merged,
        cases,
        case_dice,
        soft_dice: if sp + st > 0.0 {
            2.0 * spt / (sp + st)
        } else {
            1.0
        },
        best_threshold: thresholds[best_i] as f64,
        best_threshold_counts: by_threshold[best_i],
        lesions,
        mean_prob_lesion: if n_in > 0 { p_in / n_in as f64 } else { 0.0 },
        mean_prob_background: if n_out > 0 { p_out / n_out as f64 } else { 0.0 },
        hist_lesion,
        hist_background,
    })
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RunState {
    records: Vec<EpochRecord>,
    #[serde(deserialize_with = "crate::record::f64_or_nan")]
    best_val_dice: f64,
    best_epoch: usize,
}

const CKPT_FORMAT: u32 = 1;
const CKPT_MAGIC: &[u8; 8] = b"SEGLABCK";

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CheckpointMeta {
    format: u32,
    config: TrainConfig,
    split: Split,
    state: RunState,
}

fn model_bytes(model: &UNet) -> Result<Vec<u8>> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::new(format!("model record: {e:?}")))?;
    Ok(bytes.to_vec())
}

fn optim_bytes(optim: &burn::optim::ModuleOptimizer) -> Result<Vec<u8>> {
    let bytes = optim
        .into_bytes()
        .map_err(|e| Error::new(format!("optimizer record: {e:?}")))?;
    Ok(bytes.to_vec())
}

/// Writes `path` via a temporary file in the same folder and a rename, so a reader (or a killed writer) never
/// leaves a half-written file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::new(format!("{}: {e}", path.display()))
    })
}

/// Checkpoint file: magic, then three length-prefixed sections: JSON meta, model record, optimizer record
/// (empty for `best.ckpt`, which is for prediction only).
fn write_checkpoint(
    path: &Path,
    meta: &CheckpointMeta,
    model: &[u8],
    optim: Option<&[u8]>,
) -> Result<()> {
    let json = serde_json::to_vec(meta).expect("checkpoint meta serialises");
    let optim = optim.unwrap_or(&[]);
    let mut out = Vec::with_capacity(8 + 24 + json.len() + model.len() + optim.len());
    out.extend_from_slice(CKPT_MAGIC);
    for section in [&json[..], model, optim] {
        out.extend_from_slice(&(section.len() as u64).to_le_bytes());
        out.extend_from_slice(section);
    }
    write_atomic(path, &out)
}

fn read_checkpoint(path: &Path) -> Result<(CheckpointMeta, Vec<u8>, Vec<u8>)> {
    let bad = |why: &str| {
        Error::new(format!(
            "{}: not a seglab checkpoint ({why})",
            path.display()
        ))
    };
    let bytes = std::fs::read(path).map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    if bytes.len() < 8 || &bytes[..8] != CKPT_MAGIC {
        return Err(bad("bad header"));
    }
    let mut pos = 8;
    let mut sections = Vec::new();
    for _ in 0..3 {
        let len = bytes.get(pos..pos + 8).ok_or_else(|| bad("truncated"))?;
        let len = u64::from_le_bytes(len.try_into().unwrap()) as usize;
        pos += 8;
        sections.push(
            bytes
                .get(pos..pos + len)
                .ok_or_else(|| bad("truncated"))?
                .to_vec(),
        );
        pos += len;
    }
    let meta: CheckpointMeta =
        serde_json::from_slice(&sections[0]).map_err(|e| bad(&format!("meta: {e}")))?;
    if meta.format != CKPT_FORMAT {
        return Err(bad(&format!(
            "format {} (this build reads {CKPT_FORMAT})",
            meta.format
        )));
    }
    let optim = sections.pop().unwrap();
    let model = sections.pop().unwrap();
    Ok((meta, model, optim))
}

/// Names of the top-level config keys whose values differ (ignoring `epochs`).
fn config_differences(a: &TrainConfig, b: &TrainConfig) -> Vec<String> {
    let (va, vb) = (
        serde_json::to_value(a).unwrap(),
        serde_json::to_value(b).unwrap(),
    );
    let (Some(ma), Some(mb)) = (va.as_object(), vb.as_object()) else {
        return vec![];
    };
    ma.iter()
        .filter(|(k, v)| k.as_str() != "epochs" && mb.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Creates the run folder (fresh run) or checks it against the config (resume). Returns the checkpoint to resume
/// from, if any.
fn prepare_run_dir(
    cfg: &TrainConfig,
    split: &Split,
    run: &RunDir,
) -> Result<Option<(CheckpointMeta, Vec<u8>, Vec<u8>)>> {
    let dir = &run.path;
    let config_path = dir.join(CONFIG_FILE);
    if run.resume {
        if !config_path.is_file() {
            return Err(Error::new(format!(
                "{}: no run to resume (missing {CONFIG_FILE})",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| Error::new(format!("{}: {e}", config_path.display())))?;
        let stored: TrainConfig = serde_json::from_str(&text).map_err(|e| {
            Error::new(format!(
                "{}: unreadable run config ({e})",
                config_path.display()
            ))
        })?;
        let diff = config_differences(&stored, cfg);
        if !diff.is_empty() {
            return Err(Error::new(format!(
                "{}: --resume with a different config (differs in: {}); use the run's own settings or a new --out",
                dir.display(),
                diff.join(", ")
            )));
        }
        let split_path = dir.join(SPLIT_FILE);
        let stored_split = data::read_split(&split_path)?;
        if &stored_split != split {
            return Err(Error::new(format!(
                "{}: --resume with a different split",
                split_path.display()
            )));
        }
        // Raising `epochs` is allowed: record the new target.
        write_atomic(
            &config_path,
            serde_json::to_string_pretty(cfg).unwrap().as_bytes(),
        )?;
        let ckpt = dir.join(LAST_CKPT);
        if !ckpt.is_file() {
            return Ok(None);
        }
        let (meta, model, optim) = read_checkpoint(&ckpt)?;
        if !config_differences(&meta.config, cfg).is_empty() || &meta.split != split {
            return Err(Error::new(format!(
                "{}: checkpoint does not belong to this run's config",
                ckpt.display()
            )));
        }
        if meta.state.records.len() > cfg.epochs {
            return Err(Error::new(format!(
                "{}: already trained {} epochs, more than --epochs {}",
                ckpt.display(),
                meta.state.records.len(),
                cfg.epochs
            )));
        }
        // Metrics files follow the checkpoint: rows written after it (killed mid-write) are dropped.
        write_metrics(dir, &meta.state.records)?;
        return Ok(Some((meta, model, optim)));
    }
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(Error::new(format!(
            "{}: run folder exists and is not empty (use --resume to continue it, or another --out)",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
    write_atomic(
        &dir.join(SPLIT_FILE),
        serde_json::to_string_pretty(split).unwrap().as_bytes(),
    )?;
    // The config goes last: its presence marks a complete run folder that `--resume` accepts.
    write_atomic(
        &config_path,
        serde_json::to_string_pretty(cfg).unwrap().as_bytes(),
    )?;
    Ok(None)
}

/// `metrics.jsonl` (one object per epoch; undefined values are null) and `metrics.csv` (same fields, `epoch` first,
/// then the others in name order; undefined values are empty), rewritten whole.
fn write_metrics(dir: &Path, records: &[EpochRecord]) -> Result<()> {
    let mut jsonl = String::new();
    let mut csv = String::new();
    for (i, r) in records.iter().enumerate() {
        jsonl += &serde_json::to_string(r).unwrap();
        jsonl.push('\n');
        let value = serde_json::to_value(r).unwrap();
        let map = value.as_object().unwrap();
        let mut keys: Vec<&String> = map.keys().filter(|k| k.as_str() != "epoch").collect();
        keys.sort();
        if i == 0 {
            csv += "epoch";
            for k in &keys {
                csv += ",";
                csv += k;
            }
            csv.push('\n');
        }
        csv += &r.epoch.to_string();
        for k in &keys {
            csv += ",";
            // Undefined values (JSON null) are empty cells, which CSV readers take as missing.
            if !map[*k].is_null() {
                csv += &map[*k].to_string();
            }
        }
        csv.push('\n');
    }
    write_atomic(&dir.join("metrics.jsonl"), jsonl.as_bytes())?;
    write_atomic(&dir.join("metrics.csv"), csv.as_bytes())
}

/// A trained model ready for prediction.
pub struct TrainedModel {
    pub model: UNet,
    pub config: TrainConfig,
}

/// Loads `best.ckpt` (or `last.ckpt` when `best` is false) from a run folder.
pub fn load_model(run_dir: &Path, best: bool) -> Result<TrainedModel> {
    let path = run_dir.join(if best { BEST_CKPT } else { LAST_CKPT });
    if !path.is_file() {
        return Err(Error::new(format!(
            "{}: no checkpoint (is this a finished `seglab train` run?)",
            path.display()
        )));
    }
    let (meta, model_bytes, _) = read_checkpoint(&path)?;
    let device = Device::flex();
    let rec = ModuleRecord::from_bytes(Bytes::from_bytes_vec(model_bytes))
        .map_err(|e| Error::new(format!("{}: model record: {e:?}", path.display())))?;
    let model = meta
        .config
        .model
        .init(0, &device)
        .try_load_record(rec)
        .map_err(|e| Error::new(format!("{}: model record: {e:?}", path.display())))?;
    Ok(TrainedModel {
        model,
        config: meta.config,
    })
}

impl TrainedModel {
    /// Probability maps (`size x size`) for preprocessed images (`channels x size x size` each); `mirror` averages
    /// over mirror images ([`UNet::probabilities`]).
    pub fn predict(&self, images: &[Vec<f32>], mirror: bool) -> Vec<Vec<f32>> {
        let device = Device::flex();
        let eval = self.model.valid();
        let s = self.config.load.size;
        let c = self.config.model.in_channels;
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.config.val_batch_size.max(1)) {
            let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
            let x = Tensor::<4>::from_data(TensorData::new(flat, [chunk.len(), c, s, s]), &device);
            let p = eval.probabilities(x, mirror).into_data();
            let p = p.as_slice::<f32>().expect("f32 probabilities");
            out.extend(p.chunks(s * s).map(|v| v.to_vec()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load, split_by_case};

    fn tiny_cfg() -> TrainConfig {
        TrainConfig {
            load: LoadOptions {
                size: 32,
                phantom_count: 24,
                ..Default::default()
            },
            model: UNetConfig {
                depth: 2,
                base_width: 4,
                ..Default::default()
            },
            // The plain trainer: one full-size view per image in every epoch (the tests that need the half-side
            // epochs and batch views turn them on).
            augment: AugmentConfig {
                repeats: 1,
                ..Default::default()
            },
            low_res: LowResPhase::off(),
            epochs: 3,
            batch_size: 4,
            lr: 1e-2,
            warmup_epochs: 0.0,
            ..Default::default()
        }
    }

    fn tiny_data(cfg: &TrainConfig) -> (Dataset, Split) {
        let ds = load(data::PHANTOMS, &cfg.load).unwrap();
        let split = split_by_case(&ds, 0.25, cfg.seed).unwrap();
        (ds, split)
    }

    /// Records with the wall-clock field cleared: everything else must be bit-identical between equal runs.
    fn timeless(records: &[EpochRecord]) -> Vec<EpochRecord> {
        records
            .iter()
            .map(|r| EpochRecord {
                seconds: 0.0,
                ..r.clone()
            })
            .collect()
    }

    fn tmp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("seglab-train-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Trains `cfg` for 15 epochs of 5 steps and checks that it completes with a falling training loss.
    fn train_15_epochs(mut cfg: TrainConfig) -> RunOutcome {
        cfg.epochs = 15;
        cfg.steps_per_epoch = Some(5);
        let (ds, split) = tiny_data(&cfg);
        let out = train(&cfg, &ds, &split, None, &|_| {}).unwrap();
        assert_eq!(out.status, RunStatus::Completed);
        // Per-epoch losses are noisy (5 small batches): compare the means of the first and last three epochs.
        let mean3 = |r: &[EpochRecord]| r.iter().map(|e| e.train_loss).sum::<f64>() / 3.0;
        let (first, last) = (mean3(&out.epochs[..3]), mean3(&out.epochs[12..]));
        assert!(last < 0.9 * first, "train loss {first} -> {last}");
        out
    }

    #[test]
    fn loss_falls_on_synthetic_data() {
        let out = train_15_epochs(tiny_cfg());
        let (d0, d1) = (out.epochs[0].val_dice, out.epochs[14].val_dice);
        assert!(d1 > 0.25 && d1 > 2.0 * d0, "val dice {d0} -> {d1}");
        assert!(out
            .epochs
            .iter()
            .all(|r| r.zero_grad_fraction < 0.5 && r.grad_norm > 0.0));
        assert_eq!(out.val_cases.len(), out.val_case_dice.len());
        for r in &out.epochs {
            // 0.5 is on the sweep grid, so the best threshold's Dice is at least the Dice at 0.5.
            assert!(r.val_best_threshold_dice >= r.val_dice, "{r:?}");
            let (iou, p, rec) = (
                r.val_best_threshold_iou.unwrap(),
                r.val_best_threshold_precision.unwrap(),
                r.val_best_threshold_recall.unwrap(),
            );
            // IoU, precision and recall come from the same counts as the best Dice: IoU = D / (2 - D) and
            // D = 2PR / (P + R) hold exactly for one set of counts, not across thresholds.
            let d = r.val_best_threshold_dice;
            assert!((iou - d / (2.0 - d)).abs() < 1e-12, "{r:?}");
            if p + rec > 0.0 {
                assert!((2.0 * p * rec / (p + rec) - d).abs() < 1e-12, "{r:?}");
            }
            // Phantom validation images have lesions; the lesion scores lie in [0, 1] and F1 is their harmonic mean.
            let lr = r.val_lesion_recall.expect("validation has lesions");
            assert!((0.0..=1.0).contains(&lr), "{r:?}");
            if let Some(lp) = r.val_lesion_precision {
                assert!((0.0..=1.0).contains(&lp), "{r:?}");
                let f1 = if lp + lr == 0.0 {
                    0.0
                } else {
                    2.0 * lp * lr / (lp + lr)
                };
                assert!((r.val_lesion_f1.unwrap() - f1).abs() < 1e-12, "{r:?}");
            } else {
                assert_eq!(r.val_lesion_f1, None);
            }
        }
        // Once the model has learned, it finds lesions.
        assert!(
            out.epochs[14].val_lesion_recall.unwrap() > 0.5,
            "{:?}",
            out.epochs[14]
        );
        assert_eq!(
            out.prob_hist_lesion.iter().sum::<u64>() + out.prob_hist_background.iter().sum::<u64>(),
            6 * 32 * 32
        );
    }

    #[test]
    fn deep_supervision_trains_every_head() {
        let mut cfg = tiny_cfg();
        cfg.model.depth = 3;
        cfg.model.deep_supervision = true;
        let out = train_15_epochs(cfg);
        // Every parameter, the auxiliary heads' included, receives gradient.
        assert!(
            out.epochs.iter().all(|r| r.zero_grad_fraction == 0.0),
            "{:?}",
            out.epochs
        );
    }

    #[test]
    fn hard_threshold_gives_all_zero_gradients() {
        // Without weight decay a zero gradient leaves AdamW's update at exactly 0, and GroupNorm has no running
        // statistics: the network must not change at all.
        let mut cfg = TrainConfig {
            epochs: 2,
            weight_decay: 0.0,
            ..tiny_cfg()
        };
        cfg.loss.threshold = crate::threshold::ThresholdMode::Hard { t: 0.5 };
        cfg.model.norm = crate::unet::NormKind::Group;
        let (ds, split) = tiny_data(&cfg);
        let out = train(&cfg, &ds, &split, None, &|_| {}).unwrap();
        for r in &out.epochs {
            assert_eq!(r.zero_grad_fraction, 1.0);
            assert_eq!(r.grad_norm, 0.0);
        }
        // With no gradient (and no running statistics) the network never changes.
        assert_eq!(out.epochs[0].val_soft_loss, out.epochs[1].val_soft_loss);
    }

    #[test]
    fn same_seed_same_metrics_and_init_seed_is_separate() {
        let cfg = TrainConfig {
            epochs: 2,
            ..tiny_cfg()
        };
        let (ds, split) = tiny_data(&cfg);
        let a = train(&cfg, &ds, &split, None, &|_| {}).unwrap();
        let b = train(&cfg, &ds, &split, None, &|_| {}).unwrap();
        assert_eq!(timeless(&a.epochs), timeless(&b.epochs));
        let c = train(
            &TrainConfig {
                init_seed: Some(99),
                ..cfg.clone()
            },
            &ds,
            &split,
            None,
            &|_| {},
        )
        .unwrap();
        assert_ne!(timeless(&a.epochs), timeless(&c.epochs));
    }

    #[test]
    fn resume_continues_identically() {
        // With the default's half-side epochs and batch views: killed in epoch 1 of 2 at half side, the resumed
        // run must cross into the full-size epoch exactly as the uninterrupted one.
        let mut cfg = tiny_cfg();
        cfg.low_res = LowResPhase::default();
        cfg.augment.repeats = 2;
        assert_eq!(cfg.low_res_epochs(), 2);
        let (ds, split) = tiny_data(&cfg);
        let full_dir = tmp_dir("full");
        let full = train(
            &cfg,
            &ds,
            &split,
            Some(&RunDir {
                path: full_dir.clone(),
                resume: false,
                stop_after: None,
            }),
            &|_| {},
        )
        .unwrap();

        let dir = tmp_dir("resumed");
        let killed = RunDir {
            path: dir.clone(),
            resume: false,
            stop_after: Some(1),
        };
        assert_eq!(
            train(&cfg, &ds, &split, Some(&killed), &|_| {})
                .unwrap()
                .epochs
                .len(),
            1
        );
        let resumed = train(
            &cfg,
            &ds,
            &split,
            Some(&RunDir {
                path: dir.clone(),
                resume: true,
                stop_after: None,
            }),
            &|_| {},
        )
        .unwrap();
        assert_eq!(timeless(&full.epochs), timeless(&resumed.epochs));
        assert_eq!(full.val_case_dice, resumed.val_case_dice);
        let lines = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 3);
        let keys = [
            "val_best_threshold_iou",
            "val_best_threshold_precision",
            "val_best_threshold_recall",
            "val_lesion_recall",
            "val_lesion_precision",
            "val_lesion_f1",
        ];
        for line in lines.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for k in keys {
                assert!(
                    v.get(k).is_some_and(|x| x.is_number() || x.is_null()),
                    "{k} in {line}"
                );
            }
            assert!(v["val_best_threshold_iou"].is_number(), "{line}");
        }
        let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
        let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        for k in keys {
            assert!(header.contains(&k), "{k} not in {header:?}");
        }
        assert!(!csv.contains("null") && !csv.contains("NaN"), "{csv}");
        assert!(dir.join(BEST_CKPT).is_file() && dir.join(SPLIT_FILE).is_file());

        // A different config is refused and the run folder is left as it was.
        let other = TrainConfig {
            lr: 0.5,
            ..cfg.clone()
        };
        let err = train(
            &other,
            &ds,
            &split,
            Some(&RunDir {
                path: dir.clone(),
                resume: true,
                stop_after: None,
            }),
            &|_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("differs in: lr"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap(),
            lines
        );
        // A fresh run never overwrites an existing one.
        let err = train(
            &cfg,
            &ds,
            &split,
            Some(&RunDir {
                path: dir.clone(),
                resume: false,
                stop_after: None,
            }),
            &|_| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");

        let m = load_model(&dir, false).unwrap();
        let probs = m.predict(&[ds.samples[0].image.clone()], false);
        assert_eq!(probs[0].len(), 32 * 32);
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&full_dir).unwrap();
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        let cfg = TrainConfig {
            lr: 1.0,
            warmup_epochs: 1.0,
            min_lr_ratio: 0.0,
            ..Default::default()
        };
        assert!((cfg.lr_at(0, 10, 100) - 0.1).abs() < 1e-12);
        assert!((cfg.lr_at(9, 10, 100) - 1.0).abs() < 1e-12);
        assert!(cfg.lr_at(50, 10, 100) < 1.0 && cfg.lr_at(99, 10, 100) < 0.01);
    }

    #[test]
    fn low_res_phase_covers_the_first_two_thirds() {
        let cfg = TrainConfig::default();
        assert_eq!(cfg.low_res_epochs(), 20);
        let (a, low) = cfg.epoch_augment(20);
        assert!(low && a.repeats == 8);
        let (a, low) = cfg.epoch_augment(21);
        assert!(!low && a.repeats == 2);
        assert_eq!(a, cfg.augment);
        let off = TrainConfig {
            low_res: LowResPhase::off(),
            ..Default::default()
        };
        assert_eq!(off.epoch_augment(1), (off.augment.clone(), false));
        // The half side must still suit the U-Net: 48 / 2 = 24 is not a multiple of 16 (depth 4).
        let mut odd = TrainConfig::default();
        odd.load.size = 48;
        let e = odd.validate().unwrap_err().to_string();
        assert!(
            e.contains("half the side") && e.contains("--low-res-fraction 0"),
            "{e}"
        );
        odd.low_res = LowResPhase::off();
        assert!(odd.validate().is_ok());
        for f in [1.0, -0.1, f64::NAN] {
            let bad = TrainConfig {
                low_res: LowResPhase {
                    fraction: f,
                    repeats: 4,
                },
                ..Default::default()
            };
            assert!(bad.validate().is_err(), "fraction {f}");
        }
    }

    #[test]
    fn configs_written_before_batch_views_train_as_they_did() {
        // A stored run config from before `repeats` and `low_res` existed: one full-size view, no half-side epochs.
        let mut v = serde_json::to_value(TrainConfig::default()).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("low_res");
        o["augment"].as_object_mut().unwrap().remove("repeats");
        let old: TrainConfig = serde_json::from_value(v).unwrap();
        assert_eq!(old.low_res, LowResPhase::off());
        assert_eq!(old.augment.repeats, 1);
        assert_eq!(old.low_res_epochs(), 0);
    }

    #[test]
    fn low_res_epochs_train_on_half_side_batches() {
        // Depth 2 at side 32: the half side 16 is a multiple of 4. Two of three epochs at 16x16 with 8 views, then
        // one at 32x32 with 2 views; the plain trainer's batches are all 32x32.
        let mut cfg = tiny_cfg();
        cfg.low_res = LowResPhase::default();
        cfg.augment.repeats = 2;
        assert_eq!(cfg.low_res_epochs(), 2);
        let (ds, split) = tiny_data(&cfg);
        let on = train(&cfg, &ds, &split, None, &|_| {}).unwrap();
        let off_cfg = tiny_cfg();
        let off = train(&off_cfg, &ds, &split, None, &|_| {}).unwrap();
        assert_eq!(on.status, RunStatus::Completed);
        assert_eq!(on.epochs.len(), 3);
        assert!(on
            .epochs
            .iter()
            .all(|e| e.val_dice.is_finite() && e.train_loss.is_finite()));
        let sides: Vec<Option<usize>> = on.epochs.iter().map(|e| e.train_side).collect();
        assert_eq!(sides, [Some(16), Some(16), Some(32)]);
        assert!(off.epochs.iter().all(|e| e.train_side == Some(32)));
        assert_ne!(on.epochs[0].train_loss, off.epochs[0].train_loss);
    }
}
