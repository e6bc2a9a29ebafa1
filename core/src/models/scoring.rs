//! Scoring logits: the cross-entropy and the correctness of each row, on the host
//! ([`score_logits`], rows in parallel, vectorised) or where the logits are ([`score_logits_on_device`]).

use candle_core::Tensor;
use rayon::prelude::*;

use crate::models::fast_math::{exp_nonpositive, multiversioned};

/// Scores a row-major block of logits (rows `stride` apart, the first `classes` values of each
/// row are the logits): writes each row's cross-entropy (stable log-softmax in f32) and whether its
/// argmax (first maximal index, NaN counting as maximal, as in PyTorch) equals the label.
/// `labels` must be `< classes` and as long as the outputs; `classes` must be `1..=stride`.
pub fn score_logits(
    logits: &[f32],
    stride: usize,
    classes: usize,
    labels: &[u32],
    loss: &mut [f32],
    correct: &mut [bool],
) {
    // Rows in parallel (a language model's rows are as wide as its vocabulary), at least
    // ROW_BLOCK logits per task so that narrow rows are not split into tiny tasks.
    const ROW_BLOCK: usize = 1 << 14;
    let rows_per_task = (ROW_BLOCK / stride.max(1)).max(1);
    logits
        .par_chunks_exact(stride)
        .zip(labels)
        .zip(loss)
        .zip(correct)
        .with_min_len(rows_per_task)
        .for_each(|(((row, &label), loss), correct)| score_row(&row[..classes], label, loss, correct));
}

/// [`score_logits`] for a `[rows, classes]` block of logits on their own device (a GPU): only the
/// losses and the correctness flags come back to the host, not the logits (for a language model,
/// `rows x vocabulary` values). Same rules: stable log-softmax in f32, and correct when the label
/// is the first maximal index. A row holding NaN has a NaN loss and counts as wrong.
pub fn score_logits_on_device(logits: &Tensor, labels: &[u32]) -> candle_core::Result<(Vec<f32>, Vec<bool>)> {
    let (rows, classes) = logits.dims2()?;
    let device = logits.device();
    let labels = Tensor::from_slice(labels, (rows, 1), device)?;
    let shifted = logits.broadcast_sub(&logits.max_keepdim(1)?)?;
    let log_sum = shifted.exp()?.sum_keepdim(1)?.log()?;
    let at_label = shifted.gather(&labels, 1)?;
    let loss = (log_sum - &at_label)?.squeeze(1)?;
    // The label is the first maximal index: its shifted logit is 0 and no earlier one is.
    let maximal = shifted.eq(0f32)?;
    let before_label = Tensor::arange(0u32, classes as u32, device)?
        .unsqueeze(0)?
        .broadcast_lt(&labels)?;
    let earlier_maximum = (maximal * before_label)?.max(1)?;
    // 1 > 0 only where the label is maximal and nothing before it is: one transfer of flags.
    let correct = at_label.squeeze(1)?.eq(0f32)?.gt(&earlier_maximum)?;
    let correct = correct.to_vec1::<u8>()?.into_iter().map(|flag| flag == 1).collect();
    Ok((loss.to_vec1::<f32>()?, correct))
}

multiversioned! {
    /// The cross-entropy and correctness of one row of logits (see [`score_logits`]): a language
    /// model's rows are its vocabulary wide, and this exp-sum is most of the scoring time.
    fn score_row(row: &[f32], label: u32, loss: &mut f32, correct: &mut bool) => score_row_simd
}

/// Lanes of the vectorised loops of [`score_row_simd`] (two AVX2 registers).
const LANES: usize = 16;

/// [`score_row`] written so that the compiler vectorises it: the maximum and the sum of
/// exponentials run over [`LANES`] independent lanes (so the sum is added in another order than
/// one running total; the loss differs from a sequential sum by rounding only).
#[inline(always)]
fn score_row_simd(row: &[f32], label: u32, loss: &mut f32, correct: &mut bool) {
    let mut maxima = [f32::NEG_INFINITY; LANES];
    let mut has_nan = false;
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &v) in maxima.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
            has_nan |= v.is_nan();
        }
    }
    for &v in tail {
        maxima[0] = if v > maxima[0] { v } else { maxima[0] };
        has_nan |= v.is_nan();
    }
    let label = label as usize;
    if has_nan {
        // PyTorch: NaN is the maximum (the first NaN the argmax), and the loss is NaN.
        *loss = f32::NAN;
        *correct = row.iter().position(|v| v.is_nan()) == Some(label);
        return;
    }
    let max = maxima.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    *correct = row.iter().position(|&v| v == max) == Some(label);
    if !max.is_finite() {
        // +inf - +inf (or -inf - -inf when every logit is -inf) is NaN, as in PyTorch's log-softmax.
        *loss = f32::NAN;
        return;
    }
    let mut sums = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (s, &v) in sums.iter_mut().zip(chunk) {
            *s += exp_nonpositive(v - max);
        }
    }
    for &v in tail {
        sums[0] += exp_nonpositive(v - max);
    }
    let sum: f32 = sums.iter().sum();
    *loss = sum.ln() - (row[label] - max);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scoring_matches_hand_computed_cross_entropy() {
        let logits = [1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0];
        let mut loss = [0.0; 2];
        let mut correct = [false; 2];
        score_logits(&logits, 3, 3, &[2, 1], &mut loss, &mut correct);
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((f64::from(loss[0]) - (lse - 3.0)).abs() < 1e-6);
        assert!((f64::from(loss[1]) - 3f64.ln()).abs() < 1e-6);
        // Row 2 is a three-way tie: PyTorch's argmax picks index 0, so label 1 is wrong.
        assert_eq!(correct, [true, false]);
    }

    #[test]
    fn scoring_is_stable_for_huge_logits() {
        let logits = [1000.0f32, -1000.0];
        let (mut loss, mut correct) = ([0.0; 1], [false; 1]);
        score_logits(&logits, 2, 2, &[1], &mut loss, &mut correct);
        assert_eq!(loss[0], 2000.0);
        assert!(!correct[0]);
    }

    #[test]
    fn nan_counts_as_the_maximum_like_pytorch() {
        let logits = [1.0f32, f32::NAN, 5.0];
        let (mut loss, mut correct) = ([0.0; 1], [false; 1]);
        score_logits(&logits, 3, 3, &[1], &mut loss, &mut correct);
        assert!(correct[0]);
        assert!(loss[0].is_nan());
    }

    #[test]
    fn scoring_on_the_device_matches_the_host() {
        // Rows with ties (first maximal index wins), a huge spread and a label at the last class.
        let (rows, classes) = (6, 7);
        let mut logits: Vec<f32> = (0..rows * classes)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) * 0.7)
            .collect();
        logits[3 * classes..4 * classes].copy_from_slice(&[2.0, 5.0, 1.0, 5.0, 5.0, 0.0, -1.0]);
        logits[4 * classes] = 900.0;
        let labels = [0u32, 3, 6, 3, 0, 1];
        let (mut loss, mut correct) = (vec![0.0; rows], vec![false; rows]);
        score_logits(&logits, classes, classes, &labels, &mut loss, &mut correct);
        let on_device = score_logits_on_device(
            &Tensor::from_slice(&logits, (rows, classes), &candle_core::Device::Cpu).unwrap(),
            &labels,
        )
        .unwrap();
        for (a, b) in loss.iter().zip(&on_device.0) {
            assert!((a - b).abs() < 1e-5, "{loss:?} vs {:?}", on_device.0);
        }
        assert_eq!(correct, on_device.1);
        // Row 3's label ties for the maximum after an earlier index; row 4's label is its maximum.
        assert!(!correct[3] && correct[4], "{correct:?}");
    }

    #[test]
    fn wide_rows_match_an_f64_log_softmax() {
        // Vocabulary-wide rows (not a multiple of the lanes), spread over [-30, 30).
        let (rows, width) = (3, 50_257);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let logits: Vec<f32> = (0..rows * width)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 60_000) as f32 / 1000.0 - 30.0
            })
            .collect();
        let labels = [0u32, 12_345, 50_256];
        let (mut loss, mut correct) = (vec![0.0; rows], vec![false; rows]);
        score_logits(&logits, width, width, &labels, &mut loss, &mut correct);
        for (r, row) in logits.chunks_exact(width).enumerate() {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, |m, v| m.max(f64::from(v)));
            let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
            let expected = sum.ln() + max - f64::from(row[labels[r] as usize]);
            assert!(
                (f64::from(loss[r]) - expected).abs() < 1e-5 * expected.abs(),
                "row {r}: {} vs {expected}",
                loss[r]
            );
            let argmax = row.iter().position(|&v| f64::from(v) == max).unwrap();
            assert_eq!(correct[r], argmax == labels[r] as usize);
        }
    }

    #[test]
    fn infinite_logits_give_a_nan_loss_like_pytorch() {
        // +inf - +inf is NaN in the log-softmax; a row of -inf has no finite maximum either.
        let logits = [
            1.0f32,
            f32::INFINITY,
            0.0,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ];
        let (mut loss, mut correct) = ([0.0; 2], [false; 2]);
        score_logits(&logits, 3, 3, &[1, 0], &mut loss, &mut correct);
        assert!(loss[0].is_nan() && loss[1].is_nan(), "{loss:?}");
        assert_eq!(correct, [true, true]);
        // A -inf logit next to finite ones is a probability of 0, not a NaN.
        let logits = [2.0f32, f32::NEG_INFINITY];
        let (mut loss, mut correct) = ([0.0; 1], [false; 1]);
        score_logits(&logits, 2, 2, &[0], &mut loss, &mut correct);
        assert!(loss[0].abs() < 1e-30 && correct[0], "{loss:?}");
    }
}
