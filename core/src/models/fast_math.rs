//! Element-wise f32 functions written in plain arithmetic (no calls into libm, no branches), so
//! that the compiler vectorises the loops that use them: the exponential of the log-softmax
//! ([`crate::models::scoring`]) and of attention, and the erf and tanh of the two GELUs
//! (`transformer::kernels`). Callers compile those loops again for AVX-512 and for AVX2 + FMA and
//! pick a copy at run time ([`multiversioned`]).

/// Whether this processor runs AVX2 and FMA code (checked once, then cached by the standard
/// library): the condition of every run-time choice of AVX2 kernels in lineage.
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this processor runs the AVX-512 code of [`multiversioned`] kernels (foundation, with
/// the byte/word, doubleword/quadword and 128/256-bit-vector extensions; checked once, then cached).
#[inline]
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && has_avx2_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `fn NAME(ARGS)` (no return value) that runs `BODY(ARGS)` compiled for AVX-512 where
/// [`has_avx512`] (16 lanes to a register instead of 8), for AVX2 and FMA where
/// [`has_avx2_fma`], and as plain code elsewhere. `BODY` should be `#[inline(always)]`, so that
/// each copy is compiled (and vectorised) for its own target.
macro_rules! multiversioned {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:path) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2_fma($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if $crate::models::fast_math::has_avx512() {
                    // SAFETY: the processor has these AVX-512 extensions, AVX2 and FMA.
                    unsafe { avx512($($arg),*) };
                    return;
                }
                if $crate::models::fast_math::has_avx2_fma() {
                    // SAFETY: the processor has AVX2 and FMA.
                    unsafe { avx2_fma($($arg),*) };
                    return;
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use multiversioned;

/// `exp(x)` for `x <= 0`: `x = n ln 2 + f` with `|f| <= ln 2 / 2` (Cody-Waite split of ln 2),
/// `exp(f)` by Cephes' `expf` polynomial, times `2^n` built in the exponent bits; relative error
/// below 2e-7. Below -87 (where `2^n` would leave the normal range) it returns 0, as a flush to
/// zero would: `exp(-87)` is 1.6e-38, which next to any term of order 1 changes no f32 sum, and a
/// subnormal result would cost far more than its worth downstream. The masked keys of an attention
/// row come here as `f32::MIN`; before this returned 0 they became subnormal probabilities (1.6e-38
/// over the row's sum), and on Intel processors every multiply-add of the probabilities by the
/// values that met one took a microcode assist: a Pythia-160m path spent over a third of its time
/// there (`transformer_path` bench, Xeon with AVX-512; AMD Zen 3 barely slows down). NaN gives NaN
/// (a diverged model's NaN must reach its loss).
#[inline(always)]
pub fn exp_nonpositive(x: f32) -> f32 {
    // Cephes expf: ln 2 = C1 + C2, C1 exact in few bits.
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it to a value of magnitude below 2^22 leaves that value rounded to an
    // integer (to nearest, ties to even) in the low bits of the sum. Not `.round()` and `as i32`:
    // `round`'s ties away from zero and the saturating cast have no vector instruction, so the
    // compiler ran them lane by lane and every loop over this function 5x slower (1.66 against
    // 0.32 ns a value on one AVX-512 core, the same results).
    const SHIFT: f32 = 12_582_912.0;
    // Not `x.max(-87.0)`, which would turn NaN into -87.
    let underflow = x < -87.0;
    let x = if underflow { -87.0 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + SHIFT;
    let n = shifted - SHIFT;
    let f = x - n * C1 - n * C2;
    let p = (((((1.987_569_1e-4 * f + 1.398_199_9e-3) * f + 8.333_452e-3) * f + 4.166_579_6e-2) * f + 1.666_666_5e-1)
        * f
        + 0.5)
        * f
        * f
        + f
        + 1.0;
    // 2^n, n in [-126, 0] (two's complement in the low bits of `shifted`), in the exponent bits.
    let n_bits = shifted.to_bits().wrapping_sub(SHIFT.to_bits());
    let value = p * f32::from_bits(n_bits.wrapping_add(127) << 23);
    if underflow { 0.0 } else { value }
}

/// `erf(x)` by Abramowitz & Stegun 7.1.26: absolute error below 1.5e-7 in exact arithmetic, below
/// 6e-7 in f32 (near 0 that is a large relative error, which GELU multiplies by `x / 2`). NaN
/// gives NaN, +-inf gives +-1. For scale: on [-6, 6] PyTorch 2.15's CPU
/// `gelu` (f32) is up to 3.7e-7 from the exact GELU, [`gelu_erf`] up to 4.6e-7.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A1: f32 = 0.254_829_6;
    const A2: f32 = -0.284_496_74;
    const A3: f32 = 1.421_413_7;
    const A4: f32 = -1.453_152;
    const A5: f32 = 1.061_405_4;
    let a = x.abs();
    let t = 1.0 / (P * a + 1.0);
    let r = (((A5 * t + A4) * t + A3) * t + A2) * t + A1;
    (1.0 - r * t * exp_nonpositive(-(a * a))).copysign(x)
}

/// The exact (erf) GELU, `x / 2 * (1 + erf(x / sqrt 2))`, as `torch.nn.functional.gelu`.
#[inline(always)]
pub fn gelu_erf(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `max(x, 0)` keeping NaN, as `torch.relu` (not `f32::max`, which would turn NaN into 0).
#[inline(always)]
pub fn relu(x: f32) -> f32 {
    if x < 0.0 { 0.0 } else { x }
}

/// `tanh(x)` as `(1 - e) / (1 + e)` with `e = exp(-2|x|)` by [`exp_nonpositive`], sign restored:
/// absolute error below 2e-7 (relative error grows near 0, where `1 - e` cancels). NaN gives NaN,
/// +-inf gives +-1.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let e = exp_nonpositive(-2.0 * x.abs());
    ((1.0 - e) / (1.0 + e)).copysign(x)
}

/// GELU's tanh approximation, `x / 2 * (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`, as
/// `torch.nn.functional.gelu(approximate="tanh")` and transformers' `gelu_new`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + tanh(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
}

/// SiLU, `x * sigmoid(x)` (`torch.nn.functional.silu`), the sigmoid from `exp(-|x|)` so that it
/// keeps its relative accuracy for large `|x|` of either sign.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    let e = exp_nonpositive(-x.abs());
    let numerator = if x >= 0.0 { 1.0 } else { e };
    x * (numerator / (1.0 + e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf in f64 by its Maclaurin series (|x| < 3) or continued fraction, to compare against.
    fn erf_f64(x: f64) -> f64 {
        if x.abs() < 3.0 {
            let (mut term, mut sum, mut n) = (x, x, 0.0);
            while term.abs() > 1e-17 * sum.abs().max(1e-300) {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(x) = exp(-x^2) / sqrt(pi) * 1 / (x + 1/2 / (x + 1 / (x + 3/2 / (x + ...))))
            let a = x.abs();
            let mut fraction = a;
            for k in (1..60).rev() {
                fraction = a + f64::from(k) / 2.0 / fraction;
            }
            let erfc = (-a * a).exp() / std::f64::consts::PI.sqrt() / fraction;
            (1.0 - erfc).copysign(x)
        }
    }

    #[test]
    fn the_exponential_is_accurate_over_its_range() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let exact = f64::from(x).exp();
            let relative = (f64::from(exp_nonpositive(x)) - exact).abs() / exact;
            assert!(relative < 2e-7, "exp({x}): relative error {relative:e}");
            x += 0.0013;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        // Never subnormal: the smallest result is exp(-87), below that 0.
        assert!(exp_nonpositive(-87.0).is_normal());
        assert_eq!(exp_nonpositive(-87.001), 0.0);
        assert_eq!(exp_nonpositive(f32::MIN), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn erf_and_gelu_are_close_to_f64() {
        let mut x = -9.0f32;
        while x <= 9.0 {
            let exact = erf_f64(f64::from(x));
            let error = (f64::from(erf(x)) - exact).abs();
            assert!(error < 6e-7, "erf({x}) = {} vs {exact}: {error:e}", erf(x));
            let gelu = f64::from(x) / 2.0 * (1.0 + erf_f64(f64::from(x) / std::f64::consts::SQRT_2));
            let error = (f64::from(gelu_erf(x)) - gelu).abs();
            assert!(error < 4e-7 * f64::from(x).abs().max(1.0), "gelu({x}): {error:e}");
            x += 0.00071;
        }
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
        assert!(erf(f32::NAN).is_nan() && gelu_erf(f32::NAN).is_nan());
        assert_eq!(gelu_erf(0.0), 0.0);
    }

    #[test]
    fn tanh_and_its_gelu_are_close_to_f64() {
        let mut x = -12.0f32;
        while x <= 12.0 {
            let exact = f64::from(x).tanh();
            let error = (f64::from(tanh(x)) - exact).abs();
            assert!(error < 2e-7, "tanh({x}) = {} vs {exact}: {error:e}", tanh(x));
            let x64 = f64::from(x);
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044715 * x64.powi(3));
            let gelu = x64 / 2.0 * (1.0 + u.tanh());
            let error = (f64::from(gelu_tanh(x)) - gelu).abs();
            assert!(error < 4e-7 * x64.abs().max(1.0), "gelu_tanh({x}): {error:e}");
            x += 0.00071;
        }
        assert_eq!(tanh(f32::INFINITY), 1.0);
        assert_eq!(tanh(f32::NEG_INFINITY), -1.0);
        assert!(tanh(f32::NAN).is_nan() && gelu_tanh(f32::NAN).is_nan());
        assert_eq!(gelu_tanh(0.0), 0.0);
    }

    #[test]
    fn silu_is_close_to_f64() {
        let mut x = -90.0f32;
        while x <= 90.0 {
            let x64 = f64::from(x);
            let exact = x64 / (1.0 + (-x64).exp());
            let error = (f64::from(silu(x)) - exact).abs();
            // Below -87 the exponential flushes to 0 (`exp_nonpositive`): absolute error < 1e-35.
            assert!(
                error <= 4e-7 * exact.abs() + 1e-35,
                "silu({x}) = {} vs {exact}: {error:e}",
                silu(x)
            );
            x += 0.0037;
        }
        assert_eq!(silu(0.0), 0.0);
        assert_eq!(silu(f32::INFINITY), f32::INFINITY);
        // As `torch.nn.functional.silu`: -inf times sigmoid(-inf) = 0 is NaN.
        assert!(silu(f32::NEG_INFINITY).is_nan());
        assert!(silu(f32::NAN).is_nan());
    }
}
