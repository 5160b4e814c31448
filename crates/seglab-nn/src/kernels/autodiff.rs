//! The kernels under autodiff: each forward records its own backward pass.
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend};

use super::*;

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
