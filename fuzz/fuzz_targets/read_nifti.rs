#![no_main]
// One fuzzed .nii file through every reader and conversion (seglab_metrics::fuzzing).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    seglab_metrics::fuzzing::install_panic_hook();
    let p = seglab_metrics::fuzzing::temp_file("input.nii", data);
    seglab_metrics::fuzzing::read_every_way(&p);
});
