#![no_main]
// One fuzzed .npy file through every reader and conversion (seglab_metrics::fuzzing).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    seglab_metrics::fuzzing::install_panic_hook();
    let p = seglab_metrics::fuzzing::temp_file("input.npy", data);
    seglab_metrics::fuzzing::read_every_way(&p);
});
