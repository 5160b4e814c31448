//! Arguments several subcommands share.
use burn::tensor::Device;
use seglab_nn::device::{device_from_name, DEVICE_NAMES};

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
