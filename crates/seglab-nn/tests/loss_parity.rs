//! Parity with PyTorch on every case and variant in `tests/data/loss_cases` (see the README there),
//! and the defining properties of the threshold operators.
//!
//! Tolerances (float32): loss within 1e-5 relative (1e-7 absolute where PyTorch gives exactly 0),
//! gradient within 1e-4 relative or 1e-6 absolute per element. Where PyTorch's gradient is NaN
//! (focal Tversky at T == 1) ours must be exactly 0 (our documented convention).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use ndarray::ArrayD;
use seglab_nn::{LossKind, LossParams, LossSpec, Reduction, ThresholdMode};
use serde_json::Value;

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/loss_cases")
}

fn read_npy(path: &Path) -> (Vec<f32>, Vec<usize>) {
    let a: ArrayD<f32> = ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let shape = a.shape().to_vec();
    (a.iter().copied().collect(), shape)
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("missing number {key} in {v}"))
}

/// The loss spec and mode a golden variant describes.
fn spec_for(variant: &Value, threshold: f64) -> (LossSpec, ThresholdMode) {
    let mode = match variant["mode"].as_str().unwrap() {
        "raw" => ThresholdMode::None,
        "hard" => ThresholdMode::Hard { t: threshold },
        "ste" => ThresholdMode::StraightThrough { t: threshold },
        other => panic!("unknown mode {other}"),
    };
    let spec = match variant["family"].as_str().unwrap() {
        "tversky" => LossSpec::single(LossKind::Tversky {
            alpha: f(variant, "alpha"),
            beta: f(variant, "beta"),
            smooth: f(variant, "smooth"),
        }),
        "focal_tversky" => LossSpec::single(LossKind::FocalTversky {
            alpha: f(variant, "alpha"),
            beta: f(variant, "beta"),
            gamma: f(variant, "gamma"),
            smooth: f(variant, "smooth"),
        }),
        "dice_perimage" => LossSpec::single(LossKind::Tversky {
            alpha: f(variant, "alpha"),
            beta: f(variant, "beta"),
            smooth: f(variant, "smooth"),
        })
        .with_reduction(Reduction::PerImage),
        "dice_standard" => LossSpec::single(LossKind::Dice {
            smooth: f(variant, "smooth"),
        }),
        "bce_torch" => LossSpec::single(LossKind::Bce),
        "bce_clamped" => LossSpec::single(LossKind::BceClamped {
            eps: f(variant, "eps"),
        }),
        other => panic!("unknown family {other}"),
    };
    (spec, mode)
}

fn eval(
    spec: &LossSpec,
    pred: &[f32],
    target: &[f32],
    shape: &[usize],
    mode: &ThresholdMode,
) -> (f32, Vec<f32>) {
    let device = Device::flex();
    let r = match shape.len() {
        4 => spec.loss_with_grad(
            pred,
            target,
            <[usize; 4]>::try_from(shape).unwrap(),
            mode,
            &device,
        ),
        5 => spec.loss_with_grad(
            pred,
            target,
            <[usize; 5]>::try_from(shape).unwrap(),
            mode,
            &device,
        ),
        n => panic!("rank {n}"),
    };
    (r.loss, r.grad)
}

fn expected_loss(variant: &Value) -> f64 {
    match &variant["loss"] {
        Value::Number(n) => n.as_f64().unwrap(),
        other => panic!("non-finite expected loss {other}"),
    }
}

/// Checks one variant; returns a description of the first failure.
fn check_variant(case: &Path, name: &str, variant: &Value, threshold: f64) -> Result<(), String> {
    let (pred, shape) = read_npy(&case.join("pred.npy"));
    let (target, tshape) = read_npy(&case.join("target.npy"));
    assert_eq!(shape, tshape);
    let (expected_grad, gshape) = read_npy(&case.join(variant["grad_file"].as_str().unwrap()));
    assert_eq!(gshape, shape);
    let (spec, mode) = spec_for(variant, threshold);
    let (loss, grad) = eval(&spec, &pred, &target, &shape, &mode);

    let want = expected_loss(variant);
    let err = (loss as f64 - want).abs();
    let ok = if want == 0.0 {
        err <= 1e-7
    } else {
        err <= 1e-5 * want.abs()
    };
    if !ok {
        return Err(format!(
            "{name}: loss {loss} vs torch {want} (rel err {:.3e})",
            err / want.abs()
        ));
    }
    for (i, (&g, &e)) in grad.iter().zip(&expected_grad).enumerate() {
        if e.is_nan() {
            // Documented convention: focal Tversky at T == 1 has gradient 0 (torch: NaN).
            if g != 0.0 {
                return Err(format!(
                    "{name}: grad[{i}] = {g}, expected 0 where torch is NaN"
                ));
            }
            continue;
        }
        let (g, e) = (g as f64, e as f64);
        let d = (g - e).abs();
        if !(d <= 1e-6 || d <= 1e-4 * e.abs()) {
            return Err(format!("{name}: grad[{i}] = {g} vs torch {e}"));
        }
    }
    Ok(())
}

#[test]
fn every_golden_case_and_variant_matches_pytorch() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "golden cases missing: {cases:?}");
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut nan_variants = 0;
    for case in &cases {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(case.join("expected.json")).unwrap())
                .unwrap();
        let threshold = doc["threshold"].as_f64().unwrap();
        let variants = doc["variants"].as_object().unwrap();
        assert_eq!(variants.len(), 21, "{case:?}");
        for (name, variant) in variants {
            if variant["grad_n_nan"].as_u64().unwrap() > 0 {
                nan_variants += 1;
            }
            if let Err(e) = check_variant(case, name, variant, threshold) {
                failures.push(format!(
                    "{}: {e}",
                    case.file_name().unwrap().to_string_lossy()
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} variants differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, cases.len() * 21);
    // The T == 1 cases (perfect predictions) are in the set, so the NaN convention was exercised.
    assert!(nan_variants >= 12, "only {nan_variants} NaN variants");
}

/// Dice(s) is Tversky(0.5, 0.5, s/2), in value and gradient (documented identity).
#[test]
fn dice_equals_tversky_half_half_with_half_smoothing() {
    let case = cases_dir().join("medium_2x1x64x64");
    let (pred, shape) = read_npy(&case.join("pred.npy"));
    let (target, _) = read_npy(&case.join("target.npy"));
    for reduction in [Reduction::Batch, Reduction::PerImage] {
        let dice = LossSpec::single(LossKind::Dice { smooth: 2.0 }).with_reduction(reduction);
        let tv = LossSpec::single(LossKind::Tversky {
            alpha: 0.5,
            beta: 0.5,
            smooth: 1.0,
        })
        .with_reduction(reduction);
        let (ld, gd) = eval(&dice, &pred, &target, &shape, &ThresholdMode::None);
        let (lt, gt) = eval(&tv, &pred, &target, &shape, &ThresholdMode::None);
        assert!((ld - lt).abs() <= 1e-6 * lt.abs(), "{ld} vs {lt}");
        for (a, b) in gd.iter().zip(&gt) {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3));
        }
    }
}

fn tracked(values: Vec<f32>, shape: [usize; 4]) -> (Tensor<4>, Device) {
    let device = Device::flex().autodiff();
    let x = Tensor::<4>::from_data(TensorData::new(values, shape), &device).require_grad();
    (x, device)
}

fn grad_of(x: &Tensor<4>, y: Tensor<1>) -> Vec<f32> {
    let grads = y.backward();
    x.grad(&grads)
        .expect("gradient reaches the input")
        .into_data()
        .try_into_vec::<f32>()
        .unwrap()
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect()
}

#[test]
fn hard_threshold_backward_gives_all_zero_gradient_without_panicking() {
    let values = ramp(64);
    let (x, _) = tracked(values.clone(), [1, 1, 8, 8]);
    let q = ThresholdMode::Hard { t: 0.5 }.apply(x.clone());
    let forward = q.clone().into_data().try_into_vec::<f32>().unwrap();
    for (v, h) in values.iter().zip(&forward) {
        assert_eq!(*h, if *v >= 0.5 { 1.0 } else { 0.0 });
    }
    // A loss that would have a non-zero gradient without the threshold.
    let (x, _) = tracked(values, [1, 1, 8, 8]);
    let q = ThresholdMode::Hard { t: 0.5 }.apply(x.clone());
    let g = grad_of(&x, (q.clone() * q).sum());
    assert_eq!(g.len(), 64);
    assert!(g.iter().all(|&v| v == 0.0), "{g:?}");
}

#[test]
fn hard_threshold_inside_a_loss_gives_zero_gradient() {
    let pred = ramp(64);
    let target: Vec<f32> = (0..64).map(|i| (i % 3 == 0) as u8 as f32).collect();
    let spec = LossSpec::single(LossKind::Tversky {
        alpha: 0.3,
        beta: 0.7,
        smooth: 1.0,
    });
    let r = spec.loss_with_grad(
        &pred,
        &target,
        [1, 1, 8, 8],
        &ThresholdMode::Hard { t: 0.5 },
        &Device::flex(),
    );
    assert!(r.loss > 0.0);
    assert!(r.grad.iter().all(|&v| v == 0.0));
}

#[test]
fn straight_through_is_hard_forward_and_identity_backward() {
    let values: Vec<f32> = ramp(64).into_iter().map(|v| v * 1.3 - 0.15).collect();
    let (x, _) = tracked(values.clone(), [2, 1, 4, 8]);
    let q = ThresholdMode::StraightThrough { t: 0.5 }.apply(x.clone());
    let forward = q.clone().into_data().try_into_vec::<f32>().unwrap();
    for (v, h) in values.iter().zip(&forward) {
        assert_eq!(*h, if *v >= 0.5 { 1.0 } else { 0.0 }, "ste forward at {v}");
    }
    let g = grad_of(&x, q.sum());
    assert!(g.iter().all(|&v| v == 1.0), "{g:?}");
}

fn share_below(g: &[f32], limit: f32) -> f64 {
    g.iter().filter(|v| v.abs() < limit).count() as f64 / g.len() as f64
}

#[test]
fn soft_threshold_gradients_vanish_away_from_t_as_temperature_falls() {
    let n = 4096;
    let values = ramp(n);
    let mut shares = Vec::new();
    let mut max_grads = Vec::new();
    // Below T ~ 0.03 the gradient exp(-|p - t| / T) / T falls under 1e-6 at the ends of [0, 1].
    for temperature in [1.0, 0.02, 0.01, 0.005, 0.001] {
        let (x, _) = tracked(values.clone(), [1, 1, 64, 64]);
        let q = ThresholdMode::Soft {
            t: 0.5,
            temperature,
        }
        .apply(x.clone());
        let g = grad_of(&x, q.sum());
        shares.push(share_below(&g, 1e-6));
        max_grads.push(g.iter().cloned().fold(0.0f32, f32::max));
    }
    assert_eq!(
        shares[0], 0.0,
        "at T = 1 every gradient is sizeable: {shares:?}"
    );
    for w in shares.windows(2) {
        assert!(w[1] > w[0], "share of |grad| < 1e-6 must grow: {shares:?}");
    }
    assert!(shares[4] > 0.9, "{shares:?}");
    // The few entries near t get large gradients: max is 1/(4T).
    for w in max_grads.windows(2) {
        assert!(w[1] > w[0], "{max_grads:?}");
    }
}

#[test]
fn soft_threshold_in_a_loss_also_loses_gradient_share() {
    let pred = ramp(4096);
    let target: Vec<f32> = (0..4096).map(|i| (i % 5 < 2) as u8 as f32).collect();
    let spec = LossSpec::single(LossKind::Dice { smooth: 1.0 });
    let share = |temperature: f64| {
        let r = spec.loss_with_grad(
            &pred,
            &target,
            [1, 1, 64, 64],
            &ThresholdMode::Soft {
                t: 0.5,
                temperature,
            },
            &Device::flex(),
        );
        share_below(&r.grad, 1e-6)
    };
    let (warm, cold) = (share(0.5), share(0.005));
    assert!(cold > warm && cold > 0.8, "warm {warm}, cold {cold}");
}

#[test]
fn power_threshold_fixes_ends_and_threshold_and_pushes_away() {
    // t = 0.25 is exact in f32, so p == t really happens at index 2.
    let values = vec![
        0.0, 0.1, 0.25, 0.24, 0.5, 0.26, 0.7, 0.9, 1.0, 0.2, 0.6, 0.8,
    ];
    let (x, _) = tracked(values.clone(), [1, 1, 3, 4]);
    let t = 0.25;
    let k = 3.0;
    let q = ThresholdMode::Power { t, k }.apply(x.clone());
    let out = q.clone().into_data().try_into_vec::<f32>().unwrap();
    for (&p, &y) in values.iter().zip(&out) {
        let p64 = p as f64;
        let r = if p64 >= t { 1.0 - t } else { t };
        let want = t + (p64 - t).signum() * r * ((p64 - t).abs() / r).powf(1.0 / k);
        let want = if p64 == t { t } else { want };
        assert!(
            (y as f64 - want).abs() < 1e-6,
            "power({p}) = {y}, want {want}"
        );
        // Pushed away from t (or fixed).
        assert!((y as f64 - t).abs() >= (p64 - t).abs() - 1e-6);
    }
    assert_eq!(out[0], 0.0);
    assert!((out[8] - 1.0).abs() < 1e-6);
    let g = grad_of(&x, q.sum());
    assert!(g.iter().all(|v| v.is_finite() && *v >= 0.0), "{g:?}");
    // At p == t exactly the gradient is defined as 0.
    assert_eq!(g[2], 0.0);
    // Steeper next to the threshold than far from it.
    assert!(g[3] > g[1] && g[5] > g[7]);
}

#[test]
fn focal_tversky_at_a_perfect_prediction_has_zero_gradient_not_nan() {
    let target: Vec<f32> = (0..64).map(|i| (i % 2) as f32).collect();
    let spec = LossSpec::single(LossKind::FocalTversky {
        alpha: 0.3,
        beta: 0.7,
        gamma: 0.75,
        smooth: 1.0,
    });
    let r = spec.loss_with_grad(
        &target,
        &target,
        [1, 1, 8, 8],
        &ThresholdMode::None,
        &Device::flex(),
    );
    assert_eq!(r.loss, 0.0);
    assert!(r.grad.iter().all(|&g| g == 0.0), "{:?}", r.grad);
}

/// Losses and modes shared/golden does not cover, against PyTorch references made by
/// `tests/data/gen_extra_loss_cases.py` (Berman's Lovasz hinge, torchvision's focal loss, ...).
#[test]
fn extra_losses_and_modes_match_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/extra_loss_cases");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let (target, shape) = read_npy(&dir.join("target.npy"));
    let variants = doc["variants"].as_object().unwrap();
    assert!(variants.len() >= 15);
    let mut failures = Vec::new();
    for (name, v) in variants {
        let s = &v["settings"];
        let (pred, pshape) = read_npy(&dir.join(v["input"].as_str().unwrap()));
        assert_eq!(pshape, shape);
        let opt = |k: &str| s.get(k).and_then(Value::as_f64);
        let params = LossParams {
            alpha: opt("alpha"),
            beta: opt("beta"),
            gamma: opt("gamma"),
            smooth: opt("smooth"),
            eps: None,
        };
        let weights: Vec<f64> = s
            .get("weights")
            .and_then(Value::as_array)
            .map(|w| w.iter().map(|x| x.as_f64().unwrap()).collect())
            .unwrap_or_default();
        let reduction: Reduction = s
            .get("reduction")
            .and_then(Value::as_str)
            .unwrap_or("batch")
            .parse()
            .unwrap();
        let from_logits = s
            .get("from_logits")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut spec = LossSpec::parse(
            s["loss"].as_str().unwrap(),
            &weights,
            &params,
            from_logits,
            reduction,
        )
        .unwrap();
        // `alpha: null` in the settings means focal without class weighting.
        if s.get("alpha").is_some_and(Value::is_null) {
            for term in &mut spec.terms {
                if let LossKind::Focal { alpha, .. } = &mut term.kind {
                    *alpha = None;
                }
            }
        }
        let mode = ThresholdMode::from_parts(
            s["mode"].as_str().unwrap(),
            0.5,
            opt("temperature").unwrap_or(0.1),
            opt("k").unwrap_or(3.0),
        )
        .unwrap();
        let (loss, grad) = eval(&spec, &pred, &target, &shape, &mode);
        let want = v["loss"].as_f64().unwrap();
        if (loss as f64 - want).abs() > 1e-5 * want.abs() {
            failures.push(format!("{name}: loss {loss} vs torch {want}"));
            continue;
        }
        let (expected, _) = read_npy(&dir.join(v["grad_file"].as_str().unwrap()));
        for (i, (&g, &e)) in grad.iter().zip(&expected).enumerate() {
            let d = (g as f64 - e as f64).abs();
            if !(d <= 1e-6 || d <= 1e-4 * (e as f64).abs()) {
                failures.push(format!("{name}: grad[{i}] = {g} vs torch {e}"));
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
