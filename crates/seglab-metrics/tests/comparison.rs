//! `seglab_metrics::comparison` against scipy/statsmodels reference values (`tests/data/comparison_cases`, made by its
//! script) and the properties the protocol of issue 16 needs.
use seglab_metrics::comparison::{
    adjust_family, answer, compare_by_case, holm, Answer, ComparisonError,
};
use serde_json::Value;

fn cases() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/comparison_cases/comparison_cases.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    serde_json::from_value(v.clone()).unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-300)
}

#[test]
fn per_case_differences_wilcoxon_and_holm_match_scipy_and_statsmodels() {
    let c = cases();
    let mut families = 0;
    for f in c["families"].as_array().unwrap() {
        let baseline = matrix(&f["baseline"]);
        let mut family: Vec<_> = f["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| compare_by_case(&matrix(v), &baseline).unwrap())
            .collect();
        adjust_family(&mut family);
        for (i, cmp) in family.iter().enumerate() {
            let want: Vec<f64> = serde_json::from_value(f["case_differences"][i].clone()).unwrap();
            assert_eq!(cmp.n_cases, want.len());
            assert_eq!(cmp.n_seeds, baseline[0].len());
            for (a, b) in cmp.case_differences.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12, "{a} vs {b}");
            }
            let d = f["difference"][i].as_f64().unwrap();
            assert!((cmp.difference - d).abs() < 1e-12);
            let p = f["p_value"][i].as_f64().unwrap();
            assert!(
                close(cmp.p_value, p, 1e-9),
                "p {} vs scipy {p}",
                cmp.p_value
            );
            let q = f["p_holm"][i].as_f64().unwrap();
            assert!(
                close(cmp.p_holm, q, 1e-9),
                "holm {} vs statsmodels {q}",
                cmp.p_holm
            );
            assert!(cmp.ci95[0] <= cmp.difference && cmp.difference <= cmp.ci95[1]);
        }
        families += 1;
    }
    assert_eq!(families, 3);
    for h in c["holm"].as_array().unwrap() {
        let p: Vec<f64> = serde_json::from_value(h["p"].clone()).unwrap();
        let want: Vec<f64> = serde_json::from_value(h["adjusted"].clone()).unwrap();
        for (a, b) in holm(&p).iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }
}

/// Baseline and variant scores of `n` cases, one seed; the variant differs by `shift(case)`.
fn pair(n: usize, shift: impl Fn(usize) -> f64) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let base: Vec<Vec<f64>> = (0..n)
        .map(|i| vec![0.5 + 0.4 * ((i * 37 % 11) as f64 / 11.0)])
        .collect();
    let var = base
        .iter()
        .enumerate()
        .map(|(i, b)| vec![b[0] + shift(i)])
        .collect();
    (var, base)
}

#[test]
fn seeds_that_agree_do_not_narrow_the_interval() {
    let (v1, b1) = pair(20, |i| 0.02 * ((i % 5) as f64 - 1.5));
    let one = compare_by_case(&v1, &b1).unwrap();
    let triple = |m: &[Vec<f64>]| m.iter().map(|c| vec![c[0]; 3]).collect::<Vec<_>>();
    let three = compare_by_case(&triple(&v1), &triple(&b1)).unwrap();
    assert_eq!(three.n_seeds, 3);
    assert_eq!(one.ci95, three.ci95);
    assert_eq!(one.p_value, three.p_value);
    assert!(one.ci95[1] > one.ci95[0]);
    // Seeds that disagree widen it: the within-case spread is resampled too.
    let noisy: Vec<Vec<f64>> = v1
        .iter()
        .enumerate()
        .map(|(i, c)| vec![c[0] - 0.05, c[0], c[0] + 0.05 + 0.001 * i as f64])
        .collect();
    let spread = compare_by_case(&noisy, &triple(&b1)).unwrap();
    assert!(spread.ci95[1] - spread.ci95[0] > one.ci95[1] - one.ci95[0]);
}

#[test]
fn a_copy_is_no_evidence_and_a_degraded_model_is_worse() {
    let (_, base) = pair(24, |_| 0.0);
    let mut same = vec![compare_by_case(&base, &base).unwrap()];
    adjust_family(&mut same);
    assert_eq!(same[0].difference, 0.0);
    assert_eq!(same[0].p_value, 1.0);
    assert_eq!(answer(&same[0], 0.05, true), Answer::NoEvidence);

    let (worse, base) = pair(24, |i| -0.05 - 0.001 * i as f64);
    let (better, _) = pair(24, |i| 0.03 + 0.001 * i as f64);
    let mut family = vec![
        compare_by_case(&worse, &base).unwrap(),
        compare_by_case(&better, &base).unwrap(),
    ];
    adjust_family(&mut family);
    assert!(family[0].ci95[1] < 0.0);
    assert_eq!(answer(&family[0], 0.05, true), Answer::Worse);
    assert_eq!(answer(&family[1], 0.05, true), Answer::Better);
    // For a distance (lower is better) the same numbers read the other way.
    assert_eq!(answer(&family[0], 0.05, false), Answer::Better);
    assert!(family[0].p_holm >= family[0].p_value);
}

#[test]
fn scores_that_cannot_be_paired_are_errors() {
    let (v, b) = pair(3, |_| 0.1);
    assert_eq!(
        compare_by_case(&v[..2], &b),
        Err(ComparisonError::CaseMismatch {
            cases: 2,
            baseline_cases: 3
        })
    );
    let mut nan = v.clone();
    nan[1][0] = f64::NAN;
    assert!(matches!(
        compare_by_case(&nan, &b),
        Err(ComparisonError::NotFinite { case: 1, .. })
    ));
    let mut two = v.clone();
    two[2].push(0.5);
    assert!(matches!(
        compare_by_case(&two, &b),
        Err(ComparisonError::SeedMismatch { case: 2, .. })
    ));
    assert_eq!(compare_by_case(&[], &[]), Err(ComparisonError::NoCases));
}
