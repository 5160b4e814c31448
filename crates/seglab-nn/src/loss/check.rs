//! Host-side checks of a (pred, target) pair before it reaches a loss.
/// Why a (pred, target) pair cannot be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    #[error("shape mismatch: pred {pred:?} vs target {target:?}")]
    ShapeMismatch {
        pred: Vec<usize>,
        target: Vec<usize>,
    },
    #[error("pred must be [N, C, ...] with at least one element, got shape {0:?}")]
    BadShape(Vec<usize>),
    #[error("pred has a non-finite value ({value}) at flat index {index}")]
    PredNotFinite { index: usize, value: f32 },
    #[error(
        "pred value {value} at flat index {index} is outside [0, 1] (pass logits with from_logits)"
    )]
    PredOutOfRange { index: usize, value: f32 },
    #[error("target value {value} at flat index {index} is not 0 or 1 (target must be binary)")]
    TargetNotBinary { index: usize, value: f32 },
}

/// Checks a pair on the host before it reaches the loss: same shape, rank >= 2, finite `pred`
/// (in [0, 1] unless logits), binary `target`.
pub fn check_inputs(
    pred: &[f32],
    pred_shape: &[usize],
    target: &[f32],
    target_shape: &[usize],
    from_logits: bool,
) -> Result<(), InputError> {
    if pred_shape != target_shape {
        return Err(InputError::ShapeMismatch {
            pred: pred_shape.to_vec(),
            target: target_shape.to_vec(),
        });
    }
    if pred_shape.len() < 2 || pred.is_empty() {
        return Err(InputError::BadShape(pred_shape.to_vec()));
    }
    for (index, &value) in pred.iter().enumerate() {
        if !value.is_finite() {
            return Err(InputError::PredNotFinite { index, value });
        }
        if !from_logits && !(0.0..=1.0).contains(&value) {
            return Err(InputError::PredOutOfRange { index, value });
        }
    }
    for (index, &value) in target.iter().enumerate() {
        if value != 0.0 && value != 1.0 {
            return Err(InputError::TargetNotBinary { index, value });
        }
    }
    Ok(())
}
