//! Panics a reader expects and turns into an error (the nifti crate panics on some inconsistent headers): run them
//! through [`catch_quietly`], so that a program's panic hook (the `seglab` CLI's) can stay silent about them while it
//! reports every other panic as an internal error.
use std::cell::Cell;
use std::panic::{catch_unwind, UnwindSafe};

thread_local! {
    static QUIET: Cell<usize> = const { Cell::new(0) };
}

/// `catch_unwind(f)`, with [`is_quiet`] true on this thread while `f` runs.
pub fn catch_quietly<R>(f: impl FnOnce() -> R + UnwindSafe) -> std::thread::Result<R> {
    QUIET.with(|q| q.set(q.get() + 1));
    let r = catch_unwind(f);
    QUIET.with(|q| q.set(q.get() - 1));
    r
}

/// Whether a panic on this thread now is one a reader catches and reports as an error.
pub fn is_quiet() -> bool {
    QUIET.with(|q| q.get() > 0)
}
