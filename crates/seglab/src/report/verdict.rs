//! The verdict: short sentences generated from the analysis, never fixed text. The rules, in the order the sentences
//! appear (also printed in the report's "How the verdict is generated" section, from [`RULES`]):
//!
//! 1. Divergence: a variant with runs whose training loss became NaN/inf is named with each seed and epoch, and how many
//!    of its runs completed (a fully diverged variant is not compared).
//! 2. Dead gradients: when `zero_grad_fraction == 1` in every epoch of every run of a variant (each epoch's value is the
//!    mean over its steps, so 1 means every entry of every step), the sentence says the gradients were exactly zero in
//!    every step and gives its validation Dice after the first epoch and at the selected epoch. Within
//!    [`STAYED_TOLERANCE`] it "stayed at its initial level".
//! 3. Convergence: every variant with a seed that did not converge under the rule within the budget, or that trained
//!    without a rule, is named with the seed.
//! 4. The answer of each variant against the baseline ([`crate::experiment::analysis`]): `better` / `worse` when Holm's
//!    adjusted Wilcoxon p on the per-case test Dice at 0.5 is below 0.05 and the case-level bootstrap interval lies
//!    above / below 0; `inconclusive` when the variant or the baseline did not converge (or diverged) in some seed;
//!    else `no evidence`; with the numbers behind it.
//! 5. Learning speed, on its own: the epoch at which each variant first reached 90% of its best validation Dice against
//!    the baseline's (mean over seeds). It never decides an answer.
//! 6. Soft vs thresholded Dice: when the mean of (validation Dice at 0.5 - soft Dice) at the selected epoch is at least
//!    [`GAP_TOLERANCE`] in magnitude, the sentence says which way and what it means for the probabilities.
//! 7. The answer to the project's question: the variants that threshold before the loss and are `better` are named as
//!    having raised the test Dice; otherwise the sentence says none did, and lists the worse and inconclusive ones.
//! 8. Fewer than 3 completed seeds for the baseline: a caution that the spread over seeds is poorly estimated.
use seglab_metrics::comparison::Answer;

pub use crate::experiment::{fmt3 as f3, fmt_p, signed3};
use crate::experiment::{Analysis, Experiment};

pub const STAYED_TOLERANCE: f64 = 0.02;
pub const GAP_TOLERANCE: f64 = 0.05;

pub const RULES: [&str; 8] = [
    "Diverged runs (NaN or infinite training loss) are named with their seed and epoch; a variant with no completed run is not compared.",
    "\"Gradients were exactly zero in every step\" is said only when the fraction of exactly-zero gradient entries is 1 in every epoch of every run of the variant.",
    "Runs that did not converge under the rule within the epoch budget (or trained without a rule) are named.",
    "Each variant's answer comes from the per-case Dice at 0.5 on the held-out test cases (each case's difference averaged over seeds): \"better\" or \"worse\" when the Wilcoxon signed-rank p-value, Holm-adjusted across the variants, is below 0.05 and the 95% bootstrap interval (cases, then seeds within a case, resampled) lies above or below 0; \"inconclusive\" when the variant or the baseline did not converge or diverged in some seed; otherwise \"no evidence\".",
    "Learning speed (the epoch at which 90% of the best validation Dice was first reached) is reported on its own and never decides an answer.",
    "A gap of at least 0.05 between validation Dice at 0.5 and soft Dice at the selected epoch is reported with what it says about the probabilities.",
    "Thresholding before the loss is said to have raised the test Dice only for variants that threshold before the loss and are \"better\".",
    "Fewer than 3 completed baseline seeds triggers a caution about the spread.",
];

fn word(a: Answer) -> &'static str {
    match a {
        Answer::Better => "better",
        Answer::Worse => "worse",
        Answer::NoEvidence => "no evidence",
        Answer::Inconclusive => "inconclusive",
    }
}

pub fn verdict(exp: &Experiment, a: &Analysis) -> Vec<String> {
    let mut out = Vec::new();
    let base = exp.baseline.as_str();
    let base_dice = a
        .variant(base)
        .map(|b| b.test_stat(crate::experiment::PRIMARY_METRIC).mean)
        .unwrap_or(f64::NAN);

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
            s.push_str(", so it is not compared");
        }
        s.push('.');
        out.push(s);
    }

    // Rule 2.
    for v in &a.variants {
        if !v.all_gradients_zero {
            continue;
        }
        let (first, last) = (v.first_epoch_dice.mean, v.val_dice.mean);
        let mut s = format!(
            "{}: gradients were exactly zero in every step of every run; the loss gave the model nothing to learn from",
            v.name
        );
        if first.is_finite() && last.is_finite() {
            let how = if (last - first).abs() <= STAYED_TOLERANCE {
                "its validation Dice stayed at its initial level"
            } else {
                "validation Dice"
            };
            s.push_str(&format!(
                "; {how} ({} after epoch 1, {} at the selected epoch)",
                f3(first),
                f3(last)
            ));
        }
        let test = v.test_stat(crate::experiment::PRIMARY_METRIC).mean;
        if v.name != base && base_dice.is_finite() && test.is_finite() {
            s.push_str(&format!(
                "; test Dice {} vs {} for {}",
                f3(test),
                f3(base_dice),
                base
            ));
        }
        s.push('.');
        out.push(s);
    }

    // Rule 3.
    for v in &a.variants {
        let without: Vec<String> = v
            .seeds
            .iter()
            .filter(|p| p.converged.is_none())
            .map(|p| p.seed.to_string())
            .collect();
        let not: Vec<String> = v
            .seeds
            .iter()
            .filter(|p| p.converged == Some(false))
            .map(|p| p.seed.to_string())
            .collect();
        if !not.is_empty() {
            out.push(format!(
                "{}: seed {} did not converge within the budget of {} epochs (the smoothed validation Dice was still \
                 rising); a larger --epochs budget is needed for an answer.",
                v.name,
                not.join(", "),
                exp.epochs
            ));
        }
        if !without.is_empty() {
            out.push(format!(
                "{}: seed {} trained a fixed {} epochs without a convergence rule (--patience); whether it had \
                 converged is unknown.",
                v.name,
                without.join(", "),
                exp.epochs
            ));
        }
    }

    // Rule 4.
    for ans in &a.answers {
        out.push(format!(
            "{}: {} ({}).",
            ans.variant,
            word(ans.answer),
            ans.reason
        ));
    }

    // Rule 5.
    if let Some(b) = a.variant(base) {
        let b90 = b.epochs_to_90.mean;
        let speeds: Vec<String> = a
            .variants
            .iter()
            .filter(|v| v.name != base && v.epochs_to_90.mean.is_finite())
            .map(|v| format!("{} {:.1}", v.name, v.epochs_to_90.mean))
            .collect();
        if b90.is_finite() && !speeds.is_empty() {
            out.push(format!(
                "Learning speed (reported on its own; it does not decide any answer): epochs to reach 90% of the \
                 run's best validation Dice, mean over seeds: {base} {b90:.1}; {}.",
                speeds.join(", ")
            ));
        }
    }

    // Rule 6.
    for v in &a.variants {
        let g = v.soft_dice_gap.mean;
        if !g.is_finite() || g.abs() < GAP_TOLERANCE {
            continue;
        }
        if g > 0.0 {
            out.push(format!(
                "{}: validation Dice at 0.5 ({}) is {} above its soft Dice ({}): the probabilities are far from 0 \
                 and 1 (lesion pixels well below 1 or background well above 0), which thresholding hides.",
                v.name,
                f3(v.val_dice.mean),
                f3(g),
                f3(v.soft_dice.mean)
            ));
        } else {
            out.push(format!(
                "{}: soft Dice ({}) is {} above its validation Dice at 0.5 ({}): much of the lesion probability lies \
                 below 0.5 and thresholding discards it.",
                v.name,
                f3(v.soft_dice.mean),
                f3(-g),
                f3(v.val_dice.mean)
            ));
        }
    }

    // Rule 7.
    let thresholding: Vec<&crate::experiment::VariantAnswer> = a
        .answers
        .iter()
        .filter(|ans| {
            a.variant(&ans.variant)
                .is_some_and(|v| v.thresholds_before_loss)
        })
        .collect();
    if !thresholding.is_empty() {
        let with = |w: Answer| -> Vec<&str> {
            thresholding
                .iter()
                .filter(|x| x.answer == w)
                .map(|x| x.variant.as_str())
                .collect()
        };
        let better = with(Answer::Better);
        if better.is_empty() {
            let mut s = format!(
                "Answer: no variant that thresholds the prediction before the loss raised the test Dice over {base} \
                 on this data"
            );
            let mut tail = Vec::new();
            for (w, label) in [
                (Answer::Worse, "worse"),
                (Answer::Inconclusive, "inconclusive"),
            ] {
                let names = with(w);
                if !names.is_empty() {
                    tail.push(format!("{label}: {}", names.join(", ")));
                }
            }
            if !tail.is_empty() {
                s.push_str(&format!(" ({})", tail.join("; ")));
            }
            if with(Answer::Inconclusive).is_empty() {
                s.push_str("; threshold only for the metrics.");
            } else {
                s.push_str(
                    "; the inconclusive ones need a budget within which every run converges before they can be judged.",
                );
            }
            out.push(s);
        } else {
            out.push(format!(
                "Answer: thresholding before the loss raised the test Dice over {base} on this data for {}.",
                better.join(", ")
            ));
        }
    }

    // Rule 8.
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
    use crate::experiment::analyze;
    use crate::experiment::tests::{outcome, run, synthetic_experiment};

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
        assert!(
            hard.contains("its validation Dice stayed at its initial level (0.030 after epoch 1, 0.030 at the selected epoch)"),
            "{hard}"
        );
        assert!(hard.contains("vs 0.817 for soft"), "{hard}");
        assert!(!v
            .iter()
            .any(|l| l.starts_with("soft: gradients") || l.starts_with("ste: gradients")));
    }

    #[test]
    fn each_answer_is_stated_with_its_numbers() {
        let exp = synthetic_experiment();
        let a = analyze(&exp).unwrap();
        let v = verdict(&exp, &a);
        let ste = v.iter().find(|l| l.starts_with("ste: ")).unwrap();
        let c = a.comparison("ste", "dice").unwrap().result.clone().unwrap();
        assert!(
            ste.starts_with("ste: no evidence (Dice@0.5 on 12 test cases x 3 seeds"),
            "{ste}"
        );
        assert!(
            ste.contains(&format!("[{}, {}]", signed3(c.ci95[0]), signed3(c.ci95[1]))),
            "{ste}"
        );
        let hard = v.iter().find(|l| l.starts_with("hard: worse")).unwrap();
        assert!(
            hard.contains("the interval lies below 0 and Holm p < 0.05"),
            "{hard}"
        );
        let power = v
            .iter()
            .find(|l| l.starts_with("power: inconclusive"))
            .unwrap();
        assert!(power.contains("diverged in seed 1 at epoch 4"), "{power}");
        let answer = v.iter().find(|l| l.starts_with("Answer:")).unwrap();
        assert!(answer.contains("no variant that thresholds"), "{answer}");
        assert!(
            answer.contains("worse: hard; inconclusive: power"),
            "{answer}"
        );
        // Learning speed has its own line.
        assert!(
            v.iter()
                .any(|l| l.starts_with("Learning speed (reported on its own")),
            "{v:?}"
        );
    }

    #[test]
    fn too_few_test_cases_are_no_evidence() {
        let mut exp = synthetic_experiment();
        for r in exp.runs.iter_mut() {
            if let Some(t) = r.test.as_mut() {
                t.cases.truncate(5);
                t.metrics.values_mut().for_each(|v| v.truncate(5));
            }
        }
        let a = analyze(&exp).unwrap();
        let hard = a.answer("hard").unwrap();
        assert_eq!(hard.answer, Answer::NoEvidence);
        assert!(hard.reason.contains("only 5 test cases"), "{}", hard.reason);
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
        // ste clearly better on every test case of every seed.
        for r in exp.runs.iter_mut().filter(|r| r.variant == "ste") {
            for v in r.test.as_mut().unwrap().metrics.values_mut() {
                v.iter_mut().for_each(|d| *d += 0.06);
            }
        }
        let v = lines(&exp);
        let ste = v.iter().find(|l| l.starts_with("ste: ")).unwrap();
        assert!(
            ste.starts_with("ste: better") && ste.contains("difference +0.060"),
            "{ste}"
        );
        let answer = v.iter().find(|l| l.starts_with("Answer:")).unwrap();
        assert!(
            answer.contains("raised the test Dice over soft on this data for ste"),
            "{answer}"
        );
    }

    #[test]
    fn unconverged_runs_are_named_and_fully_diverged_variant_not_compared() {
        let mut exp = synthetic_experiment();
        exp.seeds = vec![0];
        exp.runs.retain(|r| r.seed == 0);
        for r in exp.runs.iter_mut().filter(|r| r.variant == "ste") {
            r.outcome.converged = Some(false);
        }
        let mut p = outcome(0.2, 0.7, 3, 0.0, &[0.0; 12]);
        p.status = seglab_nn::record::RunStatus::Diverged { epoch: 2 };
        exp.runs.retain(|r| r.variant != "power");
        exp.runs.push(run("power", 0, p, &[0.0; 12]));
        let v = lines(&exp);
        assert!(
            v.iter()
                .any(|l| l
                    .contains("seed 0 at epoch 2; 0 of 1 runs completed, so it is not compared")),
            "{v:?}"
        );
        assert!(
            v.iter().any(|l| l.starts_with(
                "power: inconclusive (not compared: no seed in which both power and soft completed"
            )),
            "{v:?}"
        );
        assert!(
            v.iter().any(
                |l| l.starts_with("ste: seed 0 did not converge within the budget of 6 epochs")
            ),
            "{v:?}"
        );
        assert!(
            v.iter().any(|l| l.starts_with("ste: inconclusive")),
            "{v:?}"
        );
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
                .any(|l| l.starts_with("ste: validation Dice at 0.5")
                    && l.contains("is 0.140 above its soft Dice")),
            "{v:?}"
        );
    }
}
