//! `summary.json`: the experiment's settings and protocol (split counts, convergence rule, schedule horizon), per
//! variant its status, per-seed protocol facts (converged, selected epoch, validation-chosen threshold), test metrics
//! at 0.5 and at that threshold, validation and learning figures; the case-level comparisons of every test metric
//! (Dice first); each variant's answer and its reason; the verdict sentences. Keys are stable: tests pin them.
use serde_json::{json, Value};

use super::*;

pub fn comparison_json(c: &MetricComparison) -> Value {
    let mut o = json!({
        "variant": c.variant,
        "baseline": c.baseline,
        "metric": c.metric.key,
        "unit": "case",
        "seeds": c.seeds,
        "variant_mean": finite(c.variant_mean),
        "baseline_mean": finite(c.baseline_mean),
    });
    let m = o.as_object_mut().expect("an object");
    match &c.result {
        Ok(cc) => {
            m.insert("n_cases".into(), json!(cc.n_cases));
            m.insert("n_seeds".into(), json!(cc.n_seeds));
            m.insert("difference".into(), finite(cc.difference));
            m.insert(
                "ci95".into(),
                json!([finite(cc.ci95[0]), finite(cc.ci95[1])]),
            );
            m.insert("p_value".into(), finite(cc.p_value));
            m.insert("p_holm".into(), finite(cc.p_holm));
            m.insert(
                "seed_differences".into(),
                json!(cc
                    .seed_differences
                    .iter()
                    .map(|v| finite(*v))
                    .collect::<Vec<_>>()),
            );
            m.insert(
                "case_differences".into(),
                json!(cc
                    .case_differences
                    .iter()
                    .map(|v| finite(*v))
                    .collect::<Vec<_>>()),
            );
            m.insert("wilcoxon_statistic".into(), json!(cc.wilcoxon.statistic));
            m.insert("wilcoxon_n_nonzero".into(), json!(cc.wilcoxon.n));
            m.insert(
                "wilcoxon_method".into(),
                json!(cc.wilcoxon.method.describe()),
            );
        }
        Err(why) => {
            m.insert("n_cases".into(), json!(0));
            m.insert("n_seeds".into(), json!(c.seeds.len()));
            m.insert("error".into(), json!(why));
        }
    }
    o
}

pub fn summary_json(exp: &Experiment, analysis: &Analysis, verdict: &[String]) -> Value {
    let mut variants = serde_json::Map::new();
    for (s, spec) in analysis.variants.iter().zip(&exp.variants) {
        let test: serde_json::Map<String, Value> = TEST_METRICS
            .iter()
            .zip(&s.test)
            .map(|(m, st)| (m.key.to_string(), st.json()))
            .collect();
        let seeds: Vec<Value> = s
            .seeds
            .iter()
            .map(|p| {
                json!({
                    "seed": p.seed,
                    "converged": p.converged,
                    "converged_epoch": p.converged_epoch,
                    "epochs_trained": p.epochs_trained,
                    "selected_epoch": p.selected_epoch,
                    "threshold": finite(p.threshold),
                    "val_dice": finite(p.val_dice),
                })
            })
            .collect();
        variants.insert(
            s.name.clone(),
            json!({
                "loss": spec.loss.name,
                "loss_params": spec.file().loss_params,
                "threshold_mode": spec.file().threshold_mode,
                "threshold_params": spec.file().threshold_params,
                "thresholds_before_loss": s.thresholds_before_loss,
                "status": s.status(),
                "completed_seeds": s.completed_seeds,
                "diverged": s.diverged.iter().map(|d| json!({"seed": d.seed, "epoch": d.epoch})).collect::<Vec<_>>(),
                "missing_seeds": s.missing_seeds,
                "converged": s.converged(),
                "seeds": seeds,
                "test": test,
                "validation": {
                    "selected_epoch": s.selected_epoch.json(),
                    "threshold": s.threshold.json(),
                    "dice": s.val_dice.json(),
                    "soft_dice": s.soft_dice.json(),
                    "soft_dice_gap": s.soft_dice_gap.json(),
                    "first_epoch_dice": s.first_epoch_dice.json(),
                    "epochs_to_90pct_best_dice": s.epochs_to_90.json(),
                },
                "zero_grad_fraction": s.zero_grad_fraction.json(),
                "all_gradients_zero": s.all_gradients_zero,
                "seconds": s.seconds.json(),
            }),
        );
    }
    let answer: serde_json::Map<String, Value> = analysis
        .answers
        .iter()
        .map(|a| (a.variant.clone(), json!(a.answer)))
        .collect();
    let reasons: serde_json::Map<String, Value> = analysis
        .answers
        .iter()
        .map(|a| (a.variant.clone(), json!(a.reason)))
        .collect();
    let test_cases = exp
        .runs
        .iter()
        .find_map(|r| r.test.as_ref())
        .map(|t| t.cases.clone())
        .unwrap_or_default();
    json!({
        "title": exp.title,
        "data": exp.data,
        "preset": exp.preset,
        "epochs": exp.epochs,
        "schedule_epochs": exp.schedule_epochs,
        "convergence": exp.convergence,
        "seeds": exp.seeds,
        "notes": exp.notes,
        "baseline": exp.baseline,
        "split": exp.split,
        "test_cases": test_cases,
        "primary_metric": PRIMARY_METRIC,
        "alpha": ALPHA,
        "variants": variants,
        "comparisons": analysis.comparisons.iter().map(comparison_json).collect::<Vec<_>>(),
        "answer": answer,
        "answer_reasons": reasons,
        "verdict": verdict,
    })
}
