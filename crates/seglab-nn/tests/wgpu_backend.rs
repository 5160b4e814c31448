//! The same model code on burn's wgpu backend (issue 20), against the CPU backend: `cargo test --release -p seglab-nn
//! --features wgpu --test wgpu_backend`. Without a GPU it runs on Mesa's software Vulkan driver (Debian
//! `mesa-vulkan-drivers libvulkan1`, device "llvmpipe"). Built only with the `wgpu` feature.
//!
//! Not part of CI yet (it needs the wgpu build, about 20 minutes here). State on 2026-12-04 (llvmpipe, Mesa 22.3.6):
//! each extension kernel, the U-Net's forward pass and its input gradient, every loss but the Lovasz hinge with every
//! threshold operator (the hard one's gradient all zero) match the CPU; the Lovasz hinge's gradient
//! and a 2-epoch training do not yet (ignored with the reason; `-- --include-ignored` runs them). Suspects: the trait's
//! default weight-gradient methods (not covered by any test yet), the Lovasz sort / cumulative sum on wgpu.
#![cfg(feature = "wgpu")]

use burn::tensor::{Device, Tensor, TensorData};
use seglab_nn::data::{load, split_by_case, AugmentConfig, LoadOptions, PHANTOMS};
use seglab_nn::device::device_from_name;
use seglab_nn::record::RunStatus;
use seglab_nn::train::{train, LowResPhase, TrainConfig};
use seglab_nn::unet::UNetConfig;
use seglab_nn::{LossKind, LossParams, LossSpec, ThresholdMode};

fn wgpu() -> Device {
    device_from_name("wgpu").expect("the wgpu feature is compiled in")
}

fn values(t: Tensor<4>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap()
}

/// `|a - b| <= abs + rel |b|` elementwise, with the worst offender in the message.
fn assert_close(a: &[f32], b: &[f32], abs: f32, rel: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((x - y).abs() - rel * y.abs(), *x, *y))
        .fold((f32::MIN, 0.0, 0.0), |m, v| if v.0 > m.0 { v } else { m });
    assert!(
        worst.0 <= abs,
        "{what}: wgpu {} vs cpu {}",
        worst.1,
        worst.2
    );
    assert!(
        a.iter().all(|v| v.is_finite()),
        "{what}: non-finite values on wgpu"
    );
}

fn input(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

#[test]
fn unet_forward_and_input_gradient_match_the_cpu() {
    let cfg = UNetConfig {
        depth: 2,
        base_width: 4,
        ..Default::default()
    };
    let shape = [2, 1, 32, 32];
    let x = input(shape.iter().product());
    let run = |device: Device| {
        let net = cfg.init(7, &device.clone().autodiff());
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), &device.autodiff())
            .require_grad();
        let logits = net.forward(xt.clone());
        // Read before the backward pass: on wgpu the backward pass may reuse the forward's buffers.
        let y = values(logits.clone());
        let grads = (logits.clone() * logits).sum().backward();
        (
            y,
            values(xt.grad(&grads).expect("gradient reaches the input")),
        )
    };
    let (cpu_y, cpu_g) = run(Device::flex());
    let (gpu_y, gpu_g) = run(wgpu());
    // f32 sums in another order: a few ulps per operation through the network.
    assert_close(&gpu_y, &cpu_y, 1e-4, 1e-4, "logits");
    assert_close(&gpu_g, &cpu_g, 1e-4, 1e-3, "input gradient");
}

#[test]
fn losses_and_threshold_operators_match_the_cpu() {
    losses_match(&LossKind::NAMES[..LossKind::NAMES.len() - 1]);
}

#[test]
#[ignore = "on llvmpipe the lovasz-hinge gradient differs from the CPU's by 2 %; issue 20"]
fn lovasz_hinge_matches_the_cpu() {
    losses_match(&["lovasz-hinge"]);
}

fn losses_match(names: &[&str]) {
    assert!(names.iter().all(|n| LossKind::NAMES.contains(n)));
    let shape = [2, 1, 8, 8];
    let n: usize = shape.iter().product();
    // Distinct values (37 is prime to 128): the Lovasz hinge sorts errors, and ties may sort either way.
    let pred: Vec<f32> = (0..n)
        .map(|i| ((i * 37) % n) as f32 / n as f32 * 0.98 + 0.01)
        .collect();
    let target: Vec<f32> = (0..n).map(|i| ((i * 13) % 5 < 2) as u8 as f32).collect();
    let modes = [
        ThresholdMode::None,
        ThresholdMode::Hard { t: 0.5 },
        ThresholdMode::StraightThrough { t: 0.5 },
        ThresholdMode::Soft {
            t: 0.5,
            temperature: 0.1,
        },
        ThresholdMode::Power { t: 0.5, k: 3.0 },
    ];
    let mut checked = 0;
    for &name in names {
        let spec = LossSpec::single(LossKind::from_name(name, &LossParams::default()).unwrap());
        for mode in &modes {
            let cpu = spec.loss_with_grad(&pred, &target, shape, mode, &Device::flex());
            let gpu = spec.loss_with_grad(&pred, &target, shape, mode, &wgpu());
            let what = format!("{name} / {mode:?}");
            assert!(
                (gpu.loss - cpu.loss).abs() <= 1e-5 + 1e-5 * cpu.loss.abs(),
                "{what}: loss wgpu {} vs cpu {}",
                gpu.loss,
                cpu.loss
            );
            assert_close(
                &gpu.grad,
                &cpu.grad,
                1e-6,
                1e-4,
                &format!("{what}: gradient"),
            );
            if matches!(mode, ThresholdMode::Hard { .. }) {
                assert!(
                    gpu.grad.iter().all(|&g| g == 0.0),
                    "{what}: the hard threshold passes no gradient"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, names.len() * modes.len());
}

#[test]
#[ignore = "on llvmpipe epoch losses drift from the CPU run (0.9164 vs 0.9184, then 0.924 vs 0.898): the weight gradients are not yet checked; issue 20"]
fn a_short_phantom_training_on_wgpu_follows_the_cpu_run() {
    let cfg = TrainConfig {
        load: LoadOptions {
            size: 32,
            phantom_count: 24,
            ..Default::default()
        },
        model: UNetConfig {
            depth: 2,
            base_width: 4,
            ..Default::default()
        },
        augment: AugmentConfig {
            repeats: 1,
            ..Default::default()
        },
        low_res: LowResPhase::off(),
        epochs: 2,
        batch_size: 4,
        lr: 1e-2,
        warmup_epochs: 0.0,
        ..Default::default()
    };
    let ds = load(PHANTOMS, &cfg.load).unwrap();
    let split = split_by_case(&ds, 0.25, cfg.seed).unwrap();
    let losses = |device: Device| -> Vec<f64> {
        let out = train(&cfg, &ds, &split, None, &device, &|_| {}).unwrap();
        assert_eq!(out.status, RunStatus::Completed);
        out.epochs.iter().map(|e| e.train_loss).collect()
    };
    let (gpu, cpu) = (losses(wgpu()), losses(Device::flex()));
    assert_eq!(gpu.len(), 2);
    // The same batches and initial weights; f32 sums in another order drift a little over 2 epochs of steps.
    for (g, c) in gpu.iter().zip(&cpu) {
        assert!(
            g.is_finite() && (g - c).abs() <= 1e-3 * c.abs(),
            "wgpu {gpu:?} vs cpu {cpu:?}"
        );
    }
}

#[test]
fn each_kernel_matches_the_cpu() {
    use seglab_nn::kernels::{
        batch_norm_relu_train, conv2d_same, conv_transpose2x2, scale_shift_relu,
    };
    let t4 =
        |v: Vec<f32>, s: [usize; 4], d: &Device| Tensor::<4>::from_data(TensorData::new(v, s), d);
    let t1 =
        |v: Vec<f32>, d: &Device| Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), d);
    let x = input(2 * 3 * 8 * 8);
    let w3 = input(4 * 3 * 3 * 3);
    let wt = input(3 * 4 * 2 * 2);
    let g = vec![0.5f32, 1.5, -1.0];
    let b = vec![0.1f32, -0.2, 0.3];
    for (name, f) in [
        ("conv2d_same", 0),
        ("conv_transpose2x2", 1),
        ("scale_shift_relu", 2),
        ("batch_norm_relu_train", 3),
    ] {
        let run = |d: Device| -> Vec<f32> {
            let xt = t4(x.clone(), [2, 3, 8, 8], &d);
            values(match f {
                0 => conv2d_same(xt, t4(w3.clone(), [4, 3, 3, 3], &d)),
                1 => conv_transpose2x2(xt, t4(wt.clone(), [3, 4, 2, 2], &d)),
                2 => scale_shift_relu(xt, t1(g.clone(), &d), t1(b.clone(), &d)),
                _ => batch_norm_relu_train(xt, t1(g.clone(), &d), t1(b.clone(), &d), 1e-5).0,
            })
        };
        assert_close(&run(wgpu()), &run(Device::flex()), 1e-4, 1e-4, name);
    }
}
