use super::*;
use seglab_nn::record::{EpochRecord, RunStatus};

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

/// A run whose Dice climbs from `start` to `end` over `n` epochs and converges there; per-case validation Dice
/// `end + offsets[i]`.
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
        converged: Some(true),
        converged_epoch: Some(n),
    }
}

/// Test scores of a model selected at `selected_epoch` whose per-case test Dice at 0.5 is `dice`; the other
/// metrics follow from it (IoU exact for a single case, precision +0.05, recall -0.05), each 0.01 higher at the
/// validation-chosen threshold 0.45.
pub fn test_scores(selected_epoch: usize, val_dice: f64, dice: &[f64]) -> TestScores {
    let mut metrics = std::collections::BTreeMap::new();
    for m in &TEST_METRICS {
        let up = if m.at_val_threshold { 0.01 } else { 0.0 };
        let values = dice
            .iter()
            .map(|d| {
                let d = (d + up).clamp(0.0, 1.0);
                match m.key.trim_end_matches("_at_val_threshold") {
                    "dice" => d,
                    "iou" => d / (2.0 - d),
                    "precision" => (d + 0.05).min(1.0),
                    _ => (d - 0.05).max(0.0),
                }
            })
            .collect();
        metrics.insert(m.key.to_string(), values);
    }
    TestScores {
        format: TEST_FORMAT,
        selected_epoch,
        val_dice,
        threshold: 0.45,
        cases: (0..dice.len()).map(|i| format!("test{i:02}")).collect(),
        metrics,
    }
}

/// A completed run with test scores from its last epoch: per-case test Dice `end + offsets[i]`.
pub fn run(variant: &str, seed: u64, outcome: RunOutcome, offsets: &[f64]) -> RunResult {
    let last = outcome.epochs.last().map(|e| (e.epoch, e.val_dice));
    let end = last.map_or(0.0, |l| l.1);
    let test = match outcome.status {
        RunStatus::Completed => last.map(|(epoch, val_dice)| {
            test_scores(
                epoch,
                val_dice,
                &offsets
                    .iter()
                    .map(|o| (end + o).clamp(0.0, 1.0))
                    .collect::<Vec<_>>(),
            )
        }),
        RunStatus::Diverged { .. } => None,
    };
    RunResult {
        variant: variant.into(),
        seed,
        outcome,
        gallery_predictions: vec![(0..64).map(|i| u8::from(i % 8 > 4)).collect()],
        test,
    }
}

/// soft learns (0.81), hard has zero gradients (0.03), ste is within noise of soft, power diverges in seed 1. 12
/// validation and 12 test cases; every completed run converged.
pub fn synthetic_experiment() -> Experiment {
    let offsets: Vec<f64> = (0..12)
        .map(|i| ((i * 7) % 5) as f64 * 0.02 - 0.04)
        .collect();
    let noise: Vec<f64> = (0..12)
        .map(|i| if i % 2 == 0 { 0.015 } else { -0.015 })
        .collect();
    let mut runs = Vec::new();
    let gallery = vec![GalleryCase {
        id: "test00".into(),
        width: 8,
        height: 8,
        image: (0..64).map(|i| (i * 4) as u8).collect(),
        ground_truth: (0..64).map(|i| u8::from(i % 8 > 3)).collect(),
    }];
    for seed in 0..3u64 {
        let s = seed as f64 * 0.01;
        runs.push(run(
            "soft",
            seed,
            outcome(0.2, 0.81 + s, 6, 0.01, &offsets),
            &offsets,
        ));
        let hard_offsets: Vec<f64> = offsets.iter().map(|o| o - 0.78).collect();
        let hard = outcome(0.03, 0.03, 6, 1.0, &hard_offsets);
        runs.push(run(
            "hard",
            seed,
            hard,
            &offsets.iter().map(|o| o * 0.1).collect::<Vec<_>>(),
        ));
        let ste_offsets: Vec<f64> = offsets.iter().zip(&noise).map(|(o, n)| o + n).collect();
        runs.push(run(
            "ste",
            seed,
            outcome(0.2, 0.81 + s, 6, 0.02, &ste_offsets),
            &ste_offsets,
        ));
        let mut p = outcome(0.2, 0.7, 6, 0.0, &offsets);
        if seed == 1 {
            p.status = RunStatus::Diverged { epoch: 4 };
            p.epochs.truncate(4);
            p.epochs[3].train_loss = f64::NAN;
            p.converged = None;
            p.converged_epoch = None;
        }
        runs.push(run("power", seed, p, &offsets));
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
        schedule_epochs: Some(3),
        convergence: Some(Convergence::default()),
        split: SplitCounts {
            train: 36,
            val: 12,
            test: 12,
        },
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
fn summary_carries_the_protocol_keys_and_numbers_from_the_runs() {
    let exp = synthetic_experiment();
    let a = analyze(&exp).unwrap();
    let s = summary_json(&exp, &a, &["line".to_string()]);
    assert_eq!(s["baseline"], "soft");
    assert_eq!(s["verdict"][0], "line");
    assert_eq!(s["split"], json!({"train": 36, "val": 12, "test": 12}));
    assert_eq!(s["primary_metric"], "dice");
    assert_eq!(s["convergence"]["patience"], 5);
    assert_eq!(s["test_cases"].as_array().unwrap().len(), 12);
    for name in ["soft", "hard", "ste", "power"] {
        let v = &s["variants"][name];
        for m in &TEST_METRICS {
            for sub in ["mean", "sd", "per_seed"] {
                assert!(
                    v["test"][m.key].get(sub).is_some(),
                    "{name}.test.{}.{sub} missing: {v}",
                    m.key
                );
            }
        }
        for key in [
            "selected_epoch",
            "threshold",
            "dice",
            "soft_dice",
            "epochs_to_90pct_best_dice",
        ] {
            assert!(
                v["validation"][key]["mean"].is_number(),
                "{name}.validation.{key}"
            );
        }
        for seed in v["seeds"].as_array().unwrap() {
            for key in [
                "seed",
                "converged",
                "selected_epoch",
                "threshold",
                "epochs_trained",
            ] {
                assert!(!seed[key].is_null(), "{name}.seeds[].{key}");
            }
        }
        assert!(v["status"].is_string());
    }
    assert_eq!(s["variants"]["soft"]["converged"], true);
    assert_eq!(s["variants"]["soft"]["seeds"][2]["selected_epoch"], 6);
    assert_eq!(s["variants"]["soft"]["seeds"][2]["threshold"], 0.45);
    // soft's test Dice per seed: the mean of 0.81 + s + offsets (offsets average -0.0033...).
    let off_mean = (0..12)
        .map(|i| ((i * 7) % 5) as f64 * 0.02 - 0.04)
        .sum::<f64>()
        / 12.0;
    let per_seed: Vec<f64> = s["variants"]["soft"]["test"]["dice"]["per_seed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(per_seed.len(), 3);
    assert!(
        (per_seed[2] - (0.83 + off_mean)).abs() < 1e-12,
        "{per_seed:?}"
    );
    let sd = s["variants"]["soft"]["test"]["dice"]["sd"]
        .as_f64()
        .unwrap();
    assert!((sd - 0.01).abs() < 1e-12);
    let mean = |v: &str, k: &str| s["variants"][v]["test"][k]["mean"].as_f64().unwrap();
    let gain = mean("soft", "dice_at_val_threshold") - mean("soft", "dice");
    assert!((gain - 0.01).abs() < 1e-12, "{gain}");
    assert_eq!(s["variants"]["hard"]["all_gradients_zero"], true);
    assert_eq!(s["variants"]["power"]["status"], "partly diverged");
    assert_eq!(s["variants"]["power"]["diverged"][0]["epoch"], 4);
    assert_eq!(
        s["variants"]["power"]["test"]["dice"]["per_seed"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Every metric for every non-baseline variant, Dice first; the case is the unit.
    let comps = s["comparisons"].as_array().unwrap();
    assert_eq!(comps.len(), 3 * TEST_METRICS.len());
    assert!(comps[..3].iter().all(|c| c["metric"] == "dice"));
    let hard = &comps[0];
    assert_eq!(hard["variant"], "hard");
    assert_eq!(
        (
            hard["unit"].as_str(),
            hard["n_cases"].as_u64(),
            hard["n_seeds"].as_u64()
        ),
        (Some("case"), Some(12), Some(3))
    );
    assert!(hard["ci95"][1].as_f64().unwrap() < 0.0);
    assert_eq!(hard["seed_differences"].as_array().unwrap().len(), 3);
    for key in ["difference", "p_value", "p_holm"] {
        assert!(hard[key].is_number(), "{key}");
    }
    assert!(hard["p_holm"].as_f64() >= hard["p_value"].as_f64());
    let power = comps.iter().find(|c| c["variant"] == "power").unwrap();
    // Seed 1 diverged: seeds 0 and 2 are paired.
    assert_eq!(power["n_seeds"], 2);
    assert_eq!(power["seeds"], json!([0, 2]));
    // Answers: hard is worse (converged, clearly lower), ste within noise, power inconclusive (diverged seed).
    assert_eq!(
        s["answer"],
        json!({"hard": "worse", "ste": "no evidence", "power": "inconclusive"})
    );
    let why = s["answer_reasons"]["power"].as_str().unwrap();
    assert!(why.contains("diverged in seed 1 at epoch 4"), "{why}");
}

#[test]
fn a_variant_that_leads_only_early_is_not_better() {
    // ste reaches the plateau in 2 epochs, soft in 6; both converge to the same level on the test cases.
    let mut exp = synthetic_experiment();
    let offsets: Vec<f64> = (0..12)
        .map(|i| ((i * 7) % 5) as f64 * 0.02 - 0.04)
        .collect();
    let noise: Vec<f64> = (0..12).map(|i| [0.01, -0.012, 0.004][i % 3]).collect();
    exp.runs.retain(|r| r.variant != "ste");
    for seed in 0..3u64 {
        let mut o = outcome(0.2, 0.81, 6, 0.02, &offsets);
        for e in o.epochs.iter_mut().skip(1) {
            e.val_dice = 0.81;
        }
        let ste: Vec<f64> = offsets
            .iter()
            .zip(&noise)
            .map(|(o, n)| o + n + seed as f64 * 0.01)
            .collect();
        exp.runs.push(run("ste", seed, o, &ste));
    }
    let a = analyze(&exp).unwrap();
    assert!(
        a.variant("ste").unwrap().epochs_to_90.mean < a.variant("soft").unwrap().epochs_to_90.mean
    );
    assert_eq!(
        a.answer("ste").unwrap().answer,
        seglab_metrics::comparison::Answer::NoEvidence
    );
    // The same early lead with a baseline that ran out of budget before it converged: inconclusive, not better.
    for r in exp
        .runs
        .iter_mut()
        .filter(|r| r.variant == "soft" && r.seed == 1)
    {
        r.outcome.converged = Some(false);
        r.outcome.converged_epoch = None;
        for t in r.test.iter_mut() {
            for v in t.metrics.values_mut() {
                v.iter_mut().for_each(|x| *x -= 0.2);
            }
        }
    }
    let a = analyze(&exp).unwrap();
    let ste = a.answer("ste").unwrap();
    assert_eq!(ste.answer, seglab_metrics::comparison::Answer::Inconclusive);
    assert!(
        ste.reason
            .contains("the baseline soft seed 1 did not converge within its budget of 6 epochs"),
        "{}",
        ste.reason
    );
}

#[test]
fn duplicated_seeds_with_identical_results_do_not_narrow_the_interval() {
    let exp = synthetic_experiment();
    let mut doubled = exp.clone();
    for r in exp.runs.iter() {
        let mut copy = r.clone();
        copy.seed += 10;
        doubled.runs.push(copy);
    }
    doubled.seeds.extend([10, 11, 12]);
    let (a, b) = (analyze(&exp).unwrap(), analyze(&doubled).unwrap());
    for v in ["hard", "ste"] {
        let x = a.comparison(v, "dice").unwrap().result.clone().unwrap();
        let y = b.comparison(v, "dice").unwrap().result.clone().unwrap();
        assert_eq!(y.n_seeds, 2 * x.n_seeds);
        assert_eq!(x.n_cases, y.n_cases);
        assert!((x.difference - y.difference).abs() < 1e-12);
        let (wx, wy) = (x.ci95[1] - x.ci95[0], y.ci95[1] - y.ci95[0]);
        assert!(wy >= 0.9 * wx, "{v}: interval {wx} -> {wy}");
        assert_eq!(x.p_value, y.p_value, "{v}");
    }
}

#[test]
fn holm_adjusts_across_the_variants_of_one_metric() {
    let a = analyze(&synthetic_experiment()).unwrap();
    for m in &TEST_METRICS {
        let family: Vec<_> = a
            .comparisons
            .iter()
            .filter(|c| c.metric.key == m.key)
            .collect();
        let p: Vec<f64> = family
            .iter()
            .map(|c| c.result.as_ref().unwrap().p_value)
            .collect();
        let expected = seglab_metrics::comparison::holm(&p);
        for (c, q) in family.iter().zip(expected) {
            assert_eq!(c.result.as_ref().unwrap().p_holm, q, "{}", m.key);
        }
    }
}

#[test]
fn runs_without_a_convergence_rule_give_no_answer() {
    let mut exp = synthetic_experiment();
    exp.convergence = None;
    for r in exp.runs.iter_mut() {
        r.outcome.converged = None;
        r.outcome.converged_epoch = None;
    }
    let a = analyze(&exp).unwrap();
    for ans in &a.answers {
        assert_eq!(
            ans.answer,
            seglab_metrics::comparison::Answer::Inconclusive,
            "{}",
            ans.variant
        );
        assert!(
            ans.reason.contains("without a convergence rule"),
            "{}",
            ans.reason
        );
    }
}

#[test]
fn comparison_refuses_different_test_cases() {
    let mut exp = synthetic_experiment();
    let r = exp
        .runs
        .iter_mut()
        .find(|r| r.variant == "ste" && r.seed == 0)
        .unwrap();
    r.test.as_mut().unwrap().cases[0] = "other".into();
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
