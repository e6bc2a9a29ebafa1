//! f32 matrix products as three bf16 products on Intel AMX tiles (`--matmul bf16x3`).
//!
//! Each f32 operand is split into a bf16 high part and the bf16 rounding of what remains
//! (`x = hi + lo` to 16 bits of mantissa), and `x·w` is accumulated in f32 as
//! `hi·hi' + hi·lo' + lo·hi'` by AMX's `tdpbf16ps` (the `lo·lo'` term, 2^-16 of the product, is
//! dropped): the "bf16x3" of Henry, Tang and Heinecke, "Leveraging the bfloat16 Artificial
//! Intelligence Datatype For Higher-Precision Computations" (ARITH 2019). On the pass's shapes its
//! error is about 4e-6 of the largest output (f32's own about 1e-7; bf16 alone, as
//! `torch.set_float32_matmul_precision("medium")`, 2e-3), and it runs faster than f32 FMA on the
//! same cores (README, "Benchmarks"). AMX treats bf16 denormals as zero and flushes
//! f32 denormal sums, so values below ~1e-38 count as zero; f32 values within 2^-9 of the largest
//! finite value round to infinity, and an infinite operand gives NaN (its remainder is NaN) where
//! f32 would give an infinity: a diverged model's losses are NaN either way.
//!
//! Layouts, as `tdpbf16ps` reads them: the left operand (rows `x` `[m, k]`, `m` rounded up to 32
//! rows and `k` to 32 columns with zeros) in blocks of 32 rows, each block's tiles for one 32 values
//! of `k` contiguous (hi of rows 0-15 and 16-31, then lo), so that a block streams as one run of
//! memory; the right (`W` `[n, k]`, used as `Wᵀ`) in panels of 16 output columns, each
//! `[k / 2][16][2]` ("VNNI": the two bf16 of consecutive `k` side by side), packed by each thread
//! for about 1 MiB of its columns at a time, which stays in its L2 cache while every block of rows
//! passes over it. A block of 32 x 32 outputs is four accumulator tiles fed by two left and two
//! right tiles per 32 values of `k` (the eight tile registers): ten tile loads for twelve tile
//! products (the `transformer_path` bench times whole paths with either precision).

use std::arch::asm;
use std::ops::Range;
use std::sync::OnceLock;

/// Rows (and columns) of an output block: two tiles of 16.
const BLOCK: usize = 32;
/// Values of `k` per pass over the output blocks (the accumulators are stored and reloaded
/// between passes): measured 1,536 as fast as one pass on 768- and 3,072-deep products.
const DEPTH_PER_PASS: usize = 1536;

/// Whether this process can run the AMX products: the processor has AMX tiles with bf16 and
/// AVX-512 (for the splitting), and Linux granted the process the tiles' register state (checked
/// once).
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| cpu_has_amx_bf16() && crate::models::fast_math::has_avx512() && request_tile_state())
}

/// AMX-TILE and AMX-BF16 in CPUID leaf 7 (EDX bits 24 and 22).
fn cpu_has_amx_bf16() -> bool {
    #[allow(unused_unsafe)] // `__cpuid` is safe on recent toolchains.
    // SAFETY: CPUID exists on every x86-64 processor.
    let (max_leaf, edx) = unsafe {
        let max_leaf = std::arch::x86_64::__cpuid(0).eax;
        let edx = if max_leaf >= 7 {
            std::arch::x86_64::__cpuid_count(7, 0).edx
        } else {
            0
        };
        (max_leaf, edx)
    };
    max_leaf >= 7 && edx & (1 << 24) != 0 && edx & (1 << 22) != 0
}

/// Asks Linux for the tile registers' state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`),
/// which a process must do once before its first tile instruction.
fn request_tile_state() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a system call with integer arguments; it changes only this process's permissions.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

/// The left operand of a product, split and laid out for the tiles.
pub(crate) struct Left {
    /// Per block of 32 rows, per 32 values of `k`: four 16 x 32 tiles, contiguous (the hi parts of
    /// rows 0-15 and 16-31, then the lo parts), so that a block streams as one run of memory.
    tiles: Vec<u16>,
    rows: usize,
    /// `k` rounded up to 32.
    depth: usize,
}

/// Values of one block-step of [`Left`]: four tiles of 16 x 32.
const LEFT_STEP: usize = 4 * 512;

/// The right operand `W` `[n, k]` of a product `x Wᵀ`: `W[j][kk]` is
/// `values[j * column_stride + kk * depth_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct Right<'a> {
    pub values: &'a [f32],
    pub columns: usize,
    pub depth: usize,
    pub column_stride: usize,
    pub depth_stride: usize,
}

impl Right<'_> {
    /// Whether every value the strides address lies in `values`.
    fn in_bounds(&self) -> bool {
        self.columns == 0
            || self.depth == 0
            || (self.columns - 1) * self.column_stride + (self.depth - 1) * self.depth_stride < self.values.len()
    }
}

/// Splits the rows `x` `[m, k]` (row-major) for [`multiply`], blocks of 32 rows in parallel.
/// Panics where the products cannot run ([`available`] false).
pub(crate) fn pack_left(x: &[f32], m: usize, k: usize) -> Left {
    use rayon::prelude::*;
    assert!(available(), "bf16x3 products need AMX tiles and AVX-512");
    assert!(x.len() >= m * k, "bf16x3: {} values for {m} x {k} rows", x.len());
    let depth = k.next_multiple_of(BLOCK);
    let steps = depth / 32;
    let blocks = m.div_ceil(BLOCK);
    // A buffer of an earlier product when there is one (a whole eval set's layers would otherwise
    // fault in fresh pages each time), grown only: every value used is written below, zeros in
    // the padding.
    let size = blocks * steps * LEFT_STEP;
    let mut tiles = LEFT_BUFFER.take();
    if tiles.len() < size {
        tiles.resize(size, 0);
    }
    if k > 0 {
        tiles[..size]
            .par_chunks_mut(steps * LEFT_STEP)
            .enumerate()
            .for_each(|(block, tiles)| {
                let first = block * BLOCK;
                let rows = &x[first * k..(first + BLOCK).min(m) * k];
                // SAFETY: AVX-512 is there (`available`, asserted above).
                unsafe { pack_left_block(rows, k, tiles) };
            });
    }
    Left { tiles, rows: m, depth }
}

/// Packs the (up to 32) rows `rows` of `k` values into one block's tiles ([`Left::tiles`]).
#[target_feature(enable = "avx512f,avx512bw")]
fn pack_left_block(rows: &[f32], k: usize, tiles: &mut [u16]) {
    use std::arch::x86_64::*;
    let upper_halves = upper_halves_of_two();
    for r in 0..BLOCK {
        // Row r's place in the tiles of hi (the lo tiles are 1,024 values further).
        let place = (r / 16) * 512 + (r % 16) * 32;
        let row = rows.get(r * k..(r + 1) * k).unwrap_or(&[]);
        for (step, tiles) in tiles.chunks_exact_mut(LEFT_STEP).enumerate() {
            let (hi, lo) = tiles[place..].split_at_mut(1024);
            let values = row.get(step * 32..).unwrap_or(&[]);
            if let Some(values) = values.get(..32) {
                // SAFETY: 32 values are read, 32 written to each of `hi` and `lo`.
                unsafe {
                    let (hi_a, lo_a) = split16(_mm512_loadu_ps(values.as_ptr()));
                    let (hi_b, lo_b) = split16(_mm512_loadu_ps(values.as_ptr().add(16)));
                    _mm512_storeu_si512(
                        hi.as_mut_ptr().cast(),
                        _mm512_permutex2var_epi16(hi_a, upper_halves, hi_b),
                    );
                    _mm512_storeu_si512(
                        lo.as_mut_ptr().cast(),
                        _mm512_permutex2var_epi16(lo_a, upper_halves, lo_b),
                    );
                }
            } else {
                // The last step of a row (k not a multiple of 32) or a row beyond `m`.
                for t in 0..32 {
                    (hi[t], lo[t]) = split(values.get(t).copied().unwrap_or(0.0));
                }
            }
        }
    }
}

impl Drop for Left {
    fn drop(&mut self) {
        LEFT_BUFFER.set(std::mem::take(&mut self.tiles));
    }
}

/// `out[i * ldc + j]` for every row `i < m` of `left` and every column `j` of `columns`: the
/// product `Σ x[i][kk] W[j][kk]`, added to the value there when `accumulate`, written over it
/// otherwise. Runs on the calling thread; callers cut the columns into one range per thread.
///
/// # Safety
/// [`available`] must be true; `out` must be valid for writes (and reads when `accumulate`) of
/// `m` rows of `ldc` values with `columns.end <= ldc`, and no other thread may access those
/// columns meanwhile.
pub(crate) unsafe fn multiply(
    left: &Left,
    right: Right,
    columns: Range<usize>,
    out: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    assert!(right.in_bounds(), "bf16x3: right operand out of its storage");
    assert!(columns.end <= right.columns.min(ldc) && left.depth == right.depth.next_multiple_of(BLOCK));
    if columns.is_empty() || left.rows == 0 {
        return;
    }
    let depth = left.depth;
    let panel_columns = columns_per_packing(depth, columns.len());
    // SAFETY (of the block): the caller's contract; every tile address lies in the packed operands
    // (rows < rows rounded up to 32, columns < the packed ones rounded up to 32, k < depth) or in
    // `out` / the scratch block.
    unsafe {
        RIGHT_SCRATCH.with_borrow_mut(|(hi, lo)| {
            // Every value is written by `pack_right` (zeros in the padding).
            hi.resize(panel_columns * depth, 0);
            lo.resize(panel_columns * depth, 0);
            let _tiles = Tiles::configure();
            for first in columns.clone().step_by(panel_columns) {
                let count = panel_columns.min(columns.end - first);
                pack_right(right, first, count, depth, hi, lo);
                for i in (0..left.rows).step_by(BLOCK) {
                    for k0 in (0..depth).step_by(DEPTH_PER_PASS) {
                        let k1 = (k0 + DEPTH_PER_PASS).min(depth);
                        let load = accumulate || k0 > 0;
                        for j in (0..count).step_by(BLOCK) {
                            let block = Block {
                                left: left.tiles.as_ptr().add(i / BLOCK * (depth / 32) * LEFT_STEP),
                                right_hi: hi.as_ptr().add(j * depth),
                                right_lo: lo.as_ptr().add(j * depth),
                                right_panel: 16 * depth,
                                depth: k0..k1,
                            };
                            let rows = (left.rows - i).min(BLOCK);
                            let cols = (count - j).min(BLOCK);
                            let c = out.add(i * ldc + first + j);
                            if rows == BLOCK && cols == BLOCK {
                                block.run(c, ldc * 4, load);
                            } else {
                                block.run_at_edge(c, ldc, rows, cols, load);
                            }
                        }
                    }
                }
            }
        })
    }
}

/// Output columns packed at a time, out of `columns`: a packing of at most about 1 MiB (hi and lo),
/// which stays in the core's L2 cache while every block of rows passes over it; whole blocks of
/// 32, at least one.
fn columns_per_packing(depth: usize, columns: usize) -> usize {
    const BYTES: usize = 1 << 20;
    let most = (BYTES / (4 * depth.max(1)) / BLOCK * BLOCK).max(BLOCK);
    // As many packings as needed, of equal widths.
    columns.div_ceil(columns.div_ceil(most)).next_multiple_of(BLOCK)
}

thread_local! {
    /// The buffer of this thread's last [`Left`], for the next.
    static LEFT_BUFFER: std::cell::Cell<Vec<u16>> = const { std::cell::Cell::new(Vec::new()) };
    /// Each thread's packed right operand (hi, lo), reused across products so that its pages are
    /// not faulted in anew for every layer.
    static RIGHT_SCRATCH: std::cell::RefCell<(Vec<u16>, Vec<u16>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// 32 x 32 f32 outputs, aligned for the tile loads.
#[repr(C, align(64))]
struct EdgeBlock([f32; BLOCK * BLOCK]);

/// The tile registers configured as eight 16 x 64-byte tiles for this thread, released on drop.
struct Tiles;

impl Tiles {
    /// # Safety
    /// [`available`] must be true.
    unsafe fn configure() -> Self {
        /// The 64-byte `ldtilecfg` operand (palette 1).
        #[repr(C, align(64))]
        struct Config {
            palette: u8,
            start_row: u8,
            reserved: [u8; 14],
            bytes_per_row: [u16; 16],
            rows: [u8; 16],
        }
        let mut config = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        config.bytes_per_row[..8].fill(64);
        config.rows[..8].fill(16);
        // SAFETY: the caller's contract (AMX exists); the operand is a valid palette-1 configuration.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &config as *const Config, options(nostack, readonly)) };
        Tiles
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: the tiles were configured by `configure` (so AMX exists); releasing them returns
        // the thread to the state without tile data.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

/// One 32 x 32 output block over a range of `k`, with its operands' tile addresses.
struct Block {
    /// The block's left tiles ([`Left::tiles`]) at `k` = 0.
    left: *const u16,
    right_hi: *const u16,
    right_lo: *const u16,
    /// Values between the block's two right panels.
    right_panel: usize,
    depth: Range<usize>,
}

impl Block {
    /// As [`Block::run`] for a block of which only `rows` x `cols` lie in the output (`ldc`
    /// values between rows): it runs on a full 32 x 32 scratch block.
    ///
    /// # Safety
    /// As [`Block::run`], with `c` valid for `rows` rows of `cols` values.
    unsafe fn run_at_edge(&self, c: *mut f32, ldc: usize, rows: usize, cols: usize, load: bool) {
        let mut scratch = EdgeBlock([0f32; BLOCK * BLOCK]);
        // SAFETY: the caller's contract; the scratch holds 32 x 32 values.
        unsafe {
            if load {
                for r in 0..rows {
                    std::ptr::copy_nonoverlapping(c.add(r * ldc), scratch.0.as_mut_ptr().add(r * BLOCK), cols);
                }
            }
            self.run(scratch.0.as_mut_ptr(), BLOCK * 4, load);
            for r in 0..rows {
                std::ptr::copy_nonoverlapping(scratch.0.as_ptr().add(r * BLOCK), c.add(r * ldc), cols);
            }
        }
    }

    /// Computes the block into `c` (`stride` bytes between rows), starting from the values there
    /// when `load`, from zeros otherwise. Per 32 values of `k`: ten tile loads feed twelve tile
    /// products (hi·hi', hi·lo' and lo·hi' for each of the four output tiles).
    ///
    /// # Safety
    /// Tiles configured; the operands valid over `depth`, `c` for 32 rows of `stride` bytes.
    #[inline(always)]
    #[allow(unsafe_op_in_unsafe_fn)] // One contract, this function's, for a body of tile instructions.
    unsafe fn run(&self, c: *mut f32, stride: usize, load: bool) {
        let row16 = stride * 16 / 4;
        if load {
            asm!(
                "tileloadd tmm0, [{c00} + {s}*1]",
                "tileloadd tmm1, [{c01} + {s}*1]",
                "tileloadd tmm2, [{c10} + {s}*1]",
                "tileloadd tmm3, [{c11} + {s}*1]",
                c00 = in(reg) c, c01 = in(reg) c.add(16), c10 = in(reg) c.add(row16), c11 = in(reg) c.add(row16 + 16),
                s = in(reg) stride, options(nostack, readonly)
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
        }
        let mut kk = self.depth.start;
        while kk < self.depth.end {
            asm!(
                "tileloadd tmm6, [{bh0} + {sb}*1]",
                "tileloadd tmm4, [{a} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{bh1} + {sb}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a} + {sb}*1 + 1024]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "tileloadd tmm4, [{a} + {sb}*1 + 2048]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a} + {sb}*1 + 3072]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "tileloadd tmm6, [{bl0} + {sb}*1]",
                "tileloadd tmm4, [{a} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{bl1} + {sb}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a} + {sb}*1 + 1024]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a = in(reg) self.left.add(kk / 32 * LEFT_STEP),
                bh0 = in(reg) self.right_hi.add(kk * 16),
                bh1 = in(reg) self.right_hi.add(self.right_panel + kk * 16),
                bl0 = in(reg) self.right_lo.add(kk * 16),
                bl1 = in(reg) self.right_lo.add(self.right_panel + kk * 16),
                sb = in(reg) 64usize,
                options(nostack, readonly)
            );
            kk += 32;
        }
        asm!(
            "tilestored [{c00} + {s}*1], tmm0",
            "tilestored [{c01} + {s}*1], tmm1",
            "tilestored [{c10} + {s}*1], tmm2",
            "tilestored [{c11} + {s}*1], tmm3",
            c00 = in(reg) c, c01 = in(reg) c.add(16), c10 = in(reg) c.add(row16), c11 = in(reg) c.add(row16 + 16),
            s = in(reg) stride, options(nostack)
        );
    }
}

/// The bf16 nearest `x` (ties to even), as its 16 bits.
#[inline(always)]
fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    (bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// `x` as a bf16 high part and the bf16 of the remainder.
#[inline(always)]
fn split(x: f32) -> (u16, u16) {
    let hi = to_bf16(x);
    (hi, to_bf16(x - f32::from_bits(u32::from(hi) << 16)))
}

/// Packs the columns `first..first + count` of `right` (rounded up to 32 with zero columns, `k`
/// to `depth` with zeros) into `hi` and `lo` panels of 16 columns, `[depth / 2][16][2]` each, one
/// 16 x 32 chunk (one tile of each) at a time.
fn pack_right(right: Right, first: usize, count: usize, depth: usize, hi: &mut [u16], lo: &mut [u16]) {
    let panels = count.next_multiple_of(BLOCK) / 16;
    for panel in 0..panels {
        let j0 = first + panel * 16;
        for k0 in (0..depth).step_by(32) {
            let at = panel * 16 * depth + k0 * 16;
            let (hi, lo) = (&mut hi[at..at + 512], &mut lo[at..at + 512]);
            let whole = j0 + 16 <= first + count && k0 + 32 <= right.depth;
            let start = j0 * right.column_stride + k0 * right.depth_stride;
            // SAFETY (both): AVX-512 is there (`available`); a whole chunk's 16 x 32 values lie in
            // `right.values` (`in_bounds`), and `hi`, `lo` hold 512 values each.
            if whole && right.depth_stride == 1 {
                unsafe { pack_chunk_of_rows(right.values[start..].as_ptr(), right.column_stride, hi, lo) };
            } else if whole && right.column_stride == 1 {
                unsafe { pack_chunk_of_columns(right.values[start..].as_ptr(), right.depth_stride, hi, lo) };
            } else {
                pack_chunk_at_edge(right, j0..(first + count).min(j0 + 16), k0, hi, lo);
            }
        }
    }
}

/// The bf16 high parts and remainders of 16 f32, each bf16 in the upper half of its 32 bits.
#[target_feature(enable = "avx512f,avx512bw")]
fn split16(x: std::arch::x86_64::__m512) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512i) {
    use std::arch::x86_64::*;
    let upper = _mm512_set1_epi32(0xffff_0000u32 as i32);
    let round = |x: __m512| {
        let bits = _mm512_castps_si512(x);
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
        let rounded = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
        _mm512_and_si512(rounded, upper)
    };
    let hi = round(x);
    let lo = round(_mm512_sub_ps(x, _mm512_castsi512_ps(hi)));
    (hi, lo)
}

/// The `_mm512_permutex2var_epi16` indices of the upper 16 bits of each 32 of `a`, then of `b`:
/// from two [`split16`] results, the bf16 of 32 consecutive values in order (pairs of `k`).
#[target_feature(enable = "avx512f,avx512bw")]
fn upper_halves_of_two() -> std::arch::x86_64::__m512i {
    std::arch::x86_64::_mm512_set_epi16(
        63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9,
        7, 5, 3, 1,
    )
}

/// Transposes 16 x 16 u32 held in 16 registers (four stages of unpacks and lane shuffles).
#[target_feature(enable = "avx512f")]
fn transpose16(r: &mut [std::arch::x86_64::__m512i; 16]) {
    use std::arch::x86_64::*;
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for i in 0..4 {
        r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for i in 0..4 {
        t[i] = _mm512_shuffle_i32x4::<0x88>(r[i], r[i + 4]);
        t[i + 4] = _mm512_shuffle_i32x4::<0xdd>(r[i], r[i + 4]);
        t[i + 8] = _mm512_shuffle_i32x4::<0x88>(r[i + 8], r[i + 12]);
        t[i + 12] = _mm512_shuffle_i32x4::<0xdd>(r[i + 8], r[i + 12]);
    }
    for i in 0..8 {
        r[i] = _mm512_shuffle_i32x4::<0x88>(t[i], t[i + 8]);
        r[i + 8] = _mm512_shuffle_i32x4::<0xdd>(t[i], t[i + 8]);
    }
}

/// A whole chunk whose 16 columns are rows of 32 contiguous values, `row_stride` apart (`W` as
/// `nn.Linear` stores it): each row split and its bf16 paired, then the 16 x 16 pairs transposed.
///
/// # Safety
/// AVX-512; `src` valid for 16 rows of 32 values `row_stride` apart.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_chunk_of_rows(src: *const f32, row_stride: usize, hi: &mut [u16], lo: &mut [u16]) {
    use std::arch::x86_64::*;
    let upper_halves = upper_halves_of_two();
    let mut his = [_mm512_setzero_si512(); 16];
    let mut los = [_mm512_setzero_si512(); 16];
    for c in 0..16 {
        // SAFETY: the caller's contract.
        let (a, b) = unsafe {
            let row = src.add(c * row_stride);
            (_mm512_loadu_ps(row), _mm512_loadu_ps(row.add(16)))
        };
        let ((hi_a, lo_a), (hi_b, lo_b)) = (split16(a), split16(b));
        his[c] = _mm512_permutex2var_epi16(hi_a, upper_halves, hi_b);
        los[c] = _mm512_permutex2var_epi16(lo_a, upper_halves, lo_b);
    }
    transpose16(&mut his);
    transpose16(&mut los);
    for r in 0..16 {
        // SAFETY: `hi` and `lo` hold 512 values (32 per row `r`).
        unsafe {
            _mm512_storeu_si512(hi[r * 32..].as_mut_ptr().cast(), his[r]);
            _mm512_storeu_si512(lo[r * 32..].as_mut_ptr().cast(), los[r]);
        }
    }
}

/// A whole chunk whose 32 values of `k` are rows of 16 contiguous columns, `depth_stride` apart (`W`
/// stored transposed, as GPT-2's `Conv1D`): the two rows of each pair interleaved.
///
/// # Safety
/// AVX-512; `src` valid for 32 rows of 16 values `depth_stride` apart.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pack_chunk_of_columns(src: *const f32, depth_stride: usize, hi: &mut [u16], lo: &mut [u16]) {
    use std::arch::x86_64::*;
    let pair = |even: __m512i, odd: __m512i| {
        _mm512_or_si512(
            _mm512_srli_epi32::<16>(even),
            _mm512_and_si512(odd, _mm512_set1_epi32(0xffff_0000u32 as i32)),
        )
    };
    for r in 0..16 {
        // SAFETY: the caller's contract; `hi` and `lo` hold 512 values (32 per row `r`).
        unsafe {
            let (hi_even, lo_even) = split16(_mm512_loadu_ps(src.add(2 * r * depth_stride)));
            let (hi_odd, lo_odd) = split16(_mm512_loadu_ps(src.add((2 * r + 1) * depth_stride)));
            _mm512_storeu_si512(hi[r * 32..].as_mut_ptr().cast(), pair(hi_even, hi_odd));
            _mm512_storeu_si512(lo[r * 32..].as_mut_ptr().cast(), pair(lo_even, lo_odd));
        }
    }
}

/// A chunk at the right or bottom edge, or of other strides: the columns `columns` from `k0`,
/// zeros beyond the operand, one value at a time.
fn pack_chunk_at_edge(right: Right, columns: Range<usize>, k0: usize, hi: &mut [u16], lo: &mut [u16]) {
    for r in 0..16 {
        for c in 0..16 {
            for e in 0..2 {
                let (j, kk) = (columns.start + c, k0 + 2 * r + e);
                let x = if j < columns.end && kk < right.depth {
                    right.values[j * right.column_stride + kk * right.depth_stride]
                } else {
                    0.0
                };
                (hi[r * 32 + c * 2 + e], lo[r * 32 + c * 2 + e]) = split(x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x Wᵀ` in f64 for `W` `[n, k]` row-major.
    fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|t| f64::from(x[i * k + t]) * f64::from(w[j * k + t])).sum();
            }
        }
        out
    }

    fn values(count: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..count)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn the_split_keeps_sixteen_bits_of_mantissa() {
        for x in values(1000, 3).into_iter().chain([1.0, -3.75e-20, 6.0e30, 0.0]) {
            let (hi, lo) = split(x);
            let sum = f64::from(f32::from_bits(u32::from(hi) << 16)) + f64::from(f32::from_bits(u32::from(lo) << 16));
            assert!(
                (sum - f64::from(x)).abs() <= f64::from(x.abs()) * 2f64.powi(-16),
                "{x}: {sum}"
            );
        }
    }

    /// The vectorised packings of whole chunks give the bits the value-by-value one gives.
    #[test]
    fn whole_chunks_pack_as_value_by_value() {
        if !available() {
            eprintln!("skipped: this processor or system has no AMX bf16 tiles");
            return;
        }
        let (n, k) = (40, 70);
        let w = values(n * k, 5);
        let transposed: Vec<f32> = (0..k * n).map(|t| w[(t % n) * k + t / n]).collect();
        let rows = Right {
            values: &w,
            columns: n,
            depth: k,
            column_stride: k,
            depth_stride: 1,
        };
        let columns = Right {
            values: &transposed,
            columns: n,
            depth: k,
            column_stride: 1,
            depth_stride: n,
        };
        let (j0, k0) = (16, 32);
        let mut expected = (vec![0u16; 512], vec![0u16; 512]);
        pack_chunk_at_edge(rows, j0..j0 + 16, k0, &mut expected.0, &mut expected.1);
        let mut got = (vec![0u16; 512], vec![0u16; 512]);
        // SAFETY: AVX-512 (AMX implies it); 16 rows of 32 values from (j0, k0) lie in `w`.
        unsafe { pack_chunk_of_rows(w[j0 * k + k0..].as_ptr(), k, &mut got.0, &mut got.1) };
        assert_eq!(got, expected, "rows");
        let mut got = (vec![0u16; 512], vec![0u16; 512]);
        // SAFETY: as above, 32 rows of 16 columns in `transposed`.
        unsafe { pack_chunk_of_columns(transposed[k0 * n + j0..].as_ptr(), n, &mut got.0, &mut got.1) };
        assert_eq!(got, expected, "columns");
        let mut edge = (vec![0u16; 512], vec![0u16; 512]);
        pack_chunk_at_edge(columns, j0..j0 + 16, k0, &mut edge.0, &mut edge.1);
        assert_eq!(edge, expected, "strides");
    }

    /// The product against f64 on edges of every kind: rows, columns and depth that are not
    /// multiples of 32, a column range not starting at 0, accumulation, a transposed right operand,
    /// and depths over one pass.
    #[test]
    fn products_agree_with_f64_on_every_edge() {
        if !available() {
            eprintln!("skipped: this processor or system has no AMX bf16 tiles");
            return;
        }
        for &(m, n, k, first, accumulate) in &[
            (1, 1, 1, 0, false),
            (32, 32, 32, 0, false),
            (45, 70, 50, 0, true),
            (64, 96, 768, 16, false),
            (33, 40, 3100, 7, true),
            (100, 2, 64, 1, false),
        ] {
            let x = values(m * k, 1);
            let w = values(n * k, 2);
            let start = values(m * n, 4);
            let mut expected = reference(&x, &w, m, n, k);
            let mut out = start.clone();
            let left = pack_left(&x, m, k);
            let transposed: Vec<f32> = (0..k * n).map(|t| w[(t % n) * k + t / n]).collect();
            for (right, label) in [
                (
                    Right {
                        values: &w,
                        columns: n,
                        depth: k,
                        column_stride: k,
                        depth_stride: 1,
                    },
                    "row-major",
                ),
                (
                    Right {
                        values: &transposed,
                        columns: n,
                        depth: k,
                        column_stride: 1,
                        depth_stride: n,
                    },
                    "transposed",
                ),
            ] {
                // SAFETY: `out` holds m x n values; one thread.
                unsafe { multiply(&left, right, first..n, out.as_mut_ptr(), n, accumulate) };
                let largest = expected.iter().fold(0f64, |a, &b| a.max(b.abs()));
                for i in 0..m {
                    for j in 0..n {
                        let base = if accumulate { f64::from(start[i * n + j]) } else { 0.0 };
                        let want = if j < first {
                            f64::from(start[i * n + j])
                        } else {
                            base + expected[i * n + j]
                        };
                        let got = f64::from(out[i * n + j]);
                        assert!(
                            (got - want).abs() <= 1e-5 * largest.max(1.0),
                            "{label} {m}x{n}x{k} from {first}: ({i}, {j}) {got} vs {want}"
                        );
                    }
                }
                out.copy_from_slice(&start);
            }
            expected.clear();
        }
    }
}
