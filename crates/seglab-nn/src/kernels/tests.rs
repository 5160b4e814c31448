use super::*;
use crate::rng::Rng;
use burn::tensor::module::conv2d;
use burn::tensor::Device;
use burn::tensor::TensorData;

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

        let (ours, mean, var) = batch_norm_relu_train(x.clone(), gamma.clone(), beta.clone(), 1e-5);
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

#[test]
fn kernel_entry_points_refuse_shapes_that_do_not_fit() {
    use burn::backend::flex::FlexTensor;
    use burn::backend::Flex;
    let t = |shape: [usize; 4]| {
        FlexTensor::from_data(TensorData::new(
            vec![0.5f32; shape.iter().product()],
            burn::tensor::Shape::new(shape),
        ))
    };
    let refused =
        |f: Box<dyn FnOnce() + std::panic::UnwindSafe>| std::panic::catch_unwind(f).is_err();
    // A weight with fewer input channels than x would make gemm read past its end.
    assert!(refused(Box::new(move || {
        <Flex as KernelBackend>::conv2d_same(t([1, 4, 8, 8]), t([2, 1, 3, 3]));
    })));
    assert!(refused(Box::new(move || {
        <Flex as KernelBackend>::conv2d_same_x_grad(
            t([1, 2, 8, 8]),
            t([3, 2, 3, 3]),
            t([1, 3, 4, 4]),
        );
    })));
    assert!(refused(Box::new(move || {
        <Flex as KernelBackend>::conv_transpose2x2(t([1, 4, 4, 4]), t([2, 3, 2, 2]));
    })));
    assert!(refused(Box::new(move || {
        <Flex as KernelBackend>::conv_transpose2x2_weight_grad(
            t([1, 2, 4, 4]),
            t([2, 3, 2, 2]),
            t([1, 3, 4, 4]),
        );
    })));
    // Shapes that fit still run.
    let y = <Flex as KernelBackend>::conv2d_same(t([1, 2, 8, 8]), t([3, 2, 3, 3]));
    assert_eq!(y.shape().dims::<4>(), [1, 3, 8, 8]);
}
