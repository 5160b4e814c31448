//! What a run's selected model scores on the held-out test cases: the numbers the comparison is made of.
//!
//! Validation chooses (the checkpoint: the epoch with the highest validation Dice at 0.5, `best.ckpt`; the threshold
//! in 0.05..0.95 that maximised that epoch's validation Dice); the test cases are scored once with that choice, per
//! case (the images of a case pooled), at 0.5 and at the chosen threshold. Stored as `test.json` in the run folder so a
//! resumed compare reads back exactly the numbers it reported.
use std::collections::BTreeMap;

use seglab_metrics::pooled::{OverlapScores, PooledScores};
use serde::{Deserialize, Serialize};

/// A metric reported on the test cases, the case as the statistical unit.
#[derive(Clone, Copy, Debug)]
pub struct TestMetric {
    /// Key in `test.json`, `summary.json` and the comparison list.
    pub key: &'static str,
    /// Column header and sentence label.
    pub label: &'static str,
    /// Read at the validation-chosen threshold (else at 0.5).
    pub at_val_threshold: bool,
    pub score: fn(&OverlapScores) -> f64,
}

/// Metrics are identified by their key.
impl PartialEq for TestMetric {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

/// Every test metric, the primary one first. The answer to the project's question is read from the first (Dice at
/// 0.5: the threshold every variant's loss-side operator uses, no further selection); each metric is its own family
/// for Holm's correction across the variants.
pub const TEST_METRICS: [TestMetric; 8] = [
    TestMetric {
        key: "dice",
        label: "Dice@0.5",
        at_val_threshold: false,
        score: |s| s.dice,
    },
    TestMetric {
        key: "iou",
        label: "IoU@0.5",
        at_val_threshold: false,
        score: |s| s.iou,
    },
    TestMetric {
        key: "precision",
        label: "precision@0.5",
        at_val_threshold: false,
        score: |s| s.precision,
    },
    TestMetric {
        key: "recall",
        label: "recall@0.5",
        at_val_threshold: false,
        score: |s| s.recall,
    },
    TestMetric {
        key: "dice_at_val_threshold",
        label: "Dice@val thr.",
        at_val_threshold: true,
        score: |s| s.dice,
    },
    TestMetric {
        key: "iou_at_val_threshold",
        label: "IoU@val thr.",
        at_val_threshold: true,
        score: |s| s.iou,
    },
    TestMetric {
        key: "precision_at_val_threshold",
        label: "precision@val thr.",
        at_val_threshold: true,
        score: |s| s.precision,
    },
    TestMetric {
        key: "recall_at_val_threshold",
        label: "recall@val thr.",
        at_val_threshold: true,
        score: |s| s.recall,
    },
];

pub const PRIMARY_METRIC: &str = TEST_METRICS[0].key;

pub fn test_metric(key: &str) -> Option<&'static TestMetric> {
    TEST_METRICS.iter().find(|m| m.key == key)
}

pub const TEST_FILE: &str = "test.json";
pub const TEST_FORMAT: u32 = 1;

/// One run's selected model on the test cases (`test.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestScores {
    pub format: u32,
    /// The epoch of the selected checkpoint (highest validation Dice at 0.5; the first such epoch on ties).
    pub selected_epoch: usize,
    /// Validation Dice at 0.5 of that epoch.
    pub val_dice: f64,
    /// The threshold that maximised that epoch's validation Dice.
    pub threshold: f64,
    /// Test cases in name order.
    pub cases: Vec<String>,
    /// Per metric key of [`TEST_METRICS`], one score per case.
    pub metrics: BTreeMap<String, Vec<f64>>,
}

impl TestScores {
    /// From the scores of the test cases at 0.5 and at the validation-chosen threshold (same cases, same order).
    pub fn new(
        selected_epoch: usize,
        val_dice: f64,
        threshold: f64,
        at_half: &PooledScores,
        at_threshold: &PooledScores,
    ) -> Self {
        debug_assert_eq!(at_half.cases, at_threshold.cases);
        let metrics = TEST_METRICS
            .iter()
            .map(|m| {
                let s = if m.at_val_threshold {
                    at_threshold
                } else {
                    at_half
                };
                (
                    m.key.to_string(),
                    s.case_overlap.iter().map(m.score).collect(),
                )
            })
            .collect();
        TestScores {
            format: TEST_FORMAT,
            selected_epoch,
            val_dice,
            threshold,
            cases: at_half.cases.clone(),
            metrics,
        }
    }

    /// The per-case scores of metric `key` (empty when absent).
    pub fn metric(&self, key: &str) -> &[f64] {
        self.metrics.get(key).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The mean over the test cases of metric `key` (NaN without cases).
    pub fn mean(&self, key: &str) -> f64 {
        crate::stats::mean(self.metric(key))
    }
}
