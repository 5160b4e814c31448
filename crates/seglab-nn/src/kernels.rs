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
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::TensorMetadata;
use burn::backend::{
    backend_extension, Autodiff, AutodiffBackend, Backend, Dispatch, ExtensionType, Flex,
};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{DType, Shape, Tensor, TensorData};
use rayon::prelude::*;

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

#[backend_extension(Flex, Autodiff)]
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

fn dims4(t: &FlexTensor) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

/// The f32 data of a Flex tensor in row-major order (copied only when the tensor is a strided view).
fn f32_data(t: &FlexTensor) -> Option<std::borrow::Cow<'_, [f32]>> {
    if t.dtype() != DType::F32 {
        return None;
    }
    match t.as_slice::<f32>() {
        Some(s) => Some(std::borrow::Cow::Borrowed(s)),
        // One copy: the fresh contiguous tensor's buffer is taken over, not copied again.
        None => Some(std::borrow::Cow::Owned(
            t.to_contiguous().into_data().try_into_vec::<f32>().ok()?,
        )),
    }
}

fn flex_f32(data: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(data, Shape::new(shape)))
}

impl KernelBackend for Flex {
    fn conv2d_same(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let (Some(xd), Some(wd)) = (f32_data(&x), f32_data(&weight)) else {
            let k = weight.shape()[2];
            return Flex::conv2d(x, weight, None, same_options(k));
        };
        let [n, cin, h, w] = dims4(&x);
        let [cout, _, k, _] = dims4(&weight);
        flex_f32(
            conv_same_f32(&xd, [n, cin, h, w], &wd, cout, k),
            [n, cout, h, w],
        )
    }

    fn conv2d_same_x_grad(x: FlexTensor, weight: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (Some(wd), Some(gd)) = (f32_data(&weight), f32_data(&grad)) else {
            let k = weight.shape()[2];
            return Flex::conv2d_x_backward(x, weight, grad, same_options(k));
        };
        let [n, cin, h, w] = dims4(&x);
        let [cout, _, k, _] = dims4(&weight);
        // The input gradient of a stride-1 same convolution is the same convolution of the output gradient with the
        // kernel flipped in space and its channel axes swapped.
        let mut flipped = vec![0f32; cin * cout * k * k];
        for co in 0..cout {
            for ci in 0..cin {
                for t in 0..k * k {
                    flipped[(ci * cout + co) * k * k + (k * k - 1 - t)] =
                        wd[(co * cin + ci) * k * k + t];
                }
            }
        }
        flex_f32(
            conv_same_f32(&gd, [n, cout, h, w], &flipped, cin, k),
            [n, cin, h, w],
        )
    }

    fn conv2d_same_weight_grad(x: FlexTensor, weight: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (Some(xd), Some(gd)) = (f32_data(&x), f32_data(&grad)) else {
            let k = weight.shape()[2];
            return Flex::conv2d_weight_backward(x, weight, grad, same_options(k));
        };
        let [n, cin, h, w] = dims4(&x);
        let [cout, _, k, _] = dims4(&weight);
        let geo = Geometry { cin, h, w, k };
        let hw = h * w;
        let per = cout * geo.rows();
        // One gradient per image (tiles summed in order), then summed in image order below: the result does not
        // depend on scheduling.
        let parts = per_image(n, per, |i, dw_i, par| {
            let xi = &xd[i * cin * hw..][..cin * hw];
            let gi = &gd[i * cout * hw..][..cout * hw];
            let mut scratch = take_scratch();
            for (j, (y0, y1)) in geo.tiles().enumerate() {
                let col = geo.columns(xi, y0, y1, &mut scratch);
                // dw_i [Cout, Cin k k] (+)= dY[:, tile] [Cout, T] @ col^T [T, Cin k k]
                unsafe {
                    matmul(
                        dw_i,
                        (cout, geo.rows(), geo.rows()),
                        j > 0,
                        &gi[y0 * w..],
                        (hw as isize, 1),
                        col,
                        (1, geo.cols(y0, y1) as isize),
                        geo.cols(y0, y1),
                        par,
                    )
                };
            }
            give_back_scratch(scratch);
        });
        let dw = sum_in_order(&parts, per);
        flex_f32(dw, [cout, cin, k, k])
    }

    fn conv_transpose2x2(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        let (Some(xd), Some(wd)) = (f32_data(&x), f32_data(&weight)) else {
            return Flex::conv_transpose2d(x, weight, None, transpose2x2_options());
        };
        let [n, cin, h, w] = dims4(&x);
        let cout = weight.shape()[1];
        let (hw, r) = (h * w, cout * 4);
        let out = per_image(n, r * hw, |i, out_i, par| {
            let mut z = take_scratch();
            z.clear();
            z.reserve(r * hw);
            // z [Cout 2 2, HW] = W^T [Cout 2 2, Cin] @ x_i [Cin, HW]
            unsafe {
                matmul(
                    z.spare_capacity_mut().as_mut_ptr().cast(),
                    (r, hw, hw),
                    false,
                    &wd,
                    (1, r as isize),
                    &xd[i * cin * hw..][..cin * hw],
                    (hw as isize, 1),
                    cin,
                    par,
                );
                z.set_len(r * hw);
            }
            // SAFETY: out_i holds this image's `Cout 4 H W` values; every one is written below.
            let out_i = unsafe { std::slice::from_raw_parts_mut(out_i, r * hw) };
            interleave2x2(&z, out_i, cout, h, w);
            give_back_scratch(z);
        });
        flex_f32(out, [n, cout, 2 * h, 2 * w])
    }

    fn conv_transpose2x2_x_grad(x: FlexTensor, weight: FlexTensor, grad: FlexTensor) -> FlexTensor {
        let (Some(wd), Some(gd)) = (f32_data(&weight), f32_data(&grad)) else {
            return Flex::conv_transpose2d_x_backward(weight, grad, transpose2x2_options());
        };
        let [n, cin, h, w] = dims4(&x);
        let cout = weight.shape()[1];
        let (hw, r) = (h * w, cout * 4);
        let dx = per_image(n, cin * hw, |i, dx_i, par| {
            let mut dz = take_scratch();
            deinterleave2x2(&gd[i * r * hw..][..r * hw], &mut dz, cout, h, w);
            // dx_i [Cin, HW] = W [Cin, Cout 2 2] @ dz [Cout 2 2, HW]
            unsafe {
                matmul(
                    dx_i,
                    (cin, hw, hw),
                    false,
                    &wd,
                    (r as isize, 1),
                    &dz,
                    (hw as isize, 1),
                    r,
                    par,
                )
            };
            give_back_scratch(dz);
        });
        flex_f32(dx, [n, cin, h, w])
    }

    fn conv_transpose2x2_weight_grad(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
    ) -> FlexTensor {
        let (Some(xd), Some(gd)) = (f32_data(&x), f32_data(&grad)) else {
            return Flex::conv_transpose2d_weight_backward(x, weight, grad, transpose2x2_options());
        };
        let [n, cin, h, w] = dims4(&x);
        let cout = weight.shape()[1];
        let (hw, r) = (h * w, cout * 4);
        let per = cin * r;
        // Per image, summed in image order below (independent of scheduling).
        let parts = per_image(n, per, |i, dw_i, par| {
            let mut dz = take_scratch();
            deinterleave2x2(&gd[i * r * hw..][..r * hw], &mut dz, cout, h, w);
            // dw_i [Cin, Cout 2 2] = x_i [Cin, HW] @ dz^T [HW, Cout 2 2]
            unsafe {
                matmul(
                    dw_i,
                    (cin, r, r),
                    false,
                    &xd[i * cin * hw..][..cin * hw],
                    (hw as isize, 1),
                    &dz,
                    (1, hw as isize),
                    hw,
                    par,
                )
            };
            give_back_scratch(dz);
        });
        let dw = sum_in_order(&parts, per);
        flex_f32(dw, [cin, cout, 2, 2])
    }

    fn scale_shift_relu(x: FlexTensor, scale: FlexTensor, shift: FlexTensor) -> FlexTensor {
        let (Some(xd), Some(sd), Some(bd)) = (f32_data(&x), f32_data(&scale), f32_data(&shift))
        else {
            return scale_shift_relu_generic::<Flex>(x, scale, shift);
        };
        let (xd, sd, bd): (&[f32], &[f32], &[f32]) = (&xd, &sd, &bd);
        let shape = x.shape();
        let c = shape[1];
        let plane = shape.num_elements() / (shape[0] * c);
        let mut out: Vec<f32> = Vec::with_capacity(shape.num_elements());
        out.spare_capacity_mut()
            .par_chunks_mut(plane)
            .zip(xd.par_chunks(plane))
            .enumerate()
            .for_each(|(b, (dst, src))| {
                let (scale, shift) = (sd[b % c], bd[b % c]);
                for (d, &v) in dst.iter_mut().zip(src) {
                    // As burn's ReLU: zero where `<= 0`, NaN kept.
                    let t = v * scale + shift;
                    d.write(if t <= 0.0 { 0.0 } else { t });
                }
            });
        // SAFETY: every block was written above.
        unsafe { out.set_len(shape.num_elements()) };
        FlexTensor::from_data(TensorData::new(out, shape))
    }

    fn batch_norm_relu_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        epsilon: f64,
    ) -> BatchNormRelu<Flex> {
        let (Some(xd), Some(gd), Some(bd)) = (f32_data(&x), f32_data(&gamma), f32_data(&beta))
        else {
            return bn_relu_generic::<Flex>(x, gamma, beta, epsilon);
        };
        let (xd, gd, bd): (&[f32], &[f32], &[f32]) = (&xd, &gd, &bd);
        let shape = x.shape();
        let (n, c) = (shape[0], shape[1]);
        let plane = shape.num_elements() / (n * c);
        let m = (n * plane) as f64;
        let stats: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let planes = || (0..n).map(move |i| &xd[(i * c + ch) * plane..][..plane]);
                let mean = planes().map(|p| lane_sum(p, |v| v)).sum::<f64>() / m;
                let mean32 = mean as f32;
                let var = planes()
                    .map(|p| lane_sum(p, |v| (v - mean32) * (v - mean32)))
                    .sum::<f64>()
                    / m;
                (mean32, var as f32)
            })
            .collect();
        let mut out: Vec<f32> = Vec::with_capacity(n * c * plane);
        let base = OutPtr(out.spare_capacity_mut().as_mut_ptr().cast());
        (0..c).into_par_iter().for_each(|ch| {
            let (mean, var) = stats[ch];
            let scale = gd[ch] / (var + epsilon as f32).sqrt();
            let shift = bd[ch] - mean * scale;
            for i in 0..n {
                let src = &xd[(i * c + ch) * plane..][..plane];
                // SAFETY: channel `ch` of image `i` is this task's own block of `out`.
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(base.at((i * c + ch) * plane), plane) };
                for (d, &v) in dst.iter_mut().zip(src) {
                    // As burn's ReLU (zero where `<= 0`): a NaN stays NaN, so a diverged run is still seen as one.
                    let t = v * scale + shift;
                    *d = if t <= 0.0 { 0.0 } else { t };
                }
            }
        });
        // SAFETY: every (image, channel) block was written above.
        unsafe { out.set_len(n * c * plane) };
        let (mean, var): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
        BatchNormRelu {
            output: FlexTensor::from_data(TensorData::new(out, shape)),
            mean: FlexTensor::from_data(TensorData::new(mean, [c])),
            variance: FlexTensor::from_data(TensorData::new(var, [c])),
        }
    }

    fn batch_norm_relu_train_backward(
        x: FlexTensor,
        output: FlexTensor,
        gamma: FlexTensor,
        mean: FlexTensor,
        variance: FlexTensor,
        epsilon: f64,
        grad: FlexTensor,
    ) -> BatchNormReluGrads<Flex> {
        let all = (
            f32_data(&x),
            f32_data(&output),
            f32_data(&gamma),
            f32_data(&mean),
            f32_data(&variance),
            f32_data(&grad),
        );
        let (Some(xd), Some(yd), Some(gd), Some(md), Some(vd), Some(dyd)) = all else {
            return bn_relu_backward_generic::<Flex>(
                x, output, gamma, mean, variance, epsilon, grad,
            );
        };
        let (xd, yd, dyd): (&[f32], &[f32], &[f32]) = (&xd, &yd, &dyd);
        let (gd, md, vd): (&[f32], &[f32], &[f32]) = (&gd, &md, &vd);
        let shape = x.shape();
        let (n, c) = (shape[0], shape[1]);
        let plane = shape.num_elements() / (n * c);
        let m = (n * plane) as f32;
        let block = |i: usize, ch: usize| (i * c + ch) * plane..(i * c + ch + 1) * plane;
        let mut dx: Vec<f32> = Vec::with_capacity(n * c * plane);
        let base = OutPtr(dx.spare_capacity_mut().as_mut_ptr().cast());
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let inv_std = 1.0 / (vd[ch] + epsilon as f32).sqrt();
                let mu = md[ch];
                // ReLU's gradient mask, as burn's: zero where the output is `<= 0`.
                let (mut sum_dz, mut sum_dz_xhat) = (0f64, 0f64);
                for i in 0..n {
                    let r = block(i, ch);
                    let (xs, ys, gs) = (&xd[r.clone()], &yd[r.clone()], &dyd[r]);
                    let (a, b) = lane_sum2(xs, ys, gs, |x, y, g| {
                        let dz = if y <= 0.0 { 0.0 } else { g };
                        (dz, dz * (x - mu) * inv_std)
                    });
                    sum_dz += a;
                    sum_dz_xhat += b;
                }
                let (mean_dz, mean_dz_xhat) = (sum_dz as f32 / m, sum_dz_xhat as f32 / m);
                let scale = gd[ch] * inv_std;
                for i in 0..n {
                    let r = block(i, ch);
                    // SAFETY: channel `ch` of image `i` is this task's own block of `dx`.
                    let dst = unsafe { std::slice::from_raw_parts_mut(base.at(r.start), plane) };
                    for (((d, &x), &y), &g) in dst
                        .iter_mut()
                        .zip(&xd[r.clone()])
                        .zip(&yd[r.clone()])
                        .zip(&dyd[r])
                    {
                        let dz = if y <= 0.0 { 0.0 } else { g };
                        *d = scale * (dz - mean_dz - (x - mu) * inv_std * mean_dz_xhat);
                    }
                }
                (sum_dz as f32, sum_dz_xhat as f32)
            })
            .collect();
        // SAFETY: every (image, channel) block was written above.
        unsafe { dx.set_len(n * c * plane) };
        let (dbeta, dgamma): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
        BatchNormReluGrads {
            x: FlexTensor::from_data(TensorData::new(dx, shape)),
            gamma: FlexTensor::from_data(TensorData::new(dgamma, [c])),
            beta: FlexTensor::from_data(TensorData::new(dbeta, [c])),
        }
    }
}

/// The sum of `f(v)` over `p`, in 16 f32 lanes (vectorised, and each lane sums a sixteenth of the values) added up in
/// f64.
fn lane_sum(p: &[f32], f: impl Fn(f32) -> f32) -> f64 {
    let mut acc = [0f32; 16];
    let chunks = p.chunks_exact(16);
    let rest = chunks.remainder();
    for ch in chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += f(v);
        }
    }
    acc.iter().map(|&a| a as f64).sum::<f64>() + rest.iter().map(|&v| f(v) as f64).sum::<f64>()
}

/// Two sums of `f(x, y, g)` over aligned slices, as [`lane_sum`].
fn lane_sum2(
    xs: &[f32],
    ys: &[f32],
    gs: &[f32],
    f: impl Fn(f32, f32, f32) -> (f32, f32),
) -> (f64, f64) {
    let (mut a, mut b) = ([0f32; 16], [0f32; 16]);
    let n = xs.len() / 16 * 16;
    for j in (0..n).step_by(16) {
        for l in 0..16 {
            let (u, v) = f(xs[j + l], ys[j + l], gs[j + l]);
            a[l] += u;
            b[l] += v;
        }
    }
    let (mut sa, mut sb) = (
        a.iter().map(|&v| v as f64).sum::<f64>(),
        b.iter().map(|&v| v as f64).sum::<f64>(),
    );
    for j in n..xs.len() {
        let (u, v) = f(xs[j], ys[j], gs[j]);
        sa += u as f64;
        sb += v as f64;
    }
    (sa, sb)
}

impl<B: Backend + KernelBackend, C: CheckpointStrategy> KernelBackend for Autodiff<B, C> {
    fn conv2d_same(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        track_weighted::<B, C>(
            x,
            weight,
            B::conv2d_same,
            WeightedBackward {
                x_grad: B::conv2d_same_x_grad,
                weight_grad: B::conv2d_same_weight_grad,
            },
        )
    }

    fn conv_transpose2x2(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        track_weighted::<B, C>(
            x,
            weight,
            B::conv_transpose2x2,
            WeightedBackward {
                x_grad: B::conv_transpose2x2_x_grad,
                weight_grad: B::conv_transpose2x2_weight_grad,
            },
        )
    }

    fn batch_norm_relu_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> BatchNormRelu<Self> {
        #[derive(Debug)]
        struct BatchNormReluBackward;

        type Saved<B> = (
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            FloatTensor<B>,
            f64,
        );

        impl<B: Backend + KernelBackend> Backward<B, 3> for BatchNormReluBackward {
            type State = Saved<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x, y, gamma, mean, var, eps) = ops.state;
                let g = B::batch_norm_relu_train_backward(x, y, gamma, mean, var, eps, grad);
                if let Some(node) = node_x {
                    grads.register::<B>(node.id, g.x);
                }
                if let Some(node) = node_gamma {
                    grads.register::<B>(node.id, g.gamma);
                }
                if let Some(node) = node_beta {
                    grads.register::<B>(node.id, g.beta);
                }
            }
        }

        let prep = BatchNormReluBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, gamma, beta) = (
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
        );
        let out = B::batch_norm_relu_train(x.clone(), gamma.clone(), beta, epsilon);
        let output = match prep {
            OpsKind::Tracked(prep) => prep.finish(
                (
                    x,
                    out.output.clone(),
                    gamma,
                    out.mean.clone(),
                    out.variance.clone(),
                    epsilon,
                ),
                out.output,
            ),
            OpsKind::UnTracked(prep) => prep.finish(out.output),
        };
        BatchNormRelu {
            output,
            mean: <Self as AutodiffBackend>::from_inner(out.mean),
            variance: <Self as AutodiffBackend>::from_inner(out.variance),
        }
    }
}

type GradFn<B> = fn(FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>;

/// Backward step of an operation `f(x, weight)` that is linear in each argument (the convolutions): the two
/// gradients given `(x, weight, output gradient)`.
#[derive(Debug)]
struct WeightedBackward<B: Backend> {
    x_grad: GradFn<B>,
    weight_grad: GradFn<B>,
}

impl<B: Backend> Backward<B, 2> for WeightedBackward<B> {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x, w) = ops.state;
        // The network's input needs no gradient: the first layer skips that product entirely.
        if let Some(node) = node_w {
            let dw = (self.weight_grad)(x.clone(), w.clone(), grad.clone());
            grads.register::<B>(node.id, dw);
        }
        if let Some(node) = node_x {
            grads.register::<B>(node.id, (self.x_grad)(x, w, grad));
        }
    }
}

/// Runs `forward` on the inner backend and records `backward` when either argument is tracked.
fn track_weighted<B: Backend, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    forward: fn(FloatTensor<B>, FloatTensor<B>) -> FloatTensor<B>,
    backward: WeightedBackward<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match backward
        .prepare::<C>([x.node(), weight.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (x, w) = (x.into_primitive(), weight.into_primitive());
            let out = forward(x.clone(), w.clone());
            prep.finish((x, w), out)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(x.into_primitive(), weight.into_primitive()))
        }
    }
}

/// One image's convolution geometry.
#[derive(Clone, Copy)]
struct Geometry {
    cin: usize,
    h: usize,
    w: usize,
    k: usize,
}

impl Geometry {
    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    fn rows(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// For kernel offset (`ky`, `kx`): for each output row `y`, the input row it reads (or `None` in the padding),
    /// and the output column range `x0..x1` whose inputs lie inside the image, read from `x0 + dx`.
    fn spans(&self, ky: usize, kx: usize) -> (isize, isize, usize, usize) {
        let p = (self.k / 2) as isize;
        let dy = ky as isize - p;
        let dx = kx as isize - p;
        let x0 = (-dx).max(0) as usize;
        let x1 = (self.w as isize - dx).min(self.w as isize).max(x0 as isize) as usize;
        (dy, dx, x0, x1)
    }

    /// Output row ranges processed as one matrix product: about 512 KiB of column matrix each, so the column matrix
    /// of a tile stays in the core's L2 cache between im2col and gemm instead of streaming `9 Cin H W` values through
    /// memory. Whole image for a 1x1 kernel (no column matrix).
    fn tiles(&self) -> impl Iterator<Item = (usize, usize)> {
        let rows = if self.k == 1 {
            self.h
        } else {
            ((1usize << 17) / self.rows() / self.w).clamp(1, self.h)
        };
        let h = self.h;
        (0..h).step_by(rows).map(move |y0| (y0, (y0 + rows).min(h)))
    }

    /// Columns of the column matrix of output rows `y0..y1`.
    fn cols(&self, y0: usize, y1: usize) -> usize {
        (y1 - y0) * self.w
    }

    /// The im2col matrix `[Cin k k, (y1 - y0) W]` of output rows `y0..y1` of one image `[Cin, H, W]`, written into
    /// `col`; for a 1x1 kernel, `x` itself from row `y0` (row stride `H W`, as the matrix products expect).
    fn columns<'a>(&self, x: &'a [f32], y0: usize, y1: usize, col: &'a mut Vec<f32>) -> &'a [f32] {
        if self.k == 1 {
            debug_assert!(y0 == 0 && y1 == self.h);
            return x;
        }
        let (h, w, hw) = (self.h, self.w, self.h * self.w);
        let t = self.cols(y0, y1);
        let len = self.rows() * t;
        col.clear();
        col.reserve(len);
        let base: *mut f32 = col.spare_capacity_mut().as_mut_ptr().cast();
        // Every element is written exactly once, zero in the padding, so the buffer is not cleared first.
        for ci in 0..self.cin {
            let plane = &x[ci * hw..][..hw];
            for ky in 0..self.k {
                for kx in 0..self.k {
                    let r = (ci * self.k + ky) * self.k + kx;
                    let (dy, dx, x0, x1) = self.spans(ky, kx);
                    for y in y0..y1 {
                        let ys = y as isize + dy;
                        unsafe {
                            let row = base.add(r * t + (y - y0) * w);
                            if ys < 0 || ys >= h as isize || x0 >= x1 {
                                std::ptr::write_bytes(row, 0, w);
                                continue;
                            }
                            let s0 = (x0 as isize + dx) as usize;
                            let src = plane[ys as usize * w + s0..][..x1 - x0].as_ptr();
                            std::ptr::write_bytes(row, 0, x0);
                            std::ptr::copy_nonoverlapping(src, row.add(x0), x1 - x0);
                            std::ptr::write_bytes(row.add(x1), 0, w - x1);
                        }
                    }
                }
            }
        }
        // SAFETY: all `len` values were written above.
        unsafe { col.set_len(len) };
        col
    }
}

/// `out [Cout, 2H, 2W]` from `z [Cout 2 2, H W]`: `out[co, 2i + a, 2j + b] = z[(co 2 + a) 2 + b, i W + j]`.
fn interleave2x2(z: &[f32], out: &mut [f32], cout: usize, h: usize, w: usize) {
    let hw = h * w;
    for co in 0..cout {
        for a in 0..2 {
            for i in 0..h {
                let row = &mut out[(co * 2 * h + 2 * i + a) * 2 * w..][..2 * w];
                let z0 = &z[((co * 2 + a) * 2) * hw + i * w..][..w];
                let z1 = &z[((co * 2 + a) * 2 + 1) * hw + i * w..][..w];
                for (j, pair) in row.chunks_exact_mut(2).enumerate() {
                    pair[0] = z0[j];
                    pair[1] = z1[j];
                }
            }
        }
    }
}

/// The inverse of [`interleave2x2`]: `dz [Cout 2 2, H W]` from `g [Cout, 2H, 2W]`, written into `dz` in its own
/// order (each value once, no clearing pass).
fn deinterleave2x2(g: &[f32], dz: &mut Vec<f32>, cout: usize, h: usize, w: usize) {
    dz.clear();
    dz.reserve(cout * 4 * h * w);
    for co in 0..cout {
        for a in 0..2 {
            for b in 0..2 {
                for i in 0..h {
                    let row = &g[(co * 2 * h + 2 * i + a) * 2 * w..][..2 * w];
                    dz.extend(row.iter().skip(b).step_by(2));
                }
            }
        }
    }
}

thread_local! {
    /// Each thread's working buffer (a column-matrix tile, or a transposed convolution's `[Cout 2 2, H W]` matrix),
    /// kept between calls so that it is not faulted in afresh each time.
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Takes this thread's scratch buffer (no borrow is held while it is in use: a nested call gets an empty one).
fn take_scratch() -> Vec<f32> {
    SCRATCH.with(|s| s.take())
}

/// Returns a scratch buffer to this thread, keeping the larger of it and whatever the thread holds now.
fn give_back_scratch(v: Vec<f32>) {
    SCRATCH.with(|s| {
        let held = s.take();
        s.set(if held.capacity() >= v.capacity() {
            held
        } else {
            v
        });
    });
}

/// `conv2d_same` of `x` `[N, Cin, H, W]` with `weight` `[Cout, Cin, k, k]` (row-major), per image and row tile.
fn conv_same_f32(
    x: &[f32],
    [n, cin, h, w]: [usize; 4],
    weight: &[f32],
    cout: usize,
    k: usize,
) -> Vec<f32> {
    let geo = Geometry { cin, h, w, k };
    let hw = h * w;
    per_image(n, cout * hw, |i, out_i, par| {
        let xi = &x[i * cin * hw..][..cin * hw];
        let mut scratch = take_scratch();
        for (y0, y1) in geo.tiles() {
            let col = geo.columns(xi, y0, y1, &mut scratch);
            // out_i[:, tile] [Cout, T] = W [Cout, Cin k k] @ col [Cin k k, T]
            unsafe {
                matmul(
                    out_i.add(y0 * w),
                    (cout, (y1 - y0) * w, hw),
                    false,
                    weight,
                    (geo.rows() as isize, 1),
                    col,
                    (geo.cols(y0, y1) as isize, 1),
                    geo.rows(),
                    par,
                )
            };
        }
        give_back_scratch(scratch);
    })
}

/// The sum of the consecutive `per`-value parts of `parts`, added in order (the result does not depend on how the
/// parts were scheduled).
fn sum_in_order(parts: &[f32], per: usize) -> Vec<f32> {
    let mut sum = parts[..per].to_vec();
    for part in parts.chunks_exact(per).skip(1) {
        sum.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    sum
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

impl OutPtr {
    /// The pointer `offset` values further. (A method, so closures capture the whole `Send` wrapper.)
    ///
    /// # Safety
    /// As `pointer::add`: the offset must stay inside the allocation.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}
// Each image writes only its own disjoint chunk.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// A vector of `n` chunks of `chunk` values, chunk `i` written by `f(i, pointer to the chunk, parallelism)`, which
/// must write every value of its chunk (the vector is not zeroed first: gemm writes its output without reading it).
/// Images run in parallel with single-threaded gemm when there are at least as many images as threads, otherwise one
/// at a time with gemm using every thread.
fn per_image<F>(n: usize, chunk: usize, f: F) -> Vec<f32>
where
    F: Fn(usize, *mut f32, gemm::Parallelism) + Send + Sync,
{
    let mut out: Vec<f32> = Vec::with_capacity(n * chunk);
    let base = OutPtr(out.spare_capacity_mut().as_mut_ptr().cast());
    let threads = rayon::current_num_threads();
    if n >= threads && threads > 1 {
        (0..n)
            .into_par_iter()
            .for_each(|i| f(i, unsafe { base.at(i * chunk) }, gemm::Parallelism::None));
    } else {
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        (0..n).for_each(|i| f(i, unsafe { base.at(i * chunk) }, par));
    }
    // SAFETY: every chunk was written by `f`.
    unsafe { out.set_len(n * chunk) };
    out
}

/// `dst [m, n] = lhs [m, kk] @ rhs [kk, n]` (`+=` with `accumulate`; otherwise `dst` is written without being read),
/// `dst` row-major with row stride `dst_rs`; `lhs` and `rhs` given as (row stride, column stride).
///
/// # Safety
/// `dst` must be valid for the `m` rows of `n` values at row stride `dst_rs`, and the strides must keep every addressed
/// element inside `lhs` and `rhs`.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul(
    dst: *mut f32,
    (m, n, dst_rs): (usize, usize, usize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (isize, isize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (isize, isize),
    kk: usize,
    par: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        n,
        kk,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs.as_ptr(),
        lhs_cs,
        lhs_rs,
        rhs.as_ptr(),
        rhs_cs,
        rhs_rs,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        par,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use burn::tensor::module::conv2d;
    use burn::tensor::Device;

    fn random(rng: &mut Rng, shape: [usize; 4], device: &Device) -> Tensor<4> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.range(-1.0, 1.0) as f32).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    fn max_abs_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// Forward and both gradients against burn's own convolution, for 1x1, 3x3 and 5x5 kernels, batches below and
    /// above the thread count, non-square images, images narrower than the kernel and images split into row tiles.
    #[test]
    fn matches_burn_conv2d_and_its_gradients() {
        let device = Device::flex().autodiff();
        let mut rng = Rng::new(7);
        for &(n, cin, cout, h, w, k) in &[
            (1, 1, 4, 5, 7, 3),
            (3, 2, 3, 6, 4, 3),
            (4, 5, 6, 9, 8, 3),
            (2, 3, 2, 7, 7, 5),
            (5, 4, 1, 6, 5, 1),
            (2, 2, 3, 2, 1, 3),
            // Several row tiles per image (14 rows each), and one-row tiles of a width that is not a multiple of 16.
            (2, 64, 8, 40, 16, 3),
            (1, 128, 4, 9, 130, 3),
        ] {
            let x = random(&mut rng, [n, cin, h, w], &device).require_grad();
            let wt = random(&mut rng, [cout, cin, k, k], &device).require_grad();
            let up = random(&mut rng, [n, cout, h, w], &device);

            let ours = conv2d_same(x.clone(), wt.clone());
            let theirs = conv2d(x.clone(), wt.clone(), None, same_options(k));
            let d = max_abs_diff(ours.clone().inner(), theirs.clone().inner());
            assert!(d < 1e-4, "forward {n}x{cin}x{h}x{w} k{k}: {d}");

            let g_ours = (ours * up.clone()).sum().backward();
            let g_theirs = (theirs * up).sum().backward();
            let dx = max_abs_diff(x.grad(&g_ours).unwrap(), x.grad(&g_theirs).unwrap());
            let dw = max_abs_diff(wt.grad(&g_ours).unwrap(), wt.grad(&g_theirs).unwrap());
            assert!(
                dx < 1e-4 && dw < 1e-3,
                "grads {n}x{cin}x{h}x{w} k{k}: dx {dx} dw {dw}"
            );
        }
    }

    #[test]
    fn untracked_input_still_gives_the_weight_gradient() {
        let device = Device::flex().autodiff();
        let mut rng = Rng::new(8);
        let x = random(&mut rng, [2, 3, 6, 6], &device);
        let wt = random(&mut rng, [4, 3, 3, 3], &device).require_grad();
        let g = conv2d_same(x.clone(), wt.clone()).sum().backward();
        let g2 = conv2d(x, wt.clone(), None, same_options(3))
            .sum()
            .backward();
        let d = max_abs_diff(wt.grad(&g).unwrap(), wt.grad(&g2).unwrap());
        assert!(d < 1e-3, "{d}");
    }

    /// Output, statistics and all three gradients against burn's batch norm followed by ReLU, for shapes with plane
    /// sizes below and above the 16-lane blocks.
    #[test]
    fn batch_norm_relu_matches_burn() {
        use burn::tensor::activation::relu;
        use burn::tensor::module::batch_norm_train;
        let device = Device::flex().autodiff();
        let mut rng = Rng::new(9);
        for &(n, c, h, w) in &[(2, 3, 5, 7), (4, 16, 8, 8), (1, 2, 3, 3), (3, 5, 17, 9)] {
            let x = random(&mut rng, [n, c, h, w], &device)
                .mul_scalar(3.0)
                .add_scalar(0.5)
                .require_grad();
            let gamma = Tensor::<1>::from_data(
                TensorData::new((0..c).map(|i| 0.5 + i as f32 * 0.3).collect(), [c]),
                &device,
            )
            .require_grad();
            let beta = Tensor::<1>::from_data(
                TensorData::new((0..c).map(|i| i as f32 * 0.2 - 0.3).collect(), [c]),
                &device,
            )
            .require_grad();
            let up = random(&mut rng, [n, c, h, w], &device);

            let (ours, mean, var) =
                batch_norm_relu_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
            let theirs = batch_norm_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
            let d = max_abs_diff(ours.clone().inner(), relu(theirs.output.clone()).inner());
            assert!(d < 1e-4, "forward {n}x{c}x{h}x{w}: {d}");
            let dm = (mean - theirs.mean.clone())
                .abs()
                .max()
                .into_scalar::<f32>();
            let dv = (var - theirs.variance.clone())
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(dm < 1e-5 && dv < 1e-4, "stats: {dm} {dv}");

            let g_ours = (ours * up.clone()).sum().backward();
            let g_theirs = (relu(theirs.output) * up).sum().backward();
            let dx = max_abs_diff(x.grad(&g_ours).unwrap(), x.grad(&g_theirs).unwrap());
            let dg = (gamma.grad(&g_ours).unwrap() - gamma.grad(&g_theirs).unwrap())
                .abs()
                .max()
                .into_scalar::<f32>();
            let db = (beta.grad(&g_ours).unwrap() - beta.grad(&g_theirs).unwrap())
                .abs()
                .max()
                .into_scalar::<f32>();
            assert!(
                dx < 1e-4 && dg < 1e-3 && db < 1e-3,
                "grads {n}x{c}x{h}x{w}: {dx} {dg} {db}"
            );
        }
    }

    /// A non-finite activation must reach the loss (so divergence is detected), as it does through burn's ReLU.
    #[test]
    fn batch_norm_relu_keeps_nan() {
        let device = Device::flex().autodiff();
        let mut v = vec![0.5f32; 2 * 2 * 3 * 3];
        v[4] = f32::NAN;
        let x = Tensor::<4>::from_data(TensorData::new(v, [2, 2, 3, 3]), &device);
        let ones = Tensor::<1>::ones([2], &device);
        let (y, _, _) = batch_norm_relu_train(x, ones.clone(), ones.zeros_like(), 1e-5);
        assert!(y.sum().into_scalar::<f32>().is_nan());
    }

    /// Inference batch norm + ReLU folded into one scale and shift, against burn's inference batch norm, on the
    /// plain (non-autodiff) device as validation and `predict` run it.
    #[test]
    fn scale_shift_relu_matches_burn_inference_batch_norm() {
        use burn::tensor::activation::relu;
        use burn::tensor::module::batch_norm;
        let device = Device::flex();
        let mut rng = Rng::new(10);
        let (n, c, h, w) = (3, 5, 7, 9);
        let x = random(&mut rng, [n, c, h, w], &device).mul_scalar(2.0);
        let vec1 = |rng: &mut Rng, lo: f64, hi: f64| {
            let v: Vec<f32> = (0..c).map(|_| rng.range(lo, hi) as f32).collect();
            Tensor::<1>::from_data(TensorData::new(v, [c]), &device)
        };
        let (gamma, beta) = (vec1(&mut rng, 0.5, 2.0), vec1(&mut rng, -0.5, 0.5));
        let (mean, var) = (vec1(&mut rng, -0.3, 0.3), vec1(&mut rng, 0.2, 3.0));
        let eps = 1e-5;
        let theirs = relu(batch_norm(
            x.clone(),
            gamma.clone(),
            beta.clone(),
            mean.clone(),
            var.clone(),
            eps,
        ));
        let scale = gamma.div(var.add_scalar(eps).sqrt());
        let shift = beta - mean.mul(scale.clone());
        let ours = scale_shift_relu(x, scale, shift);
        let d = max_abs_diff(ours, theirs);
        assert!(d < 1e-5, "{d}");
    }

    /// Strided views (a transposed input, a channel slice as concatenation's backward hands on) are read correctly.
    #[test]
    fn conv2d_same_reads_strided_views() {
        let device = Device::flex();
        let mut rng = Rng::new(11);
        let x = random(&mut rng, [2, 6, 5, 7], &device)
            .swap_dims(2, 3)
            .narrow(1, 1, 3);
        let wt = random(&mut rng, [4, 3, 3, 3], &device);
        let ours = conv2d_same(x.clone(), wt.clone());
        let theirs = conv2d(x, wt, None, same_options(3));
        assert!(max_abs_diff(ours, theirs) < 1e-4);
    }

    /// Forward and both gradients against burn's transposed convolution (2x2, stride 2).
    #[test]
    fn conv_transpose2x2_matches_burn() {
        use burn::tensor::module::conv_transpose2d;
        let device = Device::flex().autodiff();
        let mut rng = Rng::new(12);
        for &(n, cin, cout, h, w) in &[(1, 3, 2, 4, 5), (4, 6, 3, 3, 3), (3, 16, 8, 8, 6)] {
            let x = random(&mut rng, [n, cin, h, w], &device).require_grad();
            let wt = random(&mut rng, [cin, cout, 2, 2], &device).require_grad();
            let up = random(&mut rng, [n, cout, 2 * h, 2 * w], &device);
            let ours = conv_transpose2x2(x.clone(), wt.clone());
            let theirs = conv_transpose2d(x.clone(), wt.clone(), None, transpose2x2_options());
            let d = max_abs_diff(ours.clone().inner(), theirs.clone().inner());
            assert!(d < 1e-4, "forward {n}x{cin}x{h}x{w}: {d}");
            let g_ours = (ours * up.clone()).sum().backward();
            let g_theirs = (theirs * up).sum().backward();
            let dx = max_abs_diff(x.grad(&g_ours).unwrap(), x.grad(&g_theirs).unwrap());
            let dw = max_abs_diff(wt.grad(&g_ours).unwrap(), wt.grad(&g_theirs).unwrap());
            assert!(
                dx < 1e-4 && dw < 1e-3,
                "grads {n}x{cin}x{h}x{w}: dx {dx} dw {dw}"
            );
        }
    }
}
