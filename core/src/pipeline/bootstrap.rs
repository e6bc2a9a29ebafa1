//! What the result store keeps of a path's bootstrap ([`crate::methods::bootstrap`]): the 95%
//! interval of each barrier, and for the seed pairs that basins are clustered from, the resampled
//! loss barriers themselves (as f32, base64 in the JSON line: about 5 kB per barrier kind at
//! B = 1,000), which co-membership clusters resample by resample. Never per-example values.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::methods::bootstrap::{ResampledPath, interval};
use crate::methods::interpolation::BarrierKind;
use crate::names::Named;

/// The 95% intervals of one barrier kind's loss and error barriers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BarrierInterval {
    /// 2.5% quantile of the resampled loss barriers.
    #[serde(with = "crate::pipeline::store::any_f64")]
    pub loss_lo: f64,
    /// 97.5% quantile of the resampled loss barriers.
    #[serde(with = "crate::pipeline::store::any_f64")]
    pub loss_hi: f64,
    /// 2.5% quantile of the resampled error barriers.
    #[serde(with = "crate::pipeline::store::any_f64")]
    pub error_lo: f64,
    /// 97.5% quantile of the resampled error barriers.
    #[serde(with = "crate::pipeline::store::any_f64")]
    pub error_hi: f64,
}

/// A path's bootstrap as cached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathBootstrap {
    /// Per barrier kind, in [`BarrierKind::ALL`] order.
    pub intervals: Vec<BarrierInterval>,
    /// Per barrier kind, the resampled loss barriers as little-endian f32, base64 (seed pairs only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loss_barriers: Vec<String>,
}

impl PathBootstrap {
    /// Summarises resampled barriers; `keep_barriers` keeps the loss barriers themselves.
    pub fn new(resampled: &ResampledPath, keep_barriers: bool) -> Self {
        let intervals = resampled
            .loss
            .iter()
            .zip(&resampled.error)
            .map(|(loss, error)| {
                let (loss_lo, loss_hi) = interval(loss);
                let (error_lo, error_hi) = interval(error);
                BarrierInterval {
                    loss_lo,
                    loss_hi,
                    error_lo,
                    error_hi,
                }
            })
            .collect();
        let loss_barriers = if keep_barriers {
            resampled.loss.iter().map(|values| encode(values)).collect()
        } else {
            Vec::new()
        };
        Self {
            intervals,
            loss_barriers,
        }
    }

    /// The interval of `kind`, when stored.
    pub fn interval(&self, kind: BarrierKind) -> Option<&BarrierInterval> {
        self.intervals.get(kind_index(kind))
    }

    /// The resampled loss barriers of `kind` (None when not kept or not decodable).
    pub fn loss_barriers(&self, kind: BarrierKind) -> Option<Vec<f32>> {
        decode(self.loss_barriers.get(kind_index(kind))?)
    }
}

fn kind_index(kind: BarrierKind) -> usize {
    BarrierKind::ALL.iter().position(|k| *k == kind).unwrap_or(usize::MAX)
}

fn encode(values: &[f64]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

fn decode(text: &str) -> Option<Vec<f32>> {
    let bytes = STANDARD.decode(text).ok()?;
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barriers_survive_the_store_as_f32() {
        let resampled = ResampledPath {
            loss: vec![vec![0.5, f64::NAN, 1e-9], vec![2.0, 0.0, 3.25]],
            error: vec![vec![0.0; 3], vec![0.1; 3]],
        };
        let kept = PathBootstrap::new(&resampled, true);
        let json = serde_json::to_string(&kept).unwrap();
        let back: PathBootstrap = serde_json::from_str(&json).unwrap();
        let segment = back.loss_barriers(BarrierKind::Segment).unwrap();
        assert_eq!(segment, [2.0f32, 0.0, 3.25]);
        let endpoint = back.loss_barriers(BarrierKind::Endpoint).unwrap();
        assert!(endpoint[1].is_nan() && endpoint[2] == 1e-9f32);
        assert!(back.interval(BarrierKind::Endpoint).unwrap().loss_lo.is_nan());
        let dropped = PathBootstrap::new(&resampled, false);
        assert!(dropped.loss_barriers(BarrierKind::Segment).is_none());
        assert!(!serde_json::to_string(&dropped).unwrap().contains("loss_barriers"));
    }
}
