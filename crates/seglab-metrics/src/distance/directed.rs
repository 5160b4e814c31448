//! Directed surface distances on the whole union crop: surface elements of each mask, the EDT of the other's,
//! distances read at the elements.
use rayon::prelude::*;

use super::*;
use crate::crop::UnionCrop;
use crate::edt::squared_edt_at_into;
use crate::surface::{neighbour_codes, surfel_area_table, voxel_surface, Geometry};

impl UnionCrop {
    /// The distances of each surface model: per cluster box when the boxes cover little of the crop, else one
    /// transform of the whole crop per model.
    pub(super) fn distances(&self, models: &[SurfaceModel]) -> Vec<SurfaceDistances> {
        match self.cluster_boxes() {
            Some(c) => self.distances_in_clusters(models, c),
            None => {
                let mut scratch = Default::default();
                models
                    .iter()
                    .map(|&m| self.distances_whole(m, &mut scratch))
                    .collect()
            }
        }
    }

    /// `scratch` holds the two distance maps; passing the same pair to both models reuses their memory.
    pub(super) fn distances_whole(
        &self,
        model: SurfaceModel,
        scratch: &mut [Vec<f64>; 2],
    ) -> SurfaceDistances {
        let (geo, shape) = (&self.geo, self.shape);
        let (pred, gt) = (self.pred.data(), self.gt.data());
        let (ep, eg, table) = match model {
            SurfaceModel::Voxel => (
                voxel_elements(pred, shape, geo),
                voxel_elements(gt, shape, geo),
                Vec::new(),
            ),
            SurfaceModel::Surfel => (
                surfel_elements(pred, shape, geo),
                surfel_elements(gt, shape, geo),
                surfel_area_table(geo),
            ),
        };
        let [dt_pred, dt_gt] = scratch;
        rayon::join(
            || squared_edt_at_into(&ep.border, Some(&eg.border), &shape, &geo.spacing, dt_pred),
            || squared_edt_at_into(&eg.border, Some(&ep.border), &shape, &geo.spacing, dt_gt),
        );
        let (pred_to_gt, gt_to_pred) = rayon::join(
            || directed(&ep, &table, dt_gt),
            || directed(&eg, &table, dt_pred),
        );
        SurfaceDistances {
            pred_to_gt,
            gt_to_pred,
        }
    }
}

impl UnionCrop {
    /// [`UnionCrop::distances_whole`] for crops of one case cut to one box: the ground truth's elements and
    /// transform once (queried at the union of the predictions' elements), each prediction's own.
    /// `scratch` holds the two distance maps (reused across surface models, as in `distances_whole`).
    pub(super) fn distances_sharing_gt(
        crops: &[&UnionCrop],
        model: SurfaceModel,
        scratch: &mut [Vec<f64>; 2],
    ) -> Vec<SurfaceDistances> {
        let first = crops[0];
        let (geo, shape) = (&first.geo, first.shape);
        let elements = |m: &[bool]| match model {
            SurfaceModel::Voxel => voxel_elements(m, shape, geo),
            SurfaceModel::Surfel => surfel_elements(m, shape, geo),
        };
        let table = match model {
            SurfaceModel::Voxel => Vec::new(),
            SurfaceModel::Surfel => surfel_area_table(geo),
        };
        let (eg, eps) = rayon::join(
            || elements(first.gt.data()),
            || {
                crops
                    .par_iter()
                    .map(|c| elements(c.pred.data()))
                    .collect::<Vec<_>>()
            },
        );
        let mut queries = eps[0].border.clone();
        for e in &eps[1..] {
            queries
                .par_chunks_mut(1 << 16)
                .zip(e.border.par_chunks(1 << 16))
                .for_each(|(q, b)| q.iter_mut().zip(b).for_each(|(q, &b)| *q |= b));
        }
        let [dt_gt, dt_pred] = scratch;
        squared_edt_at_into(&eg.border, Some(&queries), &shape, &geo.spacing, dt_gt);
        drop(queries);
        // One prediction after the other (each transform uses both cores): one buffer serves them all, where
        // transforms side by side would each fault in a fresh crop-sized buffer.
        eps.iter()
            .map(|ep| {
                squared_edt_at_into(&ep.border, Some(&eg.border), &shape, &geo.spacing, dt_pred);
                let (pred_to_gt, gt_to_pred) = rayon::join(
                    || directed(ep, &table, dt_gt),
                    || directed(&eg, &table, dt_pred),
                );
                SurfaceDistances {
                    pred_to_gt,
                    gt_to_pred,
                }
            })
            .collect()
    }
}

/// Surface elements of one mask on the crop grid: where they are and what each weighs.
pub(super) struct Elements {
    pub(super) border: Vec<bool>,
    /// Neighbourhood code per grid point, for the surfel weight; empty for voxel surfaces (weight 1).
    pub(super) codes: Vec<u8>,
}

pub(super) fn voxel_elements(m: &[bool], shape: [usize; 3], geo: &Geometry) -> Elements {
    Elements {
        border: voxel_surface(m, shape, geo.first_axis()),
        codes: Vec::new(),
    }
}

pub(super) fn surfel_elements(m: &[bool], shape: [usize; 3], geo: &Geometry) -> Elements {
    let codes = neighbour_codes(m, shape, geo.first_axis());
    let full = if geo.ndim == 2 { 0b1111 } else { 0b1111_1111 };
    Elements {
        border: codes.par_iter().map(|&c| c != 0 && c != full).collect(),
        codes,
    }
}

pub(super) fn directed(from: &Elements, table: &[f64], squared_dt_to: &[f64]) -> DirectedDistances {
    // Plain loops over large chunks: surface points are sparse and a per-element parallel filter costs more
    // than the scan itself.
    const CHUNK: usize = 1 << 16;
    let pairs: Vec<(f64, f64)> = from
        .border
        .par_chunks(CHUNK)
        .enumerate()
        .flat_map_iter(|(c, chunk)| {
            let base = c * CHUNK;
            let mut out = Vec::new();
            for (o, &b) in chunk.iter().enumerate() {
                if b {
                    let i = base + o;
                    let w = if from.codes.is_empty() {
                        1.0
                    } else {
                        table[from.codes[i] as usize]
                    };
                    out.push((squared_dt_to[i].sqrt(), w));
                }
            }
            out
        })
        .collect();
    sorted(pairs)
}
