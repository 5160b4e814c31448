//! Label maps: which label values of a multi-label file form the binary mask (`--labels 1,2,3`), and named regions
//! evaluated side by side from one read of each file (`--regions WT=1,2,3,TC=1,3,ET=3`: BraTS' whole tumour, tumour
//! core and enhancing tumour).
//!
//! With a label set both files are label maps: a voxel is lesion when its value is one of the labels, exactly
//! (1.0 in a float NIfTI is label 1; 1.5 is no label). Without one, the usual rules apply (ground truth 0/1,
//! predictions thresholded).
use serde::{Deserialize, Serialize};

/// Label values, sorted and without repeats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LabelSet(Vec<i64>);

impl LabelSet {
    pub fn new(mut labels: Vec<i64>) -> Result<LabelSet, String> {
        if labels.is_empty() {
            return Err("a label set needs at least one label value".into());
        }
        labels.sort_unstable();
        labels.dedup();
        Ok(LabelSet(labels))
    }

    /// `"1,2,3"`.
    pub fn parse(s: &str) -> Result<LabelSet, String> {
        let labels = s
            .split(',')
            .map(|t| parse_label(t.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        LabelSet::new(labels)
    }

    pub fn values(&self) -> &[i64] {
        &self.0
    }

    /// Whether a voxel value is one of the labels (integers only: 1.5 matches nothing).
    pub fn contains(&self, value: f64) -> bool {
        value.fract() == 0.0
            && value.abs() < 9.0e15
            && self.0.binary_search(&(value as i64)).is_ok()
    }
}

fn parse_label(t: &str) -> Result<i64, String> {
    t.parse::<i64>()
        .map_err(|_| format!("'{t}' is not an integer label value"))
}

/// A named label set, e.g. `TC = {1, 3}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Region {
    pub name: String,
    pub labels: LabelSet,
}

/// `"WT=1,2,3,TC=1,3,ET=3"`: a token with `=` starts a region, the tokens after it add labels to it. Names must be
/// non-empty, distinct, and made of letters, digits, `_` and `-` (they become JSON keys and CSV values).
pub fn parse_regions(s: &str) -> Result<Vec<Region>, String> {
    let mut regions: Vec<(String, Vec<i64>)> = Vec::new();
    for token in s.split(',').map(str::trim) {
        match token.split_once('=') {
            Some((name, first)) => {
                let name = name.trim();
                if name.is_empty() {
                    return Err(format!(
                        "region '{token}' has an empty name (expected NAME=LABEL,...)"
                    ));
                }
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(format!(
                        "region name '{name}' may hold only letters, digits, '_' and '-'"
                    ));
                }
                if regions.iter().any(|(n, _)| n == name) {
                    return Err(format!("region '{name}' is given twice"));
                }
                let first = first.trim();
                let labels = if first.is_empty() {
                    Vec::new()
                } else {
                    vec![parse_label(first)?]
                };
                regions.push((name.to_string(), labels));
            }
            None => match regions.last_mut() {
                Some((_, labels)) if !token.is_empty() => labels.push(parse_label(token)?),
                Some((name, _)) => {
                    return Err(format!("region '{name}': empty label value in '{s}'"))
                }
                None => {
                    return Err(format!(
                        "'{s}' must start with a region name (expected e.g. WT=1,2,3,TC=1,3,ET=3)"
                    ))
                }
            },
        }
    }
    regions
        .into_iter()
        .map(|(name, labels)| {
            let labels =
                LabelSet::new(labels).map_err(|_| format!("region '{name}' has no label value"))?;
            Ok(Region { name, labels })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_match_integer_values_only() {
        let s = LabelSet::parse("3, 1,1").unwrap();
        assert_eq!(s.values(), &[1, 3]);
        assert!(s.contains(1.0) && s.contains(3.0));
        assert!(!s.contains(2.0) && !s.contains(1.5) && !s.contains(0.0) && !s.contains(f64::NAN));
        assert!(LabelSet::parse("1,x").unwrap_err().contains("'x'"));
        assert!(LabelSet::parse("").is_err());
    }

    #[test]
    fn regions_parse_in_order() {
        let r = parse_regions("WT=1,2,3,TC=1,3,ET=3").unwrap();
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["WT", "TC", "ET"]);
        assert_eq!(r[0].labels.values(), &[1, 2, 3]);
        assert_eq!(r[1].labels.values(), &[1, 3]);
        assert_eq!(r[2].labels.values(), &[3]);
    }

    #[test]
    fn bad_regions_say_what_is_wrong() {
        for (text, expected) in [
            ("=1,2", "empty name"),
            ("WT=1,WT=2", "given twice"),
            ("1,2", "must start with a region name"),
            ("WT=,TC=1", "no label value"),
            ("WT=1,,2", "empty label value"),
            ("W T=1", "letters, digits"),
            ("WT=a", "not an integer"),
        ] {
            let e = parse_regions(text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
