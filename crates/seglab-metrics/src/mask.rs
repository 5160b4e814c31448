//! Binary masks and probability maps on a regular grid.
//!
//! Data are stored row-major (C order, last axis fastest), which is the order of NumPy arrays, of PNG rows
//! and of burn tensors. `spacing[i]` is the physical size (mm) of a voxel along axis `i`.

/// The one binarisation rule used everywhere (evaluate, validation, training diagnostics):
/// a probability `p` is lesion when `p >= threshold`.
#[inline]
pub fn binarize(p: f32, threshold: f32) -> bool {
    p >= threshold
}

/// A binary mask: `true` is lesion.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    shape: Vec<usize>,
    spacing: Vec<f64>,
    data: Vec<bool>,
}

impl Mask {
    /// Panics when `data.len()` is not the product of `shape` or `spacing` has another rank: callers build
    /// masks from validated readers, so a mismatch is a programming error.
    pub fn new(shape: Vec<usize>, spacing: Vec<f64>, data: Vec<bool>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "mask data does not match its shape"
        );
        assert_eq!(
            shape.len(),
            spacing.len(),
            "spacing rank differs from shape rank"
        );
        Mask {
            shape,
            spacing,
            data,
        }
    }

    /// A mask with unit spacing.
    pub fn from_vec(shape: Vec<usize>, data: Vec<bool>) -> Self {
        let spacing = vec![1.0; shape.len()];
        Self::new(shape, spacing, data)
    }

    pub fn zeros(shape: Vec<usize>, spacing: Vec<f64>) -> Self {
        let n = shape.iter().product();
        Self::new(shape, spacing, vec![false; n])
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn spacing(&self) -> &[f64] {
        &self.spacing
    }
    pub fn data(&self) -> &[bool] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [bool] {
        &mut self.data
    }
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        !self.data.iter().any(|&v| v)
    }
    pub fn count(&self) -> usize {
        self.data.iter().filter(|&&v| v).count()
    }
    pub fn with_spacing(mut self, spacing: Vec<f64>) -> Self {
        assert_eq!(spacing.len(), self.shape.len());
        self.spacing = spacing;
        self
    }
    /// Physical volume of one voxel (mm^2 in 2D, mm^3 in 3D).
    pub fn voxel_volume(&self) -> f64 {
        self.spacing.iter().product()
    }
}

/// A probability map (prediction before thresholding), values expected in [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct ProbMap {
    shape: Vec<usize>,
    spacing: Vec<f64>,
    data: Vec<f32>,
}

impl ProbMap {
    pub fn new(shape: Vec<usize>, spacing: Vec<f64>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "probability data does not match its shape"
        );
        assert_eq!(
            shape.len(),
            spacing.len(),
            "spacing rank differs from shape rank"
        );
        ProbMap {
            shape,
            spacing,
            data,
        }
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn spacing(&self) -> &[f64] {
        &self.spacing
    }
    pub fn data(&self) -> &[f32] {
        &self.data
    }
    pub fn threshold(&self, threshold: f32) -> Mask {
        let data = self.data.iter().map(|&p| binarize(p, threshold)).collect();
        Mask::new(self.shape.clone(), self.spacing.clone(), data)
    }
}

/// Whether any value is true, without an early exit per byte (the fold over blocks vectorises; rows of a mask are
/// mostly all background).
pub(crate) fn any_true(v: &[bool]) -> bool {
    // SAFETY: `bool` has the size and alignment of `u8` and every `bool` is a valid `u8`.
    let bytes = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len()) };
    bytes
        .chunks(256)
        .any(|c| c.iter().fold(0u8, |a, &b| a | b) != 0)
}
