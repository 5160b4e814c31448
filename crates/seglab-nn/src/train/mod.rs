//! The training loop: AdamW with a warm-up + cosine/poly schedule, validation after every epoch with
//! `seglab-metrics`, atomic checkpoints with exact resume, and a `RunOutcome` for `seglab compare`.
//!
//! Randomness: the weights come from `init_seed` (default `seed`); batch order, augmentation and dropout come
//! from streams derived from `(seed, epoch)`. Several loss variants run with one seed therefore start from the same
//! weights and see the same batches, and a resumed run redraws exactly what the uninterrupted run drew.

mod checkpoint;
mod config;
mod grads;
mod inference;
mod run_dir;
mod schedule;
#[cfg(test)]
mod tests;
mod validate;

pub use config::{Convergence, LowResPhase, TrainConfig};
pub use inference::{load_model, TrainedModel};
pub use run_dir::{
    write_atomic, FolderLock, RunDir, BEST_CKPT, CONFIG_FILE, LAST_CKPT, LOCK_FILE, OUTCOME_FILE,
    SPLIT_FILE,
};
pub use schedule::Schedule;
pub use validate::{validate, ValResult, VAL_THRESHOLD};

use checkpoint::{
    model_bytes, optim_bytes, write_checkpoint, CheckpointMeta, RunState, CKPT_FORMAT,
};
use grads::grad_stats;
use run_dir::{prepare_run_dir, write_metrics};

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};

use crate::data::{self, Dataset, Split};
use crate::error::{Error, Result};
use crate::record::{EpochRecord, EpochTraining, RunOutcome, RunStatus};
use crate::rng::Rng;

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

/// Trains a U-Net on `data` with the given split. With `run`, writes the run folder (config, split, metrics,
/// checkpoints, outcome); without, trains in memory only (what `compare` does for quick runs). The model lives on
/// `device` (autodiff is enabled on it here); validation runs there too.
pub fn train(
    cfg: &TrainConfig,
    data: &Dataset,
    split: &Split,
    run: Option<&RunDir>,
    device: &Device,
    progress: &dyn Fn(Progress),
) -> Result<RunOutcome> {
    cfg.validate()?;
    data::check_split(data, split, "split")?;
    if data.size != cfg.load.size {
        return Err(Error::config(
            "load.size",
            format!(
                "is {} but the data were loaded at size {}",
                cfg.load.size, data.size
            ),
        ));
    }
    let mut model_cfg = cfg.model.clone();
    model_cfg.in_channels = data.channels;
    let cfg = &TrainConfig {
        model: model_cfg,
        ..cfg.clone()
    };

    let eval_device = device.clone();
    let device = device.clone().autodiff();
    let train_idx = data.indices_of(&split.train);
    let val_idx = data.indices_of(&split.val);
    let steps = cfg.steps_per_epoch(train_idx.len());
    // The schedules (learning rate, temperature, low-res phase) span the horizon; `epochs` is the budget.
    let total_steps = steps * cfg.horizon_epochs();

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

    // One writer per run folder: a second train (or compare) on it refuses while this call runs.
    let _lock = match run {
        Some(r) if !r.resume || r.path.is_dir() => {
            std::fs::create_dir_all(&r.path).map_err(|e| Error::file(&r.path, e))?;
            Some(FolderLock::acquire(&r.path)?)
        }
        _ => None,
    };
    if let Some(run) = run {
        let resumed = prepare_run_dir(cfg, split, run)?;
        if let Some((meta, model_bytes, optim_bytes)) = resumed {
            let rec =
                ModuleRecord::from_bytes(Bytes::from_bytes_vec(model_bytes)).map_err(|e| {
                    Error::run(&run.path.join(LAST_CKPT), format!("model record: {e:?}"))
                })?;
            model = model.try_load_record(rec).map_err(|e| {
                Error::run(&run.path.join(LAST_CKPT), format!("model record: {e:?}"))
            })?;
            optim = adamw
                .init()
                .from_bytes(Bytes::from_bytes_vec(optim_bytes))
                .map_err(|e| {
                    Error::run(
                        &run.path.join(LAST_CKPT),
                        format!("optimizer record: {e:?}"),
                    )
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
    let converged_at = |records: &[EpochRecord]| {
        cfg.convergence
            .and_then(|c| c.converged_at(&records.iter().map(|r| r.val_dice).collect::<Vec<_>>()))
    };
    // A resumed run that had already converged trains no further.
    let first_epoch = if converged_at(&state.records).is_some() {
        last_epoch + 1
    } else {
        first_epoch
    };
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
                grad_norm_sum += stats.norm();
                zero_frac_sum += stats.zero_fraction();
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
            &eval_device,
        )?;
        let record = EpochRecord::of_epoch(
            epoch,
            EpochTraining {
                loss: loss_sum / steps as f64,
                grad_norm: grad_norm_sum / steps as f64,
                zero_grad_fraction: zero_frac_sum / steps as f64,
                lr,
                side: train_side,
            },
            val.loss,
            val.soft_loss,
            &val.scores,
            t0.elapsed().as_secs_f64(),
        );
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
        if converged_at(&state.records).is_some() {
            break;
        }
    }

    let val = match last_val {
        Some(v) => v,
        // Resumed a finished run, or diverged in the first epoch: score the model as it stands.
        None => validate(&model, cfg, data, &val_idx, 1.0, &eval_device)?,
    };
    let outcome = RunOutcome {
        status,
        epochs: state.records.clone(),
        val_cases: val.scores.cases.clone(),
        val_case_dice: val.scores.case_dice.clone(),
        prob_hist_lesion: val.scores.hist_lesion.to_vec(),
        prob_hist_background: val.scores.hist_background.to_vec(),
        converged: cfg
            .convergence
            .map(|_| converged_at(&state.records).is_some()),
        converged_epoch: converged_at(&state.records),
        seconds: seconds_before + start.elapsed().as_secs_f64(),
    };
    if let Some(run) = run {
        let text = serde_json::to_string_pretty(&outcome).expect("outcome serialises");
        write_atomic(&run.path.join(OUTCOME_FILE), text.as_bytes())?;
    }
    Ok(outcome)
}

fn frac_at(step: usize, total: usize) -> f64 {
    step as f64 / total.max(1) as f64
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
