//! Tests of data loading, pairing, preprocessing, splits and batches.
use super::batch::zoom_sample;
use super::*;
use crate::rng::Rng;
use seglab_metrics::io;

fn tiny(n: usize) -> Dataset {
    load(
        PHANTOMS,
        &LoadOptions {
            size: 32,
            phantom_count: n,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn case_of_strips_slice_suffix_only() {
    assert_eq!(case_of("lung2_z015"), "lung2");
    assert_eq!(case_of("img_zebra"), "img_zebra");
    assert_eq!(case_of("abc"), "abc");
}

#[test]
fn tumors2d_is_embedded_and_split_by_case() {
    let ds = load(
        TUMORS2D,
        &LoadOptions {
            size: 32,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.samples.len(), 27);
    assert_eq!(
        ds.cases(),
        ["brain1", "brain2", "breast1", "lung1", "lung2"]
    );
    // Resizing to 32 may erase the smallest lesions (41 pixels at 256x256), not most of them.
    assert!(ds.samples.iter().filter(|s| s.fg_pixels > 0).count() >= 20);
    let split = split_by_case(&ds, 0.2, 0).unwrap();
    assert_eq!(split.val.len(), 1);
    let val = ds.indices_of(&split.val);
    let train = ds.indices_of(&split.train);
    assert_eq!(val.len() + train.len(), 27);
    assert!(val.iter().all(|&i| split.val.contains(&ds.samples[i].case)));
}

#[test]
fn preprocessing_is_zscored() {
    let ds = tiny(3);
    for s in &ds.samples {
        let n = s.image.len() as f64;
        let mean = s.image.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = s
            .image
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(
            mean.abs() < 1e-4 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
    }
}

#[test]
fn joint_zscore_keeps_the_contrast_between_channels() {
    // Channel 0 is a dim ramp, channel 1 the same ramp 100 brighter.
    let plane: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let mut data = plane.clone();
    data.extend(plane.iter().map(|v| v + 100.0));
    let raw = RawImage {
        channels: 2,
        height: 4,
        width: 4,
        data,
    };
    let opts = |normalization| LoadOptions {
        size: 4,
        normalization,
        ..LoadOptions::default()
    };
    let joint = preprocess(&raw, &opts(Normalization::ZScore));
    let mean = |s: &[f32]| s.iter().sum::<f32>() / s.len() as f32;
    assert!(mean(&joint).abs() < 1e-5);
    assert!(mean(&joint[16..]) - mean(&joint[..16]) > 1.5);
    let per_channel = preprocess(&raw, &opts(Normalization::ZScoreChannel));
    assert!(mean(&per_channel[..16]).abs() < 1e-5 && mean(&per_channel[16..]).abs() < 1e-5);
    // Within one channel both keep the same shape: the ramp rises.
    assert!(joint[15] > joint[0] && per_channel[31] > per_channel[16]);
}

#[test]
fn colour_jitter_scales_each_channel_on_its_own() {
    let ds = Dataset {
        name: "rgb".into(),
        channels: 3,
        size: 4,
        samples: vec![Sample {
            id: "a".into(),
            case: "a".into(),
            image: vec![1.0; 3 * 16],
            mask: vec![0; 16],
            fg_pixels: 0,
        }],
    };
    let aug = |colour| AugmentConfig {
        intensity: 0.0,
        colour,
        ..Default::default()
    };
    let gains = |colour| {
        let b = make_batch(&ds, &[0], &aug(colour), &mut Rng::new(5));
        (0..3).map(|c| b.x[c * 16]).collect::<Vec<f32>>()
    };
    assert_eq!(gains(0.0), vec![1.0; 3]);
    let g = gains(0.5);
    assert!(g.iter().all(|v| (0.5..=1.5).contains(v)), "{g:?}");
    assert!(g[0] != g[1] && g[1] != g[2], "{g:?}");
    // One gain per channel: every pixel of a constant channel stays equal.
    let b = make_batch(&ds, &[0], &aug(0.5), &mut Rng::new(5));
    assert!(b.x.chunks(16).all(|p| p.iter().all(|&v| v == p[0])));
}

#[test]
fn configs_without_normalization_keep_their_per_channel_zscore() {
    let old: LoadOptions = serde_json::from_str(
        r#"{"size": 64, "phantom_count": 10, "phantom_seed": 0, "window": null}"#,
    )
    .unwrap();
    assert_eq!(old.normalization, Normalization::ZScoreChannel);
    assert_eq!(LoadOptions::default().normalization, Normalization::ZScore);
    // The names the command line and the docs use.
    for (n, name) in [
        (Normalization::ZScore, "\"zscore\""),
        (Normalization::ZScoreChannel, "\"zscore-channel\""),
    ] {
        assert_eq!(serde_json::to_string(&n).unwrap(), name);
    }
    for (n, old_name) in [
        (Normalization::ZScore, "\"z-score\""),
        (Normalization::ZScoreChannel, "\"z-score-channel\""),
    ] {
        assert_eq!(serde_json::from_str::<Normalization>(old_name).unwrap(), n);
    }
    let back: LoadOptions =
        serde_json::from_str(&serde_json::to_string(&LoadOptions::default()).unwrap()).unwrap();
    assert_eq!(back, LoadOptions::default());
}

#[test]
fn zoom_keeps_image_and_mask_aligned() {
    // A square lesion of image value 5 on a background of 1: after any zoom the mask marks the pixels whose
    // nearest source pixel is in the square, so their bilinear value has at least a quarter of the lesion's
    // weight (a corner): >= 2 (a misaligned mask would mark pixels of value 1).
    let size = 32;
    let mut image = vec![1.0f32; size * size];
    let mut mask = vec![0u8; size * size];
    for y in 10..20 {
        for x in 12..18 {
            image[y * size + x] = 5.0;
            mask[y * size + x] = 1;
        }
    }
    let (same, same_mask) = zoom_sample(&image, &mask, 1, size, 1.0);
    assert_eq!((same, same_mask), (image.clone(), mask.clone()));
    for zoom in [0.8, 1.25] {
        let (img, m) = zoom_sample(&image, &mask, 1, size, zoom);
        let lesion: usize = m.iter().map(|&v| v as usize).sum();
        // Area scales with zoom^2 (60 pixels at 1), within the rounding of the square's edges.
        let expected = 60.0 * zoom * zoom;
        assert!(
            (lesion as f64 - expected).abs() < 0.35 * expected,
            "{zoom}: {lesion} vs {expected}"
        );
        for (v, &l) in img.iter().zip(&m) {
            if l == 1 {
                assert!(
                    *v >= 2.0 - 1e-5,
                    "lesion pixel with image value {v} at zoom {zoom}"
                );
            }
        }
        // Zooming out leaves background (0) at the frame's edge; zooming in fills it.
        assert_eq!(img[0] == 0.0, zoom < 1.0, "{zoom}");
    }
    // Through make_batch: the lesion's pixels still carry the lesion's values.
    let ds = tiny(6);
    let i = (0..6).find(|&i| ds.samples[i].fg_pixels > 0).unwrap();
    let aug = AugmentConfig {
        intensity: 0.0,
        scale: 0.3,
        ..Default::default()
    };
    let mut rng = Rng::new(5);
    let mut sizes = std::collections::BTreeSet::new();
    for _ in 0..8 {
        let b = make_batch(&ds, &[i], &aug, &mut rng);
        sizes.insert(b.t.iter().filter(|&&t| t > 0.5).count());
    }
    assert!(
        sizes.len() > 1,
        "zoom never changed the lesion area: {sizes:?}"
    );
}

#[test]
fn augmentation_moves_image_and_mask_together() {
    let ds = tiny(6);
    let i = (0..6).find(|&i| ds.samples[i].fg_pixels > 0).unwrap();
    let aug = AugmentConfig {
        intensity: 0.0,
        ..Default::default()
    };
    let mut rng = Rng::new(3);
    for _ in 0..8 {
        let b = make_batch(&ds, &[i], &aug, &mut rng);
        // Geometric transforms permute pixels: the multiset of (value, label) pairs is unchanged.
        let mut pairs: Vec<(i64, u8)> =
            b.x.iter()
                .zip(&b.t)
                .map(|(&v, &m)| ((v * 1e4) as i64, m as u8))
                .collect();
        let mut orig: Vec<(i64, u8)> = ds.samples[i]
            .image
            .iter()
            .zip(&ds.samples[i].mask)
            .map(|(&v, &m)| ((v * 1e4) as i64, m))
            .collect();
        pairs.sort();
        orig.sort();
        assert_eq!(pairs, orig);
    }
}

#[test]
fn patches_oversample_lesions() {
    let ds = tiny(20);
    let train: Vec<usize> = (0..20).collect();
    let aug = AugmentConfig {
        patch: Some(8),
        fg_oversample: 1.0,
        repeats: 1,
        ..Default::default()
    };
    let mut rng = Rng::new(1);
    let plan = epoch_plan(&ds, &train, 4, &aug, &mut rng);
    for idx in &plan {
        let b = make_batch(&ds, idx, &aug, &mut rng);
        assert_eq!(b.x.len(), 4 * 64);
        for k in 0..4 {
            assert!(
                b.t[k * 64..(k + 1) * 64].contains(&1.0),
                "patch {k} has no lesion"
            );
        }
    }
}

#[test]
fn repeats_show_each_image_several_times_differently_augmented() {
    let ds = tiny(12);
    let train: Vec<usize> = (0..12).collect();
    let aug = AugmentConfig {
        repeats: 3,
        ..Default::default()
    };
    let one = AugmentConfig {
        repeats: 1,
        ..Default::default()
    };
    let single = epoch_plan(&ds, &train, 4, &one, &mut Rng::new(2));
    let plan = epoch_plan(&ds, &train, 4, &aug, &mut Rng::new(2));
    assert_eq!(plan.len(), single.len());
    for (p, s) in plan.iter().zip(&single) {
        let expanded: Vec<usize> = s.iter().flat_map(|&i| [i, i, i]).collect();
        assert_eq!(p, &expanded);
    }
    let b = make_batch(&ds, &plan[0], &aug, &mut Rng::new(3));
    assert_eq!(b.n, 12);
    let plane = 32 * 32;
    let copies: Vec<&[f32]> = (0..3).map(|k| &b.x[k * plane..(k + 1) * plane]).collect();
    // The intensity jitter alone makes every copy differ.
    assert!(copies[0] != copies[1] && copies[1] != copies[2] && copies[0] != copies[2]);
}

#[test]
fn halved_batches_average_images_and_take_mask_majority() {
    // Two samples, two channels, side 4: values distinct everywhere so a misplaced block shows.
    let (n, c, s) = (2, 2, 4);
    let x: Vec<f32> = (0..n * c * s * s).map(|i| (i * i % 97) as f32).collect();
    let mut t = vec![0f32; n * s * s];
    // Sample 0: block (0,0) has 2 of 4 lesion pixels, block (0,1) 1 of 4, block (1,1) all 4.
    for p in [0, 1, 2, 10, 11, 14, 15] {
        t[p] = 1.0;
    }
    // Sample 1: block (1,0) has 3 of 4.
    for p in [8, 12, 13] {
        t[s * s + p] = 1.0;
    }
    let b = Batch {
        n,
        side: s,
        x: x.clone(),
        t,
    }
    .halved();
    assert_eq!(
        (b.n, b.side, b.x.len(), b.t.len()),
        (2, 2, n * c * 4, n * 4)
    );
    for plane in 0..n * c {
        for (by, bx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let at = |y: usize, x_: usize| x[plane * s * s + (2 * by + y) * s + 2 * bx + x_];
            let mean = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4.0;
            assert_eq!(
                b.x[plane * 4 + by * 2 + bx],
                mean,
                "plane {plane} block {by},{bx}"
            );
        }
    }
    assert_eq!(b.t, vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn nnunet_volumes_become_slices_of_one_case() {
    let dir = std::env::temp_dir().join(format!("seglab-nnunet-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("imagesTr")).unwrap();
    std::fs::create_dir_all(dir.join("labelsTr")).unwrap();
    let shape = [16usize, 16, 4];
    for (case, z_lesion) in [("caseA", 1usize), ("caseB", 2)] {
        let n = 16 * 16 * 4;
        let img: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
        // Lesion: a 4x4 square on slice `z_lesion` only (last axis is z).
        let lab: Vec<bool> = (0..n)
            .map(|i| i % 4 == z_lesion && (i / 4) % 16 < 4 && (i / 64) < 4)
            .collect();
        let img_path = dir.join(format!("imagesTr/{case}_0000.nii.gz"));
        io::write_nifti(
            &img_path,
            &shape,
            &[1.0, 1.0, 2.5],
            io::NiftiData::F32(&img),
            None,
        )
        .unwrap();
        let lab_path = dir.join(format!("labelsTr/{case}.nii.gz"));
        io::write_nifti(
            &lab_path,
            &shape,
            &[1.0, 1.0, 2.5],
            io::NiftiData::Mask(&lab),
            None,
        )
        .unwrap();
    }
    let ds = load(
        dir.to_str().unwrap(),
        &LoadOptions {
            size: 16,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.samples.len(), 8);
    assert_eq!(ds.cases(), ["caseA", "caseB"]);
    let with_lesion: Vec<&str> = ds
        .samples
        .iter()
        .filter(|s| s.fg_pixels > 0)
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(with_lesion, ["caseA_z001", "caseB_z002"]);
    assert!(ds
        .samples
        .iter()
        .all(|s| s.fg_pixels == 0 || s.fg_pixels == 16));
    let split = split_by_case(&ds, 0.5, 0).unwrap();
    assert_eq!(ds.indices_of(&split.val).len(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn three_way_split_holds_out_test_cases_and_keeps_the_two_way_validation() {
    let ds = load(
        PHANTOMS,
        &LoadOptions {
            size: 32,
            phantom_count: 40,
            ..Default::default()
        },
    )
    .unwrap();
    let two = split_by_case(&ds, 0.2, 7).unwrap();
    let three = split_by_case_with_test(&ds, 0.2, 0.25, 7).unwrap();
    let n = ds.cases().len();
    assert_eq!(
        three.val, two.val,
        "validation does not move when test cases are held out"
    );
    assert_eq!(three.test.len(), (n as f64 * 0.25).round() as usize);
    assert_eq!(three.train.len() + three.val.len() + three.test.len(), n);
    let mut all: Vec<&String> = three
        .train
        .iter()
        .chain(&three.val)
        .chain(&three.test)
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "train, val and test share no case");
    check_split(&ds, &three, "three").unwrap();
    // A test case that is also a training case is refused.
    let mut leak = three.clone();
    leak.test.push(leak.train[0].clone());
    let e = check_split(&ds, &leak, "split.json")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("split.json: test cases also in train or val"),
        "{e}"
    );
    // Without test cases the file keeps its two keys; with them it has three and reads back.
    assert!(!serde_json::to_string(&two).unwrap().contains("test"));
    let back: Split = serde_json::from_str(&serde_json::to_string(&three).unwrap()).unwrap();
    assert_eq!(back, three);
    let old: Split = serde_json::from_str(r#"{"train": ["a"], "val": ["b"]}"#).unwrap();
    assert!(old.test.is_empty());
    assert!(split_by_case_with_test(&ds, 0.2, 1.0, 7).is_err());
}

#[test]
fn folder_errors_name_the_files() {
    let dir = std::env::temp_dir().join(format!("seglab-data-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("images")).unwrap();
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    let err = load(dir.to_str().unwrap(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no images"), "{err}");
    let png = |w: u32, h: u32| {
        let mut v = Vec::new();
        image::GrayImage::new(w, h)
            .write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Png)
            .unwrap();
        v
    };
    std::fs::write(dir.join("images/a.png"), png(8, 8)).unwrap();
    std::fs::write(dir.join("images/b.png"), png(8, 8)).unwrap();
    std::fs::write(dir.join("masks/a_seg.png"), png(8, 8)).unwrap();
    std::fs::write(dir.join("masks/c.png"), png(8, 8)).unwrap();
    let err = load(dir.to_str().unwrap(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("images without a mask: b") && err.contains("masks without an image: c"),
        "{err}"
    );
    std::fs::remove_file(dir.join("images/b.png")).unwrap();
    std::fs::remove_file(dir.join("masks/c.png")).unwrap();
    std::fs::write(dir.join("masks/a_seg.png"), png(4, 8)).unwrap();
    let err = load(dir.to_str().unwrap(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a_seg.png") && err.contains("mask is 8x4"),
        "{err}"
    );
    std::fs::write(dir.join("images/a.png"), b"not a png").unwrap();
    let err = load(dir.to_str().unwrap(), &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("a.png") && err.contains("corrupt"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
