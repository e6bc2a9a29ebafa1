//! CPU kernels of the transformer forward pass that candle would run as many separate operations.
//!
//! [`attention`]: scaled dot-product attention fused per (sequence, head): the scores of one head
//! (`Lq x Lk`, small enough to stay in cache) are computed, scaled, biased and soft-maxed in one
//! buffer and mixed with the values straight into the `[B, Lq, heads * head]` output. Queries, keys
//! and values are read in place through their strides (no transposed or contiguous copies), no
//! `[B, heads, Lq, Lk]` tensor is materialised, and the heads run in parallel, each GEMM on its own
//! thread (rather than each small GEMM split over every core).
//!
//! [`linear`]: a linear layer as `gemm` products whose output starts as the bias, so the bias
//! costs neither a second pass over the output nor a temporary; the output's columns are cut into
//! one slice per thread, each its own single-threaded product ([`column_slices`]). In a same-run A/B of the
//! `transformer_path` bench (README, "Benchmarks") this ran Pythia-160m's path 7-11% faster than
//! faer's GEMM (whose kernels were slower on the 768 x 50304 output layer) and BERT-base's as fast.
//! The CNNs' convolutions run their products on it too when no gradient is taken
//! ([`crate::models::cnn::layers::conv2d`]: weight `[O, C·k·k]` times the im2col matrix, read
//! transposed in place).

use candle_core::{CpuStorage, DType, Layout, Tensor};
use rayon::prelude::*;

use crate::models::fast_math;
use crate::models::matmul::{self, MatmulPrecision};
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use crate::models::transformer::bf16x3;
use crate::models::transformer::causal::Activation;

/// A tensor's f32 values on the CPU, with its layout (read through `storage_and_layout`).
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32], &Layout) -> candle_core::Result<R>) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        candle_core::Storage::Cpu(CpuStorage::F32(values)) => f(values, layout),
        _ => candle_core::bail!("CPU attention needs f32 tensors on the CPU"),
    }
}

/// Offsets and strides of a rank-4 `[B, heads, L, head]` view: (start, [4 strides]).
fn strides4(layout: &Layout) -> candle_core::Result<(usize, [usize; 4])> {
    match layout.stride() {
        &[a, b, c, d] => Ok((layout.start_offset(), [a, b, c, d])),
        other => candle_core::bail!("CPU attention: expected a rank-4 tensor, got strides {other:?}"),
    }
}

/// A raw pointer that tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes only its own part of the output: a (sequence, head) block in
// `attention`, a slice of output columns in `linear`.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    fn at(self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

/// How [`linear`] reads a weight `[n, k]`: its column and row strides as the right-hand side
/// `Wᵀ` `[k, n]` of the product, when its storage is dense in one of the two layouts.
fn weight_strides(weight: &Tensor, n: usize, k: usize) -> Option<(isize, isize)> {
    match *weight.stride() {
        // Row-major `[n, k]`, as `nn.Linear` stores it.
        [row, 1] if row == k => Some((k as isize, 1)),
        // Stored transposed (`[k, n]` row-major, viewed as `[n, k]`): GPT-2's `Conv1D` weights,
        // read in place (they were copied to `[n, k]` at every pass).
        [1, column] if column == n => Some((1, n as isize)),
        _ => None,
    }
}

/// `x Wᵀ + b` for rows `x` `[m, k]`, a weight `W` `[n, k]` (as `nn.Linear` stores it, or a
/// transposed view of `[k, n]` values; other layouts are copied first) and an optional bias `[n]`,
/// all f32 on the CPU, then `then` done in place to the product (an MLP's activation), so that it
/// makes one `[m, n]` buffer, not two; returns `[m, n]`.
pub(crate) fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, then: Then) -> candle_core::Result<Tensor> {
    let (m, k) = x.dims2()?;
    let (n, weight_k) = weight.dims2()?;
    if weight_k != k {
        candle_core::bail!(
            "CPU linear: input {:?} does not fit weight {:?}",
            x.dims(),
            weight.dims()
        );
    }
    let bias = match bias {
        Some(bias) if bias.dims() == [n] => Some(bias.to_vec1::<f32>()?),
        Some(bias) => candle_core::bail!(
            "CPU linear: bias {:?} does not fit weight {:?}",
            bias.dims(),
            weight.dims()
        ),
        None => None,
    };
    // The output starts as the bias, which the product is added to; with an activation the bias
    // is added in the activation's pass instead (one pass fewer over an MLP's widest state: BERT-
    // base 2.53 -> 2.39 s and Pythia-160m 3.75 -> 3.63 s per path in a same-run A/B, medians).
    let bias_first = bias.as_ref().filter(|_| matches!(then, Then::Nothing));
    let mut out = match bias_first {
        Some(bias) => bias.repeat(m),
        // Zeros only when there is no product to write (k = 0); otherwise the product is written
        // over uninitialised memory (a language model's output layer is 1024 x 50304 values per
        // pass, whose zeroing took 1.7% of a Pythia-160m path).
        None if k == 0 => vec![0f32; m * n],
        None => Vec::with_capacity(m * n),
    };
    let x = x.contiguous()?;
    let (weight, (rhs_cs, rhs_rs)) = match weight_strides(weight, n, k) {
        Some(strides) => (weight.clone(), strides),
        None => (weight.contiguous()?, (k as isize, 1)),
    };
    with_f32(&x, |xs, x_layout| {
        with_f32(&weight, |ws, w_layout| {
            let (Some(xs), Some(ws)) = (
                xs.get(x_layout.start_offset()..x_layout.start_offset() + m * k),
                ws.get(w_layout.start_offset()..w_layout.start_offset() + n * k),
            ) else {
                candle_core::bail!("CPU linear: storage shorter than its layout");
            };
            let out = SharedOut(out.as_mut_ptr());
            #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
            if matmul::current() == MatmulPrecision::Bf16x3 && k > 0 {
                let right = bf16x3::Right {
                    values: ws,
                    columns: n,
                    depth: k,
                    column_stride: rhs_cs as usize,
                    depth_stride: rhs_rs as usize,
                };
                let left = bf16x3::pack_left(xs, m, k);
                // Slices of whole 32-column output blocks.
                column_ranges(n, column_slices(n), 32)
                    .into_par_iter()
                    .for_each(|columns| {
                        // SAFETY: `current()` is bf16x3 only where AMX is available; `out` has room for
                        // m x n values (see `product` below) and each slice writes only its columns.
                        unsafe { bf16x3::multiply(&left, right, columns, out.at(0), n, bias_first.is_some()) };
                    });
                return Ok(());
            }
            let product = |first: usize, columns: usize, parallelism: gemm::Parallelism| {
                // SAFETY: the slices hold m x k and n x k values (the weight's n x k in either
                // layout of `weight_strides`); `out` has room for m x n (its length when it starts
                // as the bias or as zeros, else its capacity); `first + columns <= n`, and each
                // call writes only the output columns `first..first + columns`.
                unsafe {
                    gemm::gemm(
                        m,
                        columns,
                        k,
                        out.at(first),
                        1,
                        n as isize,
                        bias_first.is_some(),
                        xs.as_ptr(),
                        1,
                        k as isize,
                        ws.as_ptr().wrapping_offset(first as isize * rhs_cs),
                        rhs_cs,
                        rhs_rs,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        parallelism,
                    );
                }
            };
            let slices = column_slices(n);
            if slices == 1 {
                product(0, n, gemm::Parallelism::Rayon(0));
            } else {
                column_ranges(n, slices, 1)
                    .into_par_iter()
                    .for_each(|columns| product(columns.start, columns.len(), gemm::Parallelism::None));
            }
            Ok(())
        })
    })?;
    if out.len() < m * n {
        // SAFETY: not starting from the bias, `gemm` was told not to read the output (`read_dst`
        // false) and wrote all of its m x n values (k > 0 here); the capacity is m x n.
        unsafe { out.set_len(m * n) };
    }
    if let Then::Activate(activation) = then {
        let bias = bias.unwrap_or_else(|| vec![0.0; n]);
        activate_in_place(&mut out, &bias, activation);
    }
    Tensor::from_vec(out, (m, n), x.device())
}

/// Output columns a slice of [`linear`]'s product has at least: in a micro-benchmark on the pass's
/// shapes (1,024 rows), slices of 64 columns ran 5-10% slower than slices of 384.
const MIN_SLICE_COLUMNS: usize = 64;

/// Into how many slices of output columns [`linear`] cuts an `n`-column product, one single-threaded
/// GEMM each, run in parallel: one per thread, each of at least [`MIN_SLICE_COLUMNS`]. gemm's own
/// threading of a whole product ran 15-20% slower on the 768-column outputs of BERT-base and
/// Pythia-160m (1,024 x 768 by 768 and by 3,072: 240-265 GFLOP/s on this project's 2-core Xeon,
/// 300-310 as two 384-column slices). A single slice leaves the threading to gemm.
fn column_slices(n: usize) -> usize {
    (n / MIN_SLICE_COLUMNS).clamp(1, rayon::current_num_threads())
}

/// The `n` output columns cut into at most `slices` ranges of equal width (a multiple of
/// `multiple`; the last one shorter), none empty.
fn column_ranges(n: usize, slices: usize, multiple: usize) -> Vec<std::ops::Range<usize>> {
    let width = n.div_ceil(slices.max(1)).next_multiple_of(multiple).max(1);
    (0..n)
        .step_by(width)
        .map(|first| first..(first + width).min(n))
        .collect()
}

/// What [`linear`] does to its product, in place, after the matrix product.
#[derive(Clone, Copy)]
pub(crate) enum Then {
    /// Nothing: the product plus the bias.
    Nothing,
    /// The activation of product plus bias.
    Activate(Activation),
}

/// Values per parallel task of the element-wise kernels.
const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// `activation(value + bias)` of every value of the rows `values` (each as long as `bias`), in
/// place: chunks of rows in parallel, each loop vectorised (AVX-512 or AVX2 where the processor
/// has it), where candle runs the GELUs' scalar erf and tanh on one thread. The GELUs by
/// [`fast_math::gelu_erf`] and [`fast_math::gelu_tanh`]; ReLU keeps NaN (as `torch.relu`).
pub(crate) fn activate_in_place(values: &mut [f32], bias: &[f32], activation: Activation) {
    let kernel: fn(&mut [f32], &[f32]) = match activation {
        Activation::Gelu => gelu_erf_row,
        Activation::GeluTanh => gelu_tanh_row,
        Activation::Relu => relu_row,
    };
    let width = bias.len().max(1);
    values
        .par_chunks_mut(width * (ELEMENTWISE_CHUNK / width).max(1))
        .for_each(|rows| rows.chunks_mut(width).for_each(|row| kernel(row, bias)));
}

fast_math::multiversioned! {
    /// [`fast_math::gelu_erf`] of each value plus its bias, in place, vectorised.
    fn gelu_erf_row(values: &mut [f32], bias: &[f32]) => gelu_erf_simd
}

fast_math::multiversioned! {
    /// [`fast_math::gelu_tanh`] of each value plus its bias, in place, vectorised.
    fn gelu_tanh_row(values: &mut [f32], bias: &[f32]) => gelu_tanh_simd
}

fast_math::multiversioned! {
    /// ReLU of each value plus its bias, in place, vectorised.
    fn relu_row(values: &mut [f32], bias: &[f32]) => relu_simd
}

#[inline(always)]
fn gelu_erf_simd(values: &mut [f32], bias: &[f32]) {
    values
        .iter_mut()
        .zip(bias)
        .for_each(|(v, &b)| *v = fast_math::gelu_erf(*v + b));
}

#[inline(always)]
fn gelu_tanh_simd(values: &mut [f32], bias: &[f32]) {
    values
        .iter_mut()
        .zip(bias)
        .for_each(|(v, &b)| *v = fast_math::gelu_tanh(*v + b));
}

#[inline(always)]
fn relu_simd(values: &mut [f32], bias: &[f32]) {
    values
        .iter_mut()
        .zip(bias)
        .for_each(|(v, &b)| *v = fast_math::relu(*v + b));
}

/// GPT-NeoX's rotary position embedding (rotate-half form, as `candle_nn::rotary_emb::rope`)
/// applied in place to the queries and keys of a fused projection `qkv` `[B, L, heads * 3 * head]`
/// (each head's query, key and value side by side, as `query_key_value` writes them): the first
/// `dims` values of each query and key rotated by the token's position, with `cos` and `sin`
/// `[L, dims / 2]`. `qkv` must be a contiguous f32 tensor on the CPU that shares its storage with
/// no tensor still in use (a projection's fresh output). Replaces three copies per query and key
/// (the rotated part made contiguous, rotated into a new tensor, concatenated with the rest).
pub(crate) fn rotate_queries_and_keys(
    qkv: &Tensor,
    head: usize,
    dims: usize,
    cos: &Tensor,
    sin: &Tensor,
) -> candle_core::Result<()> {
    let (_, len, width) = qkv.dims3()?;
    let half = dims / 2;
    if !dims.is_multiple_of(2) || dims > head || head == 0 || !width.is_multiple_of(3 * head) {
        candle_core::bail!("CPU rotary: {dims} rotary dims do not fit heads of {head} in rows of {width}");
    }
    if cos.dims() != [len, half] || sin.dims() != [len, half] {
        candle_core::bail!(
            "CPU rotary: cos {:?} and sin {:?} do not fit {len} positions x {half}",
            cos.dims(),
            sin.dims()
        );
    }
    let (cos, sin) = (cos.contiguous()?.to_vec2::<f32>()?, sin.contiguous()?.to_vec2::<f32>()?);
    qkv.inplace_op1(&RotateInPlace {
        len,
        width,
        head,
        half,
        cos: cos.concat(),
        sin: sin.concat(),
    })
}

/// The in-place op of [`rotate_queries_and_keys`].
struct RotateInPlace {
    len: usize,
    width: usize,
    head: usize,
    half: usize,
    /// `[len, half]`, row-major.
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl candle_core::InplaceOp1 for RotateInPlace {
    fn name(&self) -> &'static str {
        "rotate-queries-and-keys"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("CPU rotary needs an f32 tensor")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("CPU rotary needs a contiguous tensor")
        };
        let Some(values) = values.get_mut(start..end) else {
            candle_core::bail!("CPU rotary: storage shorter than its layout")
        };
        let (width, head, half) = (self.width, self.head, self.half);
        values.par_chunks_mut(width).enumerate().for_each(|(row, values)| {
            let at = (row % self.len) * half;
            let (cos, sin) = (&self.cos[at..at + half], &self.sin[at..at + half]);
            // Each head's query (offset 0) and key (offset `head`); values stay.
            for part in values
                .chunks_exact_mut(3 * head)
                .flat_map(|h| h[..2 * head].chunks_exact_mut(head))
            {
                let (first, second) = part[..2 * half].split_at_mut(half);
                for (((x1, x2), &c), &s) in first.iter_mut().zip(second).zip(cos).zip(sin) {
                    (*x1, *x2) = (*x1 * c - *x2 * s, *x2 * c + *x1 * s);
                }
            }
        });
        Ok(())
    }
}

/// A SwiGLU MLP's gated state `silu(gate) * up`, written over `gate` (`[.., width]` each): chunks
/// in parallel, vectorised, on [`fast_math::silu`], where candle runs silu on libm's exp and the
/// product as a second pass into a new tensor. Both must be contiguous f32 tensors on the CPU of
/// one shape, and `gate` must share its storage with no tensor still in use (a projection's fresh
/// output).
pub(crate) fn swiglu_in_place(gate: &Tensor, up: &Tensor) -> candle_core::Result<()> {
    if gate.shape() != up.shape() || !gate.is_contiguous() || !up.is_contiguous() {
        candle_core::bail!(
            "CPU SwiGLU: gate {:?} and up {:?} must be contiguous and of one shape",
            gate.dims(),
            up.dims()
        );
    }
    gate.inplace_op2(up, &SwiGluInPlace)
}

/// The in-place op of [`swiglu_in_place`].
struct SwiGluInPlace;

impl candle_core::InplaceOp2 for SwiGluInPlace {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(&self, gate: &mut CpuStorage, gl: &Layout, up: &CpuStorage, ul: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(gate), CpuStorage::F32(up)) = (gate, up) else {
            candle_core::bail!("CPU SwiGLU needs f32 tensors")
        };
        let (Some((g0, g1)), Some((u0, u1))) = (gl.contiguous_offsets(), ul.contiguous_offsets()) else {
            candle_core::bail!("CPU SwiGLU needs contiguous tensors")
        };
        let (Some(gate), Some(up)) = (gate.get_mut(g0..g1), up.get(u0..u1)) else {
            candle_core::bail!("CPU SwiGLU: storage shorter than its layout")
        };
        gate.par_chunks_mut(ELEMENTWISE_CHUNK)
            .zip(up.par_chunks(ELEMENTWISE_CHUNK))
            .for_each(|(gate, up)| swiglu_chunk(gate, up));
        Ok(())
    }
}

fast_math::multiversioned! {
    /// `silu(gate) * up` of each pair, into `gate`, vectorised.
    fn swiglu_chunk(gate: &mut [f32], up: &[f32]) => swiglu_simd
}

#[inline(always)]
fn swiglu_simd(gate: &mut [f32], up: &[f32]) {
    gate.iter_mut().zip(up).for_each(|(g, &u)| *g = fast_math::silu(*g) * u);
}

/// Whether [`attention`] and [`linear`] can run on these tensors.
pub(crate) fn supports(q: &Tensor) -> bool {
    q.device().is_cpu() && q.dtype() == DType::F32
}

/// `softmax(q kᵀ · scale + bias) v` for `q` `[B, heads, Lq, head]`, `k` and `v`
/// `[B, heads, Lk, head]` (any strides) and `bias` `[B, 1, Lq or 1, Lk]` (broadcast over heads, and
/// over queries when its third dimension is 1); returns `[B, Lq, heads * head]`.
pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, bias: &Tensor) -> candle_core::Result<Tensor> {
    let (b, heads, lq, head) = q.dims4()?;
    let lk = k.dim(2)?;
    let bias = bias.contiguous()?;
    let bias_rows = match bias.dims4()? {
        (bb, 1, rows, cols) if bb == b && (rows == lq || rows == 1) && cols == lk => rows,
        dims => candle_core::bail!("CPU attention: bias {dims:?} does not fit scores [{b}, {heads}, {lq}, {lk}]"),
    };
    if k.dims4()? != (b, heads, lk, head) || v.dims4()? != (b, heads, lk, head) {
        candle_core::bail!("CPU attention: q {:?}, k {:?}, v {:?}", q.dims(), k.dims(), v.dims());
    }
    let width = heads * head;
    let mut out = vec![0f32; b * lq * width];
    let shared = SharedOut(out.as_mut_ptr());
    let scale = scale as f32;
    with_f32(q, |qv, ql| {
        with_f32(k, |kv, kl| {
            with_f32(v, |vv, vl| {
                with_f32(&bias, |biases, bl| {
                    let (q0, qs) = strides4(ql)?;
                    let (k0, ks) = strides4(kl)?;
                    let (v0, vs) = strides4(vl)?;
                    let bias0 = bl.start_offset();
                    (0..b * heads).into_par_iter().for_each_init(
                        || vec![0f32; lq * lk],
                        |scores, job| {
                            let (s, h) = (job / heads, job % heads);
                            let (qo, ko, vo) = (
                                q0 + s * qs[0] + h * qs[1],
                                k0 + s * ks[0] + h * ks[1],
                                v0 + s * vs[0] + h * vs[1],
                            );
                            // SAFETY: the offsets and strides come from the tensors' own layouts,
                            // so every element read lies inside their storage; `scores` holds
                            // lq x lk values; the output block of (s, h) — rows s·lq.. of width
                            // `width`, columns h·head.. — is written by this task alone.
                            unsafe {
                                gemm::gemm(
                                    lq,
                                    lk,
                                    head,
                                    scores.as_mut_ptr(),
                                    1,
                                    lk as isize,
                                    false,
                                    qv.as_ptr().add(qo),
                                    qs[3] as isize,
                                    qs[2] as isize,
                                    kv.as_ptr().add(ko),
                                    ks[2] as isize,
                                    ks[3] as isize,
                                    0.0,
                                    scale,
                                    false,
                                    false,
                                    false,
                                    gemm::Parallelism::None,
                                );
                            }
                            for (i, row) in scores.chunks_exact_mut(lk).enumerate() {
                                let r = if bias_rows == 1 { 0 } else { i };
                                let bias_row = &biases[bias0 + (s * bias_rows + r) * lk..][..lk];
                                softmax_biased(row, bias_row);
                            }
                            unsafe {
                                gemm::gemm(
                                    lq,
                                    head,
                                    lk,
                                    shared.at(s * lq * width + h * head),
                                    1,
                                    width as isize,
                                    false,
                                    scores.as_ptr(),
                                    1,
                                    lk as isize,
                                    vv.as_ptr().add(vo),
                                    vs[3] as isize,
                                    vs[2] as isize,
                                    0.0,
                                    1.0,
                                    false,
                                    false,
                                    false,
                                    gemm::Parallelism::None,
                                );
                            }
                        },
                    );
                    Ok(())
                })
            })
        })
    })?;
    Tensor::from_vec(out, (b, lq, width), q.device())
}

fast_math::multiversioned! {
    /// `row = softmax(row + bias)` in place, in f32 (maximum subtracted first), through
    /// [`softmax_biased_simd`] compiled for AVX-512 or AVX2 + FMA where the processor has them.
    fn softmax_biased(row: &mut [f32], bias: &[f32]) => softmax_biased_simd
}

/// [`softmax_biased`] in loops the compiler vectorises: the exponentials by
/// [`fast_math::exp_nonpositive`] (masked scores far below the maximum take no slow underflow path,
/// as they did in libm's `expf`), the sum over [`SOFTMAX_LANES`] lanes. A NaN score makes the
/// row NaN, as in PyTorch.
#[inline(always)]
fn softmax_biased_simd(row: &mut [f32], bias: &[f32]) {
    // The maximum over SOFTMAX_LANES lanes (a comparison the compiler vectorises, where
    // `f32::max`'s NaN rule kept this loop scalar); a NaN score is passed over here and makes the
    // row NaN through its exponential.
    let mut maxes = [f32::NEG_INFINITY; SOFTMAX_LANES];
    let mut rows = row.chunks_exact_mut(SOFTMAX_LANES);
    let mut biases = bias.chunks_exact(SOFTMAX_LANES);
    for (chunk, bias) in rows.by_ref().zip(biases.by_ref()) {
        for ((m, x), &b) in maxes.iter_mut().zip(chunk).zip(bias) {
            *x += b;
            *m = if *x > *m { *x } else { *m };
        }
    }
    for (x, &b) in rows.into_remainder().iter_mut().zip(biases.remainder()) {
        *x += b;
        maxes[0] = if *x > maxes[0] { *x } else { maxes[0] };
    }
    let max = maxes
        .into_iter()
        .fold(f32::NEG_INFINITY, |m, x| if x > m { x } else { m });
    for x in row.iter_mut() {
        *x = fast_math::exp_nonpositive(*x - max);
    }
    let mut sums = [0f32; SOFTMAX_LANES];
    let chunks = row.chunks_exact(SOFTMAX_LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (s, &x) in sums.iter_mut().zip(chunk) {
            *s += x;
        }
    }
    let inverse = 1.0 / (sums.iter().sum::<f32>() + tail);
    for x in row.iter_mut() {
        *x *= inverse;
    }
}

/// Lanes of the softmax's maximum and sum (one AVX-512 register).
const SOFTMAX_LANES: usize = 16;

/// The largest absolute difference between two tensors of one shape (for this folder's tests).
#[cfg(test)]
pub(crate) fn largest_difference(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A NaN score (a diverged model) makes its row of probabilities NaN instead of vanishing.
    #[test]
    fn softmax_keeps_nan_and_sums_to_one() {
        let bias = vec![0f32; 19];
        let mut row: Vec<f32> = (0..19).map(|i| i as f32 * 0.5 - 3.0).collect();
        softmax_biased(&mut row, &bias);
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6, "{row:?}");
        let exact: f64 = (0..19).map(|i| (f64::from(i) * 0.5 - 9.0).exp()).sum();
        assert!((f64::from(row[18]) - 1.0 / exact).abs() < 1e-6);
        row[4] = f32::NAN;
        softmax_biased(&mut row, &bias);
        assert!(row.iter().all(|p| p.is_nan()), "{row:?}");
    }

    /// A weight stored transposed (`[k, n]` values viewed as `[n, k]`) or strided otherwise gives
    /// the product of the same weight stored as `nn.Linear` stores it.
    #[test]
    fn linear_reads_the_weight_in_either_layout() {
        let device = Device::Cpu;
        let (m, k, n) = (5, 7, 3);
        let x = Tensor::arange(0f32, (m * k) as f32, &device)
            .unwrap()
            .reshape((m, k))
            .unwrap();
        let x = (x * 0.1).unwrap();
        let weight = Tensor::arange(0f32, (n * k) as f32, &device)
            .unwrap()
            .reshape((n, k))
            .unwrap();
        let weight = ((weight * 0.37).unwrap().sin()).unwrap();
        let bias = Tensor::new(&[0.5f32, -1.0, 2.0], &device).unwrap();
        let expected = x.matmul(&weight.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        let row_major = linear(&x, &weight, Some(&bias), Then::Nothing).unwrap();
        assert!(largest_difference(&row_major, &expected) < 1e-5);
        let transposed = weight.t().unwrap().contiguous().unwrap().t().unwrap();
        assert_eq!(transposed.stride(), [1, n]);
        assert!(largest_difference(&linear(&x, &transposed, Some(&bias), Then::Nothing).unwrap(), &expected) < 1e-5);
        // Neither layout (every other column of a wider tensor): copied, same product.
        let wide = Tensor::cat(&[&weight, &weight], 1).unwrap().reshape((n, k, 2)).unwrap();
        let strided = wide.narrow(2, 0, 1).unwrap().squeeze(2).unwrap();
        assert_eq!(strided.stride(), [2 * k, 2]);
        let from_strided = linear(&x, &strided, None, Then::Nothing)
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        let expected_strided = x.matmul(&strided.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        assert!(largest_difference(&from_strided, &expected_strided) < 1e-5);
    }

    /// Rows of every length around the lane width, the maximum anywhere, masked keys (a bias of
    /// `f32::MIN`) exactly 0: the softmax of f64 arithmetic.
    #[test]
    fn softmax_matches_f64_at_every_length_and_mask() {
        for len in 1..=50usize {
            for peak in [0, len / 2, len - 1] {
                let scores: Vec<f32> = (0..len)
                    .map(|i| {
                        if i == peak {
                            4.0
                        } else {
                            ((i * 7) % 11) as f32 * 0.3 - 1.0
                        }
                    })
                    .collect();
                let bias: Vec<f32> = (0..len)
                    .map(|i| if i % 3 == 1 && i != peak { f32::MIN } else { 0.0 })
                    .collect();
                let mut row = scores.clone();
                softmax_biased(&mut row, &bias);
                let kept = |i: usize| bias[i] == 0.0;
                let total: f64 = (0..len)
                    .filter(|&i| kept(i))
                    .map(|i| f64::from(scores[i] - 4.0).exp())
                    .sum();
                for i in 0..len {
                    let exact = if kept(i) {
                        f64::from(scores[i] - 4.0).exp() / total
                    } else {
                        0.0
                    };
                    assert!(
                        (f64::from(row[i]) - exact).abs() < 1e-6,
                        "len {len}, peak {peak}, key {i}: {} vs {exact}",
                        row[i]
                    );
                    if !kept(i) {
                        assert_eq!(row[i], 0.0, "len {len}: a masked key must be exactly 0");
                    }
                }
            }
        }
    }

    /// Each activation of value plus bias in place, over several chunks of rows, against candle's
    /// (f64 erf, f32 tanh, max): the same values within the fast functions' error, NaN kept.
    #[test]
    fn activations_in_place_match_candle() {
        let (rows, width) = (3 * ELEMENTWISE_CHUNK / 100 + 5, 100);
        let n = rows * width;
        let mut values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.013).sin() * 7.0).collect();
        values[5] = f32::NAN;
        let bias: Vec<f32> = (0..width).map(|j| j as f32 * 0.02 - 1.0).collect();
        let x = Tensor::from_vec(values.clone(), (rows, width), &Device::Cpu)
            .unwrap()
            .broadcast_add(&Tensor::new(bias.as_slice(), &Device::Cpu).unwrap())
            .unwrap();
        for (activation, expected, tolerance) in [
            (Activation::Gelu, x.gelu_erf().unwrap(), 3e-6),
            (Activation::GeluTanh, x.gelu().unwrap(), 3e-6),
            (Activation::Relu, x.relu().unwrap(), 0.0),
        ] {
            let mut ours = values.clone();
            activate_in_place(&mut ours, &bias, activation);
            let expected = expected.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert!(ours[5].is_nan(), "{activation:?} of NaN");
            let worst = largest_gap_off_nan(&ours, &expected);
            assert!(worst <= tolerance, "{activation:?}: {worst}");
        }
    }

    /// The largest absolute difference between `ours` and `expected` where `ours` is not NaN.
    fn largest_gap_off_nan(ours: &[f32], expected: &[f32]) -> f32 {
        ours.iter()
            .zip(expected)
            .filter(|(a, _)| !a.is_nan())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    }

    /// `silu(gate) * up` in place gives candle's values, NaN kept; mismatched inputs are refused.
    #[test]
    fn swiglu_in_place_matches_candle() {
        let n = 17 * (3 * ELEMENTWISE_CHUNK / 17 + 5);
        let mut values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.011).sin() * 12.0).collect();
        values[7] = f32::NAN;
        let gate = Tensor::from_vec(values, (n / 17, 17), &Device::Cpu).unwrap();
        let up = Tensor::from_vec(
            (0..n).map(|i| (i as f32 * 0.007).cos()).collect::<Vec<f32>>(),
            (n / 17, 17),
            &Device::Cpu,
        )
        .unwrap();
        let expected = (gate.silu().unwrap() * &up)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let ours = gate.copy().unwrap();
        swiglu_in_place(&ours, &up).unwrap();
        let ours = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(ours[7].is_nan());
        let worst = largest_gap_off_nan(&ours, &expected);
        assert!(worst <= 5e-6, "{worst}");
        assert!(swiglu_in_place(&gate.copy().unwrap(), &up.t().unwrap()).is_err());
    }

    /// In place, the values of candle's rotate-half `rope` on the first `dims` of each head's
    /// query and key (made contiguous and concatenated back, as `gpt_neox` does elsewhere); the
    /// values and the rest of each head unchanged.
    #[test]
    fn rotary_in_place_matches_candle_rope() {
        let device = Device::Cpu;
        let (b, l, heads, head, dims) = (2, 5, 3, 8, 4);
        let n = b * l * heads * 3 * head;
        let values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let qkv = Tensor::from_vec(values.clone(), (b, l, heads * 3 * head), &device).unwrap();
        let angles: Vec<f32> = (0..l * dims / 2).map(|i| i as f32 * 0.3).collect();
        let angles = Tensor::from_vec(angles, (l, dims / 2), &device).unwrap();
        let (cos, sin) = (angles.cos().unwrap(), angles.sin().unwrap());
        let split = |t: &Tensor, part: usize| {
            t.reshape((b, l, heads, 3 * head))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .narrow(3, part * head, head)
                .unwrap()
        };
        let original = Tensor::from_vec(values, (b, l, heads * 3 * head), &device).unwrap();
        rotate_queries_and_keys(&qkv, head, dims, &cos, &sin).unwrap();
        for part in 0..3 {
            let before = split(&original, part);
            let expected = if part == 2 {
                before.clone()
            } else {
                let rotated =
                    candle_nn::rotary_emb::rope(&before.narrow(3, 0, dims).unwrap().contiguous().unwrap(), &cos, &sin)
                        .unwrap();
                Tensor::cat(&[rotated, before.narrow(3, dims, head - dims).unwrap()], 3).unwrap()
            };
            let difference = largest_difference(&split(&qkv, part).contiguous().unwrap(), &expected);
            assert!(difference < 1e-6, "part {part}: {difference}");
        }
        assert!(rotate_queries_and_keys(&qkv, head, 5, &cos, &sin).is_err());
    }

    /// A product cut into column slices (three threads: 200 columns as 67 + 67 + 66, or for bf16x3
    /// products as 96 + 96 + 8) gives every column, with the bias, in either weight layout, and with
    /// an activation, with either precision (bf16x3 where the processor has AMX; else said).
    #[test]
    fn linear_cut_into_column_slices_gives_every_column() {
        match MatmulPrecision::Bf16x3.unavailable_note() {
            None => column_slices_give_every_column(MatmulPrecision::Bf16x3, 1e-4),
            Some(why) => eprintln!("bf16x3 products not tested here: {why}"),
        }
        column_slices_give_every_column(MatmulPrecision::F32, 1e-5);
    }

    fn column_slices_give_every_column(precision: MatmulPrecision, tolerance: f32) {
        let device = Device::Cpu;
        let (m, k, n) = (9, 33, 200);
        let values = |count: usize, scale: f32| (0..count).map(|i| (i as f32 * scale).sin()).collect::<Vec<f32>>();
        let x = Tensor::from_vec(values(m * k, 0.31), (m, k), &device).unwrap();
        let weight = Tensor::from_vec(values(n * k, 0.17), (n, k), &device).unwrap();
        let bias = Tensor::from_vec(values(n, 0.9), n, &device).unwrap();
        let expected = x.matmul(&weight.t().unwrap()).unwrap().broadcast_add(&bias).unwrap();
        let transposed = weight.t().unwrap().contiguous().unwrap().t().unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        // The precision is put in force on the pool's thread that calls `linear`.
        pool.install(|| {
            matmul::scoped(precision, || {
                assert_eq!(column_slices(n), 3);
                assert_eq!(matmul::current(), precision);
                for w in [&weight, &transposed] {
                    let got = linear(&x, w, Some(&bias), Then::Nothing).unwrap();
                    assert!(largest_difference(&got, &expected) < tolerance);
                    let no_bias = linear(&x, w, None, Then::Nothing)
                        .unwrap()
                        .broadcast_add(&bias)
                        .unwrap();
                    assert!(largest_difference(&no_bias, &expected) < tolerance);
                    let relu = linear(&x, w, Some(&bias), Then::Activate(Activation::Relu)).unwrap();
                    assert!(largest_difference(&relu, &expected.relu().unwrap()) < tolerance);
                }
            })
        });
        assert_eq!(column_slices(63), 1);
    }

    #[test]
    fn column_ranges_cover_every_column_once() {
        assert_eq!(column_ranges(200, 3, 1), [0..67, 67..134, 134..200]);
        assert_eq!(column_ranges(200, 3, 32), [0..96, 96..192, 192..200]);
        assert_eq!(column_ranges(40, 3, 32), [0..32, 32..40]);
        assert!(column_ranges(0, 2, 32).is_empty());
    }

    /// The activation runs on the product, bias included.
    #[test]
    fn linear_applies_the_activation_after_the_bias() {
        let device = Device::Cpu;
        let x = (Tensor::arange(0f32, 12.0, &device).unwrap().reshape((3, 4)).unwrap() * 0.3).unwrap();
        let weight = (Tensor::arange(0f32, 8.0, &device).unwrap().reshape((2, 4)).unwrap() * -0.2).unwrap();
        let bias = Tensor::new(&[1.5f32, -0.5], &device).unwrap();
        let plain = linear(&x, &weight, Some(&bias), Then::Nothing).unwrap();
        let activated = linear(&x, &weight, Some(&bias), Then::Activate(Activation::Gelu)).unwrap();
        assert!(largest_difference(&activated, &plain.gelu_erf().unwrap()) < 1e-6);
    }

    /// The fused kernel against candle's separate operations, on strided inputs with padding.
    #[test]
    fn fused_attention_matches_candle_ops() {
        let device = Device::Cpu;
        let (b, heads, l, head) = (2, 3, 5, 4);
        let values = |n: usize, seed: f32| -> Vec<f32> { (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect() };
        // [B, L, heads, head] transposed to [B, heads, L, head]: strided, as the models pass them.
        let make = |seed| {
            Tensor::from_vec(values(b * l * heads * head, seed), (b, l, heads, head), &device)
                .unwrap()
                .transpose(1, 2)
                .unwrap()
        };
        let (q, k, v) = (make(0.1), make(0.7), make(1.3));
        let mut bias = vec![0f32; b * l * l];
        bias[l * l + 3] = f32::MIN; // second sequence: key 3 of query 0 masked
        let bias = Tensor::from_vec(bias, (b, 1, l, l), &device).unwrap();
        let scale = 0.5;
        let got = attention(&q, &k, &v, scale, &bias).unwrap();
        let scores = (q
            .contiguous()
            .unwrap()
            .matmul(&k.t().unwrap().contiguous().unwrap())
            .unwrap()
            * scale)
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&scores).unwrap();
        let want = probs
            .matmul(&v.contiguous().unwrap())
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((b, l, heads * head))
            .unwrap();
        let diff = largest_difference(&got, &want);
        assert!(diff < 1e-6, "largest difference {diff}");

        // One query row per sequence against a [B, 1, 1, Lk] bias (BERT's last layer).
        let q1 = q.narrow(2, 0, 1).unwrap();
        let bias1 = bias.narrow(2, 0, 1).unwrap();
        let got = attention(&q1, &k, &v, scale, &bias1).unwrap();
        let want = attention(&q, &k, &v, scale, &bias).unwrap().narrow(1, 0, 1).unwrap();
        let diff = largest_difference(&got, &want);
        assert!(diff < 1e-6, "largest difference {diff}");
    }
}
