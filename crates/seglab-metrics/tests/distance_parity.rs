//! Surface-distance parity with the reference libraries on every golden case (tests/data/metric_cases, copied
//! from the team's shared/golden with its provenance note), for every convention, plus property tests.
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use seglab_metrics::distance::{
    distance_metrics, AssdConvention, DistanceMetrics, DistanceOutcome, DistanceSettings,
    Hd95Convention, NsdConvention,
};
use seglab_metrics::{io, Mask};
use serde_json::Value;

/// The shared golden cases plus the anisotropic-spacing cases of tests/data/distance_cases (made by its
/// gen_distance_cases.py with the same library calls).
fn cases() -> Vec<PathBuf> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut v: Vec<PathBuf> = ["metric_cases", "distance_cases"]
        .iter()
        .flat_map(|d| std::fs::read_dir(data.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    v.sort();
    assert!(v.len() >= 20, "golden cases missing: {}", v.len());
    v
}

struct Case {
    name: String,
    expected: Value,
    pred: Mask,
    gt: Mask,
}

fn load(dir: &Path) -> Case {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let spacing: Vec<f64> = serde_json::from_value(expected["spacing_mm"].clone()).unwrap();
    let read = |name: &str| {
        io::read_gt_mask(&dir.join(format!("{name}.npy")), None)
            .unwrap()
            .with_spacing(spacing.clone())
    };
    Case {
        name: dir.file_name().unwrap().to_string_lossy().into_owned(),
        pred: read("pred"),
        gt: read("gt"),
        expected,
    }
}

fn settings(
    hd95: Hd95Convention,
    assd: AssdConvention,
    nsd: NsdConvention,
    tol: f64,
) -> DistanceSettings {
    DistanceSettings {
        hd95,
        assd,
        nsd,
        nsd_tolerance_mm: tol,
        mode: Default::default(),
    }
}

fn computed(c: &Case, s: &DistanceSettings) -> DistanceMetrics {
    match distance_metrics(&c.pred, &c.gt, s) {
        DistanceOutcome::Computed(m) => m,
        other => panic!("{}: expected distances, got {other:?}", c.name),
    }
}

/// A library value: `{"value": x, "outcome": "value"}`, or `list` for DeepMind's pairs.
fn lib_value(v: &Value, index: Option<usize>) -> f64 {
    match index {
        None => {
            assert_eq!(v["outcome"], "value", "{v}");
            v["value"].as_f64().unwrap()
        }
        Some(i) => {
            assert_eq!(v["outcome"], "list", "{v}");
            v["value"][i].as_f64().unwrap()
        }
    }
}

fn close(case: &str, what: &str, got: f64, want: f64) {
    let ok = (got - want).abs() <= 1e-4 * want.abs() || (got - want).abs() <= 1e-6;
    assert!(ok, "{case}: {what}: seglab {got} vs library {want}");
}

fn is_empty_case(c: &Case) -> bool {
    c.pred.is_empty() || c.gt.is_empty()
}

#[test]
fn empty_masks_give_the_matching_outcome() {
    let mut seen = 0;
    for dir in cases() {
        let c = load(&dir);
        let want = match (c.pred.is_empty(), c.gt.is_empty()) {
            (true, true) => DistanceOutcome::BothEmpty,
            (true, false) => DistanceOutcome::PredEmpty,
            (false, true) => DistanceOutcome::GtEmpty,
            (false, false) => continue,
        };
        seen += 1;
        for hd95 in [
            Hd95Convention::Monai,
            Hd95Convention::Medpy,
            Hd95Convention::Deepmind,
        ] {
            for nsd in [NsdConvention::Deepmind, NsdConvention::Voxel] {
                let s = settings(hd95, AssdConvention::Pooled, nsd, 1.0);
                assert_eq!(distance_metrics(&c.pred, &c.gt, &s), want, "{}", c.name);
            }
        }
    }
    assert!(seen >= 6, "expected the six empty golden cases, saw {seen}");
}

#[test]
fn voxel_conventions_match_medpy_and_monai() {
    let mut checked = 0;
    for dir in cases() {
        let c = load(&dir);
        if is_empty_case(&c) {
            continue;
        }
        let e = &c.expected;
        let (medpy, monai) = (&e["medpy"], &e["monai"]);
        let derived = &e["derived_conventions_from_conn1_voxel_surfaces"];
        let n = &c.name;

        let m = computed(
            &c,
            &settings(
                Hd95Convention::Monai,
                AssdConvention::Pooled,
                NsdConvention::Voxel,
                1.0,
            ),
        );
        close(n, "hd vs medpy", m.hd, lib_value(&medpy["hd"], None));
        close(
            n,
            "hd vs monai",
            m.hd,
            lib_value(
                &monai["HausdorffDistanceMetric(percentile=None)"]["raw"],
                None,
            ),
        );
        close(
            n,
            "hd95 monai",
            m.hd95,
            lib_value(
                &monai["HausdorffDistanceMetric(percentile=95)"]["raw"],
                None,
            ),
        );
        close(
            n,
            "hd95 monai (derived f64)",
            m.hd95,
            derived["hd95_max_of_directed_linear (MONAI style)"]
                .as_f64()
                .unwrap(),
        );
        close(
            n,
            "assd pooled vs medpy",
            m.assd,
            lib_value(&medpy["assd"], None),
        );
        close(
            n,
            "assd pooled vs monai",
            m.assd,
            lib_value(&monai["SurfaceDistanceMetric(symmetric=True)"]["raw"], None),
        );
        close(
            n,
            "asd pred->gt vs medpy",
            m.asd_pred_to_gt,
            lib_value(&medpy["asd"], None),
        );
        close(
            n,
            "asd pred->gt vs monai",
            m.asd_pred_to_gt,
            lib_value(
                &monai["SurfaceDistanceMetric(symmetric=False)"]["raw"],
                None,
            ),
        );
        close(
            n,
            "asd gt->pred vs medpy",
            m.asd_gt_to_pred,
            lib_value(&medpy["asd_reversed(gt->pred)"], None),
        );
        close(
            n,
            "nsd voxel tol 1",
            m.nsd,
            lib_value(
                &monai["SurfaceDiceMetric(class_thresholds=[1],use_subvoxels=False)"]["raw"],
                None,
            ),
        );

        let m2 = computed(
            &c,
            &settings(
                Hd95Convention::Medpy,
                AssdConvention::MeanOfDirected,
                NsdConvention::Voxel,
                2.0,
            ),
        );
        close(n, "hd95 medpy", m2.hd95, lib_value(&medpy["hd95"], None));
        close(
            n,
            "hd (medpy convention)",
            m2.hd,
            lib_value(&medpy["hd"], None),
        );
        close(
            n,
            "assd mean-of-directed voxel",
            m2.assd,
            derived["assd_mean_of_directed_means (DeepMind-style aggregation)"]
                .as_f64()
                .unwrap(),
        );
        close(
            n,
            "nsd voxel tol 2",
            m2.nsd,
            lib_value(
                &monai["SurfaceDiceMetric(class_thresholds=[2],use_subvoxels=False)"]["raw"],
                None,
            ),
        );
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} non-empty cases");
}

#[test]
fn deepmind_conventions_match_surface_distance_and_monai_subvoxels() {
    let mut checked = 0;
    for dir in cases() {
        let c = load(&dir);
        if is_empty_case(&c) {
            continue;
        }
        let e = &c.expected;
        let (dm, monai) = (&e["surface_distance_np2_compat"], &e["monai"]);
        let n = &c.name;
        for (tol, key, monai_key) in [
            (
                1.0,
                "surface_dice_tol1mm",
                "SurfaceDiceMetric(class_thresholds=[1],use_subvoxels=True)",
            ),
            (
                2.0,
                "surface_dice_tol2mm",
                "SurfaceDiceMetric(class_thresholds=[2],use_subvoxels=True)",
            ),
        ] {
            let m = computed(
                &c,
                &settings(
                    Hd95Convention::Deepmind,
                    AssdConvention::MeanOfDirected,
                    NsdConvention::Deepmind,
                    tol,
                ),
            );
            close(
                n,
                "hd95 deepmind",
                m.hd95,
                lib_value(&dm["robust_hausdorff_95"], None),
            );
            close(
                n,
                "hd deepmind",
                m.hd,
                lib_value(&dm["robust_hausdorff_100"], None),
            );
            let asd = &dm["average_surface_distance(gt->pred,pred->gt)"];
            close(
                n,
                "asd gt->pred deepmind",
                m.asd_gt_to_pred,
                lib_value(asd, Some(0)),
            );
            close(
                n,
                "asd pred->gt deepmind",
                m.asd_pred_to_gt,
                lib_value(asd, Some(1)),
            );
            close(
                n,
                "assd mean of directions deepmind",
                m.assd,
                lib_value(&dm["assd_mean_of_two_directions"], None),
            );
            close(n, key, m.nsd, lib_value(&dm[key], None));
            close(
                n,
                monai_key,
                m.nsd,
                lib_value(&monai[monai_key]["raw"], None),
            );
        }
        // The default settings: MONAI HD95 on voxels, pooled ASSD, DeepMind NSD at 1 mm.
        let d = computed(&c, &DistanceSettings::default());
        close(
            n,
            "default hd95",
            d.hd95,
            lib_value(
                &monai["HausdorffDistanceMetric(percentile=95)"]["raw"],
                None,
            ),
        );
        close(
            n,
            "default nsd",
            d.nsd,
            lib_value(&dm["surface_dice_tol1mm"], None),
        );
        checked += 1;
    }
    assert!(checked >= 14, "only {checked} non-empty cases");
}

fn all_settings() -> Vec<DistanceSettings> {
    let mut v = Vec::new();
    for hd95 in [
        Hd95Convention::Monai,
        Hd95Convention::Medpy,
        Hd95Convention::Deepmind,
    ] {
        for assd in [AssdConvention::Pooled, AssdConvention::MeanOfDirected] {
            for nsd in [NsdConvention::Deepmind, NsdConvention::Voxel] {
                v.push(settings(hd95, assd, nsd, 1.0));
            }
        }
    }
    v
}

/// Random small 2D or 3D mask with random anisotropic spacing; at least one voxel set.
fn mask_strategy() -> impl Strategy<Value = Mask> {
    (
        prop::bool::ANY,
        2usize..9,
        2usize..9,
        2usize..7,
        0.3f64..3.0,
        0.3f64..3.0,
        0.3f64..3.0,
    )
        .prop_flat_map(|(three_d, a, b, c, s0, s1, s2)| {
            let (shape, spacing) = if three_d {
                (vec![a, b, c], vec![s0, s1, s2])
            } else {
                (vec![a, b], vec![s0, s1])
            };
            let n: usize = shape.iter().product();
            (prop::collection::vec(prop::bool::weighted(0.4), n), 0..n).prop_map(
                move |(mut data, force)| {
                    data[force] = true;
                    Mask::new(shape.clone(), spacing.clone(), data)
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_mask_against_itself_has_zero_distances_and_nsd_one(m in mask_strategy()) {
        for s in all_settings() {
            let DistanceOutcome::Computed(d) = distance_metrics(&m, &m, &s) else { panic!("non-empty") };
            prop_assert_eq!((d.hd, d.hd95, d.assd, d.asd_pred_to_gt, d.asd_gt_to_pred), (0.0, 0.0, 0.0, 0.0, 0.0));
            prop_assert_eq!(d.nsd, 1.0);
        }
    }

    #[test]
    fn hd_and_assd_are_symmetric(a in mask_strategy(), seed in any::<u64>()) {
        // b: same geometry as a, other random voxels.
        let mut state = seed | 1;
        let data: Vec<bool> = (0..a.len()).map(|_| { state ^= state << 13; state ^= state >> 7; state ^= state << 17; state % 3 == 0 }).collect();
        let mut b = Mask::new(a.shape().to_vec(), a.spacing().to_vec(), data);
        b.data_mut()[0] = true;
        for s in all_settings() {
            let (DistanceOutcome::Computed(ab), DistanceOutcome::Computed(ba)) =
                (distance_metrics(&a, &b, &s), distance_metrics(&b, &a, &s)) else { panic!("non-empty") };
            let tol = 1e-12 * ab.hd.max(1.0);
            prop_assert!((ab.hd - ba.hd).abs() <= tol, "hd {} vs {}", ab.hd, ba.hd);
            prop_assert!((ab.hd95 - ba.hd95).abs() <= tol, "hd95 {} vs {}", ab.hd95, ba.hd95);
            prop_assert!((ab.assd - ba.assd).abs() <= tol, "assd {} vs {}", ab.assd, ba.assd);
            prop_assert!((ab.nsd - ba.nsd).abs() <= 1e-12, "nsd {} vs {}", ab.nsd, ba.nsd);
            prop_assert!((ab.asd_pred_to_gt - ba.asd_gt_to_pred).abs() <= tol);
        }
    }

    #[test]
    fn a_single_voxel_shifted_by_k_gives_hd_k_times_spacing(
        three_d in prop::bool::ANY,
        dims in prop::collection::vec(3usize..12, 3),
        spacing in prop::collection::vec(0.2f64..4.0, 3),
        axis_pick in 0usize..3,
        start_pick in 0usize..1000,
        k_pick in 1usize..1000,
    ) {
        let nd = if three_d { 3 } else { 2 };
        let (shape, spacing) = (dims[..nd].to_vec(), spacing[..nd].to_vec());
        let axis = axis_pick % nd;
        let k = 1 + k_pick % (shape[axis] - 1);
        let from = start_pick % (shape[axis] - k);
        let mut at = vec![0usize; nd];
        for (a, c) in at.iter_mut().enumerate() { *c = shape[a] / 2; }
        let index = |c: &[usize]| c.iter().zip(&shape).fold(0, |acc, (&x, &n)| acc * n + x);
        let mut gt = Mask::zeros(shape.clone(), spacing.clone());
        let mut pred = Mask::zeros(shape.clone(), spacing.clone());
        at[axis] = from;
        gt.data_mut()[index(&at)] = true;
        at[axis] = from + k;
        pred.data_mut()[index(&at)] = true;
        let want = k as f64 * spacing[axis];
        for s in all_settings() {
            let DistanceOutcome::Computed(d) = distance_metrics(&pred, &gt, &s) else { panic!("non-empty") };
            prop_assert!((d.hd - want).abs() <= 1e-9 * want, "{:?}: hd {} vs {}", s, d.hd, want);
            prop_assert!((d.hd95 - want).abs() <= 1e-9 * want, "{:?}: hd95 {} vs {}", s, d.hd95, want);
            if s.hd95 != Hd95Convention::Deepmind {
                // Surfels sit on voxel corners: half of them are (k - 1) * spacing away, so only voxel ASSD is k.
                prop_assert!((d.assd - want).abs() <= 1e-9 * want, "{:?}: assd {} vs {}", s, d.assd, want);
            }
        }
    }
}
