//! The experiment's arms: a named loss + threshold-mode combination, the defaults, selection by name.
use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One arm of the experiment: a named loss + threshold-mode combination.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantSpec {
    pub name: String,
    /// Loss name as `seglab loss --loss` takes it (`tversky`, `dice`, ...).
    pub loss: String,
    /// Loss parameters by name (`alpha`, `beta`, `gamma`, `smooth`), any serde value so that the trainer's settings
    /// (numbers, names of schedules) pass through unchanged.
    #[serde(default)]
    pub loss_params: BTreeMap<String, Value>,
    /// Threshold applied to the prediction before the loss: `none`, `hard`, `ste`, `soft`, `power`.
    pub threshold_mode: String,
    /// Threshold-mode parameters by name (`threshold`; `temperature_start`/`temperature_end` for `soft`; `k` for
    /// `power`).
    #[serde(default)]
    pub threshold_params: BTreeMap<String, Value>,
}

impl VariantSpec {
    /// Whether the prediction is thresholded (in any form) before the loss: the question the experiment answers.
    pub fn thresholds_before_loss(&self) -> bool {
        self.threshold_mode != "none"
    }

    /// One line for the report, e.g. `tversky(alpha=0.3, beta=0.7) on power(k=3)`.
    pub fn describe(&self) -> String {
        fn params(p: &BTreeMap<String, Value>) -> String {
            if p.is_empty() {
                return String::new();
            }
            let inner: Vec<String> = p
                .iter()
                .map(|(k, v)| match v {
                    Value::Number(n) => format!("{k}={}", n.as_f64().unwrap_or(f64::NAN)),
                    Value::String(s) => format!("{k}={s}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            format!("({})", inner.join(", "))
        }
        let loss = format!("{}{}", self.loss, params(&self.loss_params));
        if self.thresholds_before_loss() {
            format!(
                "{loss} on {}{}",
                self.threshold_mode,
                params(&self.threshold_params)
            )
        } else {
            format!("{loss} on probabilities")
        }
    }
}

/// The five variants of issue 5; `soft` is the baseline (model A of the motivating discussion, `hard` model B).
/// Tversky with alpha 0.3, beta 0.7; the threshold modes use the trainer's defaults for their parameters (threshold
/// 0.5, soft temperature 0.1, power k 3); `soft-threshold` anneals its temperature to 0.01.
pub fn default_variants() -> Vec<VariantSpec> {
    let tversky: BTreeMap<String, Value> = [("alpha", 0.3), ("beta", 0.7)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let v = |name: &str, mode: &str, params: &[(&str, f64)]| VariantSpec {
        name: name.to_string(),
        loss: "tversky".to_string(),
        loss_params: tversky.clone(),
        threshold_mode: mode.to_string(),
        threshold_params: params
            .iter()
            .map(|(k, x)| (k.to_string(), json!(x)))
            .collect(),
    };
    vec![
        v("soft", "none", &[]),
        v("hard", "hard", &[]),
        v("ste", "ste", &[]),
        // Annealed from the trainer's default start temperature (0.1) down to 0.01 over the run.
        v("soft-threshold", "soft", &[("temperature_end", 0.01)]),
        v("power", "power", &[]),
    ]
}

pub const DEFAULT_BASELINE: &str = "soft";

/// Picks variants by name from `available` (comma-separated list, order kept). An unknown name is an error that lists
/// the valid names, so that it surfaces before any training starts.
pub fn select_variants(names: &str, available: &[VariantSpec]) -> Result<Vec<VariantSpec>> {
    let valid = || {
        available
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut chosen: Vec<VariantSpec> = Vec::new();
    for name in names.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some(v) = available.iter().find(|v| v.name == name) else {
            bail!("unknown variant '{name}'; valid variants: {}", valid());
        };
        if chosen.iter().any(|c| c.name == name) {
            bail!("variant '{name}' is listed twice");
        }
        chosen.push(v.clone());
    }
    if chosen.is_empty() {
        bail!("no variant selected; valid variants: {}", valid());
    }
    Ok(chosen)
}
