//! A trained model loaded from a run folder, for prediction.
use std::path::Path;

use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use seglab_metrics::pooled::{PooledAccumulator, PooledScores};

use super::checkpoint::read_checkpoint;
use super::{TrainConfig, BEST_CKPT, LAST_CKPT};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::record::EpochRecord;
use crate::unet::UNet;

/// A trained model ready for prediction.
pub struct TrainedModel {
    pub model: UNet,
    pub config: TrainConfig,
    /// Where the model lives and predicts.
    pub device: Device,
    /// The validation record of the checkpoint's epoch (its epoch number, validation Dice, the threshold that
    /// maximised the validation Dice); `None` for a checkpoint written before its first epoch ended.
    pub record: Option<EpochRecord>,
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
        record: meta.state.records.last().cloned(),
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

    /// Scores the model on the samples `idx` of `data` at each of `thresholds`: one [`PooledScores`] per threshold
    /// (per-case and pooled), from the probabilities of [`TrainedModel::predict`] with the run's mirroring setting,
    /// a validation batch at a time.
    pub fn score(
        &self,
        data: &Dataset,
        idx: &[usize],
        thresholds: &[f32],
    ) -> Result<Vec<PooledScores>> {
        let mut acc: Vec<PooledAccumulator> = thresholds
            .iter()
            .map(|&t| PooledAccumulator::new(t))
            .collect();
        let s = data.size;
        for chunk in idx.chunks(self.config.val_batch_size.max(1)) {
            let images: Vec<Vec<f32>> = chunk
                .iter()
                .map(|&i| data.samples[i].image.clone())
                .collect();
            let probs = self.predict(&images, self.config.tta);
            for (&i, p) in chunk.iter().zip(&probs) {
                let sample = &data.samples[i];
                let gt: Vec<bool> = sample.mask.iter().map(|&m| m == 1).collect();
                for a in acc.iter_mut() {
                    a.update(&sample.case, p, &gt, &[s, s])
                        .map_err(|e| Error::data(&sample.id, format!("lesion metrics: {e}")))?;
                }
            }
        }
        Ok(acc.iter().map(PooledAccumulator::finish).collect())
    }
}
