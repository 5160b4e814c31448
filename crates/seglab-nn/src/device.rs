//! The devices a run can use, by the names `--device` takes, and which ones this build has compiled in. Training,
//! validation, model loading and prediction take a [`Device`]; only this module turns a name into one.
use burn::tensor::Device;

use crate::error::{Error, Result};

/// Device names compiled into this build, the default first. `cpu` is burn's Flex backend; GPU backends join this
/// list behind their cargo features.
pub const DEVICE_NAMES: &[&str] = &["cpu"];

/// The device called `name`, or an error listing the compiled-in names.
pub fn device_from_name(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::flex()),
        other => Err(Error::Device {
            name: other.to_string(),
            available: crate::names::one_of(DEVICE_NAMES),
        }),
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
        let e = device_from_name("tpu").unwrap_err().to_string();
        assert!(
            e.contains("unknown device 'tpu'") && e.contains("cpu"),
            "{e}"
        );
    }
}
