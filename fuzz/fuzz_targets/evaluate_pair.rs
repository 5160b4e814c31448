#![no_main]
// Two fuzzed files (PNG, NPY or NIfTI, chosen by the first byte) scored as a prediction / ground-truth pair.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    seglab_metrics::fuzzing::install_panic_hook();
    seglab_metrics::fuzzing::evaluate_two(data);
});
