use super::npy::fortran_to_c;
use super::*;
use ndarray::{Array, IxDyn};

#[test]
fn distinct_u8_values_match_a_set() {
    let sets: [&[u8]; 9] = [
        &[],
        &[0],
        &[7],
        &[0, 1],
        &[0, 255],
        &[3, 9],
        &[0, 1, 2],
        &[1, 2, 3, 200],
        &[0, 4, 5],
    ];
    let mut seed = 1u64;
    for set in sets {
        for len in [0usize, 1, 5, 70_000] {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    set.get((seed >> 33) as usize % set.len().max(1))
                        .copied()
                        .unwrap_or(0)
                })
                .collect();
            let want: std::collections::BTreeSet<u8> = v.iter().copied().collect();
            let want: Vec<f64> = want.into_iter().map(f64::from).take(9).collect();
            assert_eq!(
                distinct_values(&RawValues::U8(v), 8),
                want,
                "{set:?} x {len}"
            );
        }
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn npy_roundtrip_all_writers() {
    let dir = tmp();
    let shape = [2usize, 3, 4];
    let m: Vec<bool> = (0..24).map(|i| i % 5 == 0).collect();
    let p = dir.path().join("m.npy");
    write_npy(&p, &shape, NpyData::Bool(&m)).unwrap();
    let r = read(&p).unwrap();
    assert_eq!(r.dtype, SourceDtype::Bool);
    assert_eq!(r.shape, shape);
    assert_eq!(r.to_gt_mask(None).unwrap().data(), &m[..]);

    let f: Vec<f32> = (0..24).map(|i| i as f32 / 23.0).collect();
    let p = dir.path().join("f.npy");
    write_npy(&p, &shape, NpyData::F32(&f)).unwrap();
    let pm = read_prob_map(&p).unwrap();
    assert_eq!(pm.data(), &f[..]);
    // Non-binary ground truth lists what it found.
    let err = read_gt_mask(&p, None).unwrap_err().to_string();
    assert!(
        err.contains("f.npy") && err.contains("not binary") && err.contains("0, 0.04"),
        "{err}"
    );
    assert_eq!(read_gt_mask(&p, Some(0.5)).unwrap().count(), 12);
}

#[test]
fn png_gray_and_rgb() {
    let dir = tmp();
    let m = Mask::from_vec(vec![2, 3], vec![true, false, false, false, true, true]);
    let p = dir.path().join("x.png");
    write_png_mask(&p, &m).unwrap();
    let r = read(&p).unwrap();
    assert_eq!(
        (r.dtype, r.channels, r.shape.clone()),
        (SourceDtype::U8, 1, vec![2, 3])
    );
    assert_eq!(r.to_gt_mask(None).unwrap().data(), m.data());
    assert_eq!(
        r.to_prob_map().unwrap().data(),
        &[1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    );

    // RGB mask: only the blue channel is set on pixel 1; "any channel > 0" is lesion.
    let rgb = image::RgbImage::from_raw(2, 1, vec![0, 0, 0, 0, 0, 9]).unwrap();
    let p = dir.path().join("rgb.png");
    rgb.save(&p).unwrap();
    let r = read(&p).unwrap();
    assert_eq!(r.channels, 3);
    assert_eq!(r.to_gt_mask(Some(1.0)).unwrap().data(), &[false, true]);
    assert_eq!(r.to_intensities().data, vec![0.0, 0.0, 0.0, 0.0, 0.0, 9.0]);
    // Several colours are still one lesion class for a colour mask.
    let rgb = image::RgbImage::from_raw(3, 1, vec![0, 0, 0, 255, 0, 0, 0, 128, 0]).unwrap();
    rgb.save(&p).unwrap();
    assert_eq!(read_gt_mask(&p, None).unwrap().data(), &[false, true, true]);

    // 16-bit probabilities are scaled by 65535.
    let g16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_raw(2, 1, vec![65535, 32768])
        .unwrap();
    let p = dir.path().join("g16.png");
    g16.save(&p).unwrap();
    let pm = read_prob_map(&p).unwrap();
    assert_eq!(pm.data()[0], 1.0);
    assert!((pm.data()[1] - 0.500_007_6).abs() < 1e-6);
}

#[test]
fn pred_mask_equals_thresholded_prob_map() {
    let dir = tmp();
    // 8-bit gray PNG probabilities, a 0/1 PNG mask, a u8 NPY mask and a f32 NPY map: every reader path.
    let img: Vec<u8> = (0..64).map(|i| (i * 4) as u8).collect();
    let p = dir.path().join("p.png");
    image::GrayImage::from_raw(8, 8, img.clone())
        .unwrap()
        .save(&p)
        .unwrap();
    let m01 = dir.path().join("m.png");
    let bits: Vec<u8> = img.iter().map(|&b| (b > 100) as u8).collect();
    image::GrayImage::from_raw(8, 8, bits.clone())
        .unwrap()
        .save(&m01)
        .unwrap();
    let npy = dir.path().join("m.npy");
    write_npy(&npy, &[8, 8], NpyData::U8(&bits)).unwrap();
    let f: Vec<f32> = img.iter().map(|&b| b as f32 / 255.0).collect();
    let fnpy = dir.path().join("f.npy");
    write_npy(&fnpy, &[8, 8], NpyData::F32(&f)).unwrap();
    for path in [&p, &m01, &npy, &fnpy] {
        let r = read(path).unwrap();
        for t in [0.0f32, 0.3, 0.5, 1.0, 1.5] {
            let expected = r.to_prob_map().unwrap().threshold(t);
            assert_eq!(
                r.to_pred_mask(t).unwrap(),
                expected,
                "{} at {t}",
                path.display()
            );
            assert_eq!(
                r.clone().into_pred_mask(t).unwrap(),
                expected,
                "{} at {t} (in place)",
                path.display()
            );
        }
        for t in [None, Some(0.5)] {
            match r.to_gt_mask(t) {
                Ok(m) => assert_eq!(r.clone().into_gt_mask(t).unwrap(), m),
                Err(e) => assert_eq!(
                    r.clone().into_gt_mask(t).unwrap_err().to_string(),
                    e.to_string()
                ),
            }
        }
    }
}

#[test]
fn nifti_roundtrip_keeps_geometry() {
    let dir = tmp();
    let shape = [4usize, 3, 2];
    let m: Vec<bool> = (0..24).map(|i| i % 3 == 0).collect();
    let p = dir.path().join("m.nii.gz");
    write_nifti(&p, &shape, &[0.8, 0.9, 3.0], NiftiData::Mask(&m), None).unwrap();
    let r = read(&p).unwrap();
    assert_eq!(r.shape, shape);
    assert!((r.spacing[2] - 3.0).abs() < 1e-6 && (r.spacing[0] - 0.8).abs() < 1e-6);
    assert_eq!(r.to_gt_mask(None).unwrap().data(), &m[..]);
    // Rewriting with the header reproduces pixdim/affine fields.
    let mut h = r.nifti_header.clone().unwrap();
    h.srow_x = [0.8, 0.0, 0.0, -10.0];
    h.sform_code = 1;
    let p2 = dir.path().join("m2.nii");
    let f: Vec<f32> = m.iter().map(|&b| b as u8 as f32 * 0.25).collect();
    write_nifti(&p2, &shape, &r.spacing, NiftiData::F32(&f), Some(&h)).unwrap();
    let r2 = read(&p2).unwrap();
    let h2 = r2.nifti_header.clone().unwrap();
    assert_eq!((h2.srow_x, h2.sform_code), ([0.8, 0.0, 0.0, -10.0], 1));
    assert_eq!(r2.to_prob_map().unwrap().data(), &f[..]);
}

#[test]
fn bad_inputs_name_the_file() {
    let dir = tmp();
    // Truncated NPY.
    let p = dir.path().join("t.npy");
    write_npy(&p, &[4, 4], NpyData::F32(&[0.5; 16])).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
    let e = read(&p).unwrap_err().to_string();
    assert!(e.contains("t.npy") && e.contains("truncated"), "{e}");
    // Corrupt PNG / NIfTI.
    for name in ["c.png", "c.nii.gz", "c.nii"] {
        let p = dir.path().join(name);
        std::fs::write(&p, b"not an image at all, just some bytes").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains("corrupt"), "{e}");
    }
    // Directory passed as a file.
    let e = read(dir.path()).unwrap_err().to_string();
    assert!(e.contains("is a directory"), "{e}");
    // NaN in a prediction.
    let p = dir.path().join("nan.npy");
    write_npy(
        &p,
        &[2, 2],
        NpyData::F32(&[0.0, f32::NAN, 1.0, f32::INFINITY]),
    )
    .unwrap();
    let e = read_prob_map(&p).unwrap_err().to_string();
    assert!(e.contains("nan.npy") && e.contains("2 non-finite"), "{e}");
    // Unsupported NPY dtype (complex).
    let p = dir.path().join("cplx.npy");
    let mut bytes = std::fs::read(dir.path().join("nan.npy")).unwrap();
    let at = bytes.windows(3).position(|w| w == b"<f4").unwrap();
    bytes[at + 1] = b'c';
    std::fs::write(&p, bytes).unwrap();
    let e = read(&p).unwrap_err().to_string();
    assert!(
        e.contains("cplx.npy") && e.contains("unsupported data type"),
        "{e}"
    );
}

#[test]
fn fortran_to_c_matches_ndarray() {
    use ndarray::ShapeBuilder;
    for shape in [vec![5usize, 7], vec![3, 40, 37], vec![33, 2, 65]] {
        let n: usize = shape.iter().product();
        let f: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let a = Array::from_shape_vec(IxDyn(&shape).f(), f.clone()).unwrap();
        let expected: Vec<f32> = a.iter().copied().collect();
        assert_eq!(fortran_to_c(&shape, &f), expected, "{shape:?}");
        // Bytes use a wider tile (64): shapes straddling it.
        let shape_u8 = [
            shape[0] * 2 + 1,
            shape[1],
            shape.get(2).map_or(70, |&k| k + 5),
        ];
        let n: usize = shape_u8.iter().product();
        let f: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        let a = Array::from_shape_vec(IxDyn(&shape_u8).f(), f.clone()).unwrap();
        let expected: Vec<u8> = a.iter().copied().collect();
        assert_eq!(fortran_to_c(&shape_u8, &f), expected, "{shape_u8:?}");
    }
}

#[test]
fn stems() {
    assert_eq!(
        image_stem(Path::new("a/case01.nii.gz")).as_deref(),
        Some("case01")
    );
    assert_eq!(image_stem(Path::new("x.PNG")).as_deref(), Some("x"));
    assert_eq!(image_stem(Path::new("notes.txt")), None);
}

#[test]
fn atomic_write_replaces_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.json");
    write_bytes_atomic(&p, b"one").unwrap();
    write_bytes_atomic(&p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert!(write_bytes_atomic(&dir.path().join("missing/x.json"), b"x").is_err());
}

/// An NPY v1 file with the given header dict and data bytes.
fn npy_file(dir: &Path, name: &str, dict: &str, data: &[u8]) -> PathBuf {
    let mut header = dict.to_string();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn npy_shapes_whose_byte_count_overflows_are_corrupt_files_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    // 4 * (2^60 + 1) * 4 bytes wraps to 16 in 64-bit arithmetic; 16 * (2^60 + 1) * 1 wraps to 16 as well.
    for (name, dict) in [
        (
            "f4.npy",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 1152921504606846977), }",
        ),
        (
            "u1.npy",
            "{'descr': '|u1', 'fortran_order': False, 'shape': (16, 1152921504606846977), }",
        ),
    ] {
        let p = npy_file(dir.path(), name, dict, &[1u8; 16]);
        let e = read(&p).unwrap_err();
        assert!(
            matches!(e, IoError::Corrupt { .. }) && e.to_string().contains("overflows"),
            "{name}: {e}"
        );
        assert!(read_gt_mask(&p, None).is_err());
    }
    // An axis of length 0 has nothing to score or segment: refused when read, for every consumer.
    let p = npy_file(
        dir.path(),
        "empty.npy",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 5, 0), }",
        &[],
    );
    let e = read(&p).unwrap_err();
    assert!(matches!(e, IoError::EmptyShape { .. }), "{e}");
    assert!(e.to_string().contains("axis of length 0"));
    // The same header with a plausible shape still reads.
    let p = npy_file(
        dir.path(),
        "ok.npy",
        "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 4), }",
        &[1u8; 16],
    );
    assert_eq!(read(&p).unwrap().shape, vec![4, 4]);
}
