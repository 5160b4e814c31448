//! Validation of one model state after each epoch: losses on logits, metrics from `seglab-metrics`.
use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::activation::sigmoid;
use burn::tensor::Device;
use seglab_metrics::lesion::{lesion_metrics, LesionCounts, LesionSettings};
use seglab_metrics::summary::settle;
use seglab_metrics::{Confusion, EmptyPolicy, Mask};

use super::{to_tensors, TrainConfig};
use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::unet::UNet;

/// Overlap scores of pooled confusion counts; an undefined score (0/0) is settled by the default empty-mask policy of
/// `seglab evaluate`: 1 when prediction and ground truth are both empty, else 0.
pub(super) struct OverlapScores {
    pub(super) dice: f64,
    pub(super) iou: f64,
    pub(super) precision: f64,
    pub(super) recall: f64,
}

impl OverlapScores {
    pub(super) fn of(c: &Confusion) -> Self {
        let both_empty = c.pred_count() == 0 && c.gt_count() == 0;
        let s = |v: Option<f64>| {
            settle(v, both_empty, EmptyPolicy::Default)
                .expect("the default policy defines every score")
        };
        OverlapScores {
            dice: s(c.dice()),
            iou: s(c.iou()),
            precision: s(c.precision()),
            recall: s(c.recall()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ValResult {
    pub loss: f64,
    pub soft_loss: f64,
    pub merged: Confusion,
    pub cases: Vec<String>,
    pub case_dice: Vec<f64>,
    pub soft_dice: f64,
    pub best_threshold: f64,
    /// Pooled confusion counts at `best_threshold` (the sweep threshold with the highest pooled Dice).
    pub best_threshold_counts: Confusion,
    /// Lesion counts at threshold 0.5, summed over validation images (each image labelled on its own, 2D,
    /// 8-connectivity: `seglab evaluate`'s default).
    pub lesions: LesionCounts,
    pub mean_prob_lesion: f64,
    pub mean_prob_background: f64,
    pub hist_lesion: [u64; 20],
    pub hist_background: [u64; 20],
}

pub const VAL_THRESHOLD: f32 = 0.5;

/// Scores `model` on the validation samples on `device` (the model's device without autodiff): losses on logits,
/// metrics from `seglab-metrics` on probabilities.
pub fn validate(
    model: &UNet,
    cfg: &TrainConfig,
    data: &Dataset,
    val_idx: &[usize],
    frac: f64,
    device: &Device,
) -> Result<ValResult> {
    let eval = model.valid();
    let device = device.clone();
    let thresholds: Vec<f32> = (1..=19).map(|k| k as f32 * 0.05).collect();
    let mut by_threshold = vec![Confusion::default(); thresholds.len()];
    let mut per_case: BTreeMap<String, Confusion> = BTreeMap::new();
    let mut merged = Confusion::default();
    let mut lesions = LesionCounts::default();
    let lesion_settings = LesionSettings::default();
    let (mut loss_sum, mut soft_sum, mut batches) = (0.0, 0.0, 0usize);
    let (mut spt, mut sp, mut st) = (0f64, 0f64, 0f64);
    let (mut p_in, mut n_in, mut p_out, mut n_out) = (0f64, 0u64, 0f64, 0u64);
    let mut hist_lesion = [0u64; 20];
    let mut hist_background = [0u64; 20];
    for chunk in val_idx.chunks(cfg.val_batch_size) {
        let batch = data::eval_batch(data, chunk);
        let (x, t) = to_tensors(&batch, data.channels, &device);
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
            let p = &probs[k * plane..(k + 1) * plane];
            let gt: Vec<bool> = data.samples[i].mask.iter().map(|&m| m == 1).collect();
            let c = Confusion::from_probs(p, &gt, VAL_THRESHOLD);
            merged.merge(&c);
            let shape = vec![batch.side, batch.side];
            let pred_mask = Mask::from_vec(
                shape.clone(),
                p.iter()
                    .map(|&v| seglab_metrics::binarize(v, VAL_THRESHOLD))
                    .collect(),
            );
            let gt_mask = Mask::from_vec(shape, gt.clone());
            let report = lesion_metrics(&pred_mask, &gt_mask, &lesion_settings)
                .map_err(|e| Error::new(format!("validation lesion metrics: {e}")))?;
            lesions.merge(&report.counts());
            per_case
                .entry(data.samples[i].case.clone())
                .or_default()
                .merge(&c);
            for (conf, &th) in by_threshold.iter_mut().zip(&thresholds) {
                conf.update_probs(p, &gt, th);
            }
            for (&pv, &g) in p.iter().zip(&gt) {
                let bin = ((pv * 20.0) as usize).min(19);
                sp += pv as f64;
                if g {
                    spt += pv as f64;
                    st += 1.0;
                    p_in += pv as f64;
                    n_in += 1;
                    hist_lesion[bin] += 1;
                } else {
                    p_out += pv as f64;
                    n_out += 1;
                    hist_background[bin] += 1;
                }
            }
        }
    }
    // The lowest threshold with the highest pooled Dice; IoU, precision and recall are read at that same threshold.
    let (best_i, _) = by_threshold
        .iter()
        .enumerate()
        .map(|(i, c)| (i, OverlapScores::of(c).dice))
        .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
    let cases: Vec<String> = per_case.keys().cloned().collect();
    // Empty-mask policy for per-case Dice: both empty -> 1 (undefined 0/0 is a perfect answer), else the formula.
    let case_dice = per_case.values().map(|c| c.dice().unwrap_or(1.0)).collect();
    Ok(ValResult {
        loss: loss_sum / batches.max(1) as f64,
        soft_loss: soft_sum / batches.max(1) as f64,
        merged,
        cases,
        case_dice,
        soft_dice: if sp + st > 0.0 {
            2.0 * spt / (sp + st)
        } else {
            1.0
        },
        best_threshold: thresholds[best_i] as f64,
        best_threshold_counts: by_threshold[best_i],
        lesions,
        mean_prob_lesion: if n_in > 0 { p_in / n_in as f64 } else { 0.0 },
        mean_prob_background: if n_out > 0 { p_out / n_out as f64 } else { 0.0 },
        hist_lesion,
        hist_background,
    })
}
