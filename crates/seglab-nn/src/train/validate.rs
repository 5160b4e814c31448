//! Validation of one model state after each epoch: losses on logits, metrics from `seglab-metrics`.
use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::Device;
use seglab_metrics::pooled::{PooledAccumulator, PooledScores};

use super::{to_tensors, TrainConfig};
use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::unet::UNet;

/// One validation pass: the losses (the training loss with its threshold mode, and without thresholding), computed
/// here on logits, and the pooled metrics of `seglab-metrics` on probabilities.
#[derive(Clone, Debug)]
pub struct ValResult {
    pub loss: f64,
    pub soft_loss: f64,
    pub scores: PooledScores,
}

pub const VAL_THRESHOLD: f32 = 0.5;

/// Scores `model` on the validation samples on `device` (the model's device without autodiff): losses on logits,
/// metrics from `seglab-metrics` ([`PooledAccumulator`], one image at a time) on probabilities.
pub fn validate(
    model: &UNet,
    cfg: &TrainConfig,
    data: &Dataset,
    val_idx: &[usize],
    frac: f64,
    device: &Device,
) -> Result<ValResult> {
    let eval = model.valid();
    let mut pooled = PooledAccumulator::new(VAL_THRESHOLD);
    let (mut loss_sum, mut soft_sum, mut batches) = (0.0, 0.0, 0usize);
    for chunk in val_idx.chunks(cfg.val_batch_size) {
        let batch = data::eval_batch(data, chunk);
        let (x, t) = to_tensors(&batch, data.channels, device);
        let logits = eval.forward(x.clone());
        // Losses are means over a batch; weighting by batch size makes the result independent of the chunking.
        let w = chunk.len() as f64;
        loss_sum += w * cfg.loss.eval_loss(logits.clone(), t.clone(), frac, false);
        soft_sum += w * cfg.loss.eval_loss(logits.clone(), t, frac, true);
        batches += chunk.len();
        let probs = sigmoid(logits);
        let probs = if cfg.tta {
            eval.mirrored_mean(x, probs)
        } else {
            probs
        };
        let probs = probs.into_data();
        let probs = probs.as_slice::<f32>().expect("f32 probabilities");
        let plane = batch.side * batch.side;
        for (k, &i) in chunk.iter().enumerate() {
            let sample = &data.samples[i];
            let gt: Vec<bool> = sample.mask.iter().map(|&m| m == 1).collect();
            pooled
                .update(
                    &sample.case,
                    &probs[k * plane..(k + 1) * plane],
                    &gt,
                    &[batch.side, batch.side],
                )
                .map_err(|e| Error::data(&sample.id, format!("validation lesion metrics: {e}")))?;
        }
    }
    Ok(ValResult {
        loss: loss_sum / batches.max(1) as f64,
        soft_loss: soft_sum / batches.max(1) as f64,
        scores: pooled.finish(),
    })
}
