//! Berman et al.'s binary Lovasz hinge, on logits.
use burn::tensor::activation::relu;
use burn::tensor::Tensor;

use super::*;

/// Berman et al.'s binary Lovász hinge (`lovasz_hinge_flat` per group, mean over groups).
pub(super) fn lovasz_hinge<const D: usize>(
    logits: Tensor<D>,
    target: Tensor<D>,
    reduction: Reduction,
) -> Tensor<1> {
    let z = grouped(logits, reduction);
    let t = grouped(target, reduction);
    let [groups, m] = z.dims();
    let signs = t.clone().mul_scalar(2.0).sub_scalar(1.0);
    let errors = (z * signs).neg().add_scalar(1.0);
    // The permutation is data, not a differentiable function: sort a detached copy and gather.
    let (_, order) = errors.clone().detach().sort_descending_with_indices(1);
    let errors_sorted = errors.gather(1, order.clone());
    let gt_sorted = t.gather(1, order);
    let gts = gt_sorted.clone().sum_dim(1); // [G, 1]
    let intersection = gts.clone() - gt_sorted.clone().cumsum(1);
    let union = gts + gt_sorted.neg().add_scalar(1.0).cumsum(1);
    let jaccard = (intersection / union).neg().add_scalar(1.0); // [G, M]
    let grad = if m > 1 {
        let previous = Tensor::cat(
            vec![
                Tensor::zeros([groups, 1], &jaccard.device()),
                jaccard.clone().slice([0..groups, 0..m - 1]),
            ],
            1,
        );
        jaccard - previous
    } else {
        jaccard
    };
    (relu(errors_sorted) * grad.detach())
        .sum_dim(1)
        .reshape([groups])
        .mean()
}
