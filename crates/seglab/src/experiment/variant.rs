//! The experiment's arms: a named loss + threshold-mode combination, the defaults, selection by name.
use std::collections::BTreeMap;

use anyhow::{bail, Result};
use seglab_nn::objective::{LossChoice, ThresholdChoice};
use seglab_nn::{LossParams, Reduction};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One arm of the experiment: a named loss + threshold-mode combination, typed as the trainer's flags are
/// ([`LossChoice`], [`ThresholdChoice`], the mode always given). Its JSON and TOML form is [`VariantFile`]'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "VariantFile", into = "VariantFile")]
pub struct VariantSpec {
    pub name: String,
    pub loss: LossChoice,
    pub threshold: ThresholdChoice,
}

/// A variant as `compare.toml`, `compare.json` and `summary.json` write it: the loss and threshold-mode names, and
/// each one's settings by key (only those given).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantFile {
    pub name: String,
    /// Loss name as `seglab loss --loss` takes it (`tversky`, `dice`, ..., or a sum `A+B`).
    pub loss: String,
    /// [`LossChoice::KEYS`]: `alpha`, `beta`, `gamma`, `smooth`, `eps`, `weights` (a list, for sums), `reduction`.
    #[serde(default)]
    pub loss_params: BTreeMap<String, Value>,
    /// Threshold applied to the prediction before the loss: `none`, `hard`, `ste`, `soft`, `power`.
    pub threshold_mode: String,
    /// [`ThresholdChoice::KEYS`]: `threshold`, `temperature`, `k` (power), `temperature_end` and `annealing`
    /// (soft, annealed).
    #[serde(default)]
    pub threshold_params: BTreeMap<String, Value>,
}

impl TryFrom<VariantFile> for VariantSpec {
    type Error = String;

    /// Unknown or ill-typed settings are errors naming the variant.
    fn try_from(f: VariantFile) -> std::result::Result<Self, String> {
        let err = |msg: String| format!("variant '{}': {msg}", f.name);
        for (params, keys, what) in [
            (&f.loss_params, &LossChoice::KEYS[..], "loss"),
            (&f.threshold_params, &ThresholdChoice::KEYS[..], "threshold"),
        ] {
            if let Some(k) = params.keys().find(|k| !keys.contains(&k.as_str())) {
                return Err(err(format!(
                    "unknown {what} parameter '{k}'; valid: {}",
                    keys.join(", ")
                )));
            }
        }
        let num = |p: &BTreeMap<String, Value>, k: &str| match p.get(k) {
            None => Ok(None),
            Some(x) => x
                .as_f64()
                .map(Some)
                .ok_or_else(|| err(format!("parameter '{k}' must be a number, got {x}"))),
        };
        let text = |p: &BTreeMap<String, Value>, k: &str| match p.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(x) => Err(err(format!("parameter '{k}' must be a string, got {x}"))),
        };
        let lp = &f.loss_params;
        let weights = match lp.get("weights") {
            None => None,
            Some(w) => Some(serde_json::from_value::<Vec<f64>>(w.clone()).map_err(|_| {
                err(format!(
                    "parameter 'weights' must be a list of numbers, got {w}"
                ))
            })?),
        };
        let reduction = text(lp, "reduction")?
            .map(|r| r.parse::<Reduction>())
            .transpose()
            .map_err(|e| err(format!("reduction: {e}")))?;
        let loss = LossChoice {
            name: f.loss.clone(),
            params: LossParams {
                alpha: num(lp, "alpha")?,
                beta: num(lp, "beta")?,
                gamma: num(lp, "gamma")?,
                smooth: num(lp, "smooth")?,
                eps: num(lp, "eps")?,
            },
            weights,
            reduction,
        };
        let tp = &f.threshold_params;
        let threshold = ThresholdChoice {
            mode: Some(f.threshold_mode.clone()),
            threshold: num(tp, "threshold")?,
            temperature: num(tp, "temperature")?,
            k: num(tp, "k")?,
            temperature_end: num(tp, "temperature_end")?,
            annealing: text(tp, "annealing")?
                .map(|a| a.parse())
                .transpose()
                .map_err(|e| err(format!("annealing: {e}")))?,
        };
        Ok(VariantSpec {
            name: f.name,
            loss,
            threshold,
        })
    }
}

impl From<VariantSpec> for VariantFile {
    fn from(v: VariantSpec) -> Self {
        let mut loss_params = BTreeMap::new();
        let p = &v.loss.params;
        for (k, x) in [
            ("alpha", p.alpha),
            ("beta", p.beta),
            ("gamma", p.gamma),
            ("smooth", p.smooth),
            ("eps", p.eps),
        ] {
            if let Some(x) = x {
                loss_params.insert(k.to_string(), json!(x));
            }
        }
        if let Some(w) = &v.loss.weights {
            loss_params.insert("weights".to_string(), json!(w));
        }
        if let Some(r) = v.loss.reduction {
            loss_params.insert("reduction".to_string(), json!(r.to_string()));
        }
        let t = &v.threshold;
        let mut threshold_params = BTreeMap::new();
        for (k, x) in [
            ("threshold", t.threshold),
            ("temperature", t.temperature),
            ("k", t.k),
            ("temperature_end", t.temperature_end),
        ] {
            if let Some(x) = x {
                threshold_params.insert(k.to_string(), json!(x));
            }
        }
        if let Some(a) = t.annealing {
            threshold_params.insert("annealing".to_string(), json!(a.to_string()));
        }
        VariantFile {
            name: v.name,
            loss: v.loss.name,
            loss_params,
            threshold_mode: v.threshold.mode.unwrap_or_else(|| "none".to_string()),
            threshold_params,
        }
    }
}

impl VariantSpec {
    /// Whether the prediction is thresholded (in any form) before the loss: the question the experiment answers.
    pub fn thresholds_before_loss(&self) -> bool {
        self.threshold.thresholds_before_loss()
    }

    /// The file form (loss and threshold settings by key).
    pub fn file(&self) -> VariantFile {
        self.clone().into()
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
        let f = self.file();
        let loss = format!("{}{}", f.loss, params(&f.loss_params));
        if self.thresholds_before_loss() {
            format!(
                "{loss} on {}{}",
                f.threshold_mode,
                params(&f.threshold_params)
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
    let v = |name: &str, mode: &str, temperature_end: Option<f64>| VariantSpec {
        name: name.to_string(),
        loss: LossChoice {
            params: LossParams {
                alpha: Some(0.3),
                beta: Some(0.7),
                ..Default::default()
            },
            ..LossChoice::named("tversky")
        },
        threshold: ThresholdChoice {
            mode: Some(mode.to_string()),
            temperature_end,
            ..Default::default()
        },
    };
    vec![
        v("soft", "none", None),
        v("hard", "hard", None),
        v("ste", "ste", None),
        // Annealed from the trainer's default start temperature (0.1) down to 0.01 over the run.
        v("soft-threshold", "soft", Some(0.01)),
        v("power", "power", None),
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
