//! Gradient statistics of a step (global norm, share of exact zeros) and global-norm clipping.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

use crate::grad_stats::GradAccumulator;
use crate::unet::UNet;

/// Global gradient norm and fraction of exactly-zero entries over all trainable parameters (a parameter without a
/// gradient counts as all zeros), then optional clipping of the global norm.
pub(super) fn grad_stats(
    model: &UNet,
    grads: &mut GradientsParams,
    clip: Option<f64>,
) -> GradAccumulator {
    struct Visit<'a> {
        grads: &'a GradientsParams,
        acc: GradAccumulator,
        ids: Vec<(burn::module::ParamId, usize)>,
    }
    impl ModuleVisitor for Visit<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            // BatchNorm running statistics are visited too but are not trained.
            if !value.is_require_grad() {
                return;
            }
            match self.grads.get::<D>(param.id) {
                Some(g) => {
                    let data = g.into_data();
                    self.acc.add(data.as_slice::<f32>().expect("f32 gradients"));
                    self.ids.push((param.id, D));
                }
                None => self.acc.add_zeros(value.shape().num_elements() as u64),
            }
        }
    }
    let mut v = Visit {
        grads,
        acc: GradAccumulator::new(),
        ids: Vec::new(),
    };
    model.visit(&mut v);
    let stats = v.acc;
    let norm = stats.norm();
    let ids = v.ids;
    if let Some(max) = clip {
        if norm > max {
            let scale = (max / (norm + 1e-6)) as f32;
            for (id, rank) in ids {
                match rank {
                    1 => rescale::<1>(grads, id, scale),
                    2 => rescale::<2>(grads, id, scale),
                    3 => rescale::<3>(grads, id, scale),
                    4 => rescale::<4>(grads, id, scale),
                    _ => unreachable!("U-Net parameters have rank 1-4"),
                }
            }
        }
    }
    stats
}

pub(super) fn rescale<const D: usize>(
    grads: &mut GradientsParams,
    id: burn::module::ParamId,
    scale: f32,
) {
    if let Some(g) = grads.remove::<D>(id) {
        grads.register::<D>(id, g.mul_scalar(scale));
    }
}
