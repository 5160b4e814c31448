//! The same model code on burn's wgpu backend (issue 20), against the CPU backend: `cargo test --release -p seglab-nn
//! --features wgpu --test wgpu_backend`. Without a GPU it runs on Mesa's software Vulkan driver (Debian
//! `mesa-vulkan-drivers libvulkan1`, device "llvmpipe"). Built only with the `wgpu` feature.
//!
//! Not part of CI yet (it needs a second build of burn with the wgpu feature: 29 minutes here on 2026-12-08). State on
//! 2026-12-08 (llvmpipe, Mesa 22.3.6): each extension kernel forward and backward, the U-Net's forward pass, its input
//! gradient and every weight gradient (network output read before the backward pass), every loss (the Lovasz hinge
//! included) with every threshold operator (the hard one's gradient all zero) match the CPU. Findings:
//! - The Lovasz hinge's gradient is a subgradient that depends on how equal errors sort: with ties (p and 1 - p under
//!   opposite targets) the backends disagree by 2 % while the loss agrees, so its inputs here have none.
//! - burn 0.22.1's operation fusion (on by default in its wgpu backend) gives wrong gradients when a tensor that the
//!   backward pass needs is consumed only by fused element-wise operations: with the network output fed straight
//!   into `sum(y^2)` every weight gradient is off by 70-250 % (1e-6 once the output is read first); with the
//!   training loss (sigmoid, Tversky) they stay wrong even then, and training does not lower the loss (ignored test
//!   below). The upstream reports match (tracel-ai/burn #5257, #5079: fusion with autotune on Vulkan; removing
//!   fusion fixes it); `CUBECL_AUTOTUNE_LEVEL=minimal` does not. The fix is a GPU build of burn without fusion
//!   (`default-features = false` and an explicit feature list, a full rebuild), not yet done.
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

/// The gradient of every trainable parameter of the U-Net (convolutions, transposed convolutions, batch norms, head)
/// after one backward pass, wgpu against the CPU, in the module's visiting order.
#[test]
fn unet_weight_gradients_match_the_cpu() {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    struct Collect<'a> {
        grads: &'a GradientsParams,
        out: Vec<Vec<f32>>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // BatchNorm running statistics are visited too but are not trained.
            if !param.val().is_require_grad() {
                return;
            }
            let g = self
                .grads
                .get::<D>(param.id)
                .expect("every trainable parameter gets a gradient");
            self.out.push(g.into_data().try_into_vec::<f32>().unwrap());
        }
    }
    let cfg = UNetConfig {
        depth: 2,
        base_width: 4,
        ..Default::default()
    };
    let shape = [2, 1, 32, 32];
    let x = input(shape.iter().product());
    let target: Vec<f32> = (0..x.len())
        .map(|i| ((i / 7) % 3 == 0) as u8 as f32)
        .collect();
    let run = |device: Device| -> Vec<Vec<f32>> {
        let ad = device.autodiff();
        let net = cfg.init(7, &ad);
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), &ad);
        let t = Tensor::<4>::from_data(TensorData::new(target.clone(), shape), &ad);
        let logits = net.forward(xt);
        // Without this read, burn 0.22.1's operation fusion leaves the network output unwritten and the backward pass
        // reads garbage (every gradient wrong on wgpu; see the module docs). The read isolates the network's own
        // gradients, which are right.
        let _ = logits.clone().into_data();
        let p = burn::tensor::activation::sigmoid(logits);
        // A soft Dice on the probabilities, as training computes it.
        let loss = (p.clone() * t.clone()).sum().mul_scalar(-2.0) / (p.sum() + t.sum());
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        let mut c = Collect {
            grads: &grads,
            out: Vec::new(),
        };
        net.visit(&mut c);
        c.out
    };
    let (cpu, gpu) = (run(Device::flex()), run(wgpu()));
    assert_eq!(cpu.len(), gpu.len());
    assert!(cpu.len() >= 10, "{} trainable parameters", cpu.len());
    for (i, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
        // f32 sums in another order through two levels of the network: each gradient within 1e-3 of its tensor's
        // largest entry (entries near zero carry no relative precision).
        let scale = c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "parameter {i}: all-zero gradient on the CPU");
        assert_close(g, c, 1e-3 * scale, 0.0, &format!("parameter {i} gradient"));
    }
}

#[test]
fn losses_and_threshold_operators_match_the_cpu() {
    losses_match(&LossKind::NAMES[..LossKind::NAMES.len() - 1]);
}

#[test]
fn lovasz_hinge_matches_the_cpu() {
    losses_match(&["lovasz-hinge"]);
}

fn losses_match(names: &[&str]) {
    assert!(names.iter().all(|n| LossKind::NAMES.contains(n)));
    let shape = [2, 1, 8, 8];
    let n: usize = shape.iter().product();
    // The Lovasz hinge sorts the errors `1 - logit * sign`, and its gradient (a subgradient) depends on how ties sort,
    // which differs between backends while the loss does not. Probabilities spaced evenly around 0.5 give ties (p and
    // 1 - p with opposite targets have equal errors), so they are spread by the golden ratio instead: no two errors
    // are equal.
    let pred: Vec<f32> = (0..n)
        .map(|i| ((i as f64 * 0.618_033_988_749_895).fract() * 0.98 + 0.01) as f32)
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

/// Two epochs on wgpu train: every step's loss finite and the second epoch's mean loss below the first's.
#[test]
#[ignore = "burn's fusion on wgpu gives wrong weight gradients through the training loss (module docs): the loss rises (0.9258 -> 0.9379) where the CPU run's falls; issue 20"]
fn a_two_epoch_phantom_training_on_wgpu_lowers_the_loss() {
    let cfg = short_training();
    let ds = load(PHANTOMS, &cfg.load).unwrap();
    let split = split_by_case(&ds, 0.25, cfg.seed).unwrap();
    let out = train(&cfg, &ds, &split, None, &wgpu(), &|_| {}).unwrap();
    assert_eq!(out.status, RunStatus::Completed);
    let losses: Vec<f64> = out.epochs.iter().map(|e| e.train_loss).collect();
    assert_eq!(losses.len(), 2);
    assert!(
        losses.iter().all(|l| l.is_finite()) && losses[1] < losses[0],
        "epoch losses {losses:?}"
    );
}

fn short_training() -> TrainConfig {
    TrainConfig {
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
    }
}

#[test]
#[ignore = "burn's fusion on wgpu gives wrong weight gradients through the training loss (module docs); issue 20"]
fn a_short_phantom_training_on_wgpu_follows_the_cpu_run() {
    let cfg = short_training();
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

/// Inputs of the extension kernels: x [2, 3, 8, 8], a 3x3 convolution's weights [4, 3, 3, 3], a 2x2 transposed
/// convolution's [3, 4, 2, 2], and per-channel scales and shifts.
struct KernelInputs {
    x: Vec<f32>,
    w3: Vec<f32>,
    wt: Vec<f32>,
    g: Vec<f32>,
    b: Vec<f32>,
}

fn kernel_inputs() -> KernelInputs {
    KernelInputs {
        x: input(2 * 3 * 8 * 8),
        w3: input(4 * 3 * 3 * 3),
        wt: input(3 * 4 * 2 * 2),
        g: vec![0.5, 1.5, -1.0],
        b: vec![0.1, -0.2, 0.3],
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
    let KernelInputs { x, w3, wt, g, b } = kernel_inputs();
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

/// The backward pass of each extension kernel (gradients of `sum(y * r)` for a fixed `r`) with respect to every input,
/// wgpu against the CPU.
#[test]
fn each_kernel_gradient_matches_the_cpu() {
    use seglab_nn::kernels::{batch_norm_relu_train, conv2d_same, conv_transpose2x2};
    let KernelInputs { x, w3, wt, g, b } = kernel_inputs();
    for (name, f) in [
        ("conv2d_same", 0),
        ("conv_transpose2x2", 1),
        ("batch_norm_relu_train", 2),
    ] {
        let run = |d: Device| -> Vec<Vec<f32>> {
            let ad = d.autodiff();
            let t4 = |v: &Vec<f32>, s: [usize; 4]| {
                Tensor::<4>::from_data(TensorData::new(v.clone(), s), &ad).require_grad()
            };
            let t1 = |v: &Vec<f32>| {
                Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), &ad).require_grad()
            };
            let xt = t4(&x, [2, 3, 8, 8]);
            let (y, params4, params1) = match f {
                0 => {
                    let w = t4(&w3, [4, 3, 3, 3]);
                    (conv2d_same(xt.clone(), w.clone()), vec![xt, w], vec![])
                }
                1 => {
                    let w = t4(&wt, [3, 4, 2, 2]);
                    (
                        conv_transpose2x2(xt.clone(), w.clone()),
                        vec![xt, w],
                        vec![],
                    )
                }
                _ => {
                    let (gt, bt) = (t1(&g), t1(&b));
                    let y = batch_norm_relu_train(xt.clone(), gt.clone(), bt.clone(), 1e-5).0;
                    (y, vec![xt], vec![gt, bt])
                }
            };
            let r = Tensor::<4>::from_data(
                TensorData::new(input(y.shape().num_elements()), y.shape()),
                &ad,
            );
            let grads = (y * r).sum().backward();
            let mut out: Vec<Vec<f32>> = params4
                .iter()
                .map(|p| values(p.grad(&grads).expect("gradient")))
                .collect();
            out.extend(params1.iter().map(|p| {
                p.grad(&grads)
                    .expect("gradient")
                    .into_data()
                    .try_into_vec::<f32>()
                    .unwrap()
            }));
            out
        };
        let (cpu, gpu) = (run(Device::flex()), run(wgpu()));
        for (i, (c, g)) in cpu.iter().zip(&gpu).enumerate() {
            assert_close(g, c, 1e-4, 1e-4, &format!("{name}: gradient of input {i}"));
        }
    }
}
