//! A trained model loaded from a run folder, for prediction.
use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};

use super::checkpoint::read_checkpoint;
use super::{TrainConfig, BEST_CKPT, LAST_CKPT};
use crate::error::{Error, Result};
use crate::unet::UNet;

/// A trained model ready for prediction.
pub struct TrainedModel {
    pub model: UNet,
    pub config: TrainConfig,
    /// Where the model lives and predicts.
    pub device: Device,
}

/// Loads `best.ckpt` (or `last.ckpt` when `best` is false) from a run folder onto `device`.
pub fn load_model(run_dir: &Path, best: bool, device: &Device) -> Result<TrainedModel> {
    let path = run_dir.join(if best { BEST_CKPT } else { LAST_CKPT });
    if !path.is_file() {
        return Err(Error::run(
            &path,
            "no checkpoint (is this a finished `seglab train` run?)",
        ));
    }
    let (meta, model_bytes, _) = read_checkpoint(&path)?;
    let rec = ModuleRecord::from_bytes(Bytes::from_bytes_vec(model_bytes))
        .map_err(|e| Error::run(&path, format!("model record: {e:?}")))?;
    let model = meta
        .config
        .model
        .init(0, device)
        .try_load_record(rec)
        .map_err(|e| Error::run(&path, format!("model record: {e:?}")))?;
    Ok(TrainedModel {
        model,
        config: meta.config,
        device: device.clone(),
    })
}

impl TrainedModel {
    /// Probability maps (`size x size`) for preprocessed images (`channels x size x size` each); `mirror` averages
    /// over mirror images ([`UNet::probabilities`]).
    pub fn predict(&self, images: &[Vec<f32>], mirror: bool) -> Vec<Vec<f32>> {
        let device = &self.device;
        let eval = self.model.valid();
        let s = self.config.load.size;
        let c = self.config.model.in_channels;
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(self.config.val_batch_size.max(1)) {
            let flat: Vec<f32> = chunk.iter().flatten().copied().collect();
            let x = Tensor::<4>::from_data(TensorData::new(flat, [chunk.len(), c, s, s]), device);
            let p = eval.probabilities(x, mirror).into_data();
            let p = p.as_slice::<f32>().expect("f32 probabilities");
            out.extend(p.chunks(s * s).map(|v| v.to_vec()));
        }
        out
    }
}
