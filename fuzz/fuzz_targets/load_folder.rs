#![no_main]
// The training data loader on a folder with one fuzzed image, mask, or both (seglab_nn::fuzzing).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    seglab_metrics::fuzzing::install_panic_hook();
    seglab_nn::fuzzing::load_fuzzed_folder(data);
});
