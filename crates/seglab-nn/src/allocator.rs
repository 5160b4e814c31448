//! The global allocator of seglab's binaries and benches: mimalloc that keeps freed memory for reuse.
//!
//! A training step allocates and frees tensor buffers of several MiB per op. glibc malloc hands such buffers back to
//! the kernel and the next op faults them in again, zeroed page by page; perf showed page clearing and faults at
//! 10-15% of a U-Net step. mimalloc with purging off reuses the memory (BENCHMARKS.md, "Training step").
//! A library user keeps their own allocator: only binaries declare `#[global_allocator]`.
pub use mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h (same index in mimalloc v2 and v3).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never return freed memory to the OS (the process peak is reached in the first step anyway). Call first in `main`.
pub fn keep_freed_memory() {
    // SAFETY: sets one documented option; mimalloc reads options atomically.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}
