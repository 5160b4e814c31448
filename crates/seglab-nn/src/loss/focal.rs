//! torchvision's sigmoid focal loss, on logits.
use burn::tensor::activation::sigmoid;
use burn::tensor::Tensor;

use super::*;

pub(super) fn focal<const D: usize>(
    logits: Tensor<D>,
    target: Tensor<D>,
    gamma: f64,
    alpha: Option<f64>,
) -> Tensor<1> {
    let p = sigmoid(logits.clone());
    let ce = bce_with_logits_elements(logits, target.clone());
    // 1 - p_t = p (1 - t) + (1 - p) t, the probability given to the wrong class.
    let t_complement = target.clone().neg().add_scalar(1.0);
    let wrong = p.clone() * t_complement.clone() + p.neg().add_scalar(1.0) * target.clone();
    let modulating = if gamma == 0.0 {
        None
    } else {
        // Clamped so that the backward of w^gamma stays finite for gamma < 1 where w == 0.
        Some(wrong.clamp_min(1e-12).powf_scalar(gamma))
    };
    let mut loss = match modulating {
        Some(m) => ce * m,
        None => ce,
    };
    if let Some(a) = alpha {
        let alpha_t = target.mul_scalar(a) + t_complement.mul_scalar(1.0 - a);
        loss = loss * alpha_t;
    }
    loss.mean()
}
