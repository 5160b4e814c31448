//! Arguments several subcommands share: the loss and threshold settings (each turned into a
//! `seglab_nn::objective` choice, the one builder of losses and threshold modes) and the device.
use anyhow::{Context, Result};
use burn::tensor::Device;
use seglab_nn::device::{device_from_name, DEVICE_NAMES};
use seglab_nn::objective::ThresholdChoice;
use seglab_nn::threshold::{DEFAULT_POWER_K, DEFAULT_TEMPERATURE, DEFAULT_THRESHOLD};
use seglab_nn::{LossParams, Reduction, ThresholdMode};

/// Where training, validation and prediction run.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    #[arg(long, default_value = DEVICE_NAMES[0], help = format!(
        "Device to run on; this build has: {}",
        seglab_nn::names::one_of(DEVICE_NAMES)
    ))]
    pub device: String,
}

impl DeviceArgs {
    pub fn device(&self) -> anyhow::Result<Device> {
        device_from_name(&self.device).map_err(|e| anyhow::anyhow!("--device: {e}"))
    }
}

/// What the predictions are and how the loss reduces a batch, shared by `loss` and `gradcheck` (`train` has its
/// own: its network always gives logits).
#[derive(clap::Args, Debug, Clone)]
pub struct LossInputArgs {
    /// The predictions are logits; probabilities are sigmoid(pred).
    #[arg(long)]
    pub from_logits: bool,
    /// batch (sums over the whole batch) or per-image (one index per image, then the mean).
    #[arg(long, default_value = "batch")]
    pub reduction: String,
}

impl LossInputArgs {
    pub fn reduction(&self) -> Result<Reduction> {
        self.reduction.parse().context("invalid --reduction")
    }
}

/// The loss parameters, shared by `loss`, `gradcheck` and `train` (each unset one keeps the loss's default).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LossParamArgs {
    /// Tversky/focal-Tversky FP weight (default 0.3); focal loss class weight (default 0.25).
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// Tversky/focal-Tversky FN weight (default 0.7).
    #[arg(long, allow_negative_numbers = true)]
    pub beta: Option<f64>,
    /// Focal-Tversky exponent (default 0.75); focal loss exponent (default 2).
    #[arg(long, allow_negative_numbers = true)]
    pub gamma: Option<f64>,
    /// Smoothing of the region losses (default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub smooth: Option<f64>,
    /// For bce: clamp probabilities to [eps, 1 - eps] instead of PyTorch's log clamp.
    #[arg(long, allow_negative_numbers = true)]
    pub eps: Option<f64>,
}

impl LossParamArgs {
    pub fn params(&self) -> LossParams {
        LossParams {
            alpha: self.alpha,
            beta: self.beta,
            gamma: self.gamma,
            smooth: self.smooth,
            eps: self.eps,
        }
    }

    /// Whether any parameter was given.
    pub fn any(&self) -> bool {
        self.alpha.is_some()
            || self.beta.is_some()
            || self.gamma.is_some()
            || self.smooth.is_some()
            || self.eps.is_some()
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct ThresholdArgs {
    #[arg(long, default_value = "none", help = format!("{}", seglab_nn::names::one_of(&ThresholdMode::NAMES)))]
    pub threshold_mode: String,
    /// Threshold t in (0, 1) (p >= t counts as foreground).
    #[arg(long, default_value_t = DEFAULT_THRESHOLD, allow_negative_numbers = true)]
    pub threshold: f64,
    /// Temperature of the soft threshold (> 0).
    #[arg(long, default_value_t = DEFAULT_TEMPERATURE, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Exponent parameter k >= 1 of the power threshold.
    #[arg(long, default_value_t = DEFAULT_POWER_K, allow_negative_numbers = true)]
    pub power_k: f64,
}

impl ThresholdArgs {
    pub fn mode(&self, name: &str) -> Result<ThresholdMode> {
        let choice = ThresholdChoice {
            mode: Some(name.to_string()),
            threshold: Some(self.threshold),
            temperature: Some(self.temperature),
            k: Some(self.power_k),
            ..Default::default()
        };
        Ok(choice
            .mode()
            .context("invalid threshold settings")?
            .expect("a mode was given"))
    }
}
