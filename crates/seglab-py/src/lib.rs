//! `seglab._seglab`: the metrics engine of `seglab-metrics` for Python. numpy arrays become the engine's raw arrays
//! exactly as an NPY file would (so validation and messages are the CLI's: ground truth `> 0` is lesion and must be
//! binary unless `gt_threshold`; floats are probabilities in [0, 1], binarised with `p >= threshold`; integers and
//! bools are masks), in their memory order (C or Fortran, no reordering copy; other strides are gathered in C order).
//! The GIL is released while the engine runs. Errors are `ValueError` / `TypeError` / `OSError` with the CLI's one-line
//! messages; a panic inside the engine becomes a `RuntimeError`, never an abort. The pure-Python package
//! (`python/seglab`) wraps these functions with docstrings and keyword defaults.
use std::path::{Path, PathBuf};

use numpy::{
    Element, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use seglab_metrics::brats::BratsSettings;
use seglab_metrics::distance::{AssdConvention, DistanceMode, DistanceSettings, Hd95Convention, NsdConvention};
use seglab_metrics::evaluate::{evaluate_masks, CaseResult, EmptyPolicy, EvalSettings};
use seglab_metrics::io::{self, Format, IoError, RawArray, RawValues, SourceDtype};
use seglab_metrics::instances::InstanceSettings;
use seglab_metrics::labels::LabelSet;
use seglab_metrics::lesion::LesionSettings;
use seglab_metrics::folders;
use seglab_metrics::summary::{summarize, sweep_thresholds};
use seglab_metrics::Mask;

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn io_error(e: IoError) -> PyErr {
    match e {
        IoError::NotFound { .. } | IoError::IsDirectory { .. } | IoError::Read { .. } | IoError::Write { .. } => {
            PyOSError::new_err(e.to_string())
        }
        other => PyValueError::new_err(other.to_string()),
    }
}

/// Runs `f` without the GIL; a panic becomes a `RuntimeError` naming it an internal error.
fn compute<T: Send>(py: Python<'_>, f: impl FnOnce() -> PyResult<T> + Send) -> PyResult<T> {
    py.detach(|| {
        seglab_metrics::panic::catch_quietly(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(PyRuntimeError::new_err(format!(
                "internal error in seglab ({msg}); please report it"
            )))
        })
    })
}

/// The values of a numpy array of type `T` in memory order, and whether that order is Fortran's.
fn values_of<T: Element + Copy>(a: &Bound<'_, PyUntypedArray>) -> PyResult<Option<(Vec<T>, bool)>> {
    let Ok(typed) = a.cast::<PyArrayDyn<T>>() else {
        return Ok(None);
    };
    let ro: PyReadonlyArrayDyn<'_, T> = typed.readonly();
    let view = ro.as_array();
    if let Some(s) = view.as_slice() {
        return Ok(Some((s.to_vec(), false)));
    }
    if let Some(s) = view.t().as_slice() {
        // Fortran order: the transposed view is C-contiguous over the same memory.
        return Ok(Some((s.to_vec(), true)));
    }
    Ok(Some((view.iter().copied().collect(), false)))
}

/// A numpy array as the engine's raw array (the rules of an NPY file), labelled `label` in messages.
fn raw_array(obj: &Bound<'_, PyAny>, label: &str, spacing: Option<Vec<f64>>) -> PyResult<RawArray> {
    let np = obj.py().import("numpy")?;
    // The array protocol: numpy arrays, CPU torch tensors and anything else exposing __array__.
    let arr = np.call_method1("asarray", (obj,))?;
    let a = arr
        .cast::<PyUntypedArray>()
        .map_err(|_| PyTypeError::new_err(format!("{label}: not convertible to a numpy array")))?;
    let shape: Vec<usize> = a.shape().to_vec();
    if !(2..=3).contains(&shape.len()) {
        return Err(PyValueError::new_err(format!(
            "{label}: unsupported shape {shape:?} (expected a 2D or 3D array)"
        )));
    }
    if shape.contains(&0) {
        return Err(PyValueError::new_err(format!(
            "{label}: shape {shape:?} has an axis of length 0 (no pixels to read)"
        )));
    }
    let spacing = match spacing {
        Some(s) => {
            if s.len() != shape.len() {
                return Err(PyValueError::new_err(format!(
                    "{label}: spacing has {} values but the array has {} axes (shape {shape:?})",
                    s.len(),
                    shape.len()
                )));
            }
            if s.iter().any(|v| !(*v > 0.0 && v.is_finite())) {
                return Err(PyValueError::new_err(format!(
                    "spacing {s:?}: every value must be a positive number of mm"
                )));
            }
            s
        }
        None => vec![1.0; shape.len()],
    };
    macro_rules! try_types {
        ($(($t:ty, $dtype:expr, $wrap:expr)),+ $(,)?) => {{
            $(
                if let Some((v, column_major)) = values_of::<$t>(a)? {
                    let values: RawValues = $wrap(v);
                    return Ok(RawArray {
                        path: PathBuf::from(label),
                        format: Format::Npy,
                        shape,
                        spacing,
                        channels: 1,
                        dtype: $dtype,
                        values,
                        column_major,
                        channel_values: None,
                        nifti_header: None,
                    });
                }
            )+
        }};
    }
    let u8_of_bool = |v: Vec<bool>| RawValues::U8(v.into_iter().map(u8::from).collect());
    let f32_of = |v: Vec<f32>| RawValues::F32(v);
    try_types!(
        (bool, SourceDtype::Bool, u8_of_bool),
        (u8, SourceDtype::U8, RawValues::U8),
        (f32, SourceDtype::F32, f32_of),
        (f64, SourceDtype::F64, RawValues::F64),
        (i8, SourceDtype::I8, |v: Vec<i8>| RawValues::F32(v.into_iter().map(f32::from).collect())),
        (i16, SourceDtype::I16, |v: Vec<i16>| RawValues::F32(v.into_iter().map(f32::from).collect())),
        (u16, SourceDtype::U16, |v: Vec<u16>| RawValues::F32(v.into_iter().map(f32::from).collect())),
        (i32, SourceDtype::I32, |v: Vec<i32>| RawValues::F64(v.into_iter().map(f64::from).collect())),
        (u32, SourceDtype::U32, |v: Vec<u32>| RawValues::F64(v.into_iter().map(f64::from).collect())),
        (i64, SourceDtype::I64, |v: Vec<i64>| RawValues::F64(v.into_iter().map(|x| x as f64).collect())),
        (u64, SourceDtype::U64, |v: Vec<u64>| RawValues::F64(v.into_iter().map(|x| x as f64).collect())),
    );
    let dtype = a.dtype().str()?.to_string();
    Err(PyTypeError::new_err(format!(
        "{label}: unsupported dtype {dtype} (expected bool, integers or float32/float64)"
    )))
}

fn parse<T: std::str::FromStr<Err = String>>(what: &str, s: &str) -> PyResult<T> {
    s.parse::<T>().map_err(|e| value_error(format!("{what}: {e}")))
}

/// Scoring options, as `seglab evaluate`'s flags.
#[derive(Clone, Debug)]
struct Options {
    settings: EvalSettings,
    gt_threshold: Option<f64>,
    spacing: Option<Vec<f64>>,
    /// Both arrays are label maps and these values form the mask (`--labels`).
    labels: Option<LabelSet>,
}

/// The challenge keywords (`--labels`, `--lesion-wise`, `--brats-challenge`, `--gt-dilation`,
/// `--min-lesion-volume`, `--instances`, `--match-iou`), resolved as the CLI resolves them.
struct Challenge<'a> {
    labels: Option<Vec<i64>>,
    lesion_wise: Option<&'a str>,
    brats_challenge: Option<&'a str>,
    gt_dilation: Option<i64>,
    min_lesion_volume: Option<f64>,
    instances: bool,
    match_iou: f64,
}

impl Challenge<'_> {
    fn labels(&self) -> PyResult<Option<LabelSet>> {
        self.labels
            .clone()
            .map(|l| LabelSet::new(l).map_err(|e| value_error(format!("labels: {e}"))))
            .transpose()
    }

    fn lesion_wise(&self) -> PyResult<Option<BratsSettings>> {
        match self.lesion_wise {
            None => {
                if self.brats_challenge.is_some() || self.gt_dilation.is_some() || self.min_lesion_volume.is_some() {
                    return Err(value_error(
                        "brats_challenge, gt_dilation and min_lesion_volume need lesion_wise=\"brats2023\"",
                    ));
                }
                Ok(None)
            }
            Some("brats2023") => {
                BratsSettings::resolve(self.brats_challenge, self.gt_dilation, self.min_lesion_volume)
                    .map(Some)
                    .map_err(|e| {
                        // The CLI's message with the keyword's spelling.
                        let e = [
                            ("--brats-challenge", "brats_challenge"),
                            ("--gt-dilation", "gt_dilation"),
                            ("--min-lesion-volume", "min_lesion_volume"),
                        ]
                        .iter()
                        .fold(e, |e, (flag, kw)| e.replace(flag, kw));
                        value_error(e)
                    })
            }
            Some(other) => Err(value_error(format!(
                "lesion_wise '{other}': expected \"brats2023\" or None"
            ))),
        }
    }

    fn instances(&self) -> PyResult<Option<InstanceSettings>> {
        if !self.instances {
            return Ok(None);
        }
        let s = InstanceSettings { match_iou: self.match_iou };
        s.validate().map_err(|e| value_error(format!("match_iou: {e}")))?;
        Ok(Some(s))
    }
}

#[allow(clippy::too_many_arguments)]
fn options(
    spacing: Option<Vec<f64>>,
    threshold: f32,
    gt_threshold: Option<f64>,
    hd95_convention: &str,
    assd_convention: &str,
    nsd_convention: &str,
    nsd_tolerance: f64,
    distance_mode: &str,
    connectivity: Option<u32>,
    min_lesion_size: usize,
    empty_policy: &str,
    distances: bool,
    beta: f64,
    tversky_alpha: f64,
    tversky_beta: f64,
    challenge: Challenge<'_>,
) -> PyResult<Options> {
    if !(0.0..=1.0).contains(&threshold) {
        return Err(value_error(format!("threshold {threshold} must be in [0, 1]")));
    }
    if !(nsd_tolerance >= 0.0) {
        return Err(value_error(format!("nsd_tolerance {nsd_tolerance} must be >= 0")));
    }
    if let Some(c) = connectivity {
        if ![4, 6, 8, 18, 26].contains(&c) {
            return Err(value_error(format!(
                "connectivity {c}: expected 4 or 8 (2D), 6, 18 or 26 (3D)"
            )));
        }
    }
    Ok(Options {
        settings: EvalSettings {
            threshold,
            beta,
            tversky_alpha,
            tversky_beta,
            distances,
            distance: DistanceSettings {
                hd95: parse::<Hd95Convention>("hd95_convention", hd95_convention)?,
                assd: parse::<AssdConvention>("assd_convention", assd_convention)?,
                nsd: parse::<NsdConvention>("nsd_convention", nsd_convention)?,
                nsd_tolerance_mm: nsd_tolerance,
                mode: parse::<DistanceMode>("distance_mode", distance_mode)?,
            },
            lesion: LesionSettings {
                connectivity,
                min_lesion_size,
            },
            empty_policy: parse::<EmptyPolicy>("empty_policy", empty_policy)?,
            lesion_wise: challenge.lesion_wise()?,
            instances: challenge.instances()?,
        },
        gt_threshold,
        spacing,
        labels: challenge.labels()?,
    })
}

/// The masks of one pair: the ground truth and the binarised prediction, in the same memory order.
fn masks(
    pred: &Bound<'_, PyAny>,
    gt: &Bound<'_, PyAny>,
    opts: &Options,
    spacing: Option<Vec<f64>>,
) -> PyResult<(RawArray, RawArray)> {
    let spacing = spacing.or_else(|| opts.spacing.clone());
    let p = raw_array(pred, "pred", spacing.clone())?;
    let g = raw_array(gt, "gt", spacing)?;
    if p.shape != g.shape {
        return Err(value_error(format!(
            "shape mismatch: prediction {:?}, ground truth {:?}",
            p.shape, g.shape
        )));
    }
    Ok((p, g))
}

/// Evaluates one pair without the GIL: the CLI's `evaluate_pair` on in-memory arrays.
fn evaluate_raw(case: &str, p: RawArray, g: RawArray, opts: &Options) -> PyResult<CaseResult> {
    let (p, g) = if p.column_major != g.column_major {
        (p.into_row_major(), g.into_row_major())
    } else {
        (p, g)
    };
    let (shape, spacing) = (g.shape.clone(), g.spacing.clone());
    let (pred, gt): (Mask, Mask) = match &opts.labels {
        Some(labels) => (p.label_mask(labels), g.label_mask(labels)),
        None => (p.into_pred_mask(opts.settings.threshold).map_err(io_error)?, g.into_gt_mask(opts.gt_threshold).map_err(io_error)?),
    };
    let pred = pred.with_spacing(gt.spacing().to_vec());
    let mut r = evaluate_masks(case, &pred, &gt, &opts.settings).map_err(value_error)?;
    r.shape = shape;
    r.spacing = spacing;
    Ok(r)
}

fn to_py(py: Python<'_>, v: &impl serde::Serialize) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(v).map_err(value_error)?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

/// `evaluate(pred, gt, ...)`: one case's result as the CLI's JSON `cases[i]` object.
#[pyfunction]
#[pyo3(signature = (pred, gt, spacing=None, threshold=0.5, gt_threshold=None, hd95_convention="monai",
    assd_convention="pooled", nsd_convention="deepmind", nsd_tolerance=1.0, distance_mode="voxel", connectivity=None, min_lesion_size=0,
    empty_policy="default", distances=true, beta=1.0, tversky_alpha=0.5, tversky_beta=0.5, case="case",
    labels=None, lesion_wise=None, brats_challenge=None, gt_dilation=None, min_lesion_volume=None, instances=false, match_iou=0.5))]
#[allow(clippy::too_many_arguments)]
fn evaluate_case(
    py: Python<'_>,
    pred: &Bound<'_, PyAny>,
    gt: &Bound<'_, PyAny>,
    spacing: Option<Vec<f64>>,
    threshold: f32,
    gt_threshold: Option<f64>,
    hd95_convention: &str,
    assd_convention: &str,
    nsd_convention: &str,
    nsd_tolerance: f64,
    distance_mode: &str,
    connectivity: Option<u32>,
    min_lesion_size: usize,
    empty_policy: &str,
    distances: bool,
    beta: f64,
    tversky_alpha: f64,
    tversky_beta: f64,
    case: &str,
    labels: Option<Vec<i64>>,
    lesion_wise: Option<&str>,
    brats_challenge: Option<&str>,
    gt_dilation: Option<i64>,
    min_lesion_volume: Option<f64>,
    instances: bool,
    match_iou: f64,
) -> PyResult<Py<PyAny>> {
    let opts = options(
        spacing, threshold, gt_threshold, hd95_convention, assd_convention, nsd_convention, nsd_tolerance, distance_mode,
        connectivity, min_lesion_size, empty_policy, distances, beta, tversky_alpha, tversky_beta,
        Challenge { labels, lesion_wise, brats_challenge, gt_dilation, min_lesion_volume, instances, match_iou },
    )?;
    let (p, g) = masks(pred, gt, &opts, None)?;
    let r = compute(py, || evaluate_raw(case, p, g, &opts))?;
    to_py(py, &r)
}

/// The mergeable state of an evaluation: the per-case results (from which every summary statistic, the median and
/// the bootstrap interval included, is computed) and the options they were computed with.
#[pyclass(module = "seglab._seglab")]
struct Evaluator {
    opts: Options,
    cases: Vec<CaseResult>,
}

#[pymethods]
impl Evaluator {
    #[new]
    #[pyo3(signature = (spacing=None, threshold=0.5, gt_threshold=None, hd95_convention="monai",
        assd_convention="pooled", nsd_convention="deepmind", nsd_tolerance=1.0, distance_mode="voxel", connectivity=None, min_lesion_size=0,
        empty_policy="default", distances=true, beta=1.0, tversky_alpha=0.5, tversky_beta=0.5,
        labels=None, lesion_wise=None, brats_challenge=None, gt_dilation=None, min_lesion_volume=None, instances=false, match_iou=0.5))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        spacing: Option<Vec<f64>>,
        threshold: f32,
        gt_threshold: Option<f64>,
        hd95_convention: &str,
        assd_convention: &str,
        nsd_convention: &str,
        nsd_tolerance: f64,
        distance_mode: &str,
        connectivity: Option<u32>,
        min_lesion_size: usize,
        empty_policy: &str,
        distances: bool,
        beta: f64,
        tversky_alpha: f64,
        tversky_beta: f64,
        labels: Option<Vec<i64>>,
        lesion_wise: Option<&str>,
        brats_challenge: Option<&str>,
        gt_dilation: Option<i64>,
        min_lesion_volume: Option<f64>,
        instances: bool,
        match_iou: f64,
    ) -> PyResult<Self> {
        Ok(Evaluator {
            opts: options(
                spacing, threshold, gt_threshold, hd95_convention, assd_convention, nsd_convention,
                nsd_tolerance, distance_mode, connectivity, min_lesion_size, empty_policy, distances, beta, tversky_alpha,
                tversky_beta, Challenge { labels, lesion_wise, brats_challenge, gt_dilation, min_lesion_volume, instances, match_iou },
            )?,
            cases: Vec::new(),
        })
    }

    /// Adds one case; `case` defaults to its position (`case0000`, ...).
    #[pyo3(signature = (pred, gt, case=None, spacing=None))]
    fn update(
        &mut self,
        py: Python<'_>,
        pred: &Bound<'_, PyAny>,
        gt: &Bound<'_, PyAny>,
        case: Option<String>,
        spacing: Option<Vec<f64>>,
    ) -> PyResult<()> {
        let (p, g) = masks(pred, gt, &self.opts, spacing)?;
        let case = case.unwrap_or_else(|| format!("case{:04}", self.cases.len()));
        let opts = self.opts.clone();
        let r = compute(py, || evaluate_raw(&case, p, g, &opts))?;
        self.cases.push(r);
        Ok(())
    }

    /// Adds one case from files, read exactly as `seglab evaluate` reads them (PNG scaling, NIfTI spacing and axis
    /// order); `case` defaults to the prediction file's stem.
    #[pyo3(signature = (pred_path, gt_path, case=None))]
    fn update_files(&mut self, py: Python<'_>, pred_path: PathBuf, gt_path: PathBuf, case: Option<String>) -> PyResult<()> {
        let case = case
            .or_else(|| io::image_stem(&pred_path))
            .unwrap_or_else(|| format!("case{:04}", self.cases.len()));
        let pair = folders::Pair {
            case,
            pred: pred_path,
            gt: gt_path,
        };
        let read = folders::ReadOptions {
            gt_threshold: self.opts.gt_threshold,
            spacing: self.opts.spacing.clone(),
            ignore_spacing_mismatch: false,
            labels: self.opts.labels.clone(),
        };
        let settings = self.opts.settings.clone();
        let out = compute(py, || folders::evaluate_pair(&pair, &read, &settings, &[]).map_err(value_error))?;
        self.cases.push(out.result);
        Ok(())
    }

    /// Adds another evaluator's cases (computed with the same options).
    fn merge(&mut self, other: PyRef<'_, Evaluator>) -> PyResult<()> {
        if other.opts.settings != self.opts.settings
            || other.opts.gt_threshold != self.opts.gt_threshold
            || other.opts.labels != self.opts.labels
        {
            return Err(value_error(
                "merge: the other evaluator was created with other options",
            ));
        }
        self.cases.extend(other.cases.iter().cloned());
        Ok(())
    }

    /// The summary over the cases so far, shaped like the CLI JSON's `summary`.
    fn compute(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let policy = self.opts.settings.empty_policy;
        let cases = &self.cases;
        let s = compute(py, || Ok(summarize(cases, policy)))?;
        to_py(py, &s)
    }

    /// The per-case results (the CLI JSON's `cases`).
    #[getter]
    fn cases(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        to_py(py, &self.cases)
    }

    fn __len__(&self) -> usize {
        self.cases.len()
    }

    /// Pickling: the cases as JSON (numbers round-trip exactly) and the options.
    fn __getstate__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let o = &self.opts;
        let state = serde_json::json!({
            "settings": serde_json::to_value(&o.settings).map_err(value_error)?,
            "gt_threshold": o.gt_threshold,
            "spacing": o.spacing,
            "labels": o.labels,
            "cases": serde_json::to_value(&self.cases).map_err(value_error)?,
        });
        Ok(PyBytes::new(py, &serde_json::to_vec(&state).map_err(value_error)?))
    }

    fn __setstate__(&mut self, state: &Bound<'_, PyBytes>) -> PyResult<()> {
        let v: serde_json::Value = serde_json::from_slice(state.as_bytes()).map_err(value_error)?;
        self.opts = Options {
            settings: serde_json::from_value(v["settings"].clone()).map_err(value_error)?,
            gt_threshold: serde_json::from_value(v["gt_threshold"].clone()).map_err(value_error)?,
            spacing: serde_json::from_value(v["spacing"].clone()).map_err(value_error)?,
            labels: serde_json::from_value(v["labels"].clone()).map_err(value_error)?,
        };
        self.cases = serde_json::from_value(v["cases"].clone()).map_err(value_error)?;
        Ok(())
    }
}

/// `read(path) -> (array, spacing)`: a PNG, NIfTI or NPY file as the CLI reads it (row-major; PNG colour channels
/// folded to their maximum; spacing in array-axis order).
#[pyfunction]
fn read(py: Python<'_>, path: PathBuf) -> PyResult<(Py<PyAny>, Vec<f64>)> {
    let raw = compute(py, || io::read(Path::new(&path)).map_err(io_error))?;
    let shape = raw.shape.clone();
    let array: Py<PyAny> = match raw.values {
        RawValues::U8(v) => numpy::PyArray1::from_vec(py, v).reshape(shape)?.into_any().unbind(),
        RawValues::F32(v) => numpy::PyArray1::from_vec(py, v).reshape(shape)?.into_any().unbind(),
        RawValues::F64(v) => numpy::PyArray1::from_vec(py, v).reshape(shape)?.into_any().unbind(),
    };
    Ok((array, raw.spacing))
}

/// `evaluate_folders(pred_dir, gt_dir, ...)`: the JSON object of `seglab evaluate --pred PRED --gt GT --out`.
#[pyfunction]
#[pyo3(signature = (pred_dir, gt_dir, spacing=None, threshold=0.5, gt_threshold=None, hd95_convention="monai",
    assd_convention="pooled", nsd_convention="deepmind", nsd_tolerance=1.0, distance_mode="voxel", connectivity=None, min_lesion_size=0,
    empty_policy="default", distances=true, beta=1.0, tversky_alpha=0.5, tversky_beta=0.5,
    ignore_spacing_mismatch=false, allow_missing=false, sweep=false, sweep_step=0.05,
    labels=None, lesion_wise=None, brats_challenge=None, gt_dilation=None, min_lesion_volume=None, instances=false, match_iou=0.5))]
#[allow(clippy::too_many_arguments)]
fn evaluate_folders(
    py: Python<'_>,
    pred_dir: PathBuf,
    gt_dir: PathBuf,
    spacing: Option<Vec<f64>>,
    threshold: f32,
    gt_threshold: Option<f64>,
    hd95_convention: &str,
    assd_convention: &str,
    nsd_convention: &str,
    nsd_tolerance: f64,
    distance_mode: &str,
    connectivity: Option<u32>,
    min_lesion_size: usize,
    empty_policy: &str,
    distances: bool,
    beta: f64,
    tversky_alpha: f64,
    tversky_beta: f64,
    ignore_spacing_mismatch: bool,
    allow_missing: bool,
    sweep: bool,
    sweep_step: f64,
    labels: Option<Vec<i64>>,
    lesion_wise: Option<&str>,
    brats_challenge: Option<&str>,
    gt_dilation: Option<i64>,
    min_lesion_volume: Option<f64>,
    instances: bool,
    match_iou: f64,
) -> PyResult<Py<PyAny>> {
    let opts = options(
        spacing.clone(), threshold, gt_threshold, hd95_convention, assd_convention, nsd_convention, nsd_tolerance, distance_mode,
        connectivity, min_lesion_size, empty_policy, distances, beta, tversky_alpha, tversky_beta,
        Challenge { labels, lesion_wise, brats_challenge, gt_dilation, min_lesion_volume, instances, match_iou },
    )?;
    if let Some(s) = &spacing {
        if s.iter().any(|v| !(*v > 0.0 && v.is_finite())) {
            return Err(value_error(format!("spacing {s:?}: every value must be a positive number of mm")));
        }
    }
    let read = folders::ReadOptions {
        gt_threshold,
        spacing,
        ignore_spacing_mismatch,
        labels: opts.labels.clone(),
    };
    let report = compute(py, || {
        let thresholds = if sweep {
            sweep_thresholds(sweep_step).map_err(|e| value_error(format!("sweep_step: {e}")))?
        } else {
            Vec::new()
        };
        let pairs = folders::pair_paths(&pred_dir, &gt_dir, allow_missing, &|_| {}).map_err(|e| {
            if e.contains("not found") || e.contains("cannot list") {
                PyOSError::new_err(e)
            } else {
                value_error(e)
            }
        })?;
        let r = folders::evaluate_pairs(&pairs, &read, &opts.settings, &thresholds, &|| {})
            .map_err(value_error)?;
        let report = folders::Report {
            version: 1,
            settings: folders::settings_json(
                &pred_dir,
                &gt_dir,
                &read,
                &opts.settings,
                allow_missing,
                sweep,
                sweep_step,
            ),
            cases: r.cases.iter().collect(),
            summary: &r.summary,
            sweep: r.sweep.as_ref(),
        };
        Ok((serde_json::to_string(&report).map_err(value_error)?, r.labels_absent))
    })?;
    let (report, absent) = report;
    if !absent.is_empty() {
        let values: Vec<String> = absent.iter().map(|v| v.to_string()).collect();
        let msg = format!(
            "labels: label value(s) {} occur in no file of {} or {}",
            values.join(","),
            pred_dir.display(),
            gt_dir.display()
        );
        let warnings = py.import("warnings")?;
        warnings.call_method1("warn", (msg, py.get_type::<pyo3::exceptions::PyUserWarning>()))?;
    }
    Ok(py.import("json")?.call_method1("loads", (report,))?.unbind())
}

/// `(case, pred_path, gt_path)` of every pair of two folders, paired as `seglab evaluate` pairs them.
#[pyfunction]
#[pyo3(signature = (pred_dir, gt_dir, allow_missing=false))]
fn pair_folders(pred_dir: PathBuf, gt_dir: PathBuf, allow_missing: bool) -> PyResult<Vec<(String, PathBuf, PathBuf)>> {
    let pairs = folders::pair_paths(&pred_dir, &gt_dir, allow_missing, &|_| {}).map_err(|e| {
        if e.contains("not found") || e.contains("cannot list") {
            PyOSError::new_err(e)
        } else {
            value_error(e)
        }
    })?;
    Ok(pairs.into_iter().map(|p| (p.case, p.pred, p.gt)).collect())
}

#[pymodule]
fn _seglab(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(evaluate_case, m)?)?;
    m.add_function(wrap_pyfunction!(read, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate_folders, m)?)?;
    m.add_function(wrap_pyfunction!(pair_folders, m)?)?;
    m.add_class::<Evaluator>()?;
    Ok(())
}
