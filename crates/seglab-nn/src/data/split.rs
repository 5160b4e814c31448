//! Case-level splits into train, validation and (for `compare`'s held-out figures) test cases; slices of one case
//! never straddle a split. Their files: `split.json` with `train`, `val` and, when there are test cases, `test`.
use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::source::preview;
use super::Dataset;
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Case ids of each role. The trainer uses `train` and `val` (selection: epochs, thresholds); `test` is held out for
/// the reported figures and never read by training. Without test cases the file has no `test` key (as before it
/// existed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub train: Vec<String>,
    pub val: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<String>,
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
    split_by_case_with_test(ds, val_fraction, 0.0, seed)
}

/// A seeded three-way split by case: `round(cases * val_fraction)` validation and `round(cases * test_fraction)` test
/// cases (at least one each when the fraction is positive), at least one training case. The cases are shuffled once:
/// validation takes the first ones, test the next, so `test_fraction` 0 gives [`split_by_case`]'s split.
pub fn split_by_case_with_test(
    ds: &Dataset,
    val_fraction: f64,
    test_fraction: f64,
    seed: u64,
) -> Result<Split> {
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(Error::config(
            "test_fraction",
            format!("must be in [0, 1), got {test_fraction}"),
        ));
    }
    if !(0.0..1.0).contains(&val_fraction) || val_fraction <= 0.0 {
        return Err(Error::config(
            "val_fraction",
            format!("must be in (0, 1), got {val_fraction}"),
        ));
    }
    let mut cases = ds.cases();
    let roles = if test_fraction > 0.0 { 3 } else { 2 };
    if cases.len() < roles {
        return Err(Error::data(
            &ds.name,
            format!(
                "{} case(s); a split into {} needs at least {roles}",
                cases.len(),
                if roles == 3 {
                    "train, validation and test"
                } else {
                    "train and validation"
                }
            ),
        ));
    }
    let n = cases.len();
    let n_val = ((n as f64 * val_fraction).round() as usize).clamp(1, n - 1);
    let n_test = if test_fraction > 0.0 {
        ((n as f64 * test_fraction).round() as usize).clamp(1, n - n_val - 1)
    } else {
        0
    };
    if n_val + n_test >= n {
        return Err(Error::data(
            &ds.name,
            format!("{n} cases leave none to train on ({n_val} validation, {n_test} test)"),
        ));
    }
    let mut rng = Rng::derive(seed, "split");
    rng.shuffle(&mut cases);
    let mut val: Vec<String> = cases[..n_val].to_vec();
    let mut test: Vec<String> = cases[n_val..n_val + n_test].to_vec();
    let mut train: Vec<String> = cases[n_val + n_test..].to_vec();
    val.sort();
    test.sort();
    train.sort();
    Ok(Split { train, val, test })
}

/// Checks a user-given split against the data set.
pub fn check_split(ds: &Dataset, split: &Split, source: &str) -> Result<()> {
    let known: BTreeSet<String> = ds.cases().into_iter().collect();
    let unknown: Vec<String> = split
        .train
        .iter()
        .chain(&split.val)
        .chain(&split.test)
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
    let selection: BTreeSet<&String> = split.train.iter().chain(&split.val).collect();
    let leaked: Vec<String> = split
        .test
        .iter()
        .filter(|c| selection.contains(c))
        .cloned()
        .collect();
    if !leaked.is_empty() {
        return Err(Error::data(
            source,
            format!("test cases also in train or val: {}", preview(&leaked)),
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
