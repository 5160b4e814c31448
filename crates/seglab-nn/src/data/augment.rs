//! Augmentation and sampling settings of the training batches.

use serde::{Deserialize, Serialize};

/// Augmentation and sampling settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Master switch for flips, rotations and intensity jitter.
    pub enabled: bool,
    pub flips: bool,
    /// 90-degree rotations (square inputs only).
    pub rot90: bool,
    /// Intensity jitter: `x * (1 + u) + v`, `u, v` uniform in `±intensity` (z-scored units).
    pub intensity: f32,
    /// Colour jitter for multi-channel images: each channel is further scaled by `1 + w`, `w` uniform in
    /// `±colour`, drawn per channel (0: off; gray images are unaffected).
    pub colour: f32,
    /// Random zoom about the image centre by a factor log-uniform in `[1/(1+scale), 1+scale]` (0: off): bilinear
    /// for the image, nearest for the mask, background (0) where the zoomed-out image leaves the frame.
    pub scale: f32,
    /// Side of the training patch; `None` trains on the whole (resized) image.
    pub patch: Option<usize>,
    /// Fraction of batch slots forced to contain lesion (nnU-Net uses 1/3): with whole images the slot takes a
    /// random lesion image; with patches the patch is also centred on a random lesion pixel.
    pub fg_oversample: f64,
    /// Batch augmentation (Hoffer et al., "Augment your batch", CVPR 2020): each image of a batch appears this
    /// many times, each copy augmented independently. The number of steps per epoch is unchanged; each step costs
    /// `repeats` times more and averages over more views of the same images.
    /// A config written before this key existed trained with 1 view and reads as 1.
    #[serde(default = "AugmentConfig::one_view")]
    pub repeats: usize,
}

impl AugmentConfig {
    fn one_view() -> usize {
        1
    }

    /// Side of the training batches for images of side `size`: the patch, or the whole image.
    pub fn batch_side(&self, size: usize) -> usize {
        self.patch.unwrap_or(size).min(size)
    }
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            enabled: true,
            flips: true,
            rot90: true,
            intensity: 0.1,
            colour: 0.0,
            scale: 0.0,
            patch: None,
            fg_oversample: 0.33,
            repeats: 2,
        }
    }
}
