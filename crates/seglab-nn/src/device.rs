//! The devices a run can use, by the names `--device` takes, and which ones this build has compiled in. Training,
//! validation, model loading and prediction take a [`Device`]; only this module turns a name into one.
use burn::tensor::Device;

use crate::error::{Error, Result};

/// Device names compiled into this build, the default first. `cpu` is burn's Flex backend; `wgpu[:N]` and
/// `cuda[:N]` (the N-th GPU, 0 by default) join behind their cargo features.
pub const DEVICE_NAMES: &[&str] = &[
    "cpu",
    #[cfg(feature = "wgpu")]
    "wgpu",
    #[cfg(feature = "cuda")]
    "cuda",
];

/// The device called `name` (`cpu`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`), or an error listing the compiled-in names.
pub fn device_from_name(name: &str) -> Result<Device> {
    let unknown = || Error::Device {
        name: name.to_string(),
        available: crate::names::one_of(DEVICE_NAMES),
    };
    let (kind, index) = match name.split_once(':') {
        Some((k, i)) => (k, Some(i.parse::<usize>().map_err(|_| unknown())?)),
        None => (name, None),
    };
    if !DEVICE_NAMES.contains(&kind) {
        return Err(unknown());
    }
    match (kind, index) {
        ("cpu", None) => Ok(Device::flex()),
        #[cfg(feature = "wgpu")]
        ("wgpu", None) => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "wgpu")]
        ("wgpu", Some(i)) => Ok(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i))),
        #[cfg(feature = "cuda")]
        ("cuda", i) => Ok(Device::cuda(i.unwrap_or(0))),
        _ => Err(unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_a_device_and_others_are_refused() {
        for name in DEVICE_NAMES {
            assert!(device_from_name(name).is_ok(), "{name}");
        }
        for bad in ["cpu:0", "cpu:x", "wgpu:-1"] {
            assert!(device_from_name(bad).is_err(), "{bad}");
        }
        let e = device_from_name("tpu").unwrap_err().to_string();
        assert!(
            e.contains("unknown device 'tpu'") && e.contains("cpu"),
            "{e}"
        );
    }
}
