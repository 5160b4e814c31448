//! The verdict: short sentences generated from the analysis, never fixed text. The rules, in the order the sentences
//! appear (also printed in the report's "How to read this" section, from [`RULES`]):
//!
//! 1. Divergence: a variant with runs whose training loss became NaN/inf is named with each seed and epoch, and how many
//!    of its runs completed (a fully diverged variant is excluded from the comparison).
//! 2. Dead gradients: when `zero_grad_fraction == 1` in every epoch of every run of a variant (each epoch's value is the
//!    mean over its steps, so 1 means every entry of every step), the sentence says the gradients were exactly zero in
//!    every step and gives the variant's Dice after the first and the last epoch against the baseline's. If the final
//!    Dice is within [`STAYED_TOLERANCE`] of the first-epoch Dice it "stayed at its initial level".
//! 3. Comparison with the baseline (per-case Dice at 0.5, paired over seeds x validation cases): the mean difference
//!    with its 95% bootstrap interval and the Wilcoxon p-value. Interval containing 0 -> "no evidence of a difference";
//!    interval above 0 -> "higher"; below 0 -> "lower". When the interval excludes 0 but p >= 0.05, the sentence adds
//!    that the Wilcoxon test does not confirm it. With fewer than [`MIN_PAIRS`] pairs the comparison is called too
//!    small instead.
//! 4. Soft vs thresholded Dice: when the mean of (Dice at 0.5 - soft Dice) is at least [`GAP_TOLERANCE`] in magnitude,
//!    the sentence says which way and what it means for the probabilities.
//! 5. The answer to the project's question: the variants that threshold before the loss and are "higher" by rule 3
//!    with p < 0.05 are named as having helped; if none, the sentence says that no such variant raised the Dice.
//! 6. Fewer than 3 completed seeds for the baseline: a caution that the spread over seeds is poorly estimated.
use crate::experiment::{Analysis, Experiment};

pub const STAYED_TOLERANCE: f64 = 0.02;
pub const GAP_TOLERANCE: f64 = 0.05;
pub const ALPHA: f64 = 0.05;
/// Below 6 pairs a two-sided Wilcoxon test cannot reach p < 0.05 (its smallest exact p is 2/2^n) and a bootstrap
/// interval is degenerate: such a comparison is reported as too small.
pub const MIN_PAIRS: usize = 6;

pub const RULES: [&str; 6] = [
    "Diverged runs (NaN or infinite training loss) are named with their seed and epoch; a variant with no completed run is left out of the comparison.",
    "\"Gradients were exactly zero in every step\" is said only when the fraction of exactly-zero gradient entries is 1 in every epoch of every run of the variant.",
    "A variant is \"higher\" or \"lower\" than the baseline when the 95% bootstrap interval of the paired per-case Dice difference (seeds x validation cases) excludes 0; otherwise there is \"no evidence of a difference\". The Wilcoxon signed-rank p-value is given alongside; when the interval excludes 0 but p >= 0.05 the sentence says the test does not confirm it. Fewer than 6 pairs are too few to compare (no such test can reach p < 0.05).",
    "A gap of at least 0.05 between Dice at 0.5 and soft Dice is reported with what it says about the probabilities.",
    "Thresholding before the loss is said to have helped only for variants that threshold before the loss and are higher than the baseline with p < 0.05.",
    "Fewer than 3 completed baseline seeds triggers a caution about the spread.",
];

/// Three decimals, or "n/a" for a missing number.
pub fn f3(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "n/a".to_string()
    }
}

/// A signed difference: "+0.012", "-0.010".
pub fn signed3(v: f64) -> String {
    if v.is_finite() {
        format!("{v:+.3}")
    } else {
        "n/a".to_string()
    }
}

pub fn fmt_p(p: f64) -> String {
    if !p.is_finite() {
        "n/a".to_string()
    } else if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

pub fn verdict(exp: &Experiment, a: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    let base = exp.baseline.as_str();
    let base_dice = a.variant(base).map(|b| b.dice.mean).unwrap_or(f64::NAN);

    // Rule 1.
    for v in &a.variants {
        if v.diverged.is_empty() {
            continue;
        }
        let where_: Vec<String> = v
            .diverged
            .iter()
            .map(|d| format!("seed {} at epoch {}", d.seed, d.epoch))
            .collect();
        let mut s = format!(
            "{}: training diverged (non-finite loss) in {}; {} of {} runs completed",
            v.name,
            where_.join(", "),
            v.completed_seeds.len(),
            v.runs
        );
        if v.completed_seeds.is_empty() {
            s.push_str(", so it is left out of the comparison");
        }
        s.push('.');
        out.push(s);
    }

    // Rule 2.
    for v in &a.variants {
        if !v.all_gradients_zero {
            continue;
        }
        let first = v.first_epoch_dice.mean;
        let last = v.dice.mean;
        let mut s = format!(
            "{}: gradients were exactly zero in every step of every run; the loss gave the model nothing to learn from",
            v.name
        );
        if first.is_finite() && last.is_finite() {
            if (last - first).abs() <= STAYED_TOLERANCE {
                s.push_str(&format!(
                    "; its Dice stayed at its initial level ({} after epoch 1, {} at the end)",
                    f3(first),
                    f3(last)
                ));
            } else {
                s.push_str(&format!(
                    "; Dice {} after epoch 1, {} at the end",
                    f3(first),
                    f3(last)
                ));
            }
        }
        if v.name != base && base_dice.is_finite() {
            s.push_str(&format!(" vs {} for {}", f3(base_dice), base));
        }
        s.push('.');
        out.push(s);
    }

    // Rule 3.
    let mut helped = Vec::new();
    let mut lower = Vec::new();
    let mut compared_thresholding = 0;
    for c in &a.comparisons {
        let Some(p) = &c.stats else {
            out.push(format!(
                "{}: no seed in which both {} and {} completed; not compared.",
                c.variant, c.variant, base
            ));
            continue;
        };
        let thresholds = a
            .variant(&c.variant)
            .map(|v| v.thresholds_before_loss)
            .unwrap_or(false);
        let pv = p.wilcoxon.p_value;
        let head = format!(
            "{}: mean per-case Dice {} vs {} ({}), difference {} [{}, {}]",
            c.variant,
            f3(c.variant_mean),
            f3(c.baseline_mean),
            base,
            signed3(p.mean_difference),
            signed3(p.ci_low),
            signed3(p.ci_high)
        );
        let tail = format!("(Wilcoxon p = {}, {} pairs)", fmt_p(pv), p.n_pairs);
        if p.n_pairs < MIN_PAIRS {
            out.push(format!(
                "{head}: only {} paired observations, too few to compare (use more seeds or validation cases).",
                p.n_pairs
            ));
            continue;
        }
        let mut s = if p.ci_contains_zero() {
            format!("{head}: no evidence of a difference from {base} {tail}")
        } else if p.ci_low > 0.0 {
            format!("{head}: higher than {base} {tail}")
        } else {
            format!("{head}: lower than {base} {tail}")
        };
        if !p.ci_contains_zero() && pv >= ALPHA {
            s.push_str("; the Wilcoxon test does not confirm it at the 5% level");
        }
        s.push('.');
        out.push(s);
        if thresholds {
            compared_thresholding += 1;
            if p.ci_low > 0.0 && pv < ALPHA {
                helped.push(c.variant.clone());
            } else if p.ci_high < 0.0 {
                lower.push(c.variant.clone());
            }
        }
    }

    // Rule 4.
    for v in &a.variants {
        let g = v.soft_dice_gap.mean;
        if !g.is_finite() || g.abs() < GAP_TOLERANCE {
            continue;
        }
        if g > 0.0 {
            out.push(format!(
                "{}: Dice at 0.5 ({}) is {} above its soft Dice ({}): the probabilities are far from 0 and 1 \
                 (lesion pixels well below 1 or background well above 0), which thresholding hides.",
                v.name,
                f3(v.dice.mean),
                f3(g),
                f3(v.soft_dice.mean)
            ));
        } else {
            out.push(format!(
                "{}: soft Dice ({}) is {} above its Dice at 0.5 ({}): much of the lesion probability lies below 0.5 \
                 and thresholding discards it.",
                v.name,
                f3(v.soft_dice.mean),
                f3(-g),
                f3(v.dice.mean)
            ));
        }
    }

    // Rule 5.
    if compared_thresholding > 0 {
        if helped.is_empty() {
            let mut s = format!(
                "Answer: no variant that thresholds the prediction before the loss raised the validation Dice over {base} on this data"
            );
            if !lower.is_empty() {
                s.push_str(&format!(" ({} did worse)", lower.join(", ")));
            }
            s.push_str("; threshold only for the metrics.");
            out.push(s);
        } else {
            out.push(format!(
                "Answer: thresholding before the loss raised the validation Dice over {base} on this data for {}.",
                helped.join(", ")
            ));
        }
    }

    // Rule 6.
    if let Some(b) = a.variant(base) {
        let n = b.completed_seeds.len();
        if n < 3 {
            out.push(format!(
                "Caution: {n} completed seed{} of the baseline; the spread over seeds is poorly estimated (use 3 or more, \
                 e.g. --preset standard).",
                if n == 1 { "" } else { "s" }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::tests::{outcome, synthetic_experiment};
    use crate::experiment::{analyze, RunResult};

    fn lines(exp: &Experiment) -> Vec<String> {
        verdict(exp, &analyze(exp).unwrap())
    }

    #[test]
    fn zero_gradient_variant_is_called_out_with_its_numbers() {
        let v = lines(&synthetic_experiment());
        let hard = v
            .iter()
            .find(|l| l.starts_with("hard: gradients were exactly zero"))
            .expect("no zero-grad line");
        assert!(hard.contains("stayed at its initial level (0.030 after epoch 1, 0.030 at the end) vs 0.820 for soft"), "{hard}");
        // Variants with non-zero gradients are not called out.
        assert!(!v
            .iter()
            .any(|l| l.starts_with("soft: gradients") || l.starts_with("ste: gradients")));
    }

    #[test]
    fn ci_containing_zero_says_no_evidence() {
        let exp = synthetic_experiment();
        let a = analyze(&exp).unwrap();
        let c = a.comparison("ste").unwrap().stats.as_ref().unwrap();
        assert!(
            c.ci_contains_zero(),
            "synthetic ste should be within noise: {c:?}"
        );
        let v = verdict(&exp, &a);
        let ste = v
            .iter()
            .find(|l| l.starts_with("ste: mean per-case Dice"))
            .unwrap();
        assert!(
            ste.contains("no evidence of a difference from soft"),
            "{ste}"
        );
        assert!(
            ste.contains(&format!("[{}, {}]", signed3(c.ci_low), signed3(c.ci_high))),
            "{ste}"
        );
        let hard = v
            .iter()
            .find(|l| l.starts_with("hard: mean per-case Dice"))
            .unwrap();
        assert!(hard.contains("lower than soft"), "{hard}");
        let answer = v.iter().find(|l| l.starts_with("Answer:")).unwrap();
        assert!(answer.contains("no variant that thresholds"), "{answer}");
        assert!(answer.contains("hard"), "{answer}");
    }

    #[test]
    fn too_few_pairs_are_not_called_higher_or_lower() {
        let mut exp = synthetic_experiment();
        for r in exp.runs.iter_mut() {
            r.outcome.val_cases.truncate(1);
            r.outcome.val_case_dice.truncate(1);
        }
        exp.seeds = vec![0];
        exp.runs.retain(|r| r.seed == 0);
        let v = lines(&exp);
        let hard = v
            .iter()
            .find(|l| l.starts_with("hard: mean per-case Dice"))
            .unwrap();
        assert!(
            hard.contains("only 1 paired observations, too few to compare"),
            "{hard}"
        );
        assert!(!v.iter().any(|l| l.starts_with("Answer:")), "{v:?}");
    }

    #[test]
    fn diverged_variant_is_reported_with_seed_and_epoch() {
        let v = lines(&synthetic_experiment());
        let p = v
            .iter()
            .find(|l| l.starts_with("power: training diverged"))
            .unwrap();
        assert!(
            p.contains("seed 1 at epoch 4") && p.contains("2 of 3 runs completed"),
            "{p}"
        );
    }

    #[test]
    fn verdict_follows_the_numbers_when_a_thresholded_variant_wins() {
        let mut exp = synthetic_experiment();
        // Make ste clearly better on every case of every seed.
        for r in exp.runs.iter_mut().filter(|r| r.variant == "ste") {
            r.outcome.val_case_dice.iter_mut().for_each(|d| *d += 0.06);
        }
        let v = lines(&exp);
        let ste = v
            .iter()
            .find(|l| l.starts_with("ste: mean per-case Dice"))
            .unwrap();
        assert!(
            ste.contains("higher than soft") && ste.contains("difference +0.060"),
            "{ste}"
        );
        let answer = v.iter().find(|l| l.starts_with("Answer:")).unwrap();
        assert!(
            answer.contains("raised the validation Dice over soft on this data for ste"),
            "{answer}"
        );
    }

    #[test]
    fn fully_diverged_variant_is_excluded_and_few_seeds_cautioned() {
        let mut exp = synthetic_experiment();
        exp.seeds = vec![0];
        exp.runs.retain(|r| r.seed == 0);
        let mut p = outcome(0.2, 0.7, 3, 0.0, &[0.0; 12]);
        p.status = seglab_nn::record::RunStatus::Diverged { epoch: 2 };
        exp.runs.retain(|r| r.variant != "power");
        exp.runs.push(RunResult {
            variant: "power".into(),
            seed: 0,
            outcome: p,
            gallery_predictions: vec![],
        });
        let v = lines(&exp);
        assert!(
            v.iter()
                .any(|l| l.contains("seed 0 at epoch 2; 0 of 1 runs completed, so it is left out")),
            "{v:?}"
        );
        assert!(v
            .iter()
            .any(|l| l == "power: no seed in which both power and soft completed; not compared."));
        assert!(v
            .iter()
            .any(|l| l.starts_with("Caution: 1 completed seed of the baseline")));
    }

    #[test]
    fn soft_dice_gap_is_reported_only_when_large() {
        let mut exp = synthetic_experiment();
        let v = lines(&exp);
        // Synthetic gap is 0.04 everywhere: below the tolerance.
        assert!(!v.iter().any(|l| l.contains("above its soft Dice")));
        for r in exp.runs.iter_mut().filter(|r| r.variant == "ste") {
            r.outcome.epochs.last_mut().unwrap().val_soft_dice -= 0.1;
        }
        let v = lines(&exp);
        assert!(
            v.iter()
                .any(|l| l.starts_with("ste: Dice at 0.5")
                    && l.contains("is 0.140 above its soft Dice")),
            "{v:?}"
        );
    }
}
