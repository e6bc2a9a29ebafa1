//! The eval set's token ids cut into forward-pass batches.

use candle_core::{Device, Tensor};

use crate::data::eval_data::EvalData;
use crate::error::{CoreError, Result};

/// Tokens per forward pass (examples x sequence length): bounds the attention scores' memory.
const TOKENS_PER_BATCH: usize = 4096;

/// A batch of at least this many tokens ends before a longer sequence (which would add padding to
/// all its rows): enough rows for the matrix products to run at full speed, little padding.
const ENOUGH_TOKENS: usize = 1024;

/// One forward-pass batch: sequences of similar length, their ids and mask on the device (and on
/// the host, row-major, for scoring).
#[derive(Debug, Clone)]
pub struct TokenBatch {
    /// The eval set's index of the sequence in each row (`B` rows).
    pub sequences: Vec<u32>,
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

impl TokenBatch {
    /// Number of sequences `B`.
    pub fn rows(&self) -> usize {
        self.sequences.len()
    }
}

/// Rows `members` of a row-major `[N, width]` array, each cut to its first `len` values.
fn rows<T: Copy>(values: &[T], members: &[usize], width: usize, len: usize) -> Vec<T> {
    members
        .iter()
        .flat_map(|&s| values[s * width..s * width + len].iter().copied())
        .collect()
}

/// The eval set as forward-pass batches. The sequences are taken in order of their unpadded length
/// (equal lengths in the eval set's order), so that each batch holds sequences of similar length,
/// and the trailing columns that are padding in every sequence of a batch are cut off: with right
/// padding this changes nothing (masked keys get zero attention and positions are absolute) and
/// saves the work on padding, most of an eval set padded to a fixed length (HF's
/// `padding="max_length"`). Batches are scored in this order; [`TokenBatch::sequences`] says which
/// sequences a batch holds.
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
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&s| lengths[s]);
        let padded_len = |s: usize| lengths[s].max(1);
        let mut batches = Vec::new();
        let mut first = 0;
        while first < n {
            // At least one sequence; more while rows x the longest one's length fit the budget,
            // until the batch has enough tokens and the next sequence is longer.
            let mut end = first + 1;
            while end < n && (end + 1 - first) * padded_len(order[end]) <= TOKENS_PER_BATCH {
                let (longest, next) = (padded_len(order[end - 1]), padded_len(order[end]));
                if (end - first) * longest >= ENOUGH_TOKENS && next > longest {
                    break;
                }
                end += 1;
            }
            let members = &order[first..end];
            let len = padded_len(order[end - 1]);
            let tensor = |values: &[u32]| Tensor::from_slice(values, (members.len(), len), device).map_err(what);
            let (batch_ids, batch_mask) = (rows(&ids, members, width, len), rows(&mask, members, width, len));
            batches.push(TokenBatch {
                sequences: members.iter().map(|&s| s as u32).collect(),
                len,
                input_ids: tensor(&batch_ids)?,
                attention_mask: tensor(&batch_mask)?,
                token_type_ids: types
                    .as_deref()
                    .map(|t| tensor(&rows(t, members, width, len)))
                    .transpose()?,
                ids: batch_ids,
                mask: batch_mask,
                labels: labels.as_deref().map(|l| rows(l, members, width, len)),
            });
            first = end;
        }
        Ok(Self {
            batches,
            max_len: lengths.iter().copied().max().unwrap_or(0),
            n_examples: n,
        })
    }

    /// The batches, in scoring order (shortest sequences first).
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
        // The shorter sequence first.
        assert_eq!(batches[0].sequences, vec![1, 0]);
        assert_eq!(
            batches[0].input_ids.to_vec2::<u32>().unwrap(),
            vec![vec![7, 0], vec![5, 6]]
        );
        assert_eq!(
            batches[0].attention_mask.to_vec2::<u32>().unwrap(),
            vec![vec![1, 0], vec![1, 1]]
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
        let sequences: Vec<Vec<u32>> = b.iter().map(|t| t.sequences.clone()).collect();
        assert_eq!(sequences, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
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
    fn sequences_are_batched_by_length_within_the_token_budget() {
        // 300 sequences padded to 128 tokens, of lengths 1..=128 in a scrambled order.
        let (n, width) = (300, 128);
        let length = |s: usize| (s * 37) % width + 1;
        let mut ids = vec![0u32; n * width];
        let mut mask = vec![0u32; n * width];
        for s in 0..n {
            for t in 0..length(s) {
                ids[s * width + t] = (s * 1000 + t) as u32;
                mask[s * width + t] = 1;
            }
        }
        let b = TokenBatches::new(&data(ids, mask, width), &Device::Cpu).unwrap();
        let mut seen = vec![0; n];
        let mut previous_len = 0;
        let mut scored_tokens = 0;
        for batch in b.iter() {
            assert!(batch.rows() == 1 || batch.rows() * batch.len <= TOKENS_PER_BATCH);
            let longest = batch.sequences.iter().map(|&s| length(s as usize)).max().unwrap();
            assert_eq!(batch.len, longest, "a batch is cut to its longest sequence");
            assert!(batch.len >= previous_len, "batches come shortest first");
            previous_len = batch.len;
            scored_tokens += batch.rows() * batch.len;
            for (row, &s) in batch.sequences.iter().enumerate() {
                seen[s as usize] += 1;
                let row_ids = &batch.ids[row * batch.len..(row + 1) * batch.len];
                let row_mask = &batch.mask[row * batch.len..(row + 1) * batch.len];
                for t in 0..batch.len {
                    let real = t < length(s as usize);
                    assert_eq!(row_mask[t], real as u32);
                    assert_eq!(row_ids[t], if real { s * 1000 + t as u32 } else { 0 });
                }
            }
        }
        assert!(seen.iter().all(|&k| k == 1), "every sequence exactly once");
        let real_tokens: usize = (0..n).map(length).sum();
        // Sorted batches hold 7% padding here; in eval-set order every batch would keep ~128
        // columns (twice the real tokens).
        assert!(
            scored_tokens < real_tokens * 11 / 10,
            "{scored_tokens} tokens for {real_tokens}"
        );
        assert_eq!((b.max_len(), b.n_examples()), (width, n));
    }

    #[test]
    fn features_are_refused() {
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let d = EvalData::from_tensors(x, vec![0, 1], None, false).unwrap();
        assert!(TokenBatches::new(&d, &Device::Cpu).is_err());
    }
}
