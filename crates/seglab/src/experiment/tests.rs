use super::*;

/// A synthetic epoch: Dice and losses follow `dice`, everything else plausible.
pub fn epoch(epoch: usize, dice: f64, zero_grad: f64) -> EpochRecord {
    EpochRecord {
        epoch,
        train_loss: 1.0 - dice,
        val_loss: 1.0 - dice + 0.02,
        val_soft_loss: 1.0 - dice + 0.03,
        val_dice: dice,
        val_iou: dice / (2.0 - dice),
        val_precision: (dice + 0.05).min(1.0),
        val_recall: (dice - 0.05).max(0.0),
        val_case_dice: dice,
        val_soft_dice: dice - 0.04,
        val_best_threshold: 0.45,
        val_best_threshold_dice: dice + 0.01,
        val_best_threshold_iou: Some((dice + 0.01) / (2.0 - (dice + 0.01))),
        val_best_threshold_precision: Some((dice + 0.03).min(1.0)),
        val_best_threshold_recall: Some((dice - 0.01).max(0.0)),
        val_lesion_recall: Some((dice + 0.1).min(1.0)),
        // A model that barely predicts anything has no predicted lesion: precision undefined.
        val_lesion_precision: (dice > 0.05).then_some((dice + 0.05).min(1.0)),
        val_lesion_f1: None,
        grad_norm: if zero_grad == 1.0 {
            0.0
        } else {
            0.5 / epoch as f64
        },
        zero_grad_fraction: zero_grad,
        mean_prob_lesion: 0.5 + dice / 2.0,
        mean_prob_background: 0.1,
        lr: 1e-3,
        train_side: Some(64),
        seconds: 2.0,
    }
}

/// A run whose Dice climbs from `start` to `end` over `n` epochs; per-case Dice `end + offsets[i]`.
pub fn outcome(start: f64, end: f64, n: usize, zero_grad: f64, offsets: &[f64]) -> RunOutcome {
    let epochs = (1..=n)
        .map(|k| {
            let t = (k - 1) as f64 / (n - 1).max(1) as f64;
            epoch(k, start + (end - start) * t, zero_grad)
        })
        .collect();
    RunOutcome {
        status: RunStatus::Completed,
        epochs,
        val_cases: (0..offsets.len()).map(|i| format!("case{i:02}")).collect(),
        val_case_dice: offsets.iter().map(|o| (end + o).clamp(0.0, 1.0)).collect(),
        prob_hist_lesion: (0..20).map(|i| if i > 10 { 50 + i } else { 5 }).collect(),
        prob_hist_background: (0..20)
            .map(|i| if i < 5 { 1000 / (i + 1) } else { 3 })
            .collect(),
        seconds: 2.0 * n as f64,
        converged: None,
        converged_epoch: None,
    }
}

/// soft learns (0.81), hard has zero gradients (0.03), ste is within noise of soft, power diverges in seed 1.
pub fn synthetic_experiment() -> Experiment {
    let offsets: Vec<f64> = (0..12)
        .map(|i| ((i * 7) % 5) as f64 * 0.02 - 0.04)
        .collect();
    let noise: Vec<f64> = (0..12)
        .map(|i| if i % 2 == 0 { 0.015 } else { -0.015 })
        .collect();
    let mut runs = Vec::new();
    let gallery = vec![GalleryCase {
        id: "case00".into(),
        width: 8,
        height: 8,
        image: (0..64).map(|i| (i * 4) as u8).collect(),
        ground_truth: (0..64).map(|i| u8::from(i % 8 > 3)).collect(),
    }];
    for seed in 0..3u64 {
        let s = seed as f64 * 0.01;
        let mut push = |variant: &str, outcome: RunOutcome| {
            runs.push(RunResult {
                variant: variant.into(),
                seed,
                outcome,
                gallery_predictions: vec![(0..64).map(|i| u8::from(i % 8 > 4)).collect()],
            })
        };
        push("soft", outcome(0.2, 0.81 + s, 6, 0.01, &offsets));
        push(
            "hard",
            outcome(
                0.03,
                0.03,
                6,
                1.0,
                &offsets.iter().map(|o| o - 0.78).collect::<Vec<_>>(),
            ),
        );
        let ste_offsets: Vec<f64> = offsets.iter().zip(&noise).map(|(o, n)| o + n).collect();
        push("ste", outcome(0.2, 0.81 + s, 6, 0.02, &ste_offsets));
        let mut p = outcome(0.2, 0.7, 6, 0.0, &offsets);
        if seed == 1 {
            p.status = RunStatus::Diverged { epoch: 4 };
            p.epochs.truncate(4);
            p.epochs[3].train_loss = f64::NAN;
        }
        push("power", p);
    }
    let variants = default_variants()
        .into_iter()
        .filter(|v| v.name != "soft-threshold")
        .collect();
    Experiment {
        title: "synthetic".into(),
        data: "synthetic outcomes".into(),
        preset: Some("quick".into()),
        epochs: 6,
        notes: vec![],
        baseline: "soft".into(),
        variants,
        seeds: vec![0, 1, 2],
        runs,
        gallery,
    }
}

#[test]
fn unknown_variant_lists_valid_names() {
    let err = select_variants("soft,hrad", &default_variants())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant 'hrad'"), "{err}");
    assert!(
        err.contains("soft, hard, ste, soft-threshold, power"),
        "{err}"
    );
    let chosen = select_variants("ste, soft", &default_variants()).unwrap();
    assert_eq!(
        chosen.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["ste", "soft"]
    );
    assert!(select_variants("soft,soft", &default_variants()).is_err());
    assert!(select_variants(" , ", &default_variants()).is_err());
}

#[test]
fn default_variants_use_known_threshold_modes_and_soft_baseline() {
    let v = default_variants();
    assert!(v.iter().all(|v| v.threshold.mode().unwrap().is_some()));
    let soft = v.iter().find(|v| v.name == DEFAULT_BASELINE).unwrap();
    assert!(!soft.thresholds_before_loss());
    assert!(v
        .iter()
        .filter(|v| v.name != "soft")
        .all(|v| v.thresholds_before_loss()));
    assert_eq!(v[1].describe(), "tversky(alpha=0.3, beta=0.7) on hard");
    let mut p = v[4].clone();
    p.threshold.k = Some(3.0);
    assert_eq!(p.describe(), "tversky(alpha=0.3, beta=0.7) on power(k=3)");
    assert_eq!(
        v[0].describe(),
        "tversky(alpha=0.3, beta=0.7) on probabilities"
    );
}

#[test]
fn epochs_to_ninety_percent_of_best() {
    let e: Vec<EpochRecord> = [0.1, 0.5, 0.75, 0.8, 0.7]
        .iter()
        .enumerate()
        .map(|(i, d)| epoch(i + 1, *d, 0.0))
        .collect();
    // best 0.8, 90% = 0.72: first reached at epoch 3.
    assert_eq!(epochs_to_fraction_of_best(&e, 0.9), 3.0);
    let zero: Vec<EpochRecord> = (1..4).map(|i| epoch(i, 0.0, 1.0)).collect();
    assert!(epochs_to_fraction_of_best(&zero, 0.9).is_nan());
}

#[test]
fn summary_has_the_issue_keys_and_numbers_from_the_runs() {
    let exp = synthetic_experiment();
    let a = analyze(&exp).unwrap();
    let s = summary_json(&exp, &a, &["line".to_string()]);
    assert_eq!(s["baseline"], "soft");
    assert_eq!(s["verdict"][0], "line");
    for name in ["soft", "hard", "ste", "power"] {
        let v = &s["variants"][name];
        for key in [
            "dice",
            "iou",
            "precision",
            "recall",
            "best_threshold_dice",
            "best_threshold_iou",
            "best_threshold_precision",
            "best_threshold_recall",
            "lesion_recall",
            "lesion_precision",
            "soft_dice",
            "zero_grad_fraction",
            "seconds",
        ] {
            assert!(v[key].is_object(), "{name}.{key} missing: {v}");
            for sub in ["mean", "sd", "per_seed"] {
                assert!(v[key].get(sub).is_some(), "{name}.{key}.{sub} missing");
            }
        }
        assert!(v["status"].is_string());
    }
    // soft final Dice per seed: 0.81, 0.82, 0.83.
    let per_seed: Vec<f64> = s["variants"]["soft"]["dice"]["per_seed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(per_seed.len(), 3);
    assert!((per_seed[2] - 0.83).abs() < 1e-12);
    assert!((s["variants"]["soft"]["dice"]["mean"].as_f64().unwrap() - 0.82).abs() < 1e-12);
    assert!((s["variants"]["soft"]["dice"]["sd"].as_f64().unwrap() - 0.01).abs() < 1e-12);
    let mean = |v: &str, k: &str| s["variants"][v][k]["mean"].as_f64();
    for v in ["soft", "hard", "ste", "power"] {
        // The fixture's best threshold beats 0.5 by 0.01 in every run.
        let gain = mean(v, "best_threshold_dice").unwrap() - mean(v, "dice").unwrap();
        assert!((gain - 0.01).abs() < 1e-12, "{v}: {gain}");
        let r = mean(v, "lesion_recall").unwrap();
        assert!((0.0..=1.0).contains(&r), "{v}: {r}");
    }
    // soft's last epochs: Dice 0.81..0.83, so best-threshold recall 0.80..0.82 and lesion recall 0.91..0.93.
    assert!((mean("soft", "best_threshold_recall").unwrap() - 0.81).abs() < 1e-12);
    assert!((mean("soft", "lesion_recall").unwrap() - 0.92).abs() < 1e-12);
    assert!((mean("soft", "lesion_precision").unwrap() - 0.87).abs() < 1e-12);
    // hard predicts (almost) nothing: lesion precision is undefined in every seed, null rather than NaN.
    assert!(s["variants"]["hard"]["lesion_precision"]["mean"].is_null());
    assert!(s["variants"]["hard"]["lesion_precision"]["per_seed"][0].is_null());
    assert_eq!(s["variants"]["hard"]["all_gradients_zero"], true);
    assert_eq!(s["variants"]["soft"]["all_gradients_zero"], false);
    assert_eq!(s["variants"]["power"]["status"], "partly diverged");
    assert_eq!(s["variants"]["power"]["diverged"][0]["epoch"], 4);
    assert_eq!(
        s["variants"]["power"]["dice"]["per_seed"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let comps = s["comparisons"].as_array().unwrap();
    assert_eq!(comps.len(), 3);
    let hard = comps.iter().find(|c| c["variant"] == "hard").unwrap();
    assert_eq!(hard["n_pairs"], 36);
    assert!(hard["ci_high"].as_f64().unwrap() < 0.0);
    let power = comps.iter().find(|c| c["variant"] == "power").unwrap();
    // Seed 1 diverged: only seeds 0 and 2 are paired.
    assert_eq!(power["n_pairs"], 24);
    for key in ["mean_difference", "ci_low", "ci_high", "wilcoxon_p"] {
        assert!(hard[key].is_number(), "{key}");
    }
}

#[test]
fn comparison_refuses_different_validation_cases() {
    let mut exp = synthetic_experiment();
    let r = exp
        .runs
        .iter_mut()
        .find(|r| r.variant == "ste" && r.seed == 0)
        .unwrap();
    r.outcome.val_cases[0] = "other".into();
    let err = analyze(&exp).unwrap_err().to_string();
    assert!(err.contains("same split"), "{err}");
}

#[test]
fn curves_csv_has_a_row_per_epoch_with_status() {
    let exp = synthetic_experiment();
    let mut buf = Vec::new();
    write_curves_csv(&exp, &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("variant,seed,epoch,train_loss,val_loss"));
    // 3 completed variants x 3 seeds x 6 epochs + power: 6 + 4 + 6.
    assert_eq!(lines.len() - 1, 3 * 3 * 6 + 16);
    assert!(lines
        .iter()
        .any(|l| l.starts_with("power,1,4,NaN") && l.ends_with(",diverged")));
    assert_eq!(
        lines[1].split(',').count(),
        4 + seglab_nn::record::EpochRecord::COLUMNS.len()
    );
    let header: Vec<&str> = lines[0].split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let cell = |line: &str, name: &str| line.split(',').nth(col(name)).unwrap().to_string();
    let num = |line: &str, name: &str| cell(line, name).parse::<f64>().unwrap();
    // soft seed 0 ends at Dice 0.81.
    let soft_last = lines.iter().find(|l| l.starts_with("soft,0,6,")).unwrap();
    assert!((num(soft_last, "val_lesion_recall") - 0.91).abs() < 1e-12);
    assert!((num(soft_last, "val_best_threshold_recall") - 0.80).abs() < 1e-12);
    // Undefined values are empty cells, not "NaN" or "null".
    let hard_first = lines.iter().find(|l| l.starts_with("hard,0,1,")).unwrap();
    assert_eq!(cell(hard_first, "val_lesion_precision"), "");
    assert_eq!(cell(hard_first, "val_lesion_f1"), "");
}
