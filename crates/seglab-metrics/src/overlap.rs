//! Overlap of two labellings: which component pairs touch and how much they share.

/// Which (ground-truth, predicted) component pairs touch, and how many voxels of interest they share: a dense table
/// while it is small (the usual case), a hash map otherwise.
pub(crate) enum PairTable {
    Dense {
        n_pred: usize,
        cells: Vec<(bool, usize)>,
    },
    Sparse(std::collections::HashMap<(usize, usize), usize>),
}

impl PairTable {
    pub(crate) fn new(n_les: usize, n_pred: usize) -> Self {
        match n_les.checked_mul(n_pred) {
            Some(n) if n <= 1 << 22 => PairTable::Dense {
                n_pred,
                cells: vec![(false, 0); n],
            },
            _ => PairTable::Sparse(Default::default()),
        }
    }

    /// `l` and `p` touch and share `shared` more voxels.
    pub(crate) fn add(&mut self, l: usize, p: usize, shared: usize) {
        match self {
            PairTable::Dense { n_pred, cells } => {
                let c = &mut cells[l * *n_pred + p];
                c.0 = true;
                c.1 += shared;
            }
            PairTable::Sparse(m) => *m.entry((l, p)).or_default() += shared,
        }
    }

    /// Every touching pair `(l, p, shared)`, in increasing `(l, p)`.
    pub(crate) fn pairs(&self) -> Vec<(usize, usize, usize)> {
        match self {
            PairTable::Dense { n_pred, cells } => cells
                .iter()
                .enumerate()
                .filter(|(_, c)| c.0)
                .map(|(i, c)| (i / n_pred, i % n_pred, c.1))
                .collect(),
            PairTable::Sparse(m) => {
                let mut v: Vec<_> = m.iter().map(|(k, &s)| (k.0, k.1, s)).collect();
                v.sort_unstable();
                v
            }
        }
    }
}
