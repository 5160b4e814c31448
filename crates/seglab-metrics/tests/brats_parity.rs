//! BraTS 2023 lesion-wise metrics against the challenge's reference implementation: every case of
//! `tests/data/brats_cases` (see its README), every challenge parameter set, every region, read from the same NIfTI
//! files the reference read.
use std::path::{Path, PathBuf};

use seglab_metrics::brats::BratsSettings;
use seglab_metrics::folders::{evaluate_pair, evaluate_pairs_by_region, Pair, ReadOptions};
use seglab_metrics::labels::{parse_regions, LabelSet};
use seglab_metrics::EvalSettings;
use serde_json::Value;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/brats_cases");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    v.sort();
    assert_eq!(v.len(), 11, "the 11 reference cases");
    v
}

fn pair(dir: &Path) -> Pair {
    Pair {
        case: dir.file_name().unwrap().to_string_lossy().into(),
        pred: dir.join("pred.nii.gz"),
        gt: dir.join("gt.nii.gz"),
    }
}

const REGIONS: [(&str, &str); 3] = [("WT", "1,2,3"), ("TC", "1,3"), ("ET", "3")];

fn settings_of(challenge: &Value) -> EvalSettings {
    let p = &challenge["params"];
    EvalSettings {
        lesion_wise: Some(BratsSettings {
            dilation: p["dilation_factor"].as_u64().unwrap() as usize,
            min_volume_mm3: p["lesion_volume_thresh"].as_f64().unwrap(),
        }),
        ..Default::default()
    }
}

/// The reference writes non-finite numbers as strings.
fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "NaN" => f64::NAN,
        v => v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")),
    }
}

fn close_rel(ours: f64, theirs: f64, rel: f64, what: &str) {
    assert!(
        (ours - theirs).abs() <= rel * theirs.abs().max(1e-300) || ours == theirs,
        "{what}: ours {ours}, reference {theirs}"
    );
}

/// HD95: 1e-4 relative or 1e-6 mm.
fn close_hd(ours: f64, theirs: f64, what: &str) {
    assert!(
        (ours - theirs).abs() <= (1e-4 * theirs.abs()).max(1e-6),
        "{what}: ours {ours}, reference {theirs}"
    );
}

#[test]
fn every_case_challenge_and_region_matches_the_reference() {
    let mut checked = 0;
    let mut lesions_checked = 0;
    for dir in cases() {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        for (challenge, c) in expected["challenges"].as_object().unwrap() {
            let settings = settings_of(c);
            for (region, labels) in REGIONS {
                let what = format!("{} {challenge} {region}", dir.display());
                let read = ReadOptions {
                    labels: Some(LabelSet::parse(labels).unwrap()),
                    ..Default::default()
                };
                let out = evaluate_pair(&pair(&dir), &read, &settings, &[]).unwrap();
                let r = &out.result;
                let lw = r.lesionwise.as_ref().unwrap();
                let row = &c["regions"][region]["summary_row"];
                close_rel(
                    lw.dice,
                    num(&row["LesionWise_Score_Dice"]),
                    1e-6,
                    &format!("{what} lesion-wise dice"),
                );
                close_hd(
                    lw.hd95,
                    num(&row["LesionWise_Score_HD95"]),
                    &format!("{what} lesion-wise hd95"),
                );
                assert_eq!(lw.tp as f64, num(&row["Num_TP"]), "{what} tp");
                assert_eq!(lw.fp as f64, num(&row["Num_FP"]), "{what} fp");
                assert_eq!(lw.fn_ as f64, num(&row["Num_FN"]), "{what} fn");
                let m = &r.metrics;
                close_rel(
                    m.dice.unwrap(),
                    num(&row["Legacy_Dice"]),
                    1e-6,
                    &format!("{what} legacy dice"),
                );
                close_hd(
                    m.hd95.unwrap(),
                    num(&row["Legacy_HD95"]),
                    &format!("{what} legacy hd95"),
                );
                close_rel(
                    m.gt_volume.unwrap(),
                    num(&row["GT_Complete_Volume"]),
                    1e-6,
                    &format!("{what} volume"),
                );
                close_rel(
                    lw.gt_volume_mm3,
                    num(&row["GT_Complete_Volume"]),
                    1e-6,
                    &format!("{what} volume"),
                );
                close_rel(
                    m.recall.unwrap(),
                    num(&row["Sensitivity"]),
                    1e-6,
                    &format!("{what} sensitivity"),
                );
                close_rel(
                    m.specificity.unwrap(),
                    num(&row["Specificity"]),
                    1e-6,
                    &format!("{what} specificity"),
                );

                // Per lesion, as multisets: the reference numbers lesions in its arrays' memory order.
                let table = c["regions"][region]["lesion_table"].as_array().unwrap();
                assert_eq!(lw.lesions.len(), table.len(), "{what} lesion count");
                assert_eq!(lw.n_gt_lesions, table.len(), "{what} lesion count");
                let thresh = settings.lesion_wise.unwrap().min_volume_mm3;
                let mut theirs: Vec<[f64; 4]> = table
                    .iter()
                    .map(|l| {
                        [
                            num(&l["gt_lesion_vol"]),
                            num(&l["dice_lesionwise"]),
                            num(&l["hd95_lesionwise"]),
                            num(&l["_len"]),
                        ]
                    })
                    .collect();
                let mut ours: Vec<[f64; 4]> = lw
                    .lesions
                    .iter()
                    .map(|l| {
                        assert_eq!(l.kept, l.gt_volume_mm3 > thresh, "{what}");
                        [
                            l.gt_volume_mm3,
                            l.dice,
                            l.hd95,
                            l.matched_pred_components as f64,
                        ]
                    })
                    .collect();
                let order = |a: &[f64; 4], b: &[f64; 4]| {
                    a.iter()
                        .zip(b)
                        .map(|(x, y)| x.total_cmp(y))
                        .find(|o| o.is_ne())
                        .unwrap_or(std::cmp::Ordering::Equal)
                };
                theirs.sort_by(order);
                ours.sort_by(order);
                for (o, t) in ours.iter().zip(&theirs) {
                    close_rel(o[0], t[0], 1e-9, &format!("{what} lesion volume"));
                    close_rel(o[1], t[1], 1e-6, &format!("{what} lesion dice"));
                    close_hd(o[2], t[2], &format!("{what} lesion hd95"));
                    assert_eq!(o[3], t[3], "{what} matched components");
                    lesions_checked += 1;
                }
                assert_eq!(lw.n_gt_kept, ours.iter().filter(|l| l[0] > thresh).count());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 11 * 5 * 3);
    assert!(lesions_checked > 200, "{lesions_checked}");
}

#[test]
fn regions_in_one_run_equal_one_label_set_at_a_time() {
    let dirs = cases();
    let pairs: Vec<Pair> = dirs.iter().map(|d| pair(d)).collect();
    let regions = parse_regions("WT=1,2,3,TC=1,3,ET=3").unwrap();
    let settings = EvalSettings {
        lesion_wise: Some(BratsSettings::challenge("gli").unwrap()),
        ..Default::default()
    };
    let all =
        evaluate_pairs_by_region(&pairs, &ReadOptions::default(), &settings, &regions, &|| {})
            .unwrap();
    assert_eq!(all.cases.len(), pairs.len());
    assert!(all.labels_absent.is_empty());
    for (k, region) in regions.iter().enumerate() {
        assert_eq!(all.summaries[k].0, region.name);
        for (p, case) in pairs.iter().zip(&all.cases) {
            let read = ReadOptions {
                labels: Some(region.labels.clone()),
                ..Default::default()
            };
            let one = evaluate_pair(p, &read, &settings, &[]).unwrap().result;
            assert_eq!(case.regions[k].1, one);
        }
        let lw = all.summaries[k].1.lesionwise.as_ref().unwrap();
        assert_eq!(lw.dice.n, pairs.len());
    }
    // The JSON keeps the regions in the order given.
    let json = serde_json::to_string(&all.cases[0]).unwrap();
    let (wt, tc, et) = (
        json.find("\"WT\"").unwrap(),
        json.find("\"TC\"").unwrap(),
        json.find("\"ET\"").unwrap(),
    );
    assert!(wt < tc && tc < et);
}

#[test]
fn a_label_no_file_holds_is_reported() {
    let dirs = cases();
    let pairs: Vec<Pair> = dirs.iter().map(|d| pair(d)).collect();
    let regions = parse_regions("WT=1,2,3,X=4,7").unwrap();
    let r = evaluate_pairs_by_region(
        &pairs,
        &ReadOptions::default(),
        &EvalSettings::default(),
        &regions,
        &|| {},
    )
    .unwrap();
    assert_eq!(r.labels_absent, vec![("X".to_string(), vec![4, 7])]);
}
