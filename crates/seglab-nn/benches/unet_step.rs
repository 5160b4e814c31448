//! One training step (forward, backward, AdamW) of the default U-Net at batch 8 x 1 x 128 x 128, against the same
//! step in PyTorch (`torch_unet_step.py`) in the same run. `SEGLAB_STEP_DEVICE` and `SEGLAB_STEP_BATCH` run it on
//! another device of the build (`--features cuda`) and batch shape (`bench/gpu_check.sh`).
//!
//! `cargo bench -p seglab-nn --bench unet_step -- [WARMUP STEPS]`; set `SEGLAB_PEER_PYTHON` (a python with torch)
//! and `SEGLAB_PEER_SCRIPT` (path of torch_unet_step.py) to time the peer too and print the ratio. Threads: burn's
//! Flex backend uses rayon (`RAYON_NUM_THREADS`, set to 2 below when unset, as the peer uses 2 torch threads).
use std::time::Instant;

// The same allocator as the `seglab` binary, so the bench times what users run.
#[global_allocator]
static GLOBAL: seglab_nn::allocator::MiMalloc = seglab_nn::allocator::MiMalloc;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Tensor, TensorData};
use seglab_nn::rng::Rng;
use seglab_nn::unet::UNetConfig;

/// The peer's loss: soft Dice (smooth 1) + BCE with logits, both means over the batch.
fn loss_fn(logits: Tensor<4>, t: Tensor<4>) -> Tensor<1> {
    let p = sigmoid(logits.clone());
    let inter = (p.clone() * t.clone()).sum();
    let dice = (inter.mul_scalar(2.0).add_scalar(1.0))
        .div(p.sum() + t.clone().sum() + 1.0)
        .neg()
        .add_scalar(1.0);
    let bce = relu(logits.clone()) - logits.clone() * t + logits.abs().neg().exp().log1p();
    dice + bce.mean()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    seglab_nn::allocator::keep_freed_memory();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "2");
    }
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let warm = args.first().copied().unwrap_or(3);
    let steps = args.get(1).copied().unwrap_or(20);

    // SEGLAB_STEP_DEVICE (cpu, cuda[:N], wgpu[:N]: what the build has) and SEGLAB_STEP_BATCH (NxCxHxW) let the same
    // step run on a GPU build at other sizes (bench/gpu_check.sh).
    let device_name = std::env::var("SEGLAB_STEP_DEVICE").unwrap_or_else(|_| "cpu".into());
    let device = match seglab_nn::device::device_from_name(&device_name) {
        Ok(d) => d.autodiff(),
        Err(e) => {
            eprintln!("error: SEGLAB_STEP_DEVICE: {e}");
            std::process::exit(2);
        }
    };
    let batch = std::env::var("SEGLAB_STEP_BATCH").unwrap_or_else(|_| "8x1x128x128".into());
    let dims: Vec<usize> = batch
        .split('x')
        .map(|v| v.parse().expect("SEGLAB_STEP_BATCH: NxCxHxW"))
        .collect();
    let [b, c, h, w] = <[usize; 4]>::try_from(dims).expect("SEGLAB_STEP_BATCH: NxCxHxW");
    let mut model = UNetConfig {
        in_channels: c,
        ..UNetConfig::default()
    }
    .init(0, &device);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(1e-2)
        .with_epsilon(1e-8)
        .init();
    let mut rng = Rng::new(0);
    let x: Vec<f32> = (0..b * c * h * w).map(|_| rng.uniform() as f32).collect();
    let t: Vec<f32> = (0..b * h * w)
        .map(|_| if rng.bool(0.5) { 1.0 } else { 0.0 })
        .collect();
    let x = Tensor::<4>::from_data(TensorData::new(x, [b, c, h, w]), &device);
    let t = Tensor::<4>::from_data(TensorData::new(t, [b, 1, h, w]), &device);

    let mut train_ms = Vec::new();
    let mut last = 0.0;
    for i in 0..warm + steps {
        let s = Instant::now();
        let loss = loss_fn(model.forward(x.clone()), t.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-3, model, grads);
        last = loss.into_scalar::<f32>();
        if i >= warm {
            train_ms.push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    let eval = model.valid();
    let xi = x.clone().inner();
    let mut fwd_ms = Vec::new();
    for i in 0..warm + steps {
        let s = Instant::now();
        let _ = eval.forward(xi.clone()).sum().into_scalar::<f32>();
        if i >= warm {
            fwd_ms.push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (tm, fm) = (median(train_ms), median(fwd_ms));
    println!(
        "RESULT framework=burn-0.22.1 device={device_name} batch={batch} threads={} train_ms={tm:.1} fwd_ms={fm:.1} final_loss={last:.4}",
        std::env::var("RAYON_NUM_THREADS").unwrap_or_default()
    );

    if let (Some(py), Some(script)) = (
        std::env::var_os("SEGLAB_PEER_PYTHON"),
        std::env::var_os("SEGLAB_PEER_SCRIPT"),
    ) {
        let out = std::process::Command::new(py)
            .arg(script)
            .arg(warm.to_string())
            .arg(steps.to_string())
            .output()
            .expect("run the peer");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .unwrap_or("")
            .to_string();
        println!("{line}");
        let field = |k: &str| -> Option<f64> {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(k))
                .and_then(|v| v.parse().ok())
        };
        if let (Some(pt), Some(pf)) = (field("train_ms="), field("fwd_ms=")) {
            println!(
                "RATIO burn/pytorch train_step={:.2} forward={:.2}",
                tm / pt,
                fm / pf
            );
        }
    }
}
