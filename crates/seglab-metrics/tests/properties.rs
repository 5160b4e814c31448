//! Property tests of the overlap metrics and of evaluate's symmetry.
use proptest::prelude::*;
use seglab_metrics::{evaluate_masks, Confusion, EvalSettings, Mask};

fn masks() -> impl Strategy<Value = (Mask, Mask)> {
    (1usize..12, 1usize..12, 1usize..4).prop_flat_map(|(h, w, d)| {
        let n = h * w * d;
        (
            prop::collection::vec(any::<bool>(), n),
            prop::collection::vec(any::<bool>(), n),
        )
            .prop_map(move |(a, b)| {
                let shape = if d == 1 { vec![h, w] } else { vec![d, h, w] };
                (Mask::from_vec(shape.clone(), a), Mask::from_vec(shape, b))
            })
    })
}

fn no_distances() -> EvalSettings {
    EvalSettings {
        distances: false,
        ..Default::default()
    }
}

proptest! {
    #[test]
    fn dice_is_2tp_over_2tp_fp_fn((p, g) in masks()) {
        let c = Confusion::from_masks(p.data(), g.data());
        let den = 2 * c.tp + c.fp + c.fn_;
        match c.dice() {
            Some(d) => prop_assert!((d - 2.0 * c.tp as f64 / den as f64).abs() < 1e-12),
            None => prop_assert_eq!(den, 0),
        }
        let r = evaluate_masks("x", &p, &g, &no_distances()).unwrap();
        // evaluate counts inside the union's bounding box only (the rest is TN): the same four counts.
        prop_assert_eq!(r.metrics.tp, Some(c.tp as f64));
        prop_assert_eq!(r.metrics.fp, Some(c.fp as f64));
        prop_assert_eq!(r.metrics.fn_, Some(c.fn_ as f64));
        prop_assert_eq!(r.metrics.tn, Some(c.tn as f64));
        if den > 0 {
            prop_assert!((r.metrics.dice.unwrap() - 2.0 * c.tp as f64 / den as f64).abs() < 1e-12);
        }
    }

    #[test]
    fn symmetric_metrics_are_symmetric((p, g) in masks()) {
        let a = evaluate_masks("x", &p, &g, &no_distances()).unwrap().metrics;
        let b = evaluate_masks("x", &g, &p, &no_distances()).unwrap().metrics;
        for key in ["dice", "iou", "accuracy", "mcc", "volume_similarity", "abs_volume_difference", "tn", "tp"] {
            prop_assert_eq!(a.get(key), b.get(key), "{}", key);
        }
        // Swapping roles swaps precision and recall, fp and fn, and the lesion counts.
        prop_assert_eq!(a.precision, b.recall);
        prop_assert_eq!(a.fp, b.fn_);
        prop_assert_eq!(a.gt_lesions, b.pred_lesions);
    }

    #[test]
    fn mask_against_itself_is_perfect((p, _g) in masks()) {
        let r = evaluate_masks("x", &p, &p, &no_distances()).unwrap().metrics;
        prop_assert_eq!(r.dice, Some(1.0));
        prop_assert_eq!(r.iou, Some(1.0));
        prop_assert_eq!(r.lesion_f1, Some(1.0));
        prop_assert_eq!(r.lesions_missed, Some(0.0));
    }
}

#[test]
fn mask_against_itself_has_zero_distances() {
    let mut m = Mask::zeros(vec![8, 9], vec![0.7, 1.3]);
    m.data_mut()[20] = true;
    m.data_mut()[21] = true;
    let r = evaluate_masks("x", &m, &m, &EvalSettings::default())
        .unwrap()
        .metrics;
    assert_eq!(
        (r.hd, r.hd95, r.assd, r.nsd),
        (Some(0.0), Some(0.0), Some(0.0), Some(1.0))
    );
}

/// Shifting a single voxel by k along an axis gives hd == k * spacing.
#[test]
fn single_voxel_shift_gives_hd_k_spacing() {
    for k in 1..5usize {
        let mut a = Mask::zeros(vec![4, 10, 10], vec![3.0, 0.8, 0.8]);
        let mut b = a.clone();
        a.data_mut()[(10 + 2) * 10 + 2] = true;
        b.data_mut()[(10 + 2) * 10 + 2 + k] = true;
        let r = evaluate_masks("x", &b, &a, &EvalSettings::default())
            .unwrap()
            .metrics;
        assert!((r.hd.unwrap() - k as f64 * 0.8).abs() < 1e-9);
    }
}
