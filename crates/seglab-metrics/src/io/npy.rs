//! NumPy `.npy` (C and Fortran order).
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use super::*;

pub(super) fn read_npy(path: &Path) -> Result<RawArray> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| IoError::Read {
            path: path.to_path_buf(),
            source: e,
        })?;
    let bad = |d: &str| corrupt(path, "NPY", d);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing NPY magic"));
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("header truncated"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(bad(&format!("unknown NPY version {v}"))),
    };
    if bytes.len() < start + header_len {
        return Err(bad("header truncated"));
    }
    let header = std::str::from_utf8(&bytes[start..start + header_len])
        .map_err(|_| bad("header is not text"))?;
    let descr = dict_value(header, "descr")
        .and_then(|v| v.strip_prefix('\'').or_else(|| v.strip_prefix('"')))
        .and_then(|v| v.split(['\'', '"']).next())
        .ok_or_else(|| bad("header has no 'descr'"))?
        .to_string();
    let fortran =
        dict_value(header, "fortran_order").ok_or_else(|| bad("header has no 'fortran_order'"))?;
    let fortran = fortran.starts_with("True");
    let shape_text = dict_value(header, "shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let shape_text = shape_text
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("malformed 'shape'"))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("malformed 'shape'")))
        .collect::<Result<_>>()?;
    let (order, kind, size) = parse_descr(&descr).ok_or_else(|| IoError::UnsupportedDtype {
        path: path.to_path_buf(),
        dtype: format!("NPY '{descr}'"),
    })?;
    // Header sizes are untrusted: a shape like (4, 2^60 + 1) must not wrap around into a small byte count.
    let n_bytes = shape
        .iter()
        .try_fold(size, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(&format!("shape {shape:?} of {size}-byte values overflows")))?;
    let body = &bytes[start + header_len..];
    if body.len() < n_bytes {
        return Err(bad(&format!(
            "data truncated: {} bytes, expected {n_bytes}",
            body.len(),
        )));
    }
    let body = &body[..n_bytes];
    let shape = check_rank(path, shape)?;
    let little = order != '>';
    macro_rules! conv {
        ($t:ty, $out:ty) => {{
            body.chunks_exact(size)
                .map(|c| {
                    let arr: [u8; std::mem::size_of::<$t>()] = c.try_into().unwrap();
                    (if little {
                        <$t>::from_le_bytes(arr)
                    } else {
                        <$t>::from_be_bytes(arr)
                    }) as $out
                })
                .collect::<Vec<$out>>()
        }};
    }
    let (dtype, values) = match (kind, size) {
        ('b', 1) => (
            SourceDtype::Bool,
            RawValues::U8(body.iter().map(|&b| (b != 0) as u8).collect()),
        ),
        ('u', 1) => (SourceDtype::U8, RawValues::U8(body.to_vec())),
        ('i', 1) => (
            SourceDtype::I8,
            RawValues::F32(body.iter().map(|&b| b as i8 as f32).collect()),
        ),
        ('u', 2) => (SourceDtype::U16, RawValues::F32(conv!(u16, f32))),
        ('i', 2) => (SourceDtype::I16, RawValues::F32(conv!(i16, f32))),
        ('u', 4) => (SourceDtype::U32, RawValues::F64(conv!(u32, f64))),
        ('i', 4) => (SourceDtype::I32, RawValues::F64(conv!(i32, f64))),
        ('u', 8) => (SourceDtype::U64, RawValues::F64(conv!(u64, f64))),
        ('i', 8) => (SourceDtype::I64, RawValues::F64(conv!(i64, f64))),
        ('f', 4) => (SourceDtype::F32, RawValues::F32(conv!(f32, f32))),
        ('f', 8) => (SourceDtype::F64, RawValues::F64(conv!(f64, f64))),
        _ => {
            return Err(IoError::UnsupportedDtype {
                path: path.to_path_buf(),
                dtype: format!("NPY '{descr}'"),
            })
        }
    };
    let spacing = vec![1.0; shape.len()];
    Ok(RawArray {
        path: path.to_path_buf(),
        format: Format::Npy,
        shape,
        spacing,
        channels: 1,
        dtype,
        values,
        column_major: fortran,
        channel_values: None,
        nifti_header: None,
    })
}

pub(super) fn to_c_order(shape: &[usize], values: RawValues) -> RawValues {
    match values {
        RawValues::U8(v) => RawValues::U8(fortran_to_c(shape, &v)),
        RawValues::F32(v) => RawValues::F32(fortran_to_c(shape, &v)),
        RawValues::F64(v) => RawValues::F64(fortran_to_c(shape, &v)),
    }
}

/// Reorders Fortran-order data (first axis fastest, as NIfTI stores it) into C order. An explicit loop: iterating
/// an `IxDyn` ndarray view in logical order costs ~75% of reading a volume.
pub(super) fn fortran_to_c<T: Copy + Default>(shape: &[usize], f: &[T]) -> Vec<T> {
    // Axes beyond the third are singletons (checked by the readers); a 2D array is [n0, n1, 1].
    let n0 = shape.first().copied().unwrap_or(1);
    let n1 = shape.get(1).copied().unwrap_or(1);
    let n2: usize = shape.iter().skip(2).product();
    let mut c = vec![T::default(); f.len()];
    assert_eq!(n0 * n1 * n2, f.len());
    // Tiled over (axis 0, axis 2) so that both the strided reads and the writes stay in cache; a tile row is one
    // 64-byte cache line of the source.
    let tile = (64 / std::mem::size_of::<T>()).clamp(8, 64);
    let plane = n0 * n1;
    for j in 0..n1 {
        for i0 in (0..n0).step_by(tile) {
            for k0 in (0..n2).step_by(tile) {
                for i in i0..(i0 + tile).min(n0) {
                    let src = i + n0 * j;
                    let dst = (i * n1 + j) * n2;
                    for k in k0..(k0 + tile).min(n2) {
                        c[dst + k] = f[src + plane * k];
                    }
                }
            }
        }
    }
    c
}

/// The text after `'key':` in a NumPy header dict.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// `(byte order, kind, item size)` of a NumPy type string such as `<f4` or `|b1`.
fn parse_descr(descr: &str) -> Option<(char, char, usize)> {
    let mut chars = descr.chars();
    let order = chars.next()?;
    if !matches!(order, '<' | '>' | '|' | '=') {
        return None;
    }
    let kind = chars.next()?;
    let size: usize = chars.as_str().parse().ok()?;
    Some((order, kind, size))
}

/// Values an NPY writer can store.
pub enum NpyData<'a> {
    /// `|b1`.
    Bool(&'a [bool]),
    /// `|u1`.
    U8(&'a [u8]),
    /// `<f4`.
    F32(&'a [f32]),
}

/// Write a C-order NPY (version 1.0) file.
pub fn write_npy(path: &Path, shape: &[usize], data: NpyData<'_>) -> Result<()> {
    let (descr, n) = match &data {
        NpyData::Bool(d) => ("|b1", d.len()),
        NpyData::U8(d) => ("|u1", d.len()),
        NpyData::F32(d) => ("<f4", d.len()),
    };
    if n != shape.iter().product::<usize>() {
        return Err(IoError::Write {
            path: path.to_path_buf(),
            detail: format!("{n} values do not fill shape {shape:?}"),
        });
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so the data start is 64-byte aligned, ending with a newline, as NumPy does.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    write_atomic(path, |out| {
        let io = |e: std::io::Error| e.to_string();
        out.write_all(b"\x93NUMPY\x01\x00").map_err(io)?;
        out.write_all(&(header.len() as u16).to_le_bytes())
            .map_err(io)?;
        out.write_all(header.as_bytes()).map_err(io)?;
        match data {
            NpyData::Bool(d) => out
                .write_all(&d.iter().map(|&b| b as u8).collect::<Vec<_>>())
                .map_err(io),
            NpyData::U8(d) => out.write_all(d).map_err(io),
            NpyData::F32(d) => {
                for v in d {
                    out.write_all(&v.to_le_bytes()).map_err(io)?;
                }
                Ok(())
            }
        }
    })
}
