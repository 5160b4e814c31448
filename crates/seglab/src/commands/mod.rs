pub mod args;
pub mod compare;
pub mod compare_predictions;
pub mod evaluate;
pub mod gradcheck;
pub mod loss;
pub mod merge;
pub mod predict;
pub mod synth;
pub mod train;

/// Overlays `over` onto `base` key by key, recursing into objects (a config file's keys onto the defaults).
pub fn merge_json(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge_json(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}
