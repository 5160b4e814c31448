//! The checkpoint file (`last.ckpt`, `best.ckpt`): magic, JSON meta, model and optimizer records.
use std::path::Path;

use burn::module::Module;
use serde::{Deserialize, Serialize};

use super::{write_atomic, TrainConfig};
use crate::data::Split;
use crate::error::{Error, Result};
use crate::record::EpochRecord;
use crate::unet::UNet;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct RunState {
    pub(super) records: Vec<EpochRecord>,
    #[serde(deserialize_with = "crate::record::f64_or_nan")]
    pub(super) best_val_dice: f64,
    pub(super) best_epoch: usize,
}

pub(super) const CKPT_FORMAT: u32 = 1;
pub(super) const CKPT_MAGIC: &[u8; 8] = b"SEGLABCK";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct CheckpointMeta {
    pub(super) format: u32,
    pub(super) config: TrainConfig,
    pub(super) split: Split,
    pub(super) state: RunState,
}

pub(super) fn model_bytes(model: &UNet) -> Result<Vec<u8>> {
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| Error::Record {
            what: "model",
            detail: format!("{e:?}"),
        })?;
    Ok(bytes.to_vec())
}

pub(super) fn optim_bytes(optim: &burn::optim::ModuleOptimizer) -> Result<Vec<u8>> {
    let bytes = optim.into_bytes().map_err(|e| Error::Record {
        what: "optimizer",
        detail: format!("{e:?}"),
    })?;
    Ok(bytes.to_vec())
}

/// Checkpoint file: magic, then three length-prefixed sections (JSON meta, model record, optimizer record),
/// written via a temporary file in the same folder and a rename, so a reader (or a killed writer) never sees a
/// partial checkpoint.
pub(super) fn write_checkpoint(
    path: &Path,
    meta: &CheckpointMeta,
    model: &[u8],
    optim: Option<&[u8]>,
) -> Result<()> {
    let json = serde_json::to_vec(meta).expect("checkpoint meta serialises");
    let optim = optim.unwrap_or(&[]);
    let mut out = Vec::with_capacity(8 + 24 + json.len() + model.len() + optim.len());
    out.extend_from_slice(CKPT_MAGIC);
    for section in [&json[..], model, optim] {
        out.extend_from_slice(&(section.len() as u64).to_le_bytes());
        out.extend_from_slice(section);
    }
    write_atomic(path, &out)
}

pub(super) fn read_checkpoint(path: &Path) -> Result<(CheckpointMeta, Vec<u8>, Vec<u8>)> {
    let bad = |why: &str| Error::run(&path, format!("not a seglab checkpoint ({why})"));
    let bytes = std::fs::read(path).map_err(|e| Error::file(&path, e))?;
    if bytes.len() < 8 || &bytes[..8] != CKPT_MAGIC {
        return Err(bad("bad header"));
    }
    let mut pos = 8;
    let mut sections = Vec::new();
    for _ in 0..3 {
        let len = bytes.get(pos..pos + 8).ok_or_else(|| bad("truncated"))?;
        let len = u64::from_le_bytes(len.try_into().unwrap()) as usize;
        pos += 8;
        sections.push(
            bytes
                .get(pos..pos + len)
                .ok_or_else(|| bad("truncated"))?
                .to_vec(),
        );
        pos += len;
    }
    let meta: CheckpointMeta =
        serde_json::from_slice(&sections[0]).map_err(|e| bad(&format!("meta: {e}")))?;
    if meta.format != CKPT_FORMAT {
        return Err(bad(&format!(
            "format {} (this build reads {CKPT_FORMAT})",
            meta.format
        )));
    }
    let optim = sections.pop().unwrap();
    let model = sections.pop().unwrap();
    Ok((meta, model, optim))
}
