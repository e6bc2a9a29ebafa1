//! The eval set's token ids cut into forward-pass batches.

use candle_core::{Device, Tensor};

use crate::data::eval_data::EvalData;
use crate::error::{CoreError, Result};

/// Tokens per forward pass (examples x sequence length): bounds the attention scores' memory.
const TOKENS_PER_BATCH: usize = 4096;

/// One forward-pass batch: consecutive sequences, their ids and mask on the device (and on the
/// host, row-major, for scoring).
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// Index of the batch's first sequence.
    pub start: usize,
    /// Number of sequences `B`.
    pub rows: usize,
    /// Sequence length `L'` after trimming.
    pub len: usize,
    /// `[B, L']` token ids (u32).
    pub input_ids: Tensor,
    /// `[B, L']` attention mask (u32, 1 = attend).
    pub attention_mask: Tensor,
    /// `[B, L']` segment ids (u32), when the eval data has them.
    pub token_type_ids: Option<Tensor>,
    /// The token ids on the host.
    pub ids: Vec<u32>,
    /// The attention mask on the host.
    pub mask: Vec<u32>,
    /// Per-token targets on the host (language-model data with `labels` per token), -100 = not
    /// scored.
    pub labels: Option<Vec<i64>>,
}

/// Rows `start..end` of a row-major `[N, width]` array, each cut to its first `len` values.
fn rows<T: Copy>(values: &[T], (start, end, width, len): (usize, usize, usize, usize)) -> Vec<T> {
    values[start * width..end * width]
        .chunks_exact(width)
        .flat_map(|row| row[..len].iter().copied())
        .collect()
}

/// The eval set as forward-pass batches. Trailing columns that are padding in every example of a
/// batch are cut off: with right padding this changes nothing (masked keys get zero attention and
/// positions are absolute) and saves the work on padding.
#[derive(Debug, Clone)]
pub struct TokenBatches {
    batches: Vec<TokenBatch>,
    /// The longest unpadded length of any example.
    max_len: usize,
    n_examples: usize,
}

impl TokenBatches {
    /// Splits `data` (token ids; all ones as mask when it has none) into batches on `device`.
    pub fn new(data: &EvalData, device: &Device) -> Result<Self> {
        if !data.is_token_ids() {
            return Err(CoreError::InvalidArgument(
                "transformer families need token ids (`input_ids`) as eval inputs, not features (`inputs`)".into(),
            ));
        }
        let what = |e: candle_core::Error| CoreError::Model(format!("eval tokens: {e}"));
        let (n, width) = data.inputs.dims2().map_err(what)?;
        let ids = data
            .inputs
            .flatten_all()
            .and_then(|t| t.to_vec1::<u32>())
            .map_err(what)?;
        let mask = match &data.attention_mask {
            Some(mask) => mask.flatten_all().and_then(|t| t.to_vec1::<u32>()).map_err(what)?,
            None => vec![1; n * width],
        };
        let types = match &data.token_type_ids {
            Some(types) => Some(types.flatten_all().and_then(|t| t.to_vec1::<u32>()).map_err(what)?),
            None => None,
        };
        let labels = match &data.token_labels {
            Some(labels) => Some(labels.flatten_all().and_then(|t| t.to_vec1::<i64>()).map_err(what)?),
            None => None,
        };
        // Unpadded length of each example: one past its last attended position.
        let lengths: Vec<usize> = mask
            .chunks_exact(width.max(1))
            .map(|row| row.iter().rposition(|&m| m != 0).map_or(0, |p| p + 1))
            .collect();
        let per_batch = (TOKENS_PER_BATCH / width.max(1)).max(1);
        let mut batches = Vec::new();
        for start in (0..n).step_by(per_batch) {
            let end = (start + per_batch).min(n);
            let len = lengths[start..end].iter().copied().max().unwrap_or(0).max(1);
            let span = (start, end, width, len);
            let tensor = |values: &[u32]| Tensor::from_slice(values, (end - start, len), device).map_err(what);
            let (batch_ids, batch_mask) = (rows(&ids, span), rows(&mask, span));
            batches.push(TokenBatch {
                start,
                rows: end - start,
                len,
                input_ids: tensor(&batch_ids)?,
                attention_mask: tensor(&batch_mask)?,
                token_type_ids: types.as_deref().map(|t| tensor(&rows(t, span))).transpose()?,
                ids: batch_ids,
                mask: batch_mask,
                labels: labels.as_deref().map(|l| rows(l, span)),
            });
        }
        Ok(Self {
            batches,
            max_len: lengths.iter().copied().max().unwrap_or(0),
            n_examples: n,
        })
    }

    /// The batches, in example order.
    pub fn iter(&self) -> impl Iterator<Item = &TokenBatch> {
        self.batches.iter()
    }

    /// The longest unpadded example, in tokens.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Number of examples.
    pub fn n_examples(&self) -> usize {
        self.n_examples
    }

    /// The largest token id in the eval data (padding included), for vocabulary checks.
    pub fn max_id(data: &EvalData) -> Result<u32> {
        data.inputs
            .max_all()
            .and_then(|m| m.to_scalar::<u32>())
            .map_err(|e| CoreError::Model(format!("eval tokens: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(ids: Vec<u32>, mask: Vec<u32>, width: usize) -> EvalData {
        let n = ids.len() / width;
        let ids = Tensor::from_vec(ids, (n, width), &Device::Cpu).unwrap();
        let mask = Tensor::from_vec(mask, (n, width), &Device::Cpu).unwrap();
        EvalData::from_tensors(ids, vec![0; n], Some(mask), true).unwrap()
    }

    #[test]
    fn trailing_padding_is_trimmed_per_batch() {
        let d = data(vec![5, 6, 0, 0, 7, 0, 0, 0], vec![1, 1, 0, 0, 1, 0, 0, 0], 4);
        let b = TokenBatches::new(&d, &Device::Cpu).unwrap();
        let batches: Vec<_> = b.iter().collect();
        assert_eq!(batches.len(), 1);
        assert_eq!(
            batches[0].input_ids.to_vec2::<u32>().unwrap(),
            vec![vec![5, 6], vec![7, 0]]
        );
        assert_eq!(
            batches[0].attention_mask.to_vec2::<u32>().unwrap(),
            vec![vec![1, 1], vec![1, 0]]
        );
        assert_eq!((b.max_len(), b.n_examples()), (2, 2));
    }

    #[test]
    fn batches_cover_every_example_in_order() {
        let width = 1024; // 4 examples per batch
        let n = 10;
        let ids: Vec<u32> = (0..n * width).map(|i| (i / width) as u32).collect();
        let d = data(ids, vec![1; n * width], width);
        let b = TokenBatches::new(&d, &Device::Cpu).unwrap();
        let starts: Vec<usize> = b.iter().map(|t| t.start).collect();
        assert_eq!(starts, vec![0, 4, 8]);
        let firsts: Vec<u32> = b
            .iter()
            .flat_map(|t| {
                t.input_ids
                    .narrow(1, 0, 1)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<u32>()
                    .unwrap()
            })
            .collect();
        assert_eq!(firsts, (0..n as u32).collect::<Vec<_>>());
    }

    #[test]
    fn features_are_refused() {
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let d = EvalData::from_tensors(x, vec![0, 1], None, false).unwrap();
        assert!(TokenBatches::new(&d, &Device::Cpu).is_err());
    }
}
