//! NIfTI-1 (`.nii`, `.nii.gz`).
use std::path::Path;

use ::nifti::{IntoNdArray, NiftiHeader, NiftiObject, NiftiType, ReaderOptions};
use ndarray::{Array, IxDyn};

use super::*;

pub(super) fn read_nifti(path: &Path) -> Result<RawArray> {
    // The nifti crate panics on some inconsistent headers ("Inconsistent raw data size"): a corrupt file must be
    // an error naming it, not a crash.
    let parsed = crate::panic::catch_quietly(|| -> std::result::Result<_, String> {
        let obj = ReaderOptions::new()
            .read_file(path)
            .map_err(|e| e.to_string())?;
        let header = obj.header().clone();
        let datatype = header.data_type().map_err(|e| e.to_string())?;
        let volume = obj.into_volume();
        Ok((header, datatype, volume))
    });
    let (header, datatype, volume) = match parsed {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(corrupt(path, "NIfTI", e)),
        Err(_) => return Err(corrupt(path, "NIfTI", "inconsistent header and data")),
    };
    let ndim_declared = header.dim[0] as usize;
    if !(1..=7).contains(&ndim_declared) {
        return Err(corrupt(
            path,
            "NIfTI",
            format!("invalid dim[0] = {}", header.dim[0]),
        ));
    }
    let mut shape: Vec<usize> = header.dim[1..=ndim_declared]
        .iter()
        .map(|&d| usize::from(d))
        .collect();
    // Trailing singleton axes (time = 1) carry no data; nibabel keeps them but they are not spatial.
    while shape.len() > 3 && shape.last() == Some(&1) {
        shape.pop();
    }
    let shape = check_rank(path, shape)?;
    let spacing: Vec<f64> = (0..shape.len())
        .map(|i| {
            let p = (header.pixdim[i + 1] as f64).abs();
            // pixdim 0 means "unknown" in practice; 1 mm is what nibabel's zooms report for it in masks we met.
            if p > 0.0 && p.is_finite() {
                p
            } else {
                1.0
            }
        })
        .collect();
    let (dtype, wide) = match datatype {
        NiftiType::Uint8 => (SourceDtype::U8, false),
        NiftiType::Int8 => (SourceDtype::I8, false),
        NiftiType::Uint16 => (SourceDtype::U16, false),
        NiftiType::Int16 => (SourceDtype::I16, false),
        NiftiType::Uint32 => (SourceDtype::U32, true),
        NiftiType::Int32 => (SourceDtype::I32, true),
        NiftiType::Uint64 => (SourceDtype::U64, true),
        NiftiType::Int64 => (SourceDtype::I64, true),
        NiftiType::Float32 => (SourceDtype::F32, false),
        NiftiType::Float64 => (SourceDtype::F64, true),
        other => {
            return Err(IoError::UnsupportedDtype {
                path: path.to_path_buf(),
                dtype: format!("NIfTI {other:?}"),
            })
        }
    };
    // A slope other than 0/1 turns integers into floats: report them as such so predictions are range-checked.
    let scaled = header.scl_slope != 0.0 && (header.scl_slope != 1.0 || header.scl_inter != 0.0);
    let dtype = if scaled && !dtype.is_float() {
        SourceDtype::F32
    } else {
        dtype
    };
    let n: usize = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| corrupt(path, "NIfTI", format!("dimensions {shape:?} overflow")))?;
    // The nifti crate panics when its data is shorter than the header's shape says (caught below, but a reader
    // should not rely on that): check the byte count first.
    let needed = n
        .checked_mul(datatype.size_of())
        .ok_or_else(|| corrupt(path, "NIfTI", format!("dimensions {shape:?} overflow")))?;
    if volume.raw_data().len() < needed {
        return Err(corrupt(
            path,
            "NIfTI",
            format!(
                "data size does not match the header: {} bytes for {needed} ({shape:?} of {datatype:?})",
                volume.raw_data().len()
            ),
        ));
    }
    // Values stay in the file's order (first axis fastest); `read` reorders them when asked.
    let conv = crate::panic::catch_quietly(|| -> std::result::Result<RawValues, String> {
        if dtype == SourceDtype::U8 && !scaled {
            // Bytes as stored; endianness does not apply to one byte.
            let mut raw = volume.into_raw_data();
            if raw.len() < n {
                return Err("data size does not match the header".into());
            }
            raw.truncate(n);
            return Ok(RawValues::U8(raw));
        }
        // into_ndarray gives a Fortran-ordered (column-major) array: its memory order is the file's order.
        if wide {
            let a = volume.into_ndarray::<f64>().map_err(|e| e.to_string())?;
            Ok(RawValues::F64(
                a.as_slice_memory_order().ok_or("not contiguous")?.to_vec(),
            ))
        } else {
            let a = volume.into_ndarray::<f32>().map_err(|e| e.to_string())?;
            Ok(RawValues::F32(
                a.as_slice_memory_order().ok_or("not contiguous")?.to_vec(),
            ))
        }
    });
    let values = match conv {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(corrupt(path, "NIfTI", e)),
        Err(_) => {
            return Err(corrupt(
                path,
                "NIfTI",
                "data size does not match the header",
            ))
        }
    };
    if values.len() != n {
        return Err(corrupt(
            path,
            "NIfTI",
            "data size does not match the header",
        ));
    }
    Ok(RawArray {
        path: path.to_path_buf(),
        format: Format::Nifti,
        shape,
        spacing,
        channels: 1,
        dtype,
        values,
        column_major: true,
        channel_values: None,
        nifti_header: Some(Box::new(header)),
    })
}

/// Values a NIfTI writer can store.
pub enum NiftiData<'a> {
    /// Written as uint8 0/1.
    Mask(&'a [bool]),
    /// Written as float32.
    F32(&'a [f32]),
}

/// Write a 2D or 3D volume as NIfTI (`.nii` or `.nii.gz` by the file name). With `reference` the geometry
/// (pixdim, qform/sform, units, description) is copied from it; otherwise an identity affine with `spacing`.
pub fn write_nifti(
    path: &Path,
    shape: &[usize],
    spacing: &[f64],
    data: NiftiData<'_>,
    reference: Option<&NiftiHeader>,
) -> Result<()> {
    let werr = |d: String| IoError::Write {
        path: path.to_path_buf(),
        detail: d,
    };
    if shape.len() != spacing.len() || !(2..=3).contains(&shape.len()) {
        return Err(werr(format!(
            "shape {shape:?} / spacing {spacing:?} is not a 2D or 3D geometry"
        )));
    }
    let mut header = match reference {
        Some(h) => h.clone(),
        None => NiftiHeader {
            sform_code: 0,
            qform_code: 0,
            ..Default::default()
        },
    };
    header.pixdim = [1.0; 8];
    if let Some(r) = reference {
        header.pixdim[0] = r.pixdim[0];
    }
    for (i, &s) in spacing.iter().enumerate() {
        header.pixdim[i + 1] = s as f32;
    }
    header.scl_slope = 1.0;
    header.scl_inter = 0.0;
    let gz = path.to_string_lossy().to_ascii_lowercase().ends_with(".gz");
    let write = |tmp: &Path| -> std::result::Result<(), String> {
        let opts = ::nifti::writer::WriterOptions::new(tmp)
            .reference_header(&header)
            .compress(gz);
        match data {
            NiftiData::Mask(m) => {
                let v: Vec<u8> = m.iter().map(|&b| b as u8).collect();
                let a = Array::from_shape_vec(IxDyn(shape), v).map_err(|e| e.to_string())?;
                opts.write_nifti(&a).map_err(|e| e.to_string())
            }
            NiftiData::F32(d) => {
                let a =
                    Array::from_shape_vec(IxDyn(shape), d.to_vec()).map_err(|e| e.to_string())?;
                opts.write_nifti(&a).map_err(|e| e.to_string())
            }
        }
    };
    write_atomic_path(path, write)
}
