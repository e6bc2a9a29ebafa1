//! A checkpoint's parameters as one flat f32 vector, with the tensor boundaries.

use lineage_loaders::ParamSet;

use crate::error::{CoreError, Result};

/// All tensors of a parameter set, concatenated in name order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlatParams {
    /// Tensor names, in order.
    names: Vec<String>,
    /// `ends[i]`: end of tensor `i` in `values` (it starts where tensor `i - 1` ends).
    ends: Vec<usize>,
    /// The values.
    values: Vec<f32>,
}

impl FlatParams {
    /// Flattens `params` (tensors in name order).
    pub fn from_params(params: &ParamSet) -> Result<Self> {
        let mut flat = Self::default();
        for (name, tensor) in params.iter() {
            let values = tensor
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| CoreError::Model(format!("`{name}`: {e}")))?;
            flat.push(name, &values);
        }
        Ok(flat)
    }

    /// Appends a tensor.
    pub fn push(&mut self, name: &str, values: &[f32]) {
        self.names.push(name.to_string());
        self.values.extend_from_slice(values);
        self.ends.push(self.values.len());
    }

    /// The L2 norm of every tensor, in order (f64 accumulation).
    pub fn tensor_norms(&self) -> Vec<(String, f64)> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        self.names
            .iter()
            .zip(starts.zip(&self.ends))
            .map(|(name, (start, &end))| {
                (
                    name.clone(),
                    dot(&self.values[start..end], &self.values[start..end]).sqrt(),
                )
            })
            .collect()
    }

    /// Checks that `other` has the same tensors and sizes.
    pub fn check_same_layout(&self, other: &Self) -> Result<()> {
        if self.names != other.names || self.ends != other.ends {
            return Err(CoreError::Model(
                "checkpoints of one run have different tensor names or sizes".into(),
            ));
        }
        Ok(())
    }

    /// Subtracts `origin` (same layout) in place.
    pub fn subtract(&mut self, origin: &Self) -> Result<()> {
        self.check_same_layout(origin)?;
        for (v, o) in self.values.iter_mut().zip(&origin.values) {
            *v -= o;
        }
        Ok(())
    }

    /// All values.
    pub fn values(&self) -> &[f32] {
        &self.values
    }
}

/// `a · b` accumulated in f64 (products of f32 are exact in f64).
pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum()
}
