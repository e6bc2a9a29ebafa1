//! Dense f32 kernels of the MLP forward pass: a fused Linear layer (GEMM + bias + activation),
//! blending and activations.
//!
//! Layer widths after the input are padded with zeros to a multiple of [`LANES`] (exact: padded
//! units have zero weights and bias, and every supported activation maps 0 to 0). On x86-64 with
//! AVX2 + FMA the layer runs a register-blocked kernel that reads the row-major activations and
//! transposed weights in place (no packing) and applies bias and ReLU before storing; elsewhere it
//! falls back to the `gemm` crate. Every kernel runs on the calling thread: parallelism lives one
//! level up (many independent forward passes at once).

use super::spec::Activation;
use crate::models::fast_math::{has_avx2_fma, multiversioned, relu};

/// Padding unit of layer widths (two 8-lane AVX vectors).
pub(crate) const LANES: usize = 16;

/// `width` rounded up to a multiple of [`LANES`].
pub(crate) fn padded(width: usize) -> usize {
    width.div_ceil(LANES) * LANES
}

/// A Linear layer on `r` rows: `out[r, n] = act(h[r, k] · wt[k, n] + bias[n])`, all row-major and
/// dense. `act = None` leaves the pre-activations.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dense(
    r: usize,
    k: usize,
    n: usize,
    h: &[f32],
    wt: &[f32],
    bias: &[f32],
    act: Option<Activation>,
    out: &mut [f32],
) {
    assert!(
        h.len() >= r * k && wt.len() >= k * n && bias.len() >= n && out.len() >= r * n,
        "dense: buffers too small"
    );
    #[cfg(target_arch = "x86_64")]
    if n.is_multiple_of(LANES) && has_avx2_fma() {
        let relu = act == Some(Activation::Relu);
        // SAFETY: AVX2 and FMA are available (checked above); the buffer sizes were checked
        // against r, k and n, and n is a multiple of 16 as the kernel requires.
        unsafe { avx2::dense(r, k, n, h.as_ptr(), wt.as_ptr(), bias.as_ptr(), relu, out.as_mut_ptr()) };
        if let Some(act) = act.filter(|a| *a != Activation::Relu) {
            activate(act, &mut out[..r * n]);
        }
        return;
    }
    matmul(r, k, n, h, wt, out);
    bias_activate(&mut out[..r * n], &bias[..n], act);
}

/// `out[m, n] = lhs[m, k] · rhs[k, n]`, all row-major and densely packed, with the `gemm` crate on
/// the calling thread.
pub(crate) fn matmul(m: usize, k: usize, n: usize, lhs: &[f32], rhs: &[f32], out: &mut [f32]) {
    assert!(
        lhs.len() >= m * k && rhs.len() >= k * n && out.len() >= m * n,
        "matmul: buffers too small"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(0.0);
        return;
    }
    // SAFETY: the three buffers are distinct slices holding at least m·k, k·n and m·n elements
    // (checked above), and the strides describe dense row-major layouts inside them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

multiversioned! {
    /// `out = wa·a + wb·b` elementwise (two rounded products, then a rounded sum, like PyTorch's
    /// `(1 - alpha) * a + alpha * b`; never fused into an FMA).
    pub(crate) fn blend(wa: f32, a: &[f32], wb: f32, b: &[f32], out: &mut [f32]) => blend_generic
}

multiversioned! {
    /// `out = relu(wa·a + wb·b)` elementwise.
    fn blend_relu(wa: f32, a: &[f32], wb: f32, b: &[f32], out: &mut [f32]) => blend_relu_generic
}

#[inline(always)]
fn blend_generic(wa: f32, a: &[f32], wb: f32, b: &[f32], out: &mut [f32]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = wa * x + wb * y;
    }
}

/// `out = act(wa·a + wb·b)` elementwise: the blended first-layer pre-activations, activated.
pub(crate) fn blend_activate(act: Activation, wa: f32, a: &[f32], wb: f32, b: &[f32], out: &mut [f32]) {
    if act == Activation::Relu {
        blend_relu(wa, a, wb, b, out);
    } else {
        blend(wa, a, wb, b, out);
        activate(act, out);
    }
}

#[inline(always)]
fn blend_relu_generic(wa: f32, a: &[f32], wb: f32, b: &[f32], out: &mut [f32]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = relu(wa * x + wb * y);
    }
}

/// `out = act(src)` elementwise.
pub(crate) fn copy_activate(act: Activation, src: &[f32], out: &mut [f32]) {
    out.copy_from_slice(src);
    activate(act, out);
}

/// Adds `bias` (length = row width) to every row of `z`, then applies `act` if given.
pub(crate) fn bias_activate(z: &mut [f32], bias: &[f32], act: Option<Activation>) {
    for row in z.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
    if let Some(act) = act {
        activate(act, z);
    }
}

/// Applies `act` in place.
pub(crate) fn activate(act: Activation, values: &mut [f32]) {
    match act {
        Activation::Relu => values.iter_mut().for_each(|v| *v = relu(*v)),
        Activation::Tanh => values.iter_mut().for_each(|v| *v = v.tanh()),
        Activation::Gelu => values.iter_mut().for_each(|v| *v = gelu(*v)),
    }
}

/// Exact GELU: x/2 · (1 + erf(x/√2)), evaluated in f64 and rounded.
fn gelu(x: f32) -> f32 {
    let x = f64::from(x);
    (0.5 * x * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2))) as f32
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 + FMA versions; callers check the CPU features first.

    use std::arch::x86_64::*;

    /// Rows per register block.
    const MR: usize = 6;

    /// `out[r, n] = h[r, k] · wt[k, n] + bias`, then `max(0, ·)` if `relu` (NaN kept).
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `h` must hold `r·k`, `wt` `k·n`, `bias` `n` and `out` `r·n`
    /// values, and `n` must be a multiple of 16.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn dense(
        r: usize,
        k: usize,
        n: usize,
        h: *const f32,
        wt: *const f32,
        bias: *const f32,
        relu: bool,
        out: *mut f32,
    ) {
        let full = r / MR * MR;
        for j in (0..n).step_by(16) {
            let mut i = 0;
            while i < full {
                // SAFETY: rows i..i+6 < r, columns j..j+16 <= n (forwarded contract).
                unsafe { block::<MR>(i, j, k, n, h, wt, bias, relu, out) };
                i += MR;
            }
            // SAFETY: as above, for the remaining r - full < 6 rows.
            unsafe {
                match r - full {
                    1 => block::<1>(full, j, k, n, h, wt, bias, relu, out),
                    2 => block::<2>(full, j, k, n, h, wt, bias, relu, out),
                    3 => block::<3>(full, j, k, n, h, wt, bias, relu, out),
                    4 => block::<4>(full, j, k, n, h, wt, bias, relu, out),
                    5 => block::<5>(full, j, k, n, h, wt, bias, relu, out),
                    _ => {}
                }
            }
        }
    }

    /// Rows `i0..i0+M`, columns `j..j+16`: 2·M accumulators in registers.
    ///
    /// # Safety
    /// As [`dense`], with `i0 + M <= r` and `j + 16 <= n`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const M: usize>(
        i0: usize,
        j: usize,
        k: usize,
        n: usize,
        h: *const f32,
        wt: *const f32,
        bias: *const f32,
        relu: bool,
        out: *mut f32,
    ) {
        // SAFETY: every pointer offset below stays inside the buffers by the function contract.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 2]; M];
            let rows: [*const f32; M] = std::array::from_fn(|m| h.add((i0 + m) * k));
            let mut w = wt.add(j);
            for p in 0..k {
                let w0 = _mm256_loadu_ps(w);
                let w1 = _mm256_loadu_ps(w.add(8));
                for m in 0..M {
                    let a = _mm256_broadcast_ss(&*rows[m].add(p));
                    acc[m][0] = _mm256_fmadd_ps(a, w0, acc[m][0]);
                    acc[m][1] = _mm256_fmadd_ps(a, w1, acc[m][1]);
                }
                w = w.add(n);
            }
            let b0 = _mm256_loadu_ps(bias.add(j));
            let b1 = _mm256_loadu_ps(bias.add(j + 8));
            let zero = _mm256_setzero_ps();
            for (m, acc) in acc.iter().enumerate() {
                let mut v0 = _mm256_add_ps(acc[0], b0);
                let mut v1 = _mm256_add_ps(acc[1], b1);
                if relu {
                    // max_ps returns its second operand when either is NaN: NaN propagates.
                    v0 = _mm256_max_ps(zero, v0);
                    v1 = _mm256_max_ps(zero, v1);
                }
                let o = out.add((i0 + m) * n + j);
                _mm256_storeu_ps(o, v0);
                _mm256_storeu_ps(o.add(8), v1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(r: usize, k: usize, n: usize, h: &[f32], wt: &[f32], bias: &[f32], relu: bool) -> Vec<f32> {
        let mut out = vec![0.0; r * n];
        for i in 0..r {
            for j in 0..n {
                let v = (0..k)
                    .map(|p| f64::from(h[i * k + p]) * f64::from(wt[p * n + j]))
                    .sum::<f64>() as f32
                    + bias[j];
                out[i * n + j] = if relu { v.max(0.0) } else { v };
            }
        }
        out
    }

    #[test]
    fn dense_matches_naive_for_every_row_remainder_and_width() {
        for (r, k, n) in [
            (13, 7, 16),
            (6, 64, 32),
            (1, 3, 16),
            (17, 5, 5),
            (0, 4, 16),
            (11, 9, 48),
        ] {
            let h: Vec<f32> = (0..r * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let wt: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            let bias: Vec<f32> = (0..n).map(|i| i as f32 * 0.01 - 0.05).collect();
            for act in [None, Some(Activation::Relu), Some(Activation::Tanh)] {
                let mut out = vec![f32::NAN; r * n];
                dense(r, k, n, &h, &wt, &bias, act, &mut out);
                let mut want = naive(r, k, n, &h, &wt, &bias, act == Some(Activation::Relu));
                if act == Some(Activation::Tanh) {
                    activate(Activation::Tanh, &mut want);
                }
                for (x, y) in out.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-5, "({r},{k},{n}) {act:?}: {x} vs {y}");
                }
                let mut fallback = vec![f32::NAN; r * n];
                matmul(r, k, n, &h, &wt, &mut fallback);
                bias_activate(&mut fallback, &bias, act);
                for (x, y) in fallback.iter().zip(&want) {
                    assert!((x - y).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn relu_keeps_nan_in_every_kernel() {
        let (r, k, n) = (2, 2, 16);
        let h = [f32::NAN, 1.0, -1.0, 0.0];
        let wt = vec![1.0f32; k * n];
        let mut out = vec![0.0; r * n];
        dense(r, k, n, &h, &wt, &[0.0; 16], Some(Activation::Relu), &mut out);
        assert!(out[..n].iter().all(|v| v.is_nan()));
        assert!(out[n..].iter().all(|&v| v == 0.0));
        let mut blended = [0.0f32; 3];
        blend_activate(
            Activation::Relu,
            1.0,
            &[f32::NAN, -2.0, 2.0],
            0.0,
            &[0.0; 3],
            &mut blended,
        );
        assert!(blended[0].is_nan());
        assert_eq!(&blended[1..], &[0.0, 2.0]);
    }

    #[test]
    fn activations() {
        let mut v = [-1.0f32, 0.0, 2.0, f32::NAN];
        activate(Activation::Relu, &mut v);
        assert_eq!(&v[..3], &[0.0, 0.0, 2.0]);
        assert!(v[3].is_nan());
        // torch.nn.functional.gelu(torch.tensor([-1., 1., 3.]))
        let mut g = [-1.0f32, 1.0, 3.0];
        activate(Activation::Gelu, &mut g);
        for (x, want) in g.iter().zip([-0.158_655_26_f32, 0.841_344_7, 2.995_950_2]) {
            assert!((x - want).abs() < 1e-6, "{x} vs {want}");
        }
        for act in [Activation::Relu, Activation::Gelu, Activation::Tanh] {
            let mut zero = [0.0f32];
            activate(act, &mut zero);
            assert_eq!(zero[0], 0.0, "{act:?}: padding must stay exact");
        }
        assert_eq!((padded(10), padded(16), padded(17)), (16, 16, 32));
    }
}
