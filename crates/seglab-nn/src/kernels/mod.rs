//! CPU kernels for the U-Net's hot operations, as a burn backend extension with their own backward passes:
//!
//! - [`conv2d_same`]: stride-1 "same" 2D convolution (odd square kernel, zero padding `k / 2`, no groups, no
//!   dilation, no bias). On the Flex CPU backend, burn computes a convolution's weight gradient as a convolution whose
//!   "kernel" is the whole output gradient (`[Cout, N, H, W]`) and whose output is `k x k`, so its matrix products have
//!   9 rows and run on gemm's edge kernels; the input gradient goes through a generic transposed convolution. Here each
//!   image is one im2col and one matrix product per pass and row tile (forward `W @ col`; input gradient the same
//!   convolution of `dY` with the kernel flipped and its channel axes swapped; weight gradient `dY @ col^T`), with
//!   images in parallel and gemm inside each.
//! - [`conv_transpose2x2`]: the up path's 2x2, stride-2 transposed convolution as one matrix product per image (burn's
//!   weight gradient is again a convolution with a 2x2 output), interleaved into the upsampled grid.
//! - [`batch_norm_relu_train`]: training-mode batch normalisation followed by ReLU, three passes forward and two
//!   backward per channel, where burn's generic batch norm records about a dozen full-size tensor operations (with
//!   transposed copies) and ReLU two more; [`scale_shift_relu`], its inference form, one pass.
//!
//! Sums run in a fixed order (per image or channel, then in index order), so results do not depend on the thread count
//! or scheduling. Other backends and dtypes use burn's own operations, so the model code is the same everywhere.
use burn::backend::tensor::FloatTensor;
use burn::backend::TensorMetadata;
use burn::backend::{backend_extension, Backend, Dispatch, ExtensionType};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Shape, Tensor};

/// `conv2d(x, weight)` with stride 1 and zero padding `k / 2` on each side, for `x` `[N, Cin, H, W]` and `weight`
/// `[Cout, Cin, k, k]`, `k` odd; output `[N, Cout, H, W]`. Differentiable in both arguments.
pub fn conv2d_same(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [_, cin, _, _] = x.dims();
    let [_, wcin, kh, kw] = weight.dims();
    assert!(
        kh == kw && kh % 2 == 1 && wcin == cin,
        "conv2d_same: weight {:?} does not fit input channels {cin} (odd square kernel expected)",
        weight.dims()
    );
    Tensor::from_dispatch(<Dispatch as KernelBackend>::conv2d_same(
        x.into_dispatch(),
        weight.into_dispatch(),
    ))
}

/// Training-mode batch normalisation of `x` `[N, C, ...]` over every axis but 1 (biased variance, as PyTorch and
/// burn), scaled by `gamma`, shifted by `beta` and passed through ReLU. Returns the output and the batch mean and
/// variance (for the running statistics; they carry no gradient). Differentiable in `x`, `gamma` and `beta`.
pub fn batch_norm_relu_train(
    x: Tensor<4>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> (Tensor<4>, Tensor<1>, Tensor<1>) {
    let out = <Dispatch as KernelBackend>::batch_norm_relu_train(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    );
    (
        Tensor::from_dispatch(out.output),
        Tensor::from_dispatch(out.mean),
        Tensor::from_dispatch(out.variance),
    )
}

/// The 2x2, stride-2 transposed convolution of the U-Net's up path (no padding, no groups, no bias): `x`
/// `[N, Cin, H, W]`, `weight` `[Cin, Cout, 2, 2]` (burn's layout), output `[N, Cout, 2H, 2W]` with
/// `out[co, 2i + a, 2j + b] = sum_ci x[ci, i, j] weight[ci, co, a, b]`. Differentiable in both arguments.
pub fn conv_transpose2x2(x: Tensor<4>, weight: Tensor<4>) -> Tensor<4> {
    let [_, cin, _, _] = x.dims();
    let [wcin, _, kh, kw] = weight.dims();
    assert!(
        kh == 2 && kw == 2 && wcin == cin,
        "conv_transpose2x2: weight {:?} does not fit input channels {cin}",
        weight.dims()
    );
    Tensor::from_dispatch(<Dispatch as KernelBackend>::conv_transpose2x2(
        x.into_dispatch(),
        weight.into_dispatch(),
    ))
}

/// `relu(x * scale[c] + shift[c])` per channel `c` of `x` `[N, C, ...]`: inference-mode batch norm (with `scale` and
/// `shift` folded from the running statistics) followed by ReLU, in one pass over `x`.
pub fn scale_shift_relu(x: Tensor<4>, scale: Tensor<1>, shift: Tensor<1>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as KernelBackend>::scale_shift_relu(
        x.into_dispatch(),
        scale.into_dispatch(),
        shift.into_dispatch(),
    ))
}

// The GPU backends take the trait's default methods: burn's own operations.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl KernelBackend for burn::backend::Cube {}

/// Output of [`KernelBackend::batch_norm_relu_train`].
#[derive(ExtensionType)]
pub struct BatchNormRelu<B: Backend> {
    pub output: FloatTensor<B>,
    pub mean: FloatTensor<B>,
    pub variance: FloatTensor<B>,
}

/// Gradients of [`KernelBackend::batch_norm_relu_train`].
#[derive(ExtensionType)]
pub struct BatchNormReluGrads<B: Backend> {
    pub x: FloatTensor<B>,
    pub gamma: FloatTensor<B>,
    pub beta: FloatTensor<B>,
}

#[backend_extension(Flex, Autodiff, Cube: cfg(any(feature = "wgpu", feature = "cuda")))]
pub trait KernelBackend: Backend {
    /// Forward pass of [`conv2d_same`].
    fn conv2d_same(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        let k = weight.shape()[2];
        Self::conv2d(x, weight, None, same_options(k))
    }

    /// Gradient of [`conv2d_same`] with respect to `x`, given the output gradient.
    fn conv2d_same_x_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let k = weight.shape()[2];
        Self::conv2d_x_backward(x, weight, grad, same_options(k))
    }

    /// Gradient of [`conv2d_same`] with respect to `weight`, given the output gradient.
    fn conv2d_same_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let k = weight.shape()[2];
        Self::conv2d_weight_backward(x, weight, grad, same_options(k))
    }

    /// Forward pass of [`batch_norm_relu_train`].
    fn batch_norm_relu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> BatchNormRelu<Self> {
        bn_relu_generic::<Self>(x, gamma, beta, epsilon)
    }

    /// Forward pass of [`conv_transpose2x2`].
    fn conv_transpose2x2(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::conv_transpose2d(x, weight, None, transpose2x2_options())
    }

    /// Gradient of [`conv_transpose2x2`] with respect to `x`.
    fn conv_transpose2x2_x_grad(
        _x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::conv_transpose2d_x_backward(weight, grad, transpose2x2_options())
    }

    /// Gradient of [`conv_transpose2x2`] with respect to `weight`.
    fn conv_transpose2x2_weight_grad(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::conv_transpose2d_weight_backward(x, weight, grad, transpose2x2_options())
    }

    /// [`scale_shift_relu`]. Differentiable through this default (burn's own operations); the Flex kernel is for
    /// inference.
    fn scale_shift_relu(
        x: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        scale_shift_relu_generic::<Self>(x, scale, shift)
    }

    /// Gradients of [`batch_norm_relu_train`] given its input, output, statistics and the output gradient.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_relu_train_backward(
        x: FloatTensor<Self>,
        output: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        variance: FloatTensor<Self>,
        epsilon: f64,
        grad: FloatTensor<Self>,
    ) -> BatchNormReluGrads<Self> {
        bn_relu_backward_generic::<Self>(x, output, gamma, mean, variance, epsilon, grad)
    }
}

fn scale_shift_relu_generic<B: Backend>(
    x: FloatTensor<B>,
    scale: FloatTensor<B>,
    shift: FloatTensor<B>,
) -> FloatTensor<B> {
    let c = scale.shape()[0];
    let per_channel = Shape::new([1, c, 1, 1]);
    let y = B::float_mul(x, B::float_reshape(scale, per_channel.clone()));
    B::relu(B::float_add(y, B::float_reshape(shift, per_channel)))
}

fn bn_relu_generic<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f64,
) -> BatchNormRelu<B> {
    let bn = B::batch_norm_train(x, gamma, beta, epsilon);
    BatchNormRelu {
        output: B::relu(bn.output),
        mean: bn.mean,
        variance: bn.variance,
    }
}

fn bn_relu_backward_generic<B: Backend>(
    x: FloatTensor<B>,
    output: FloatTensor<B>,
    gamma: FloatTensor<B>,
    mean: FloatTensor<B>,
    variance: FloatTensor<B>,
    epsilon: f64,
    grad: FloatTensor<B>,
) -> BatchNormReluGrads<B> {
    let grad = B::relu_backward(output, grad);
    let g = B::batch_norm_train_backward(x, gamma, mean, variance, epsilon, grad);
    BatchNormReluGrads {
        x: g.x_grad,
        gamma: g.gamma_grad,
        beta: g.beta_grad,
    }
}

fn transpose2x2_options() -> ConvTransposeOptions<2> {
    ConvTransposeOptions::new([2, 2], [0, 0], [0, 0], [1, 1], 1)
}

fn same_options(k: usize) -> ConvOptions<2> {
    ConvOptions::new([1, 1], [k / 2, k / 2], [1, 1], 1)
}

mod autodiff;
mod flex;
mod im2col;
#[cfg(test)]
mod tests;

use im2col::*;
