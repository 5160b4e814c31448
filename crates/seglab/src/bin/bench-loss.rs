//! Benchmark: Tversky (alpha 0.3, beta 0.7, smooth 1) forward + backward on a batch of
//! probabilities, seglab on burn (Flex CPU) against PyTorch in the same run.
//!
//! Usage: bench-loss [N=8] [H=512] [W=512] [RUNS=20]
//! Environment: SEGLAB_PEER_PYTHON (default /work/peers/bin/python), SEGLAB_TORCH_LOSS_SCRIPT
//! (default bench/torch_loss_step.py, a copy of the team's peer script), BENCH_THREADS (default 2,
//! the PyTorch script's thread count).
//! Prints one line per framework and the ratio burn / PyTorch (< 1: seglab is faster).
use std::process::Command;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use seglab_nn::{LossKind, LossSpec, ThresholdMode};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// The allocator of the `seglab` binary, so the bench times what users run.
#[global_allocator]
static GLOBAL: seglab_nn::allocator::MiMalloc = seglab_nn::allocator::MiMalloc;

fn main() {
    seglab_nn::allocator::keep_freed_memory();
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments: N H W RUNS"))
        .collect();
    let get = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let (n, h, w, runs) = (get(0, 8), get(1, 512), get(2, 512), get(3, 20));
    let threads: usize = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("rayon pool");

    // Same distribution as the PyTorch script: uniform probabilities, Bernoulli(0.3) target.
    let numel = n * h * w;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut uniform = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let p0: Vec<f32> = (0..numel).map(|_| uniform()).collect();
    let t: Vec<f32> = (0..numel).map(|_| (uniform() < 0.3) as u8 as f32).collect();

    let device = Device::default().autodiff();
    let spec = LossSpec::single(LossKind::Tversky {
        alpha: 0.3,
        beta: 0.7,
        smooth: 1.0,
    });
    let target = Tensor::<4>::from_data(TensorData::new(t, [n, 1, h, w]), &device);
    let p_base = Tensor::<4>::from_data(TensorData::new(p0, [n, 1, h, w]), &device);
    // Like the PyTorch step: a fresh leaf, the loss, backward, and the gradient materialised.
    let step = || {
        let p = p_base.clone().detach().require_grad();
        let loss = spec.loss(p.clone(), target.clone(), &ThresholdMode::None);
        let grads = loss.backward();
        let g = p.grad(&grads).expect("gradient");
        // Reading one value forces a lazy backend to finish the computation.
        let _ = g.slice([0..1, 0..1, 0..1, 0..1]).into_data();
    };
    for _ in 0..3 {
        step();
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        step();
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let burn_ms = median(times);
    println!(
        "RESULT framework=seglab-burn-flex shape={n}x1x{h}x{w} threads={threads} fwd_bwd_ms={burn_ms:.2}"
    );

    let python = std::env::var("SEGLAB_PEER_PYTHON").unwrap_or("/work/peers/bin/python".into());
    let script = std::env::var("SEGLAB_TORCH_LOSS_SCRIPT").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../bench/torch_loss_step.py"
        )
        .into()
    });
    let out = Command::new(&python)
        .arg(&script)
        .args([n, h, w, runs].map(|v| v.to_string()))
        .output();
    let torch_ms = match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            print!("{text}");
            text.lines()
                .find(|l| l.starts_with("RESULT"))
                .and_then(|l| l.split("fwd_bwd_ms=").nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        }
        Ok(o) => {
            eprintln!("peer failed: {}", String::from_utf8_lossy(&o.stderr));
            None
        }
        Err(e) => {
            eprintln!("cannot run {python}: {e}");
            None
        }
    };
    match torch_ms {
        Some(t) => println!(
            "RATIO burn/pytorch = {:.3} ({})",
            burn_ms / t,
            if burn_ms <= t {
                "seglab at least as fast"
            } else {
                "seglab slower"
            }
        ),
        None => println!("RATIO unavailable (PyTorch peer did not run)"),
    }
}
