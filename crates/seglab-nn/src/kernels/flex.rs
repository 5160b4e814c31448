//! The kernels on the Flex CPU backend (f32; other dtypes fall back to burn's operations).
use burn::backend::flex::FlexTensor;
use burn::backend::ops::ModuleOps;
use burn::backend::Flex;
use burn::backend::TensorMetadata;
use burn::tensor::{DType, Shape, TensorData};
use rayon::prelude::*;

use super::*;

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

/// The shapes the convolution kernels rely on, checked before any slice reaches `gemm` with strides computed from them:
/// the trait methods are safe public functions, so a caller's mismatch must stop here (a panic naming the shapes),
/// never read or write out of bounds.
fn check_conv_same(op: &str, x: &FlexTensor, weight: &FlexTensor, grad: Option<&FlexTensor>) {
    let (xs, ws) = (x.shape(), weight.shape());
    assert!(
        xs.num_dims() == 4 && ws.num_dims() == 4,
        "{op}: x {xs:?} and weight {ws:?} must be 4D"
    );
    let ([n, cin, h, w], [cout, wc, k, k2]) = (dims4(x), dims4(weight));
    assert!(
        wc == cin && k == k2 && k % 2 == 1,
        "{op}: weight {ws:?} does not fit x {xs:?} (expected [Cout, {cin}, k, k] with k odd)"
    );
    if let Some(g) = grad {
        assert!(
            g.shape().num_dims() == 4 && dims4(g) == [n, cout, h, w],
            "{op}: gradient {:?}, expected [{n}, {cout}, {h}, {w}]",
            g.shape()
        );
    }
}

/// As [`check_conv_same`] for the 2x2, stride-2 transposed convolution: weight `[Cin, Cout, 2, 2]`, output and its
/// gradient `[N, Cout, 2H, 2W]`.
fn check_transpose2x2(op: &str, x: &FlexTensor, weight: &FlexTensor, grad: Option<&FlexTensor>) {
    let (xs, ws) = (x.shape(), weight.shape());
    assert!(
        xs.num_dims() == 4 && ws.num_dims() == 4,
        "{op}: x {xs:?} and weight {ws:?} must be 4D"
    );
    let ([n, cin, h, w], [wc, cout, k, k2]) = (dims4(x), dims4(weight));
    assert!(
        wc == cin && k == 2 && k2 == 2,
        "{op}: weight {ws:?} does not fit x {xs:?} (expected [{cin}, Cout, 2, 2])"
    );
    if let Some(g) = grad {
        assert!(
            g.shape().num_dims() == 4 && dims4(g) == [n, cout, 2 * h, 2 * w],
            "{op}: gradient {:?}, expected [{n}, {cout}, {}, {}]",
            g.shape(),
            2 * h,
            2 * w
        );
    }
}

impl KernelBackend for Flex {
    fn conv2d_same(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        check_conv_same("conv2d_same", &x, &weight, None);
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
        check_conv_same("conv2d_same_x_grad", &x, &weight, Some(&grad));
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
        check_conv_same("conv2d_same_weight_grad", &x, &weight, Some(&grad));
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
                // SAFETY: `dw_i` is this image's chunk of `cout * rows` values; `gi` holds `cout * hw` values (its
                // shape checked by `check_conv_same`) and the tile reads `cols` of each row from `y0 * w`; `col` holds
                // `rows * cols`.
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
        check_transpose2x2("conv_transpose2x2", &x, &weight, None);
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
            // SAFETY: `z` has capacity `r * hw` (reserved above) and gemm writes it without reading; `wd` holds
            // `cin * r` values (`check_transpose2x2`), `x_i` is a checked slice of `cin * hw`.
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
            // SAFETY: out_i is this image's own chunk of `Cout 4 H W` values (not yet initialised: `MaybeUninit`);
            // every one is written below.
            let out_i = unsafe {
                std::slice::from_raw_parts_mut(out_i.cast::<std::mem::MaybeUninit<f32>>(), r * hw)
            };
            interleave2x2(&z, out_i, cout, h, w);
            give_back_scratch(z);
        });
        flex_f32(out, [n, cout, 2 * h, 2 * w])
    }

    fn conv_transpose2x2_x_grad(x: FlexTensor, weight: FlexTensor, grad: FlexTensor) -> FlexTensor {
        check_transpose2x2("conv_transpose2x2_x_grad", &x, &weight, Some(&grad));
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
            // SAFETY: `dx_i` is this image's chunk of `cin * hw` values; `wd` holds `cin * r` values
            // (`check_transpose2x2`), `dz` the `r * hw` values `deinterleave2x2` wrote from a checked slice.
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
        check_transpose2x2("conv_transpose2x2_weight_grad", &x, &weight, Some(&grad));
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
            // SAFETY: `dw_i` is this image's chunk of `cin * r` values; `x_i` is a checked slice of `cin * hw`, `dz`
            // holds `r * hw` values.
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
                // SAFETY: channel `ch` of image `i` is this task's own block of `out`, inside its capacity; not yet
                // initialised, hence `MaybeUninit`.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        base.at((i * c + ch) * plane)
                            .cast::<std::mem::MaybeUninit<f32>>(),
                        plane,
                    )
                };
                for (d, &v) in dst.iter_mut().zip(src) {
                    // As burn's ReLU (zero where `<= 0`): a NaN stays NaN, so a diverged run is still seen as one.
                    let t = v * scale + shift;
                    d.write(if t <= 0.0 { 0.0 } else { t });
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
                    // SAFETY: channel `ch` of image `i` is this task's own block of `dx`, inside its capacity; not yet
                    // initialised, hence `MaybeUninit`.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            base.at(r.start).cast::<std::mem::MaybeUninit<f32>>(),
                            plane,
                        )
                    };
                    for (((d, &x), &y), &g) in dst
                        .iter_mut()
                        .zip(&xd[r.clone()])
                        .zip(&yd[r.clone()])
                        .zip(&dyd[r])
                    {
                        let dz = if y <= 0.0 { 0.0 } else { g };
                        d.write(scale * (dz - mean_dz - (x - mu) * inv_std * mean_dz_xhat));
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
