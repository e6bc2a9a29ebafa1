//! Linear mode connectivity on a curve f(theta(a)), a in an alpha grid: the grid, the points
//! theta(a) themselves ([`blend`]), the endpoint and segment barriers (ARCHITECTURE.md, "Interpolation
//! and alphas" and "Loss barriers") and golden-section peak refinement.
//!
//! Barriers take the alphas and the values (mean loss or error rate) at them. Both are `>= 0`, and
//! `NaN` when a value is `NaN`.

use std::collections::HashMap;

use candle_core::Tensor;

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::names::Named;

/// A loss-barrier definition along an interpolation path (ARCHITECTURE.md, "Barriers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BarrierKind {
    /// Bump above the chord between the endpoints (Frankle et al. 2020): [`endpoint_barrier`].
    Endpoint,
    /// Largest bump above the chord of any sub-segment (Juneja et al. 2023, who cluster with it):
    /// [`segment_barrier`].
    #[default]
    Segment,
}

impl Named for BarrierKind {
    const ALL: &'static [Self] = &[Self::Endpoint, Self::Segment];

    fn name(self) -> &'static str {
        match self {
            Self::Segment => "segment",
            Self::Endpoint => "endpoint",
        }
    }
}

impl BarrierKind {
    /// The barrier of `values` (loss or error) sampled at `alphas`.
    pub fn barrier(self, alphas: &[f64], values: &[f64]) -> f64 {
        match self {
            Self::Endpoint => endpoint_barrier(alphas, values),
            Self::Segment => segment_barrier(alphas, values),
        }
    }
}

/// theta(alpha) = (1-alpha)·A + alpha·B, tensor by tensor: every tensor of `a`, with its namesake
/// found by `b`. The blend weights are rounded to f32 and the arithmetic is f32, as in PyTorch.
pub fn blend<'a>(
    a: impl IntoIterator<Item = (&'a str, &'a Tensor)>,
    b: impl Fn(&str) -> Option<&'a Tensor>,
    alpha: f64,
) -> Result<HashMap<String, Tensor>> {
    let (wa, wb) = blend_weights(alpha);
    let (wa, wb) = (f64::from(wa), f64::from(wb));
    a.into_iter()
        .map(|(name, ta)| {
            let tb = b(name).ok_or_else(|| CoreError::Model(format!("`{name}` missing in model B")))?;
            let t = ta
                .affine(wa, 0.0)
                .and_then(|x| x.add(&tb.affine(wb, 0.0)?))
                .map_err(|e| CoreError::Model(format!("`{name}`: {e}")))?;
            Ok((name.to_string(), t))
        })
        .collect()
}

/// The weights of A and B at `alpha`, rounded to f32 as PyTorch's `(1 - a) * A + a * B` with a
/// Python float `a`.
fn blend_weights(alpha: f64) -> (f32, f32) {
    ((1.0 - alpha) as f32, alpha as f32)
}

/// [`blend`] of one tensor written into `dst` in place: `dst = (1-alpha)·a + alpha·b`, the same f32
/// values as [`blend`] gives, without allocating. All three must be contiguous f32 tensors of one
/// shape on the CPU, and `dst` must share its storage with no tensor that is still in use.
pub fn blend_into(dst: &Tensor, a: &Tensor, b: &Tensor, alpha: f64) -> Result<()> {
    if a.shape() != dst.shape() || b.shape() != dst.shape() {
        return Err(CoreError::Model(format!(
            "blend into {:?}: A is {:?}, B is {:?}",
            dst.shape(),
            a.shape(),
            b.shape()
        )));
    }
    let (wa, wb) = blend_weights(alpha);
    dst.inplace_op3(a, b, &BlendInto { wa, wb })
        .map_err(|e| CoreError::Model(format!("blend in place: {e}")))
}

/// The in-place op of [`blend_into`].
struct BlendInto {
    wa: f32,
    wb: f32,
}

impl candle_core::InplaceOp3 for BlendInto {
    fn name(&self) -> &'static str {
        "blend-into"
    }

    fn cpu_fwd(
        &self,
        dst: &mut candle_core::CpuStorage,
        dst_layout: &candle_core::Layout,
        a: &candle_core::CpuStorage,
        a_layout: &candle_core::Layout,
        b: &candle_core::CpuStorage,
        b_layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        use candle_core::CpuStorage::F32;
        use rayon::prelude::*;
        let span = |l: &candle_core::Layout| {
            l.contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("blend in place needs contiguous tensors".into()))
        };
        let ((d0, d1), (a0, a1), (b0, b1)) = (span(dst_layout)?, span(a_layout)?, span(b_layout)?);
        let (F32(dst), F32(a), F32(b)) = (dst, a, b) else {
            candle_core::bail!("blend in place needs f32 tensors")
        };
        let (wa, wb) = (self.wa, self.wb);
        const CHUNK: usize = 1 << 16;
        dst[d0..d1]
            .par_chunks_mut(CHUNK)
            .zip(a[a0..a1].par_chunks(CHUNK).zip(b[b0..b1].par_chunks(CHUNK)))
            .for_each(|(d, (a, b))| crate::models::mlp::kernels::blend(wa, a, wb, b, d));
        Ok(())
    }
}

/// `n` evenly spaced alphas from 0 to 1 inclusive (`i / (n-1)`, so 0 and 1 are exact); `n >= 3`.
pub fn alpha_grid(n: usize) -> Result<Vec<f64>> {
    if n < 3 {
        return Err(CoreError::InvalidArgument(format!(
            "the alpha grid needs at least 3 points (both endpoints and one inside), got {n}"
        )));
    }
    let last = (n - 1) as f64;
    Ok((0..n).map(|i| i as f64 / last).collect())
}

/// Endpoint barrier (Frankle et al. 2020, Entezari et al. 2021):
/// `max_a [ f(a) - ((1-a)·f(0) + a·f(1)) ]`, clipped at 0. The chord joins the first and last
/// points, so a grid that does not span 0..1 is measured against its own ends. Uses the shorter
/// of the two slices; fewer than 2 points give 0.
pub fn endpoint_barrier(alphas: &[f64], values: &[f64]) -> f64 {
    let n = alphas.len().min(values.len());
    if values[..n].iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    if n < 2 {
        return 0.0;
    }
    let xs = abscissae(&alphas[..n]);
    let (x0, x1) = (xs[0], xs[n - 1]);
    let span = x1 - x0;
    let mut barrier = 0.0f64;
    for (x, &f) in xs.iter().zip(&values[..n]) {
        let chord = (x1 - x) / span * values[0] + (x - x0) / span * values[n - 1];
        barrier = barrier.max(f - chord);
    }
    barrier
}

/// Segment barrier (Juneja et al. 2023): the largest bump above the chord of any contiguous
/// sub-segment, `max_{i<k<j} [ f_k - ((a_j-a_k)·f_i + (a_k-a_i)·f_j) / (a_j-a_i) ]`, clipped at 0.
/// On an evenly spaced grid this is the index formula of ARCHITECTURE.md, "Loss barriers"
/// `f_k - ((j-k)·f_i + (k-i)·f_j)/(j-i)`; alphas that are not strictly increasing are replaced by
/// their indices. Always `>=` the endpoint barrier. O(n²): for each k, the lowest chord over a_k
/// is the lower convex hull of the other points.
pub fn segment_barrier(alphas: &[f64], values: &[f64]) -> f64 {
    let n = alphas.len().min(values.len());
    if values[..n].iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let xs = abscissae(&alphas[..n]);
    let f = &values[..n];
    let mut barrier = 0.0f64;
    let mut hull: Vec<usize> = Vec::with_capacity(n);
    for k in 1..n.saturating_sub(1) {
        hull.clear();
        for p in (0..n).filter(|&p| p != k) {
            while let [.., o, a] = hull[..] {
                let cross = (xs[a] - xs[o]) * (f[p] - f[o]) - (f[a] - f[o]) * (xs[p] - xs[o]);
                if cross <= 0.0 {
                    hull.pop();
                } else {
                    break;
                }
            }
            hull.push(p);
        }
        // The hull edge spanning x_k joins the last hull point left of k and the next one.
        let split = hull.partition_point(|&p| p < k);
        let (i, j) = (hull[split - 1], hull[split]);
        let chord = ((xs[j] - xs[k]) * f[i] + (xs[k] - xs[i]) * f[j]) / (xs[j] - xs[i]);
        barrier = barrier.max(f[k] - chord);
    }
    barrier
}

/// The alphas if strictly increasing, else the indices 0, 1, 2, ...
fn abscissae(alphas: &[f64]) -> Vec<f64> {
    if alphas.windows(2).all(|w| w[0] < w[1]) {
        alphas.to_vec()
    } else {
        (0..alphas.len()).map(|i| i as f64).collect()
    }
}

/// The refined maximum of the endpoint bump `f(a) - chord(a)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// Where the bump is largest.
    pub alpha: f64,
    /// f at that alpha.
    pub value: f64,
    /// The bump there, clipped at 0: a refined endpoint barrier (>= the grid's).
    pub barrier: f64,
    /// Number of extra evaluations of f spent.
    pub evaluations: usize,
}

/// Refines the endpoint barrier: around the grid point with the largest bump above the chord of
/// the endpoints, maximises the bump by golden-section search over the neighbouring grid interval,
/// calling `f(alpha)` at most `max_evaluations` times and stopping when the bracket is narrower
/// than `tolerance`. Returns the best point seen (grid points included). Needs at least 3 points
/// with strictly increasing alphas and no `NaN` value.
pub fn refine_peak(
    alphas: &[f64],
    values: &[f64],
    tolerance: f64,
    max_evaluations: usize,
    mut f: impl FnMut(f64) -> Result<f64>,
) -> Result<Peak> {
    let n = alphas.len();
    if n < 3 || values.len() != n || !alphas.windows(2).all(|w| w[0] < w[1]) || values.iter().any(|v| v.is_nan()) {
        return Err(CoreError::InvalidArgument(format!(
            "refine_peak needs >= 3 strictly increasing alphas with as many non-NaN values (got {n} alphas, {} values)",
            values.len()
        )));
    }
    let (x0, x1, f0, f1) = (alphas[0], alphas[n - 1], values[0], values[n - 1]);
    let bump = |x: f64, v: f64| v - ((x1 - x) / (x1 - x0) * f0 + (x - x0) / (x1 - x0) * f1);
    let k = (0..n)
        .max_by(|&a, &b| bump(alphas[a], values[a]).total_cmp(&bump(alphas[b], values[b])))
        .unwrap_or(0);
    let mut best = Peak {
        alpha: alphas[k],
        value: values[k],
        barrier: bump(alphas[k], values[k]).max(0.0),
        evaluations: 0,
    };
    if k == 0 || k == n - 1 || best.barrier <= 0.0 {
        return Ok(best);
    }
    let inv_phi = (5f64.sqrt() - 1.0) / 2.0;
    let (mut lo, mut hi) = (alphas[k - 1], alphas[k + 1]);
    let mut probe = |x: f64, best: &mut Peak| -> Result<f64> {
        let v = f(x)?;
        best.evaluations += 1;
        let g = bump(x, v);
        if g > best.barrier {
            *best = Peak {
                alpha: x,
                value: v,
                barrier: g,
                evaluations: best.evaluations,
            };
        }
        Ok(if g.is_nan() { f64::NEG_INFINITY } else { g })
    };
    if max_evaluations < 2 {
        return Ok(best);
    }
    let mut c = hi - inv_phi * (hi - lo);
    let mut d = lo + inv_phi * (hi - lo);
    let mut gc = probe(c, &mut best)?;
    let mut gd = probe(d, &mut best)?;
    while best.evaluations < max_evaluations && hi - lo > tolerance {
        if gc > gd {
            hi = d;
            (d, gd) = (c, gc);
            c = hi - inv_phi * (hi - lo);
            gc = probe(c, &mut best)?;
        } else {
            lo = c;
            (c, gc) = (d, gd);
            d = lo + inv_phi * (hi - lo);
            gd = probe(d, &mut best)?;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In place, the very values of [`blend`]; a destination of another shape is refused.
    #[test]
    fn blend_into_gives_blends_values() {
        let device = candle_core::Device::Cpu;
        for (n, k) in [(5, 7), (300, 450)] {
            let values = |seed: f32| {
                let t = Tensor::arange(0f32, (n * k) as f32, &device)
                    .unwrap()
                    .reshape((n, k))
                    .unwrap();
                ((t * f64::from(seed)).unwrap().sin()).unwrap()
            };
            let (a, b) = (values(0.37), values(1.3));
            let expected = blend([("w", &a)], |_| Some(&b), 0.3).unwrap().remove("w").unwrap();
            let dst = Tensor::zeros((n, k), candle_core::DType::F32, &device).unwrap();
            blend_into(&dst, &a, &b, 0.3).unwrap();
            assert_eq!(
                dst.to_vec2::<f32>().unwrap(),
                expected.to_vec2::<f32>().unwrap(),
                "{n} x {k}"
            );
        }
        let wrong = Tensor::zeros((3, 2), candle_core::DType::F32, &device).unwrap();
        let a = Tensor::zeros((2, 3), candle_core::DType::F32, &device).unwrap();
        assert!(blend_into(&wrong, &a, &a, 0.5).is_err());
    }

    /// The definition in ARCHITECTURE.md, "Loss barriers", literally (indices, all triples).
    fn segment_brute_force(values: &[f64]) -> f64 {
        let n = values.len();
        let mut best = 0.0f64;
        for i in 0..n {
            for j in i + 2..n {
                for k in i + 1..j {
                    let chord = ((j - k) as f64 * values[i] + (k - i) as f64 * values[j]) / (j - i) as f64;
                    best = best.max(values[k] - chord);
                }
            }
        }
        best
    }

    #[test]
    fn grid() {
        let g = alpha_grid(11).unwrap();
        assert_eq!(g.len(), 11);
        assert_eq!((g[0], g[3], g[10]), (0.0, 0.3, 1.0));
        assert_eq!(alpha_grid(3).unwrap(), vec![0.0, 0.5, 1.0]);
        assert!(alpha_grid(2).unwrap_err().to_string().contains("at least 3"));
    }

    #[test]
    fn flat_and_convex_curves_have_no_barrier() {
        let a = alpha_grid(5).unwrap();
        assert_eq!(endpoint_barrier(&a, &[1.0; 5]), 0.0);
        assert_eq!(segment_barrier(&a, &[1.0; 5]), 0.0);
        let convex: Vec<f64> = a.iter().map(|x| (x - 0.5) * (x - 0.5)).collect();
        assert_eq!(endpoint_barrier(&a, &convex), 0.0);
        assert_eq!(segment_barrier(&a, &convex), 0.0);
    }

    #[test]
    fn a_tent_has_its_height_as_barrier() {
        let a = alpha_grid(5).unwrap();
        // Endpoints 1 and 3: chord at 0.5 is 2, curve is 2.5 -> barrier 0.5.
        let f = [1.0, 1.5, 2.5, 2.5, 3.0];
        assert!((endpoint_barrier(&a, &f) - 0.5).abs() < 1e-12);
        let parabola: Vec<f64> = a.iter().map(|x| 4.0 * x * (1.0 - x)).collect();
        assert!((endpoint_barrier(&a, &parabola) - 1.0).abs() < 1e-12);
        assert!((segment_barrier(&a, &parabola) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn segment_barrier_sees_a_bump_the_endpoint_chord_hides() {
        // High left endpoint: the endpoint chord runs above the small bump at index 3.
        let a = alpha_grid(6).unwrap();
        let f = [10.0, 1.0, 1.0, 2.0, 1.0, 1.0];
        assert_eq!(endpoint_barrier(&a, &f), 0.0);
        // Chord of sub-segment 2..4 is 1, bump at 3 is 2 -> 1.
        assert!((segment_barrier(&a, &f) - 1.0).abs() < 1e-12);
        assert_eq!(segment_barrier(&a, &f), segment_brute_force(&f));
    }

    #[test]
    fn segment_barrier_matches_the_definition_on_random_curves() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for n in [3, 4, 5, 11, 21] {
            let a = alpha_grid(n).unwrap();
            for _ in 0..200 {
                let f: Vec<f64> = (0..n).map(|_| (next() * 4.0).floor() / 4.0 + next() * 0.1).collect();
                let (fast, slow) = (segment_barrier(&a, &f), segment_brute_force(&f));
                assert!((fast - slow).abs() < 1e-12, "{f:?}: {fast} vs {slow}");
                assert!(fast >= endpoint_barrier(&a, &f) - 1e-12);
            }
        }
    }

    #[test]
    fn nan_and_degenerate_inputs() {
        let a = alpha_grid(3).unwrap();
        assert!(endpoint_barrier(&a, &[1.0, f64::NAN, 1.0]).is_nan());
        assert!(segment_barrier(&a, &[1.0, f64::NAN, 1.0]).is_nan());
        assert_eq!(endpoint_barrier(&[], &[]), 0.0);
        assert_eq!(segment_barrier(&[0.0, 1.0], &[0.0, 5.0]), 0.0);
        // Unordered alphas fall back to indices.
        assert_eq!(segment_barrier(&[0.0, 0.0, 0.0], &[0.0, 1.0, 0.0]), 1.0);
    }

    #[test]
    fn refinement_finds_the_true_peak_between_grid_points() {
        // A narrow bump centred at 0.33, between grid points; the chord of the ends is ~0.
        let f = |a: f64| (-((a - 0.33) / 0.1).powi(2)).exp();
        let alphas = alpha_grid(11).unwrap();
        let values: Vec<f64> = alphas.iter().map(|&a| f(a)).collect();
        let grid = endpoint_barrier(&alphas, &values);
        let peak = refine_peak(&alphas, &values, 1e-6, 100, |a| Ok(f(a))).unwrap();
        assert!((peak.alpha - 0.33).abs() < 1e-4, "{peak:?}");
        assert!(peak.barrier >= grid);
        let chord = (1.0 - peak.alpha) * f(0.0) + peak.alpha * f(1.0);
        assert!((peak.barrier - (f(peak.alpha) - chord)).abs() < 1e-12);
        assert!(peak.evaluations <= 100);
        // No bump: no evaluation.
        let flat = refine_peak(&alphas, &alphas, 1e-6, 100, |_| unreachable!()).unwrap();
        assert_eq!((flat.barrier, flat.evaluations), (0.0, 0));
    }
}
