//! Binary cross-entropy: PyTorch's (with its backward), clamped, and on logits.
use burn::tensor::activation::{log_sigmoid, sigmoid};
use burn::tensor::Tensor;

use super::*;

/// Attaches a hand-computed gradient to a value: the result equals `value` exactly (the added
/// `s - s.detach()` is 0) and its gradient with respect to `x` is `grad` (`value` and `grad`
/// must carry no graph). Burn's public API has no custom backward without the `extension`
/// feature; this gives the same effect for losses whose PyTorch backward is not the derivative
/// of their forward.
fn with_gradient<const D: usize>(value: Tensor<1>, x: Tensor<D>, grad: Tensor<D>) -> Tensor<1> {
    let s = (x * grad).sum();
    value + (s.clone() - s.detach())
}

/// PyTorch's `F.binary_cross_entropy(q, t)`: forward with logs clamped at -100, backward
/// `(q - t) / max(q (1 - q), 1e-12) / numel`.
pub(super) fn bce_torch<const D: usize>(q: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    let numel = q.shape().num_elements() as f64;
    let qd = q.clone().detach();
    let value = bce_on_probabilities(qd.clone(), target.clone(), TORCH_BCE_LOG_MIN).detach();
    let denom = (qd.clone() * qd.clone().neg().add_scalar(1.0)).clamp_min(TORCH_BCE_GRAD_EPS);
    let grad = ((qd - target) / denom).div_scalar(numel).detach();
    with_gradient(value, q, grad)
}

/// BCE on `clamp(q, eps, 1 - eps)`. In f32, `1 - 1e-7` rounds to `1 - 1.19e-7`, so the naive
/// `log(1 - clamp(q))` is 1% off at saturated pixels; instead each log is taken of whichever of
/// `q`, `1 - q` is the small one (where `1 - q` is exact), with `log1p` for the other side.
/// The gradient is zero where either clamp is active, like `torch.clamp`.
pub(super) fn bce_clamped<const D: usize>(q: Tensor<D>, target: Tensor<D>, eps: f64) -> Tensor<1> {
    let lo = q.clone().clamp(eps, 1.0 - eps);
    let hi = q.clone().neg().add_scalar(1.0).clamp(eps, 1.0 - eps);
    let upper_half = q.clone().greater_equal_elem(0.5);
    let log_q = lo
        .clone()
        .log()
        .mask_where(upper_half.clone(), hi.clone().neg().log1p());
    let log_1mq = lo.neg().log1p().mask_where(upper_half, hi.log());
    let t_complement = target.clone().neg().add_scalar(1.0);
    (target * log_q + t_complement * log_1mq).neg().mean()
}

/// `-mean(t log q + (1 - t) log(1 - q))` with each log clamped below at `log_min`.
fn bce_on_probabilities<const D: usize>(
    q: Tensor<D>,
    target: Tensor<D>,
    log_min: f64,
) -> Tensor<1> {
    let log_q = q.clone().log().clamp_min(log_min);
    let log_1mq = q.neg().add_scalar(1.0).log().clamp_min(log_min);
    let t_complement = target.clone().neg().add_scalar(1.0);
    (target * log_q + t_complement * log_1mq).neg().mean()
}

/// `mean((1 - t) z - log_sigmoid(z))` with the gradient `(sigmoid(z) - t) / numel` computed as
/// `-sigmoid(-z)` where `t = 1`: autodiff of the forward gives `(1 - t) - (1 - sigmoid(z))`,
/// which cancels catastrophically in f32 (1.19e-7 instead of 1e-7 at `z = -16`).
pub(super) fn bce_with_logits<const D: usize>(z: Tensor<D>, target: Tensor<D>) -> Tensor<1> {
    let numel = z.shape().num_elements() as f64;
    let zd = z.clone().detach();
    let value = bce_with_logits_elements(zd.clone(), target.clone())
        .mean()
        .detach();
    let positive = target.clone().equal_elem(1.0);
    let grad = sigmoid(zd.clone())
        .mask_where(positive, sigmoid(zd.neg()).neg())
        .div_scalar(numel)
        .detach();
    with_gradient(value, z, grad)
}

/// `(1 - t) z - log_sigmoid(z)`: stable for any `z`, gradient `sigmoid(z) - t`.
pub(super) fn bce_with_logits_elements<const D: usize>(
    z: Tensor<D>,
    target: Tensor<D>,
) -> Tensor<D> {
    target.neg().add_scalar(1.0) * z.clone() - log_sigmoid(z)
}
