//! Case-level train/validation splits (slices of one case never straddle the split), and their files.
use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::source::preview;
use super::Dataset;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Case ids of each side of a split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<String>,
    pub val: Vec<String>,
}

impl Dataset {
    pub fn cases(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.samples.iter().map(|s| s.case.as_str()).collect();
        set.into_iter().map(String::from).collect()
    }

    /// Sample indices of the given cases, in dataset order.
    pub fn indices_of(&self, cases: &[String]) -> Vec<usize> {
        let set: BTreeSet<&str> = cases.iter().map(|s| s.as_str()).collect();
        (0..self.samples.len())
            .filter(|&i| set.contains(self.samples[i].case.as_str()))
            .collect()
    }
}

/// A seeded split by case: `round(cases * val_fraction)` validation cases, at least one on each side.
pub fn split_by_case(ds: &Dataset, val_fraction: f64, seed: u64) -> Result<Split> {
    if !(0.0..1.0).contains(&val_fraction) || val_fraction <= 0.0 {
        return Err(Error::config(
            "val_fraction",
            format!("must be in (0, 1), got {val_fraction}"),
        ));
    }
    let mut cases = ds.cases();
    if cases.len() < 2 {
        return Err(Error::data(
            &ds.name,
            format!(
                "{} case(s); a train/validation split needs at least 2",
                cases.len()
            ),
        ));
    }
    let n_val = ((cases.len() as f64 * val_fraction).round() as usize).clamp(1, cases.len() - 1);
    let mut rng = Rng::derive(seed, "split");
    rng.shuffle(&mut cases);
    let mut val: Vec<String> = cases[..n_val].to_vec();
    let mut train: Vec<String> = cases[n_val..].to_vec();
    val.sort();
    train.sort();
    Ok(Split { train, val })
}

/// Checks a user-given split against the data set.
pub fn check_split(ds: &Dataset, split: &Split, source: &str) -> Result<()> {
    let known: BTreeSet<String> = ds.cases().into_iter().collect();
    let unknown: Vec<String> = split
        .train
        .iter()
        .chain(&split.val)
        .filter(|c| !known.contains(*c))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(Error::data(
            source,
            format!("cases not in the data: {}", preview(&unknown)),
        ));
    }
    let train: BTreeSet<&String> = split.train.iter().collect();
    let both: Vec<String> = split
        .val
        .iter()
        .filter(|c| train.contains(c))
        .cloned()
        .collect();
    if !both.is_empty() {
        return Err(Error::data(
            source,
            format!("cases in both train and val: {}", preview(&both)),
        ));
    }
    if split.train.is_empty() || split.val.is_empty() {
        return Err(Error::data(
            source,
            "train and val must both list at least one case",
        ));
    }
    Ok(())
}

pub fn read_split(path: &Path) -> Result<Split> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::file(&path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::data(path.display(), format!("not a split file ({e})")))
}
