//! Tests of the training loop: learning, determinism, resume, schedule and the half-side epochs.

use super::*;
use crate::data::{load, split_by_case, AugmentConfig, LoadOptions};
use crate::unet::UNetConfig;
use std::path::PathBuf;

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
    let out = train(&cfg, &ds, &split, None, &Device::flex(), &|_| {}).unwrap();
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
    let out = train(&cfg, &ds, &split, None, &Device::flex(), &|_| {}).unwrap();
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
    let a = train(&cfg, &ds, &split, None, &Device::flex(), &|_| {}).unwrap();
    let b = train(&cfg, &ds, &split, None, &Device::flex(), &|_| {}).unwrap();
    assert_eq!(timeless(&a.epochs), timeless(&b.epochs));
    let c = train(
        &TrainConfig {
            init_seed: Some(99),
            ..cfg.clone()
        },
        &ds,
        &split,
        None,
        &Device::flex(),
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
        &Device::flex(),
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
        train(&cfg, &ds, &split, Some(&killed), &Device::flex(), &|_| {})
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
        &Device::flex(),
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
        &Device::flex(),
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
        &Device::flex(),
        &|_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");

    let m = load_model(&dir, false, &Device::flex()).unwrap();
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
        e.starts_with("low_res.fraction") && e.contains("half the side"),
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
    let on = train(&cfg, &ds, &split, None, &Device::flex(), &|_| {}).unwrap();
    let off_cfg = tiny_cfg();
    let off = train(&off_cfg, &ds, &split, None, &Device::flex(), &|_| {}).unwrap();
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

#[test]
fn convergence_rule_finds_the_plateau_of_the_smoothed_curve() {
    let c = Convergence {
        patience: 3,
        min_delta: 0.01,
        smoothing: 0.0,
    };
    // Still rising by more than min_delta within every window: never converged.
    let rising: Vec<f64> = (0..20).map(|i| 0.1 + 0.02 * i as f64).collect();
    assert_eq!(c.converged_at(&rising), None);
    // Rises to 0.6 at epoch 5, then flat: the 3 epochs after it bring nothing, so epoch 8.
    let plateau = [0.1, 0.3, 0.45, 0.55, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6];
    assert_eq!(c.converged_at(&plateau), Some(8));
    // A late second rise is progress as long as it comes within the patience window.
    let late = [0.1, 0.3, 0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.6];
    assert_eq!(c.converged_at(&late), Some(9));
    // Smoothing damps one noisy spike: without it the spike resets the plateau.
    let smooth = Convergence {
        smoothing: 0.8,
        ..c
    };
    assert_eq!(smooth.smoothed(&[0.5, 0.5])[1], 0.5);
    assert!(smooth.smoothed(&[0.0, 1.0])[1] < 0.25);
    assert!(Convergence { patience: 0, ..c }.validate().is_err());
    assert!(Convergence {
        smoothing: 1.0,
        ..c
    }
    .validate()
    .is_err());
}

#[test]
fn a_converged_run_stops_early_records_it_and_resumes_no_further() {
    let cfg = TrainConfig {
        epochs: 6,
        // Any gain below 1 is no progress: the rule holds as soon as there are patience + 1 epochs.
        convergence: Some(Convergence {
            patience: 1,
            min_delta: 1.0,
            smoothing: 0.0,
        }),
        ..tiny_cfg()
    };
    let (ds, split) = tiny_data(&cfg);
    let dir = tmp_dir("converged");
    let run = |resume| RunDir {
        path: dir.clone(),
        resume,
        stop_after: None,
    };
    let out = train(
        &cfg,
        &ds,
        &split,
        Some(&run(false)),
        &Device::flex(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(out.epochs.len(), 2);
    assert_eq!((out.converged, out.converged_epoch), (Some(true), Some(2)));
    let again = train(
        &cfg,
        &ds,
        &split,
        Some(&run(true)),
        &Device::flex(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(
        again.epochs.len(),
        2,
        "a converged run trains no further on resume"
    );
    // Without a rule nothing is recorded and the budget is trained.
    let plain = train(
        &TrainConfig {
            epochs: 2,
            ..tiny_cfg()
        },
        &ds,
        &split,
        None,
        &Device::flex(),
        &|_| {},
    )
    .unwrap();
    assert_eq!((plain.converged, plain.converged_epoch), (None, None));
    let text = serde_json::to_string(&plain).unwrap();
    assert!(
        !text.contains("converged"),
        "no convergence keys without a rule"
    );
}

#[test]
fn a_run_folder_has_one_writer_and_a_dead_writer_does_not_lock_it_forever() {
    let cfg = TrainConfig {
        epochs: 1,
        ..tiny_cfg()
    };
    let (ds, split) = tiny_data(&cfg);
    let dir = tmp_dir("locked");
    std::fs::create_dir_all(&dir).unwrap();
    let run = RunDir {
        path: dir.clone(),
        resume: false,
        stop_after: None,
    };
    // A live holder (this very process stands in for another seglab) refuses the second writer, which leaves the
    // folder as it was.
    std::fs::write(dir.join(LOCK_FILE), std::process::id().to_string()).unwrap();
    let e = train(&cfg, &ds, &split, Some(&run), &Device::flex(), &|_| {}).unwrap_err();
    assert!(e.to_string().contains("in use by process"), "{e}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    // A holder that is gone (no such process) is stale: taken over, and the lock is removed when the run ends.
    std::fs::write(dir.join(LOCK_FILE), u32::MAX.to_string()).unwrap();
    train(&cfg, &ds, &split, Some(&run), &Device::flex(), &|_| {}).unwrap();
    assert!(dir.join(CONFIG_FILE).is_file());
    assert!(!dir.join(LOCK_FILE).exists());
}

#[test]
fn with_a_schedule_horizon_the_budget_only_caps_a_converged_run() {
    // The learning rate stays at its end value past the horizon instead of rising again on the cosine.
    let cfg = TrainConfig {
        lr: 1.0,
        warmup_epochs: 0.0,
        min_lr_ratio: 0.1,
        ..Default::default()
    };
    assert!((cfg.lr_at(100, 10, 100) - 0.1).abs() < 1e-12);
    assert!((cfg.lr_at(150, 10, 100) - 0.1).abs() < 1e-12);
    // Annealed temperature and a rule that holds at epoch 3: a budget of 4 or 12 epochs trains the same 3 epochs.
    let base = TrainConfig {
        schedule_epochs: Some(4),
        convergence: Some(Convergence {
            patience: 2,
            min_delta: 1.0,
            smoothing: 0.0,
        }),
        loss: crate::objective::LossConfig {
            threshold: crate::ThresholdMode::Soft {
                t: 0.5,
                temperature: 0.2,
            },
            temperature_schedule: Some(
                crate::threshold::TemperatureSchedule::new(
                    0.5,
                    0.5,
                    0.05,
                    crate::threshold::Annealing::Linear,
                )
                .unwrap(),
            ),
            ..Default::default()
        },
        ..tiny_cfg()
    };
    let (ds, split) = tiny_data(&base);
    let run = |epochs| {
        let cfg = TrainConfig {
            epochs,
            ..base.clone()
        };
        train(&cfg, &ds, &split, None, &Device::flex(), &|_| {}).unwrap()
    };
    let (short, long) = (run(4), run(12));
    assert_eq!(short.converged_epoch, Some(3));
    assert_eq!(timeless(&short.epochs), timeless(&long.epochs));
    assert_eq!(short.val_case_dice, long.val_case_dice);
    // Without the horizon the schedule stretches with the budget and the same epochs differ.
    let stretched = train(
        &TrainConfig {
            epochs: 12,
            schedule_epochs: None,
            ..base.clone()
        },
        &ds,
        &split,
        None,
        &Device::flex(),
        &|_| {},
    )
    .unwrap();
    assert_ne!(timeless(&short.epochs), timeless(&stretched.epochs));
}
