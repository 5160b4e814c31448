//! The Tversky family (Tversky, Dice, soft Jaccard, focal Tversky) from three tracked sums.
use burn::tensor::Tensor;

use super::*;

/// The Tversky family from the three sums `TP = sum(q t)`, `sum q`, `sum t`: `FP = sum q - TP`
/// and `FN = sum t - TP` are the same sums regrouped (exactly, for a binary target), and this
/// needs only two tracked reductions, which is what makes the backward cheap.
pub(super) fn region_loss<const D: usize>(
    q: Tensor<D>,
    target: Tensor<D>,
    reduction: Reduction,
    alpha: f64,
    beta: f64,
    smooth: f64,
    focal_gamma: Option<f64>,
) -> Tensor<1> {
    let qg = grouped(q, reduction);
    let tg = grouped(target, reduction);
    let groups = qg.dims()[0];
    let tp = (qg.clone() * tg.clone()).sum_dim(1).reshape([groups]);
    let sum_q = qg.sum_dim(1).reshape([groups]);
    let sum_t = tg.sum_dim(1).reshape([groups]);
    let fp = sum_q - tp.clone();
    let fn_ = sum_t - tp.clone();
    let num = tp.clone().add_scalar(smooth);
    let den = tp + fp.mul_scalar(alpha) + fn_.mul_scalar(beta);
    let den = den.add_scalar(smooth);
    let one_minus_t = (num / den).neg().add_scalar(1.0);
    let per_group = match focal_gamma {
        None => one_minus_t,
        Some(gamma) => {
            // Where 1 - T <= 0 the loss is 0 with a zero gradient (PyTorch: NaN/inf, see docs).
            let at_minimum = one_minus_t.clone().lower_equal_elem(0.0);
            one_minus_t
                .clamp_min(FOCAL_TVERSKY_MIN_BASE)
                .powf_scalar(gamma)
                .mask_fill(at_minimum, 0.0)
        }
    };
    per_group.mean()
}
