//! im2col convolution on f32 slices: geometry, per-image parallel loops, scratch buffers.
use rayon::prelude::*;

/// One image's convolution geometry.
#[derive(Clone, Copy)]
pub(super) struct Geometry {
    pub(super) cin: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) k: usize,
}

impl Geometry {
    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    pub(super) fn rows(&self) -> usize {
        self.cin * self.k * self.k
    }

    /// For kernel offset (`ky`, `kx`): for each output row `y`, the input row it reads (or `None` in the padding),
    /// and the output column range `x0..x1` whose inputs lie inside the image, read from `x0 + dx`.
    fn spans(&self, ky: usize, kx: usize) -> (isize, isize, usize, usize) {
        let p = (self.k / 2) as isize;
        let dy = ky as isize - p;
        let dx = kx as isize - p;
        let x0 = (-dx).max(0) as usize;
        let x1 = (self.w as isize - dx).min(self.w as isize).max(x0 as isize) as usize;
        (dy, dx, x0, x1)
    }

    /// Output row ranges processed as one matrix product: about 512 KiB of column matrix each, so the column matrix
    /// of a tile stays in the core's L2 cache between im2col and gemm instead of streaming `9 Cin H W` values through
    /// memory. Whole image for a 1x1 kernel (no column matrix).
    pub(super) fn tiles(&self) -> impl Iterator<Item = (usize, usize)> {
        let rows = if self.k == 1 {
            self.h
        } else {
            ((1usize << 17) / self.rows() / self.w).clamp(1, self.h)
        };
        let h = self.h;
        (0..h).step_by(rows).map(move |y0| (y0, (y0 + rows).min(h)))
    }

    /// Columns of the column matrix of output rows `y0..y1`.
    pub(super) fn cols(&self, y0: usize, y1: usize) -> usize {
        (y1 - y0) * self.w
    }

    /// The im2col matrix `[Cin k k, (y1 - y0) W]` of output rows `y0..y1` of one image `[Cin, H, W]`, written into
    /// `col`; for a 1x1 kernel, `x` itself from row `y0` (row stride `H W`, as the matrix products expect).
    pub(super) fn columns<'a>(
        &self,
        x: &'a [f32],
        y0: usize,
        y1: usize,
        col: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        if self.k == 1 {
            debug_assert!(y0 == 0 && y1 == self.h);
            return x;
        }
        let (h, w, hw) = (self.h, self.w, self.h * self.w);
        let t = self.cols(y0, y1);
        let len = self.rows() * t;
        col.clear();
        col.reserve(len);
        let base: *mut f32 = col.spare_capacity_mut().as_mut_ptr().cast();
        // Every element is written exactly once, zero in the padding, so the buffer is not cleared first.
        for ci in 0..self.cin {
            let plane = &x[ci * hw..][..hw];
            for ky in 0..self.k {
                for kx in 0..self.k {
                    let r = (ci * self.k + ky) * self.k + kx;
                    let (dy, dx, x0, x1) = self.spans(ky, kx);
                    for y in y0..y1 {
                        let ys = y as isize + dy;
                        // SAFETY: `col` has capacity `len = rows * t`; row `r` of the tile starts at `r * t + (y - y0)
                        // * w` and this writes its `w` values (`x0 <= x1 <= w` from `spans`), inside that capacity;
                        // `src` is a checked sub-slice of `plane` of `x1 - x0` values and does not overlap `col`.
                        unsafe {
                            let row = base.add(r * t + (y - y0) * w);
                            if ys < 0 || ys >= h as isize || x0 >= x1 {
                                std::ptr::write_bytes(row, 0, w);
                                continue;
                            }
                            let s0 = (x0 as isize + dx) as usize;
                            let src = plane[ys as usize * w + s0..][..x1 - x0].as_ptr();
                            std::ptr::write_bytes(row, 0, x0);
                            std::ptr::copy_nonoverlapping(src, row.add(x0), x1 - x0);
                            std::ptr::write_bytes(row.add(x1), 0, w - x1);
                        }
                    }
                }
            }
        }
        // SAFETY: all `len` values were written above.
        unsafe { col.set_len(len) };
        col
    }
}

/// `out [Cout, 2H, 2W]` from `z [Cout 2 2, H W]`: `out[co, 2i + a, 2j + b] = z[(co 2 + a) 2 + b, i W + j]`.
pub(super) fn interleave2x2(
    z: &[f32],
    out: &mut [std::mem::MaybeUninit<f32>],
    cout: usize,
    h: usize,
    w: usize,
) {
    let hw = h * w;
    for co in 0..cout {
        for a in 0..2 {
            for i in 0..h {
                let row = &mut out[(co * 2 * h + 2 * i + a) * 2 * w..][..2 * w];
                let z0 = &z[((co * 2 + a) * 2) * hw + i * w..][..w];
                let z1 = &z[((co * 2 + a) * 2 + 1) * hw + i * w..][..w];
                for (j, pair) in row.chunks_exact_mut(2).enumerate() {
                    pair[0].write(z0[j]);
                    pair[1].write(z1[j]);
                }
            }
        }
    }
}

/// The inverse of [`interleave2x2`]: `dz [Cout 2 2, H W]` from `g [Cout, 2H, 2W]`, written into `dz` in its own
/// order (each value once, no clearing pass).
pub(super) fn deinterleave2x2(g: &[f32], dz: &mut Vec<f32>, cout: usize, h: usize, w: usize) {
    dz.clear();
    dz.reserve(cout * 4 * h * w);
    for co in 0..cout {
        for a in 0..2 {
            for b in 0..2 {
                for i in 0..h {
                    let row = &g[(co * 2 * h + 2 * i + a) * 2 * w..][..2 * w];
                    dz.extend(row.iter().skip(b).step_by(2));
                }
            }
        }
    }
}

thread_local! {
    /// Each thread's working buffer (a column-matrix tile, or a transposed convolution's `[Cout 2 2, H W]` matrix),
    /// kept between calls so that it is not faulted in afresh each time.
    static SCRATCH: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Takes this thread's scratch buffer (no borrow is held while it is in use: a nested call gets an empty one).
pub(super) fn take_scratch() -> Vec<f32> {
    SCRATCH.with(|s| s.take())
}

/// Returns a scratch buffer to this thread, keeping the larger of it and whatever the thread holds now.
pub(super) fn give_back_scratch(v: Vec<f32>) {
    SCRATCH.with(|s| {
        let held = s.take();
        s.set(if held.capacity() >= v.capacity() {
            held
        } else {
            v
        });
    });
}

/// `conv2d_same` of `x` `[N, Cin, H, W]` with `weight` `[Cout, Cin, k, k]` (row-major), per image and row tile.
pub(super) fn conv_same_f32(
    x: &[f32],
    [n, cin, h, w]: [usize; 4],
    weight: &[f32],
    cout: usize,
    k: usize,
) -> Vec<f32> {
    let geo = Geometry { cin, h, w, k };
    let hw = h * w;
    per_image(n, cout * hw, |i, out_i, par| {
        let xi = &x[i * cin * hw..][..cin * hw];
        let mut scratch = take_scratch();
        for (y0, y1) in geo.tiles() {
            let col = geo.columns(xi, y0, y1, &mut scratch);
            // out_i[:, tile] [Cout, T] = W [Cout, Cin k k] @ col [Cin k k, T]
            // SAFETY: `out_i` is this image's chunk of `cout * hw` values (`per_image`); the tile writes rows of
            // `(y1 - y0) * w` values at row stride `hw` from `y0 * w`, inside it. `weight` holds `cout * rows` values
            // (checked by the callers' shape checks in flex.rs) and `col` `rows * cols` (built by `columns`).
            unsafe {
                matmul(
                    out_i.add(y0 * w),
                    (cout, (y1 - y0) * w, hw),
                    false,
                    weight,
                    (geo.rows() as isize, 1),
                    col,
                    (geo.cols(y0, y1) as isize, 1),
                    geo.rows(),
                    par,
                )
            };
        }
        give_back_scratch(scratch);
    })
}

/// The sum of the consecutive `per`-value parts of `parts`, added in order (the result does not depend on how the
/// parts were scheduled).
pub(super) fn sum_in_order(parts: &[f32], per: usize) -> Vec<f32> {
    let mut sum = parts[..per].to_vec();
    for part in parts.chunks_exact(per).skip(1) {
        sum.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    sum
}

#[derive(Clone, Copy)]
pub(super) struct OutPtr(pub(super) *mut f32);

impl OutPtr {
    /// The pointer `offset` values further. (A method, so closures capture the whole `Send` wrapper.)
    ///
    /// # Safety
    /// As `pointer::add`: the offset must stay inside the allocation.
    pub(super) unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}
// SAFETY: the pointer is only offset to the start of a chunk that one image alone writes (`per_image`), so sending it
// to, or sharing it between, worker threads never gives two threads the same memory.
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`: shared copies are used for disjoint chunks only.
unsafe impl Sync for OutPtr {}

/// A vector of `n` chunks of `chunk` values, chunk `i` written by `f(i, pointer to the chunk, parallelism)`, which
/// must write every value of its chunk (the vector is not zeroed first: gemm writes its output without reading it).
/// Images run in parallel with single-threaded gemm when there are at least as many images as threads, otherwise one
/// at a time with gemm using every thread.
pub(super) fn per_image<F>(n: usize, chunk: usize, f: F) -> Vec<f32>
where
    F: Fn(usize, *mut f32, gemm::Parallelism) + Send + Sync,
{
    let mut out: Vec<f32> = Vec::with_capacity(n * chunk);
    let base = OutPtr(out.spare_capacity_mut().as_mut_ptr().cast());
    let threads = rayon::current_num_threads();
    if n >= threads && threads > 1 {
        // SAFETY: `i < n`, so `i * chunk` is inside the `n * chunk` capacity.
        (0..n)
            .into_par_iter()
            .for_each(|i| f(i, unsafe { base.at(i * chunk) }, gemm::Parallelism::None));
    } else {
        let par = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: as above, `i * chunk` with `i < n` is inside the capacity.
        (0..n).for_each(|i| f(i, unsafe { base.at(i * chunk) }, par));
    }
    // SAFETY: every chunk was written by `f`.
    unsafe { out.set_len(n * chunk) };
    out
}

/// `dst [m, n] = lhs [m, kk] @ rhs [kk, n]` (`+=` with `accumulate`; otherwise `dst` is written without being read),
/// `dst` row-major with row stride `dst_rs`; `lhs` and `rhs` given as (row stride, column stride).
///
/// # Safety
/// `dst` must be valid for the `m` rows of `n` values at row stride `dst_rs`, and the strides must keep every addressed
/// element inside `lhs` and `rhs`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn matmul(
    dst: *mut f32,
    (m, n, dst_rs): (usize, usize, usize),
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (isize, isize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (isize, isize),
    kk: usize,
    par: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        n,
        kk,
        dst,
        1,
        dst_rs as isize,
        accumulate,
        lhs.as_ptr(),
        lhs_cs,
        lhs_rs,
        rhs.as_ptr(),
        rhs_cs,
        rhs_rs,
        if accumulate { 1.0 } else { 0.0 },
        1.0,
        false,
        false,
        false,
        par,
    );
}
