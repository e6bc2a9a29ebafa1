//! Representations: a matrix of per-example features (one row per eval example), e.g. the hidden
//! activations of a layer ([`crate::Evaluator::hidden_activations`]).

use crate::error::{CoreError, Result};

/// An `[rows, cols]` row-major f32 matrix: row `i` is the feature vector of example `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Features {
    /// Wraps `data` (length `rows * cols`).
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(CoreError::InvalidArgument(format!(
                "features: {} values do not form a {rows} x {cols} matrix",
                data.len()
            )));
        }
        Ok(Self { rows, cols, data })
    }

    /// Number of examples.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Feature width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i` (panics if `i >= rows`).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// All values, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// True when every value is finite.
    pub fn is_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_checked() {
        assert!(Features::new(2, 3, vec![0.0; 5]).is_err());
        let f = Features::new(2, 3, (0..6).map(|v| v as f32).collect()).unwrap();
        assert_eq!(f.row(1), &[3.0, 4.0, 5.0]);
        assert_eq!((f.rows(), f.cols()), (2, 3));
        assert!(Features::new(0, 4, vec![]).is_ok());
    }
}
