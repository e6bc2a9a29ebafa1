//! Building the permutation specs of the convolutional family ([`crate::methods::align`]): a
//! group's matched axes (conv and linear weights, BatchNorm weight and bias) and carried axes
//! (BatchNorm running statistics, permuted with their channels but left out of weight matching,
//! whose objective they would dominate with their scale).

use std::collections::HashMap;

use crate::methods::align::{PermutationGroup, TensorAxis};

fn axis(tensor: &str, axis: usize) -> TensorAxis {
    TensorAxis {
        tensor: tensor.to_string(),
        axis,
    }
}

/// A permutation group being built: matched axes and carried BatchNorm statistics.
pub struct Group {
    name: String,
    size: usize,
    matched: Vec<TensorAxis>,
    carried: Vec<TensorAxis>,
}

impl Group {
    /// An empty group of `size` channels.
    pub fn new(name: &str, size: usize) -> Self {
        Self {
            name: name.to_string(),
            size,
            matched: Vec::new(),
            carried: Vec::new(),
        }
    }

    /// Conv `conv` (or linear) writes these channels: its weight rows and bias, and the
    /// BatchNorm `bn` after it (weight and bias matched, running statistics carried).
    pub fn output(&mut self, shapes: &HashMap<String, Vec<usize>>, conv: &str, bn: Option<&str>) {
        self.matched.push(axis(&format!("{conv}.weight"), 0));
        if shapes.contains_key(&format!("{conv}.bias")) {
            self.matched.push(axis(&format!("{conv}.bias"), 0));
        }
        if let Some(bn) = bn.filter(|bn| shapes.contains_key(&format!("{bn}.running_mean"))) {
            self.matched.push(axis(&format!("{bn}.weight"), 0));
            self.matched.push(axis(&format!("{bn}.bias"), 0));
            self.carried.push(axis(&format!("{bn}.running_mean"), 0));
            self.carried.push(axis(&format!("{bn}.running_var"), 0));
        }
    }

    /// Conv (or linear) `layer` reads these channels: its weight columns.
    pub fn input(&mut self, layer: &str) {
        self.matched.push(axis(&format!("{layer}.weight"), 1));
    }

    /// The finished group.
    pub fn build(self) -> PermutationGroup {
        PermutationGroup {
            name: self.name,
            size: self.size,
            axes: self.matched,
            carried: self.carried,
        }
    }
}
