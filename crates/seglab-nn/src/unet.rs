//! A 2D U-Net giving one logit map: `depth` encoder levels of width `base_width * 2^i`, a bottleneck of twice the
//! deepest width, and a mirrored decoder. Each block is (3x3 conv, norm, ReLU) twice; down-sampling is a 2x2 max-pool,
//! up-sampling a 2x2 transposed convolution whose output is concatenated with the encoder's skip; a 1x1 conv is the
//! head. With the defaults (depth 4, base 16, BatchNorm) it is the network of `shared/bench/torch_unet_step.py`.
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, Initializer, PaddingConfig2d,
};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::kernels::{batch_norm_relu_train, conv2d_same, conv_transpose2x2, scale_shift_relu};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    #[default]
    Batch,
    /// GroupNorm with `min(8, channels)` groups: independent of the batch size, for batches of 1-2.
    Group,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub depth: usize,
    pub base_width: usize,
    pub norm: NormKind,
    /// Dropout probability on the bottleneck output (0 disables it).
    pub dropout: f64,
    /// Deep supervision (nnU-Net): extra 1x1 heads on the decoder outputs at 1/2 and 1/4 resolution, whose losses
    /// against the downsampled target join the training loss. Inference uses the full-resolution head only. Runs
    /// written before the option existed read as `false`.
    #[serde(default)]
    pub deep_supervision: bool,
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            in_channels: 1,
            depth: 4,
            base_width: 16,
            norm: NormKind::Batch,
            dropout: 0.0,
            deep_supervision: false,
        }
    }
}

#[derive(Module, Debug)]
pub enum Norm {
    Batch(BatchNorm),
    Group(GroupNorm),
}

impl Norm {
    /// `relu(self.forward(x))`. Batch norm and ReLU run as one kernel: [`batch_norm_relu_train`] in training (the
    /// running statistics updated exactly as burn's `BatchNorm` does), [`scale_shift_relu`] in inference.
    fn forward_relu(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Norm::Batch(n) if x.device().is_autodiff() && n.training.is_enabled() => {
                let (y, mean, var) =
                    batch_norm_relu_train(x, n.gamma.val(), n.beta.val(), n.epsilon);
                let device = y.device();
                let m = n.momentum;
                let running_mean = n.running_mean.value_sync().to_device(&device);
                let running_var = n.running_var.value_sync().to_device(&device);
                n.running_mean.update(
                    running_mean
                        .mul_scalar(1.0 - m)
                        .add(mean.mul_scalar(m))
                        .detach(),
                );
                n.running_var.update(
                    running_var
                        .mul_scalar(1.0 - m)
                        .add(var.mul_scalar(m))
                        .detach(),
                );
                y
            }
            Norm::Batch(n) => {
                // Inference: the running statistics fold into one scale and shift per channel.
                let scale = n
                    .gamma
                    .val()
                    .div(n.running_var.value().add_scalar(n.epsilon).sqrt());
                let shift = n.beta.val() - n.running_mean.value().mul(scale.clone());
                scale_shift_relu(x, scale, shift)
            }
            Norm::Group(n) => relu(n.forward(x)),
        }
    }
}

#[derive(Module, Debug)]
pub struct ConvBlock {
    conv1: Conv2d,
    norm1: Norm,
    conv2: Conv2d,
    norm2: Norm,
}

impl ConvBlock {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = self.norm1.forward_relu(conv_same(&self.conv1, x));
        self.norm2.forward_relu(conv_same(&self.conv2, x))
    }
}

#[derive(Module, Debug)]
pub struct UNet {
    encoders: Vec<ConvBlock>,
    bottleneck: ConvBlock,
    /// Ordered from the deepest level up.
    ups: Vec<ConvTranspose2d>,
    decoders: Vec<ConvBlock>,
    head: Conv2d,
    /// Deep-supervision heads, at 1/2, 1/4, ... resolution; empty without deep supervision.
    aux_heads: Vec<Conv2d>,
    dropout: f64,
}

/// Seeded He-uniform weights (bound `sqrt(6 / fan_in)`), suited to ReLU networks.
fn he_uniform(
    rng: &mut Rng,
    shape: [usize; 4],
    fan_in: usize,
    device: &Device,
) -> Param<Tensor<4>> {
    let bound = (6.0 / fan_in as f64).sqrt();
    let n = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.range(-bound, bound) as f32).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(data, shape), device))
}

/// Bias drawn like PyTorch's default, uniform in `±1/sqrt(fan_in)`.
fn bias_uniform(rng: &mut Rng, n: usize, fan_in: usize, device: &Device) -> Param<Tensor<1>> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let data: Vec<f32> = (0..n).map(|_| rng.range(-bound, bound) as f32).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(data, [n]), device))
}

/// A stride-1, same-padded convolution (every `Conv2d` of the network) through [`conv2d_same`], whose weight
/// gradient is one matrix product per image instead of burn's generic convolution backward; the bias, if any, is added
/// after. The module keeps its `Conv2d` parameters, so checkpoints are unchanged.
fn conv_same(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    add_bias(conv2d_same(x, conv.weight.val()), &conv.bias)
}

/// `y + bias[c]` per channel, or `y` without a bias.
fn add_bias(y: Tensor<4>, bias: &Option<Param<Tensor<1>>>) -> Tensor<4> {
    match bias {
        Some(b) => {
            let c = b.dims()[0];
            y + b.val().reshape([1, c, 1, 1])
        }
        None => y,
    }
}

/// The up path's 2x2, stride-2 transposed convolution through [`conv_transpose2x2`] (its weight gradient is one
/// matrix product per image instead of burn's generic backward), bias added after; parameters unchanged.
fn upsample(up: &ConvTranspose2d, x: Tensor<4>) -> Tensor<4> {
    add_bias(conv_transpose2x2(x, up.weight.val()), &up.bias)
}

fn conv3x3(rng: &mut Rng, cin: usize, cout: usize, device: &Device) -> Conv2d {
    // Zeros is lazy: the weight is replaced by the seeded draw below, so burn's global RNG is never used.
    let mut conv = Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_bias(false)
        .with_initializer(Initializer::Zeros)
        .init(device);
    conv.weight = he_uniform(rng, [cout, cin, 3, 3], cin * 9, device);
    conv
}

fn norm(kind: NormKind, channels: usize, device: &Device) -> Norm {
    match kind {
        NormKind::Batch => Norm::Batch(BatchNormConfig::new(channels).init(device)),
        NormKind::Group => {
            let groups = (1..=8.min(channels))
                .rev()
                .find(|g| channels.is_multiple_of(*g))
                .unwrap_or(1);
            Norm::Group(GroupNormConfig::new(groups, channels).init(device))
        }
    }
}

fn block(rng: &mut Rng, kind: NormKind, cin: usize, cout: usize, device: &Device) -> ConvBlock {
    ConvBlock {
        conv1: conv3x3(rng, cin, cout, device),
        norm1: norm(kind, cout, device),
        conv2: conv3x3(rng, cout, cout, device),
        norm2: norm(kind, cout, device),
    }
}

impl UNetConfig {
    /// Encoder widths, shallowest first.
    pub fn widths(&self) -> Vec<usize> {
        (0..self.depth).map(|i| self.base_width << i).collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(1..=4).contains(&self.in_channels) {
            return Err(format!(
                "in_channels must be 1..=4, got {}",
                self.in_channels
            ));
        }
        if !(1..=6).contains(&self.depth) {
            return Err(format!("depth must be 1..=6, got {}", self.depth));
        }
        if self.base_width == 0 || self.base_width > 256 {
            return Err(format!(
                "base_width must be 1..=256, got {}",
                self.base_width
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        Ok(())
    }

    /// Input sides must be multiples of this (one halving per level).
    pub fn size_multiple(&self) -> usize {
        1 << self.depth
    }

    /// A network whose weights depend only on `seed` (and this config).
    pub fn init(&self, seed: u64, device: &Device) -> UNet {
        let mut rng = Rng::derive(seed, "unet-init");
        let widths = self.widths();
        let mut encoders = Vec::with_capacity(self.depth);
        let mut cin = self.in_channels;
        for &w in &widths {
            encoders.push(block(&mut rng, self.norm, cin, w, device));
            cin = w;
        }
        let bottom = widths[self.depth - 1] * 2;
        let bottleneck = block(&mut rng, self.norm, cin, bottom, device);
        let mut ups = Vec::with_capacity(self.depth);
        let mut decoders = Vec::with_capacity(self.depth);
        let mut cin = bottom;
        for &w in widths.iter().rev() {
            let mut up = ConvTranspose2dConfig::new([cin, w], [2, 2])
                .with_stride([2, 2])
                .with_initializer(Initializer::Zeros)
                .init(device);
            // Transposed-conv weight is [in, out, k, k]; each output sums in*k*k/stride^2 = in inputs.
            up.weight = he_uniform(&mut rng, [cin, w, 2, 2], cin, device);
            up.bias = Some(bias_uniform(&mut rng, w, cin, device));
            ups.push(up);
            decoders.push(block(&mut rng, self.norm, 2 * w, w, device));
            cin = w;
        }
        let mut head = Conv2dConfig::new([widths[0], 1], [1, 1])
            .with_initializer(Initializer::Zeros)
            .init(device);
        head.weight = he_uniform(&mut rng, [1, widths[0], 1, 1], widths[0], device);
        head.bias = Some(bias_uniform(&mut rng, 1, widths[0], device));
        // Drawn last, so the rest of the network starts from the same weights with or without them.
        let aux_heads = if self.deep_supervision {
            widths[1..self.depth.min(AUX_LEVELS + 1)]
                .iter()
                .map(|&w| {
                    let mut h = Conv2dConfig::new([w, 1], [1, 1])
                        .with_initializer(Initializer::Zeros)
                        .init(device);
                    h.weight = he_uniform(&mut rng, [1, w, 1, 1], w, device);
                    h.bias = Some(bias_uniform(&mut rng, 1, w, device));
                    h
                })
                .collect()
        } else {
            Vec::new()
        };
        UNet {
            encoders,
            bottleneck,
            ups,
            decoders,
            head,
            aux_heads,
            dropout: self.dropout,
        }
    }
}

/// Deep supervision heads on this many decoder levels below full resolution (nnU-Net supervises all but the lowest
/// one or two; the 1/8 level of a 128 px input is 16 px, too coarse for small lesions).
pub const AUX_LEVELS: usize = 2;

fn pool2(x: Tensor<4>) -> Tensor<4> {
    max_pool2d(x, MaxPoolOptions::new([2, 2]))
}

impl UNet {
    /// Logits `[batch, 1, h, w]` for input `[batch, channels, h, w]`; `h` and `w` must be multiples of `2^depth`.
    /// No dropout: this is the inference path (and training without dropout).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_impl(x, None, None)
    }

    /// Lesion probabilities `[batch, 1, h, w]`. With `mirror`, the mean over the input and its three mirror images
    /// (flipped along rows, columns, both), each prediction flipped back: test-time augmentation as nnU-Net's
    /// mirroring, at four forward passes. Training augmentation flips images, so every mirror is in distribution.
    pub fn probabilities(&self, x: Tensor<4>, mirror: bool) -> Tensor<4> {
        let p = sigmoid(self.forward(x.clone()));
        if mirror {
            self.mirrored_mean(x, p)
        } else {
            p
        }
    }

    /// The mirrored mean of [`UNet::probabilities`] given `p`, the plain prediction for `x` (callers that already
    /// ran the forward pass do not run it again).
    pub fn mirrored_mean(&self, x: Tensor<4>, p: Tensor<4>) -> Tensor<4> {
        let rows = sigmoid(self.forward(x.clone().flip([2]))).flip([2]);
        let cols = sigmoid(self.forward(x.clone().flip([3]))).flip([3]);
        let both = sigmoid(self.forward(x.flip([2, 3]))).flip([2, 3]);
        (p + rows + cols + both).div_scalar(4.0)
    }

    /// Training forward; `dropout_rng` draws the bottleneck dropout mask when the config enables dropout. Returns the
    /// logits and, with deep supervision, the auxiliary logits at 1/2, 1/4, ... resolution.
    pub fn forward_train(
        &self,
        x: Tensor<4>,
        dropout_rng: &mut Rng,
    ) -> (Tensor<4>, Vec<Tensor<4>>) {
        let mut aux = Vec::with_capacity(self.aux_heads.len());
        let logits = self.forward_impl(x, Some(dropout_rng), Some(&mut aux));
        (logits, aux)
    }

    fn forward_impl(
        &self,
        x: Tensor<4>,
        rng: Option<&mut Rng>,
        aux: Option<&mut Vec<Tensor<4>>>,
    ) -> Tensor<4> {
        let mut skips = Vec::with_capacity(self.encoders.len());
        let mut x = x;
        for (i, enc) in self.encoders.iter().enumerate() {
            if i > 0 {
                x = pool2(x);
            }
            x = enc.forward(x);
            skips.push(x.clone());
        }
        x = self.bottleneck.forward(pool2(x));
        if let (Some(rng), true) = (rng, self.dropout > 0.0) {
            x = self.apply_dropout(x, rng);
        }
        let levels = self.decoders.len();
        let mut aux_out = Vec::new();
        for (i, ((up, dec), skip)) in self
            .ups
            .iter()
            .zip(&self.decoders)
            .zip(skips.into_iter().rev())
            .enumerate()
        {
            x = dec.forward(Tensor::cat(vec![upsample(up, x), skip], 1));
            // Decoder i (deepest first) works at 1/2^(levels - 1 - i) of the input resolution.
            let level = levels - 1 - i;
            if aux.is_some() && (1..=self.aux_heads.len()).contains(&level) {
                aux_out.push((level, conv_same(&self.aux_heads[level - 1], x.clone())));
            }
        }
        if let Some(aux) = aux {
            aux_out.sort_by_key(|(level, _)| *level);
            aux.extend(aux_out.into_iter().map(|(_, t)| t));
        }
        conv_same(&self.head, x)
    }

    fn apply_dropout(&self, x: Tensor<4>, rng: &mut Rng) -> Tensor<4> {
        let dims = x.dims();
        let keep = 1.0 - self.dropout;
        let n: usize = dims.iter().product();
        let mask: Vec<f32> = (0..n)
            .map(|_| {
                if rng.bool(keep) {
                    (1.0 / keep) as f32
                } else {
                    0.0
                }
            })
            .collect();
        x * Tensor::from_data(
            TensorData::new(mask, dims),
            &Tensor::device(&self.head.weight.val()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A two-level, four-channel network: fast to build and run.
    fn small() -> UNetConfig {
        UNetConfig {
            depth: 2,
            base_width: 4,
            ..Default::default()
        }
    }

    fn weights(m: &UNet) -> Vec<f32> {
        m.head.weight.val().into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn shape_and_seeded_init() {
        let device = Device::flex();
        let cfg = small();
        let a = cfg.init(3, &device);
        let b = cfg.init(3, &device);
        let c = cfg.init(4, &device);
        assert_eq!(weights(&a), weights(&b));
        assert_ne!(weights(&a), weights(&c));
        let y = a.forward(Tensor::zeros([2, 1, 16, 16], &device));
        assert_eq!(y.dims(), [2, 1, 16, 16]);
    }

    #[test]
    fn default_matches_reference_parameter_count() {
        // The same network in torch_unet_step.py has 1_942_289 parameters (sum over its layer shapes); burn also
        // counts BatchNorm's running mean and variance, 2 x 1_472 channels.
        let m = UNetConfig::default().init(0, &Device::flex());
        assert_eq!(m.num_params(), 1_942_289 + 2 * 1_472);
    }

    #[test]
    fn mirrored_probabilities_commute_with_flips() {
        let device = Device::flex();
        let cfg = small();
        let m = cfg.init(1, &device).valid();
        let data: Vec<f32> = (0..2 * 16 * 16)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(data, [2, 1, 16, 16]), &device);
        let values = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
        let max_diff = |a: Vec<f32>, b: Vec<f32>| {
            a.iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max)
        };
        for axes in [vec![2], vec![3]] {
            let flip = |t: Tensor<4>| {
                if axes == [2] {
                    t.flip([2])
                } else {
                    t.flip([3])
                }
            };
            // The mean over all mirrors sees the same four images whichever mirror comes in: flipping the input
            // flips the output (up to the order of the four-term sum).
            let tta = max_diff(
                values(m.probabilities(flip(x.clone()), true)),
                values(flip(m.probabilities(x.clone(), true))),
            );
            assert!(tta < 1e-6, "{axes:?}: {tta}");
            // A single prediction does not commute (the network is not symmetric), so the check above can fail.
            let plain = max_diff(
                values(m.probabilities(flip(x.clone()), false)),
                values(flip(m.probabilities(x.clone(), false))),
            );
            assert!(plain > 1e-4, "{axes:?}: {plain}");
        }
        let p = values(m.probabilities(x, true));
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn group_norm_and_rgb_input() {
        let device = Device::flex();
        let cfg = UNetConfig {
            in_channels: 3,
            depth: 2,
            base_width: 4,
            norm: NormKind::Group,
            dropout: 0.2,
            deep_supervision: false,
        };
        let m = cfg.init(0, &device);
        let (y, aux) = m.forward_train(Tensor::ones([1, 3, 8, 8], &device), &mut Rng::new(0));
        assert_eq!(y.dims(), [1, 1, 8, 8]);
        assert!(aux.is_empty());
    }

    #[test]
    fn deep_supervision_adds_heads_without_changing_the_rest() {
        let device = Device::flex();
        let plain = UNetConfig {
            depth: 3,
            ..small()
        };
        let deep = UNetConfig {
            deep_supervision: true,
            ..plain.clone()
        };
        let (a, b) = (plain.init(5, &device), deep.init(5, &device));
        assert_eq!(b.aux_heads.len(), 2);
        let x = Tensor::<4>::ones([2, 1, 16, 16], &device);
        // Same weights for the shared layers: the inference output is the same.
        let (ya, yb) = (a.forward(x.clone()), b.forward(x.clone()));
        assert_eq!(ya.into_data(), yb.into_data());
        let (y, aux) = b.forward_train(x, &mut Rng::new(0));
        assert_eq!(y.dims(), [2, 1, 16, 16]);
        let dims: Vec<[usize; 4]> = aux.iter().map(|t| t.dims()).collect();
        assert_eq!(dims, vec![[2, 1, 8, 8], [2, 1, 4, 4]]);
    }
}
