use super::clusters::boxes_meet;
use super::*;
use crate::rng::SplitMix64;

/// Ellipsoids (centre, radii in voxels) drawn on a grid; a 2D shape uses the last two coordinates.
fn blobs(shape: &[usize], spacing: &[f64], items: &[([f64; 3], [f64; 3])]) -> Mask {
    let s3: [usize; 3] = if shape.len() == 2 {
        [1, shape[0], shape[1]]
    } else {
        [shape[0], shape[1], shape[2]]
    };
    let mut data = vec![false; s3.iter().product()];
    for (i, v) in data.iter_mut().enumerate() {
        let p = [
            (i / (s3[1] * s3[2])) as f64,
            ((i / s3[2]) % s3[1]) as f64,
            (i % s3[2]) as f64,
        ];
        *v = items
            .iter()
            .any(|(c, r)| (0..3).map(|a| ((p[a] - c[a]) / r[a]).powi(2)).sum::<f64>() <= 1.0);
    }
    Mask::new(shape.to_vec(), spacing.to_vec(), data)
}

fn lift(v: &[([f64; 2], [f64; 2])]) -> Vec<([f64; 3], [f64; 3])> {
    v.iter()
        .map(|(c, r)| ([0.0, c[0], c[1]], [1.0, r[0], r[1]]))
        .collect()
}

/// Both surface models through the cluster boxes and through one transform of the whole crop.
fn assert_clusters_match_whole(gt: &Mask, pred: &Mask, what: &str) -> Option<SurfaceDistances> {
    let crop = UnionCrop::new(pred, gt).unwrap();
    let clusters = crop.cluster_boxes()?;
    let models = [SurfaceModel::Voxel, SurfaceModel::Surfel];
    let boxed = crop.distances_in_clusters(&models, &clusters);
    for (model, boxed) in models.iter().zip(&boxed) {
        let whole = crop.distances_whole(*model, &mut Default::default());
        assert_eq!(boxed, &whole, "{what} {model:?}");
    }
    boxed.into_iter().next()
}

#[test]
fn cluster_boxes_give_the_whole_crop_values() {
    // Lesions spread over a large volume: pairs whose prediction is shifted and resized, and one lesion only in
    // the ground truth and one only in the prediction, far from everything (their points need the grid lookup).
    let shape3 = [40usize, 130, 120];
    let spacing3 = [3.0, 0.8, 0.8];
    let gt3 = [
        ([8.0, 20.0, 20.0], [2.5, 6.0, 5.0]),
        ([20.0, 70.0, 40.0], [3.0, 8.0, 9.0]),
        ([30.0, 30.0, 90.0], [1.5, 4.0, 4.0]),
        ([36.0, 120.0, 110.0], [2.0, 5.0, 5.0]),
    ];
    let pred3 = [
        ([8.0, 21.0, 22.0], [2.0, 7.0, 5.0]),
        ([21.0, 69.0, 41.0], [3.0, 7.0, 9.0]),
        ([30.0, 31.0, 89.0], [1.5, 5.0, 3.0]),
        ([3.0, 120.0, 8.0], [1.5, 4.0, 4.0]),
    ];
    let shape2 = [260usize, 240];
    let gt2 = lift(&[
        ([30.0, 30.0], [9.0, 7.0]),
        ([120.0, 100.0], [15.0, 12.0]),
        ([250.0, 230.0], [5.0, 6.0]),
    ]);
    let pred2 = lift(&[
        ([32.0, 29.0], [8.0, 8.0]),
        ([118.0, 103.0], [14.0, 13.0]),
        ([10.0, 220.0], [4.0, 4.0]),
    ]);
    // A box reaches farther along its diagonals than its margin: a predicted disc whose box holds a
    // ground-truth disc diagonally (about 14 px away) while a nearer one (about 13 px) lies just outside the
    // box along a row. Only the margin check keeps the in-box answer from being taken. Spacing 1: margin 10 px.
    let gt_corner = lift(&[
        ([113.0, 113.0], [1.0, 1.0]),
        ([100.0, 117.0], [1.0, 1.0]),
        ([10.0, 10.0], [4.0, 4.0]),
        ([250.0, 230.0], [4.0, 4.0]),
    ]);
    let pred_corner = lift(&[
        ([100.0, 100.0], [3.0, 3.0]),
        ([11.0, 10.0], [4.0, 4.0]),
        ([250.0, 231.0], [4.0, 4.0]),
    ]);
    for (shape, spacing, gt, pred, isolated) in [
        (
            &shape3[..],
            &spacing3[..],
            gt3.to_vec(),
            pred3.to_vec(),
            true,
        ),
        (&shape2[..], &[0.7, 0.9][..], gt2, pred2, true),
        (&shape2[..], &[1.0, 1.0][..], gt_corner, pred_corner, false),
    ] {
        let (gt, pred) = (blobs(shape, spacing, &gt), blobs(shape, spacing, &pred));
        let d = assert_clusters_match_whole(&gt, &pred, &format!("{shape:?}"))
            .unwrap_or_else(|| panic!("{shape:?}: cluster boxes not used"));
        // The isolated lesions' points are farther than any box margin: the grid lookup answered them.
        let margin = UnionCrop::new(&pred, &gt)
            .unwrap()
            .cluster_boxes()
            .unwrap()
            .exact_below;
        if isolated {
            assert!(
                d.pred_to_gt.max() > margin && d.gt_to_pred.max() > margin,
                "{shape:?}"
            );
        }
    }
}

#[test]
fn cluster_boxes_match_with_scattered_specks() {
    // Many small components a few margins apart: their boxes overlap (each cluster keeps its own box, and a box
    // holds parts of its neighbours), the case that merging boxes until disjoint turned into one box.
    let mut rng = SplitMix64::new(11);
    // Sparse enough for the boxes to cover at most a quarter of the crop (else the whole-crop path runs).
    for (trial, (shape, spacing, n_gt, n_pred)) in [
        (vec![40usize, 256, 256], vec![3.0, 0.8, 0.8], 40, 60),
        (vec![600usize, 600], vec![0.7, 1.1], 40, 60),
        (vec![64usize, 200, 200], vec![1.0, 1.0, 1.0], 20, 30),
    ]
    .into_iter()
    .enumerate()
    {
        let three = shape.len() == 3;
        let n: usize = shape.iter().product();
        let specks = |rng: &mut SplitMix64, count: usize| -> Vec<bool> {
            let mut m = vec![false; n];
            for _ in 0..count {
                let i = rng.below(n);
                m[i] = true;
                // Some specks two voxels long, along the last axis.
                if rng.uniform() < 0.5 && !(i + 1).is_multiple_of(shape[shape.len() - 1]) {
                    m[i + 1] = true;
                }
            }
            m
        };
        let gt = Mask::new(shape.clone(), spacing.clone(), specks(&mut rng, n_gt));
        let pred = Mask::new(shape.clone(), spacing.clone(), specks(&mut rng, n_pred));
        let crop = UnionCrop::new(&pred, &gt).unwrap();
        let clusters = crop
            .cluster_boxes()
            .unwrap_or_else(|| panic!("trial {trial}: cluster boxes not used"));
        let overlapping = clusters.clusters.iter().enumerate().any(|(i, (_, a))| {
            clusters.clusters[i + 1..]
                .iter()
                .any(|(_, b)| boxes_meet(a, b))
        });
        assert!(overlapping, "trial {trial} (3D: {three}): no boxes overlap");
        assert_clusters_match_whole(&gt, &pred, &format!("specks trial {trial}"));
    }
}

#[test]
fn cluster_boxes_match_on_random_lesion_layouts() {
    let mut rng = SplitMix64::new(7);
    let mut used = 0;
    for trial in 0..60 {
        let three = trial % 2 == 0;
        let shape: Vec<usize> = if three {
            vec![24, 70, 64]
        } else {
            vec![120, 110]
        };
        let spacing: Vec<f64> = shape.iter().map(|_| 0.5 + rng.uniform() * 2.5).collect();
        let draw = |rng: &mut SplitMix64, n: usize| -> Vec<([f64; 3], [f64; 3])> {
            (0..n)
                .map(|_| {
                    let c: [f64; 3] = std::array::from_fn(|a| {
                        let len = if three {
                            shape[a]
                        } else if a == 0 {
                            1
                        } else {
                            shape[a - 1]
                        };
                        rng.uniform() * len as f64
                    });
                    let r: [f64; 3] = std::array::from_fn(|_| 0.6 + rng.uniform() * 4.0);
                    (
                        if three { c } else { [0.0, c[1], c[2]] },
                        if three { r } else { [1.0, r[1], r[2]] },
                    )
                })
                .collect()
        };
        let gt = draw(&mut rng, 1 + trial % 5);
        // Most predicted lesions near a true one, some anywhere.
        let mut pred = Vec::new();
        for (c, r) in &gt {
            if rng.uniform() < 0.8 {
                let c = c.map(|v| v + 2.0 * rng.uniform() - 1.0);
                let r = r.map(|v| v * (0.7 + 0.6 * rng.uniform()));
                pred.push((c, r));
            }
        }
        let extra = draw(&mut rng, trial % 3);
        pred.extend(extra);
        let (gt, pred) = (blobs(&shape, &spacing, &gt), blobs(&shape, &spacing, &pred));
        if gt.is_empty() || pred.is_empty() {
            continue;
        }
        if assert_clusters_match_whole(&gt, &pred, &format!("trial {trial}")).is_some() {
            used += 1;
        }
    }
    assert!(used >= 15, "cluster boxes used in only {used} trials");
}
